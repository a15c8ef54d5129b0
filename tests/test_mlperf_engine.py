"""The MLPerf LoadGen engine: the same cells run through LoadGen itself, parsed into the same record.

End to end through the `benchkit` command (in this process, cells inline: the subject is the engine and its
parsing, not worker isolation) with the real ``mlperf_loadgen`` module (the ``mlperf`` extra) and a real
ONNX Runtime model. LoadGen's own summary file is read here independently of benchkit's
parser, and the record's figures must equal LoadGen's to the nanosecond.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from scenario_factory import scenario

from benchkit.results import records
from benchkit.errors import BackendError
from benchkit.stats import percentile_ns

from conftest import run_cli

SPEC = """
name: lg
seed: 5
workloads: [{name: tiny-add}]
backends: [{name: onnxruntime, options: {intra_op_num_threads: 2}}]
scenarios:
  - {kind: single_stream, min_duration_ms: 300}
  - {kind: multi_stream, samples_per_query: 4, min_duration_ms: 200}
  - {kind: server, target_qps: 1000, target_latency_ns: 2000000000}  # 662 queries: 0.7 s
  - {kind: offline, batch_size: 4, min_duration_ms: 300}
run: {profile: quick}
"""


def summary_value(text: str, label: str) -> float:
    """A figure from LoadGen's summary; `label` is a regex ("90(?:.0)?th" covers both LoadGen spellings)."""
    m = re.search(rf"^{label}\s*:\s*([0-9.]+)\s*$", text, re.M)
    assert m, f"{label!r} not in LoadGen's summary"
    return float(m.group(1))


@pytest.fixture(scope="module")
def lg_run(tmp_path_factory):
    pytest.importorskip("mlperf_loadgen", reason="MLPerf LoadGen is not installed (the mlperf extra)")
    tmp = tmp_path_factory.mktemp("lg")
    (tmp / "lg.yaml").write_text(SPEC)
    proc = run_cli("run", "lg.yaml", "--inline", "--out", "out", "--engine", "mlperf", cwd=tmp)
    run_dirs = [p for p in (tmp / "out" / "lg").iterdir() if p.is_dir()]
    assert len(run_dirs) == 1, proc.stderr
    return proc, run_dirs[0]


def test_every_scenario_yields_a_record_with_loadgen_logs_beside_it(lg_run):
    proc, run_dir = lg_run
    assert "Traceback" not in proc.stderr, proc.stderr
    assert sorted(p.name for p in run_dir.glob("*.json")) == [
        f"tiny-add__onnxruntime__{k}.json" for k in ("multi_stream", "offline", "server", "single_stream")]
    for rec_path in run_dir.glob("*.json"):
        rec = records.load(rec_path)
        assert rec.engine == "mlperf" and rec.error is None, rec.validity.reasons
        logs = run_dir / f"{rec.cell_id}.mlperf"
        assert (logs / "mlperf_log_summary.txt").is_file() and (logs / "mlperf_log_detail.txt").is_file()
        # the trace was parsed into samples_ns and removed; no stray .json can be mistaken for a record
        assert not list(logs.glob("*.json"))
        assert rec.metrics.extra["mlperf"]["log_dir"] == logs.name
        summary = (logs / "mlperf_log_summary.txt").read_text()
        lg_valid = "Result is : VALID" in summary
        assert rec.validity.valid == lg_valid, rec.validity.reasons
        if not lg_valid:
            assert rec.validity.reasons[0].startswith("LoadGen: result INVALID")
        # benchkit's own latency rules (early stopping, percentile bound), applied to LoadGen's samples,
        # reach LoadGen's verdict: no disagreement warning
        assert not [w for w in rec.validity.warnings if "disagree" in w], rec.validity.warnings


def load(run_dir: Path, kind: str) -> tuple[records.ResultRecord, str]:
    rec = records.load(run_dir / f"tiny-add__onnxruntime__{kind}.json")
    return rec, (run_dir / f"{rec.cell_id}.mlperf" / "mlperf_log_summary.txt").read_text()


def test_single_stream_figures_are_loadgens_own(lg_run):
    _, run_dir = lg_run
    rec, summary = load(run_dir, "single_stream")
    assert rec.validity.valid, rec.validity.reasons
    m = rec.metrics
    assert m.headline.name == "latency_p90_ns"
    assert m.headline.value == summary_value(summary, r"90(?:\.0)?th percentile latency \(ns\)")
    # LoadGen's per-sample latencies (from its trace) are the record's samples: same index rule, same figures
    assert m.extra["mlperf"]["samples_source"] == "loadgen_trace"
    assert m.latency_ns.p50 == summary_value(summary, r"50\.00 percentile latency \(ns\)")
    assert m.latency_ns.p99 == summary_value(summary, r"99\.00 percentile latency \(ns\)")
    assert m.count == len(rec.samples_ns) == m.extra["mlperf"]["result_query_count"]
    assert m.early_stopping.estimate_ns == m.extra["mlperf"]["early_stopping_latency_ss"]


