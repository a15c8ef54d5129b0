"""Day-one paths with models no one here wrote: one-line runs of ONNX files, real input data, non-tensor outputs,
MultiStream on fixed-batch models, and divisions decided without building the catalog."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import run_cli, write_spec


def _fixed_add(path: Path, batch: int, width: int = 16) -> Path:
    """y = x + 1 on a [batch, width] input whose batch dimension is fixed (an exporter that froze it)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, width])
    one = numpy_helper.from_array(np.ones((width,), np.float32), "one")
    g = helper.make_graph([helper.make_node("Add", ["x", "one"], ["y"])], "fixed", [x], [y], [one])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(path))
    return path


def _records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.rglob("*.json")) if p.parent.name != "_index"
            and "run.json" != p.name and "cell_id" in p.read_text()[:4000]]


_MULTI = """
name: ms
workloads: [{{name: m, model: {model}}}]
backends: [{{name: onnxruntime}}]
scenarios: [{{kind: multi_stream, samples_per_query: 8, min_duration_ms: 50, min_query_count: 700,
             warmup_queries: 2, warmup_ms: 0}}]
run: {{profile: quick, isolation: inline}}
"""


@pytest.mark.parametrize("batch, valid", [(1, True), (4, True), (3, False)])
def test_multi_stream_on_a_fixed_batch_model_issues_whole_queries(tmp_path, batch, valid):
    model = _fixed_add(tmp_path / "m.onnx", batch)
    spec = write_spec(tmp_path, _MULTI.format(model=model))
    r = run_cli("run", spec, "--out", tmp_path / "out")
    [rec] = _records(tmp_path / "out")
    m = rec["metrics"]
    calls = -(-8 // batch)
    assert rec["workload"]["effective_batch_size"] == batch
    assert m["extra"]["calls_per_query"] == calls
    assert m["sample_count"] == m["count"] * calls * batch
    reasons = rec["validity"]["reasons"]
    # the measured loop's own outputs are still captured and checked, call by call
    assert rec["audits"]["timed_outputs"]["passed"] and rec["audits"]["timed_outputs"]["figures"]["compared_calls"] > 0
    if valid:
        assert r.returncode == 0, (r.stdout, r.stderr, reasons)
        assert not [x for x in reasons if "samples_per_query" in x]
    else:
        assert r.returncode == 1
        assert any("each query carried 9 samples, not samples_per_query 8" in x for x in reasons), reasons


def _sklearn_zipmap(path: Path) -> Path:
    """A scikit-learn classifier converted by skl2onnx, as users export them: its probabilities come out of a
    ZipMap, a sequence of {class: probability} maps (not a tensor). Trained here on a tiny seeded dataset."""
    pytest.importorskip("skl2onnx", reason="skl2onnx is in the test extra: pip install 'benchkit[test]'")
    from sklearn.linear_model import LogisticRegression
    from skl2onnx import to_onnx

    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1)
    onx = to_onnx(LogisticRegression(max_iter=200).fit(x, y), x[:1], target_opset=13)
    path.write_bytes(onx.SerializeToString())
    return path


_ONE = """
name: one
workloads: [{{name: m, model: {model}}}]
backends: [{{name: onnxruntime}}]
scenarios: [{{kind: single_stream, min_duration_ms: 30, min_query_count: 64, warmup_queries: 2, warmup_ms: 0}}]
run: {{profile: quick, isolation: inline}}
"""


def test_sklearn_zipmap_outputs_are_compared_structurally(tmp_path):
    model = _sklearn_zipmap(tmp_path / "lr.onnx")
    r = run_cli("run", write_spec(tmp_path, _ONE.format(model=model)), "--out", tmp_path / "out")
    [rec] = _records(tmp_path / "out")
    assert rec["metrics"] is not None and rec["error"] is None, rec["validity"]
    acc = rec["accuracy"]
    assert acc["passed"] is True, acc
    prob = {o["name"]: o for o in acc["outputs"]}["output_probability"]
    assert prob["not_comparable"] is None and prob["max_abs_error"] is not None
    assert rec["audits"]["timed_outputs"]["passed"], rec["audits"]
    assert r.returncode == 0, rec["validity"]["reasons"]


def test_zipmap_with_other_keys_fails_the_gate_naming_the_structure():
    from benchkit.checks.accuracy import Tolerance, compare_outputs

    ref = [[np.array([{0: 0.25, 1: 0.75}], dtype=object)]]
    same = [[np.array([{0: 0.25, 1: 0.75}], dtype=object)]]
    other = [[np.array([{0: 0.25, 2: 0.75}], dtype=object)]]
    tol = Tolerance(abs=1e-5, rel=1e-4, min_cosine=0.99, min_top1_agreement=1.0)
    assert compare_outputs(same, ref, ["p"], tol)[1] == []
    _, failures = compare_outputs(other, ref, ["p"], tol)
    assert failures and "keys [0, 1]" in failures[0] and "keys [0, 2]" in failures[0]
    # an output with no numeric form is reported as not comparable, not as a failure
    odd = [[np.array(["a", "b"], dtype=object)]]
    per, failures = compare_outputs(odd, odd, ["s"], tol)
    assert failures == [] and per[0].not_comparable and "str" in per[0].not_comparable


@pytest.mark.parametrize("where", ["accuracy", "audit"])
def test_a_check_raising_after_the_measurement_keeps_the_metrics(tmp_path, tiny_model, monkeypatch, where):
    # fault injection: the accuracy gate or the boundary audit raises as a buggy check would
    from benchkit.checks import accuracy, boundary

    def broken(*a, **k):
        raise RuntimeError(f"injected failure in the {where} step")

    monkeypatch.setattr(accuracy, "check", broken) if where == "accuracy" else \
        monkeypatch.setattr(boundary, "time_end_to_end", broken)
    r = run_cli("run", write_spec(tmp_path, _ONE.format(model=tiny_model)), "--out", tmp_path / "out")
    assert r.returncode == 1
    [rec] = _records(tmp_path / "out")
    assert rec["metrics"] is not None and rec["metrics"]["count"] >= 64
    assert rec["samples_ns"] and not rec["validity"]["valid"]
    assert rec["error"]["phase"] == where
    assert any(x.startswith(f"{where} failed after the measurement (the metrics are kept): RuntimeError: injected")
               for x in rec["validity"]["reasons"]), rec["validity"]["reasons"]
