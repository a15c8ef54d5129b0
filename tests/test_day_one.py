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