def test_multi_stream_query_latency_is_its_slowest_sample(lg_run):
    _, run_dir = lg_run
    rec, summary = load(run_dir, "multi_stream")
    m = rec.metrics
    assert m.headline.value == summary_value(summary, r"99(?:\.0)?th percentile latency \(ns\)")
    assert percentile_ns(np.sort(np.asarray(rec.samples_ns)), 99) == m.headline.value
    # one inference call of 4 samples per query, as LoadGen was told
    assert rec.workload.effective_batch_size == 4 and m.sample_count == 4 * m.count
    assert m.extra["mlperf"]["effective_samples_per_query"] == 4


def test_server_figures_and_lateness(lg_run):
    _, run_dir = lg_run
    rec, summary = load(run_dir, "server")
    assert rec.validity.valid, rec.validity.reasons
    m = rec.metrics
    # the summary prints rates to 2 decimals, the detail log (which the record copies) to 3
    assert m.headline.value == pytest.approx(summary_value(summary, "Completed samples per second"), abs=0.01)
    assert m.latency_ns.p99 == summary_value(summary, r"99\.00 percentile latency \(ns\)")
    assert m.issue_lateness_ns is not None and m.issue_lateness_ns.count == m.count
    assert m.extra["issue_mode"] == "async"  # ONNX Runtime's run_async with an intra-op pool
    assert m.early_stopping.passed and m.extra["mlperf"]["result_overlatency_query_count"] == 0


def test_offline_samples_per_second(lg_run):
    _, run_dir = lg_run
    rec, summary = load(run_dir, "offline")
    m = rec.metrics
    assert m.headline.value == pytest.approx(summary_value(summary, "Samples per second"), rel=1e-5)
    assert m.extra["mlperf"]["samples_source"] == "sut_calls"
    assert m.sample_count == m.extra["mlperf"]["generated_samples_per_query"]
    assert m.throughput_per_s == pytest.approx(m.headline.value, rel=1e-3)


def test_missing_extra_names_the_install_command(tmp_path, monkeypatch, capsys):
    from benchkit import cli

    (tmp_path / "s.yaml").write_text(SPEC)
    monkeypatch.setitem(sys.modules, "mlperf_loadgen", None)  # import fails as if not installed
    rc = cli.main(["run", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "out"), "--engine", "mlperf"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "pip install -e '" in err and "[mlperf]'" in err
    assert not (tmp_path / "out").exists()  # refused before anything ran


def test_detail_log_parser(tmp_path):
    from benchkit.measure.loadgen import parse_detail_log

    with pytest.raises(BackendError, match="no detail log"):
        parse_detail_log(tmp_path / "missing.txt")
    p = tmp_path / "d.txt"
    p.write_text(':::MLLOG {"key": "result_query_count", "value": 7, "metadata": {}}\n')
    with pytest.raises(BackendError, match="no result_validity"):
        parse_detail_log(p)
    p.write_text('garbage\n:::MLLOG {"key": "result_validity", "value": "INVALID", "metadata": {}}\n'
                 ':::MLLOG {"key": "boom", "value": "bad", "metadata": {"is_error": true}}\n:::MLLOG {not json\n')
    d = parse_detail_log(p)
    assert d["result_validity"] == "INVALID" and d["_errors"] == ["boom: bad"]


def test_settings_mapping():
    lg = pytest.importorskip("mlperf_loadgen", reason="MLPerf LoadGen is not installed")
    from benchkit.measure.loadgen import loadgen_settings

    base = {"min_duration_ms": 1234, "min_query_count": 77, "max_duration_ms": None, "max_query_count": 999}
    ts = loadgen_settings(lg, scenario("server", **base, target_qps=321.5, target_latency_ns=15_000_000,
                                       target_latency_percentile=99.0), 1, 42, 10_000)
    assert ts.scenario == lg.TestScenario.Server and ts.mode == lg.TestMode.PerformanceOnly
    assert (ts.min_duration_ms, ts.min_query_count, ts.max_duration_ms, ts.max_query_count) == (1234, 77, 0, 999)
    assert ts.server_target_qps == 321.5 and ts.server_target_latency_ns == 15_000_000
    assert ts.server_target_latency_percentile == pytest.approx(0.99) and ts.schedule_rng_seed == 42
    ss = loadgen_settings(lg, scenario("single_stream", **base, target_latency_percentile=90.0), 1, 0, 10_000)
    assert ss.single_stream_expected_latency_ns == 5_000  # half the warmup mean: never ends the run early
    ms = loadgen_settings(lg, scenario("multi_stream", **base, target_latency_percentile=99.0), 8, 0, 10_000)
    assert ms.multi_stream_samples_per_query == 8
