"""Divisions: closed only for benchkit's own catalog graph, byte for byte, at its precision; open otherwise, with why.

The end-to-end tests run real (inline) cells on ONNX Runtime, so the decision
is checked where it is made: in the runner, on real resolved workloads.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import onnx
import pytest

from benchkit.checks import divisions
from benchkit.results import records
from benchkit.checks.divisions import StandardBuild, decide
from benchkit.runner.plan import expand
from benchkit.runner.suite import RunOptions, run_suite
from benchkit.spec import parse_spec
from benchkit.workloads import catalog
from benchkit.workloads.model import file_sha256

from conftest import run_cli

GOLDEN = Path(__file__).parent / "data" / "record_v1.json"
TINY_SHA = "2b18eff696af7141407159e00766f4fa7d084f7326528d2c10365361b3bc43ac"


# --------------------------------------------------------------------------- the pure rule


def _record(**changes):
    """The golden record (tiny-add fp32 from the catalog on ONNX Runtime) with blocks changed."""
    rec = records.parse(json.loads(GOLDEN.read_text()), "golden")
    wl = rec.workload.model_copy(update=changes.pop("workload", {}))
    be = rec.backend.model_copy(update=changes.pop("backend", {}))
    return rec.model_copy(update={"workload": wl, "backend": be, **changes})


def _build(**kw):
    return StandardBuild(**{"name": "tiny-add", "variant": "fp32", "sha256": TINY_SHA, **kw})


def test_unchanged_catalog_graph_is_closed():
    d = decide(_record(), _build())
    assert (d.name, d.reasons, d.rules_version) == ("closed", [], divisions.RULES_VERSION)
    assert d.standard_workload == "tiny-add fp32" and d.standard_sha256 == TINY_SHA


def test_a_different_model_hash_is_open_and_says_so():
    d = decide(_record(workload={"model_sha256": "ab" * 32}), _build())
    assert d.name == "open"
    assert len(d.reasons) == 1 and "differs from benchkit's build of tiny-add fp32" in d.reasons[0]


@pytest.mark.parametrize("reported, reason", [
    (None, "which does not report the SHA-256 of the model it loaded: which graph ran cannot be told"),
    ("cd" * 32, "the server reports model SHA-256 cdcdcdcdcdcdcdcd…, not the workload's 2b18eff696af7141…"),
    (TINY_SHA, None),
], ids=["not-reported", "another-model", "the-workload"])
def test_a_served_model_is_closed_only_when_the_server_vouches_for_its_bytes(reported, reason):
    from benchkit.backends.base import Endpoint

    ep = Endpoint(url="grpc://10.0.0.5:8001", protocol="oip-grpc", model="m", server="triton 2.60",
                  model_sha256=reported)
    d = decide(_record(workload={"model_sha256": TINY_SHA}, backend={"endpoint": ep}), _build())
    if reason is None:
        assert (d.name, d.reasons) == ("closed", [])
    else:
        assert d.name == "open" and len(d.reasons) == 1 and reason in d.reasons[0], d.reasons
        assert d.reasons[0].startswith("served by grpc://10.0.0.5:8001 (triton 2.60)") or reported is not None


def test_no_catalog_counterpart_is_open():
    d = decide(_record(workload={"source": "file", "catalog": None, "model_file": "mine.onnx"}), None)
    assert d.name == "open" and "model file mine.onnx is not a standard catalog workload" in d.reasons[0]


def test_changed_params_and_inputs_are_open_with_each_reason():
    d = decide(_record(), _build(sha256=None, params_overridden=("width=32",),
                                 inputs_changed=("input: shape overridden to [1, 16]",)))
    assert d.name == "open"
    assert d.reasons == ["catalog parameters changed from tiny-add's defaults: width=32",
                         "input input: shape overridden to [1, 16]"]


@pytest.mark.parametrize(
    "graph, claimed, effective, accuracy, closed",
    [
        ("fp32", "fp32", "fp32", None, True),
        ("int8", "int8", "int8", None, True),
        ("fp32", "fp16", "fp32", None, False),  # claim differs from what ran
        ("fp32", "bf16", "bf16", None, False),  # lowered without an accuracy gate
        ("fp32", "bf16", "bf16", True, True),  # lowered, accuracy gate passed
        ("fp32", "bf16", "bf16", False, False),
        ("int8", "fp32", "fp32", True, False),  # never above the graph's own precision
        ("fp32", "fp32", "fp32", False, False),  # a failed gate is never closed
        ("fp32", "fp32", "fp32", None, True),
    ],
)
def test_precision_rules(graph, claimed, effective, accuracy, closed):
    rec = _record(workload={"graph_precision": graph}, backend={"precision": effective, "claimed_precision": claimed})
    if accuracy is not None:  # the accuracy block as records carry it once the gate runs
        rec = SimpleNamespace(workload=rec.workload, backend=rec.backend,
                              accuracy=SimpleNamespace(passed=accuracy, skipped=None))
    d = decide(rec, _build(variant=graph))
    assert (d.name == "closed") is closed, d.reasons


def test_a_skipped_accuracy_gate_is_open():
    rec = _record()
    rec = SimpleNamespace(workload=rec.workload, backend=rec.backend,
                          accuracy=SimpleNamespace(passed=None, skipped="the null backend computes nothing"))
    d = decide(rec, _build())
    assert d.reasons == ["accuracy gate not run: the null backend computes nothing"]


def test_requests():
    assert decide(_record(), _build(), "open").name == "open"
    assert "requested by the spec" in decide(_record(), _build(), "open").reasons[0]
    closed = decide(_record(workload={"model_sha256": "ab" * 32}), _build(), "closed")
    found = divisions.findings(closed)
    assert closed.name == "open" and found and all(f.severity == "reason" and f.check == "division" for f in found)
    assert found[-1].message.startswith("run.division requests closed, but model SHA-256")
    auto = decide(_record(workload={"model_sha256": "ab" * 32}), _build(), "auto")
    assert auto.name == "open" and divisions.findings(auto) == []  # auto: open is a label, not a fault
    with pytest.raises(ValueError, match="requested division"):
        decide(_record(), _build(), "semi-closed")


def test_a_version_1_record_without_a_division_block_still_loads():
    data = json.loads(GOLDEN.read_text())
    assert "division" not in data
    assert records.parse(data, "golden").division is None


# --------------------------------------------------------------------------- in the runner, end to end


def _flip_one_weight_byte(src: Path, dst: Path) -> None:
    """Copy an ONNX file changing one byte inside a weight, so it still parses and runs."""
    data = bytearray(src.read_bytes())
    raw = next(t.raw_data for t in onnx.load(str(src)).graph.initializer if t.raw_data)
    at = bytes(data).find(raw)
    assert at > 0
    data[at] ^= 0x01  # lowest mantissa bit of the first weight
    dst.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def division_records(tmp_path_factory):
    """One inline suite: the catalog graph, an exact copy of it, a one-byte change, and other departures."""
    tmp = tmp_path_factory.mktemp("divisions")
    cache = tmp / "cache"
    built = catalog.materialize("tiny-add", None, "fp32", cache_dir=cache)
    shutil.copyfile(built, tmp / "copy.onnx")
    _flip_one_weight_byte(built, tmp / "flipped.onnx")
    int8 = catalog.materialize("tiny-add", None, "int8", cache_dir=cache)
    shutil.copyfile(int8, tmp / "copy-int8.onnx")
    text = """
