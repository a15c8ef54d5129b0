"""End to end: Server on a real model (ONNX Runtime CPU) through the `benchkit` command (in this process, cells
inline: the subject is the Server scheduler and its records, not worker isolation), sweeps as separate records,
and --find-peak. Validity is asserted only with latency bounds far above what a loaded
2-core machine can miss; the searches' figures are checked for consistency, not for speed."""

from __future__ import annotations

import pytest

from benchkit.results import records
from benchkit.runner.peak import PeakOptions, PeakSearch
from benchkit.runner.plan import expand
from benchkit.runner.suite import RunOptions, run_suite
from benchkit.spec import Server, parse_spec

from conftest import ROOT, run_cli

MS = 1_000_000


@pytest.fixture(scope="module")
def server_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("server")
    (tmp / "s.yaml").write_text("""
name: server-e2e
seed: 11
workloads: [{name: tiny-add}]
backends:
  - {name: onnxruntime, label: ort-async, options: {intra_op_num_threads: 2}}
  - {name: onnxruntime, label: ort-workers, options: {intra_op_num_threads: 1}}
scenarios:
  - {kind: server, target_qps: [500, 1000], target_latency_ns: 2000000000, workers: 2}
run: {profile: quick}
""")
    proc = run_cli("run", "s.yaml", "--inline", "--out", "out", cwd=tmp)
    recs = {p.stem: records.load(p) for p in (tmp / "out").rglob("*.json")}
    return proc, recs


def test_server_records_one_per_load_point_and_backend(server_run):
    proc, recs = server_run
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert set(recs) == {f"tiny-add__{b}__server-q{q}" for b in ("ort-async", "ort-workers") for q in (500, 1000)}
    for cid, r in recs.items():
        m = r.metrics
        assert r.validity.valid, (cid, r.validity.reasons)
        assert r.engine == "benchkit" and r.scenario.kind == "server"
        assert r.scenario.settings["target_qps"] == (500.0 if cid.endswith("q500") else 1000.0)
        # quick profile: 662 queries (LoadGen's early-stopping floor for p99) or 500 ms, whichever is longer
        assert m.count >= 662 and m.sample_count == m.count == len(r.samples_ns)
        assert m.headline.name == "throughput_per_s" and m.headline.unit == "samples/s"
        es = m.early_stopping
        assert es.passed and es.target_latency_ns == 2 * 10**9 and es.percentile == 99 and es.count == m.count
        assert m.issue_lateness_ns is not None and m.issue_lateness_ns.count == m.count
        assert m.extra["issue_mode"] == ("async" if "async" in cid else "workers")
        assert 0 < m.extra["completed_samples_per_s"] <= 1.2 * r.scenario.settings["target_qps"]


def test_show_prints_server_figures(server_run, tmp_path):
    _, recs = server_run
    rec = recs["tiny-add__ort-async__server-q500"]
    path = tmp_path / "r.json"
    records.save(rec, path)
    shown = run_cli("show", str(path), cwd=ROOT)
    assert shown.returncode == 0, shown.stderr
    assert "issue lateness" in shown.stdout and "early stopping" in shown.stdout


SWEEP_SPEC = """
name: sweeps
workloads: [{name: tiny-add}]
backends: [{name: "null"}]
scenarios:
  - {kind: offline, batch_size: [1, 4, 16]}
  - {kind: server, target_qps: [1000, 2500.5], target_latency_ns: 10000000}
  - {kind: server, target_qps: 400, target_latency_ns: 10000000}
  - {kind: single_stream}
"""