name: divisions
workloads:
  - name: tiny-add
  - {name: copy, model: copy.onnx}
  - {name: flipped, model: flipped.onnx}
  - {name: wide, catalog: tiny-add, params: {width: 32}}
  - {name: same-params, catalog: tiny-add, params: {width: 16}}
  - {name: ranged, catalog: tiny-add, inputs: {input: {low: 0, high: 1}}}
backends:
  - name: onnxruntime
scenarios:
  - {kind: single_stream, min_duration_ms: 20, min_query_count: 64, warmup_ms: 0, warmup_queries: 1}
"""
    int8_text = """
name: divisions-int8
workloads:
  - {name: int8-copy, model: copy-int8.onnx}
backends:
  - {name: onnxruntime, precision: int8}
scenarios:
  - {kind: single_stream, min_duration_ms: 20, min_query_count: 64, warmup_ms: 0, warmup_queries: 1}
"""
    out = {}
    for name, spec_text in (("divisions", text), ("divisions-int8", int8_text)):
        loaded = parse_spec(spec_text, f"{name}.yaml", tmp, tmp / f"{name}.yaml")
        result = run_suite(loaded, expand(loaded), RunOptions(out_dir=tmp / "out", isolation="inline", cache_dir=cache))
        out.update({r.workload.name: r for r in result.records})
    return out, tmp, cache


def test_catalog_model_unchanged_is_closed(division_records):
    recs, _, _ = division_records
    d = recs["tiny-add"].division
    assert d.name == "closed" and d.reasons == [] and d.standard_workload == "tiny-add fp32"
    assert d.standard_sha256 == recs["tiny-add"].workload.model_sha256
    assert recs["tiny-add"].validity.valid


def test_same_graph_given_by_path_is_closed(division_records):
    recs, _, _ = division_records
    assert recs["copy"].workload.source == "file"
    assert recs["copy"].division.name == "closed", recs["copy"].division.reasons
    assert recs["copy"].workload.model_sha256 == recs["tiny-add"].workload.model_sha256
    int8 = recs["int8-copy"].division
    assert (int8.name, int8.standard_workload) == ("closed", "tiny-add int8"), int8.reasons


def test_one_byte_changed_is_open_with_the_reason(division_records):
    recs, tmp, _ = division_records
    rec = recs["flipped"]
    assert file_sha256(tmp / "flipped.onnx") != file_sha256(tmp / "copy.onnx")
    assert rec.division.name == "open"
    assert rec.division.reasons == [
        f"model SHA-256 {rec.workload.model_sha256[:16]}… differs from benchkit's build of tiny-add fp32 "
        f"({rec.division.standard_sha256[:16]}…): the graph was changed"
    ]
    assert rec.validity.valid  # auto: an open result is still a valid measurement


def test_changed_params_and_inputs_are_open(division_records):
    recs, _, _ = division_records
    assert recs["wide"].division.reasons == ["catalog parameters changed from tiny-add's defaults: width=32"]
    assert recs["wide"].division.standard_sha256 is None  # the default build is not even made
    assert recs["same-params"].division.name == "closed"  # spelling out a default changes nothing
    assert recs["ranged"].division.reasons == [
        "input input: values from [0, 1), the catalog declares the default generator"
    ]


def test_external_model_is_open(tmp_path, tiny_model):
    wl = SimpleNamespace(source="file", name="tiny", path=tiny_model, sha256=file_sha256(tiny_model),
                         graph_precision="fp32",
                         inputs=(SimpleNamespace(name="x", dtype=SimpleNamespace(name="float32"), shape=("N", 16)),))
    assert divisions.standard_build(wl, tmp_path / "cache") is None  # no catalog entry takes input "x"


def test_requesting_closed_for_an_open_result_is_invalid(division_records):
    _, tmp, cache = division_records
    text = """
name: want-closed
workloads:
  - {name: flipped, model: flipped.onnx}
backends:
  - name: onnxruntime
scenarios:
  - {kind: single_stream, min_duration_ms: 20, min_query_count: 64, warmup_ms: 0, warmup_queries: 1}
run: {division: closed}
"""
    loaded = parse_spec(text, "want-closed.yaml", tmp, tmp / "want-closed.yaml")
    rec = run_suite(loaded, expand(loaded), RunOptions(out_dir=tmp / "out", isolation="inline", cache_dir=cache)).records[0]
    assert rec.division.name == "open" and rec.division.requested == "closed"
    assert not rec.validity.valid
    assert rec.validity.reasons == [f"run.division requests closed, but {rec.division.reasons[0]}"]


def test_show_and_summary_print_the_division(division_records):
    recs, tmp, _ = division_records
    path = next((tmp / "out" / "divisions").glob("*/flipped__onnxruntime__single_stream.json"))
    shown = run_cli("show", path)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "division  open (rules 1.0, compared with tiny-add fp32)" in out
    assert "open: model SHA-256" in out
    assert "accuracy  passed (fp32 tolerances" in out  # the accuracy gate ran on every record


def test_deciding_a_file_s_division_builds_nothing(division_records, monkeypatch, tmp_path):
    """The table of standard-build hashes vouches for a file: no catalog model is built to compare it with, and a
    cache that does not hold the build changes nothing."""
    from benchkit.workloads import resolve
    from benchkit.spec import WorkloadSpec

    _, tmp, _ = division_records
    empty = tmp_path / "empty-cache"
    wl = resolve(WorkloadSpec(name="copy", model=Path("copy.onnx")), tmp, "test", empty)

    def no_building(*_a, **_k):
        raise AssertionError("a division decision built a catalog model")

    monkeypatch.setattr(catalog, "materialize", no_building)
    monkeypatch.setattr(catalog, "build", no_building)
    build = divisions.standard_build(wl, empty)
    assert (build.label, build.sha256) == ("tiny-add fp32", wl.sha256)
    assert not empty.exists()


def test_a_backend_that_computes_nothing_is_open(division_records):
    """`null` runs the standard graph's bytes but computes nothing: its accuracy gate compares nothing, so open."""
    _, tmp, cache = division_records
    text = """
name: null-division
workloads:
  - name: tiny-add
backends:
  - name: "null"
scenarios:
  - {kind: single_stream, min_duration_ms: 20, min_query_count: 64, warmup_ms: 0, warmup_queries: 1}
"""
    loaded = parse_spec(text, "null.yaml", tmp, tmp / "null.yaml")
    rec = run_suite(loaded, expand(loaded), RunOptions(out_dir=tmp / "out", isolation="inline", cache_dir=cache)).records[0]
    assert rec.accuracy is not None and rec.accuracy.passed is None
    assert rec.division.name == "open"
    assert rec.division.reasons == [f"accuracy gate not run: {rec.accuracy.skipped}"]


def test_run_summary_shows_the_division_and_why(division_records):
    _, tmp, cache = division_records
    spec = tmp / "summary.yaml"
    spec.write_text("""
name: summary
workloads:
  - {name: flipped, model: flipped.onnx}
backends:
  - name: onnxruntime
scenarios:
  - {kind: single_stream, min_duration_ms: 20, min_query_count: 64, warmup_ms: 0, warmup_queries: 1}
run: {power: {meters: []}}
""")
    out = run_cli("run", spec, "--inline", "--out", tmp / "out", "--cache-dir", cache)
    assert out.returncode == 0, out.stderr
    assert "division" in out.stdout and "open " in out.stdout
    assert "open flipped__onnxruntime__single_stream: model SHA-256" in " ".join(out.stdout.split())