def test_sweeps_expand_to_distinct_cells():
    loaded = parse_spec(SWEEP_SPEC, "sweeps.yaml", ROOT)
    cells = expand(loaded, profile="quick")
    ids = [c.cell_id for c in cells]
    assert ids == [
        "tiny-add__null__offline-b1", "tiny-add__null__offline-b4", "tiny-add__null__offline-b16",
        "tiny-add__null__server-1-q1000", "tiny-add__null__server-1-q2500.5", "tiny-add__null__server-2",
        "tiny-add__null__single_stream",
    ]
    assert [c.scenario.batch_size for c in cells[:3]] == [1, 4, 16]
    assert [c.scenario.target_qps for c in cells[3:6]] == [1000.0, 2500.5, 400.0]
    assert cells[0].scenario.min_query_count == 50 and cells[3].scenario.min_query_count == 662
    peak_cells = expand(loaded, profile="quick", find_peak=True)
    assert [(c.cell_id, c.scenario.target_qps) for c in peak_cells] == [
        ("tiny-add__null__server-1", 1000.0), ("tiny-add__null__server-2", 400.0)]


def test_sweep_values_are_validated():
    with pytest.raises(ValueError, match="distinct"):
        Server(kind="server", target_qps=[100, 100], target_latency_ns=1)
    with pytest.raises(ValueError, match="positive number"):
        Server(kind="server", target_qps=[100, -1], target_latency_ns=1)


@pytest.mark.parametrize("threshold", [37.0, 1000.0, 1234.5, 40_000.0])
def test_peak_search_brackets_a_threshold_within_tolerance(threshold):
    opts = PeakOptions(tolerance=0.05, max_probes=20)
    search = PeakSearch(1000.0, opts)
    while (q := search.next_probe()) is not None:
        search.observe(q, q <= threshold)
    assert search.converged
    assert search.lower <= threshold < search.upper and search.upper / search.lower - 1 <= 0.05
    assert len(search.probes) <= 20 and len({q for q, _ in search.probes}) == len(search.probes)


def test_peak_search_is_bounded_and_honest_when_nothing_is_valid():
    search = PeakSearch(1000.0, PeakOptions(max_probes=5))
    while (q := search.next_probe()) is not None:
        search.observe(q, False)
    assert len(search.probes) == 5 and search.lower is None and not search.converged
    assert [q for q, _ in search.probes] == [1000.0, 500.0, 250.0, 125.0, 62.5]


def test_find_peak_records_every_probe(tmp_path):
    loaded = parse_spec("""
name: peak
workloads: [{name: tiny-add}]
backends: [{name: "null"}]
scenarios: [{kind: server, target_qps: 500, target_latency_ns: 5000000000, min_duration_ms: 50}]
run: {profile: quick, isolation: inline}
""", "peak.yaml", tmp_path)
    cells = expand(loaded, find_peak=True)
    result = run_suite(loaded, cells, RunOptions(out_dir=tmp_path / "out", find_peak=True, peak=PeakOptions(max_probes=3)))
    (peak,) = result.peaks
    assert len(result.records) == len(peak.probes) == 3
    for i, (rec, path) in enumerate(zip(result.records, result.paths)):
        assert rec.probe is not None and rec.probe.search == "tiny-add__null__server" and rec.probe.index == i
        assert path.name == f"{rec.cell_id}.json" and rec.cell_id.startswith("tiny-add__null__server__peak")
        assert rec.scenario.settings["target_qps"] == rec.probe.target_qps == peak.probes[i][0]
        assert rec.validity.valid == peak.probes[i][1]
        assert records.load(path).probe == rec.probe
    assert result.records[0].probe.phase == "grow" and result.records[0].probe.lower_qps is None
    valid = [q for q, ok in peak.probes if ok]
    assert peak.peak_qps == (max(valid) if valid else None)
    if peak.peak_record is not None:
        assert peak.peak_record.scenario.settings["target_qps"] == peak.peak_qps


def test_find_peak_needs_a_server_scenario(tmp_path):
    from benchkit.errors import SpecError

    loaded = parse_spec("name: x\nworkloads: [{name: tiny-add}]\nbackends: [{name: onnxruntime}]\n"
                        "scenarios: [{kind: single_stream}]\n", "x.yaml", tmp_path)
    with pytest.raises(SpecError, match="--find-peak: x has no server scenario"):
        expand(loaded, find_peak=True)
