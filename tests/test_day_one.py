"""Day-one paths with models no one here wrote: one-line runs of ONNX files, real input data, non-tensor outputs,
MultiStream on fixed-batch models, and divisions decided without building the catalog."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import run_cli, write_spec, write_tiny_add


def _fixed_add(path: Path, batch: int, width: int = 16) -> Path:
    """y = x + 1 on a [batch, width] input whose batch dimension is fixed (an exporter that froze it)."""
    return write_tiny_add(path, batch, width, opset=13, ir_version=7)


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
    r = run_cli("run", model, "--quick", "--inline", "--out", tmp_path / "out")
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


# --------------------------------------------------------------------------- benchkit run MODEL.onnx


def _old_cnn(path: Path) -> Path:
    """A small CNN as old exporters wrote them: opset 9, weights listed as graph inputs, batch fixed at 1."""
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "conv.w")
    b = numpy_helper.from_array(np.zeros(4, np.float32), "conv.b")
    fc = numpy_helper.from_array(rng.standard_normal((4, 5)).astype(np.float32), "fc.w")
    inputs = [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 8, 8])] + [
        helper.make_tensor_value_info(t.name, TensorProto.FLOAT, list(t.dims)) for t in (w, b, fc)]
    nodes = [helper.make_node("Conv", ["data", "conv.w", "conv.b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("MatMul", ["f", "fc.w"], ["logits"])]
    g = helper.make_graph(nodes, "oldcnn", inputs, [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                                                                   [1, 5])], [w, b, fc])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 9)], producer_name="an-old-exporter")
    m.ir_version = 4
    onnx.save(m, str(path))
    return path


def test_run_an_onnx_file_in_one_command(tmp_path):
    model = _old_cnn(tmp_path / "old cnn.onnx")
    out = tmp_path / "out"
    r = run_cli("run", model, "--quick", "--inline", "--out", out, "--scenario", "single_stream",
                "--scenario", "multi_stream", "--batch", "4")
    recs = {x["scenario"]["kind"]: x for x in _records(out)}
    assert set(recs) == {"single_stream", "multi_stream"}, (r.stdout, r.stderr)
    assert all(x["metrics"] is not None for x in recs.values())
    assert recs["multi_stream"]["scenario"]["settings"]["samples_per_query"] == 4
    assert recs["multi_stream"]["metrics"]["extra"]["calls_per_query"] == 4  # batch fixed at 1
    assert "benchkit results" in r.stdout and "old-cnn" in r.stdout  # the same summary as a spec's run
    # --print-spec prints the spec that run stood for (its SHA-256 is the records'), and runs nothing
    p = run_cli("run", model, "--quick", "--inline", "--out", tmp_path / "none", "--scenario", "single_stream",
                "--scenario", "multi_stream", "--batch", "4", "--print-spec")
    assert p.returncode == 0 and not (tmp_path / "none").exists()
    import hashlib

    assert hashlib.sha256(p.stdout.encode()).hexdigest() == recs["single_stream"]["spec_sha256"]
    saved = tmp_path / "saved.yaml"
    saved.write_text(p.stdout)
    v = run_cli("validate", saved)
    assert v.returncode == 0 and "2 cell(s)" in v.stdout, v.stderr
    assert recs["single_stream"]["workload"]["model_sha256"] in p.stdout  # pinned: the rerun is the same model


@pytest.mark.parametrize("content, message", [
    (b"not a model at all", "is not a valid ONNX model"),
    (None, "model file not found"),
])
def test_run_a_bad_onnx_file_is_exit_2_naming_it(tmp_path, content, message):
    path = tmp_path / "m.onnx"
    if content is not None:
        path.write_bytes(content)
    r = run_cli("run", path, "--out", tmp_path / "out")
    assert r.returncode == 2 and message in r.stderr and "m.onnx" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_run_flags_for_a_model_are_refused_with_a_spec(tmp_path, tiny_model):
    spec = write_spec(tmp_path, _ONE.format(model=tiny_model))
    r = run_cli("run", spec, "--scenario", "offline")
    assert r.returncode == 2 and "--scenario" in r.stderr and "benchkit run MODEL.onnx" in r.stderr
    r = run_cli("run", tiny_model, "--scenario", "server")
    assert r.returncode == 2 and "--target-qps" in r.stderr


# --------------------------------------------------------------------------- real inputs


def test_real_samples_from_npy_npz_and_folders(tmp_path):
    from benchkit.spec import WorkloadSpec
    from benchkit.workloads import resolve

    from conftest import write_tiny_add

    write_tiny_add(tmp_path / "tiny.onnx")
    samples = np.arange(5 * 16, dtype=np.float64).reshape(5, 16)  # float64 data into a float32 input
    np.save(tmp_path / "x.npy", samples)
    np.savez(tmp_path / "x.npz", x=samples)
    (tmp_path / "dir").mkdir()
    for i, s in enumerate(samples):
        np.save(tmp_path / "dir" / f"{i:03d}.npy", s[None])  # saved with a batch dimension of 1 each
    digests = set()
    for data in ("x.npy", "x.npz", "dir"):
        wl = resolve(WorkloadSpec(name="t", model=Path("tiny.onnx"), inputs={"x": {"data": data}}), tmp_path, "t")
        feeds, _ = wl.make_feeds(2, 6, seed=3)
        got = np.concatenate([f["x"] for f in feeds])
        assert got.dtype == np.float32 and got.shape == (12, 16)
        rows = got[:, 0].astype(int) // 16  # which sample each row is
        assert sorted(set(rows)) == [0, 1, 2, 3, 4] and all((b - a) % 5 == 1 for a, b in zip(rows, rows[1:]))
        assert wl.inputs[0].data.sha256
        digests.add((data, wl.inputs[0].data.sha256))
    assert len({d for _, d in digests}) == 3


def test_real_samples_reach_the_record_and_the_outputs(tmp_path):
    from conftest import write_tiny_add

    model = write_tiny_add(tmp_path / "tiny.onnx")
    np.save(tmp_path / "x.npy", np.full((3, 16), 7.0, np.float32))
    r = run_cli("run", model, "--quick", "--inline", "--data", f"x={tmp_path / 'x.npy'}", "--out", tmp_path / "o")
    [rec] = _records(tmp_path / "o")
    [inp] = rec["workload"]["inputs"]
    import hashlib

    assert inp["data_source"] == "x.npy"
    assert inp["data_sha256"] == hashlib.sha256((tmp_path / "x.npy").read_bytes()).hexdigest()
    assert rec["metrics"] is not None and rec["accuracy"]["passed"], (r.stderr, rec["validity"])
    assert rec["division"]["name"] == "open"


def test_real_samples_make_a_standard_graph_open(tmp_path):
    from benchkit.checks import divisions
    from benchkit.spec import WorkloadSpec
    from benchkit.workloads import resolve

    cache = tmp_path / "cache"
    assert run_cli("workloads", "export", "tiny-add", "-o", tmp_path / "t.onnx",
                   env={"BENCHKIT_CACHE_DIR": str(cache)}).returncode == 0
    np.save(tmp_path / "s.npy", np.zeros((2, 16), np.float32))
    wl = resolve(WorkloadSpec(name="t", model=Path("t.onnx"), inputs={"input": {"data": "s.npy"}}), tmp_path, "t")
    build = divisions.standard_build(wl, cache)
    assert build.sha256 == wl.sha256  # the graph is the standard build ...
    assert build.inputs_changed == ("input: real samples from s.npy, not the catalog's generated values",)


@pytest.mark.parametrize("data, message", [
    (np.zeros((4, 8), np.float32), "each sample must be [16]"),
    (np.array(["a", "b"]), "holds <U1 values"),
])
def test_bad_real_samples_are_exit_2_naming_the_field(tmp_path, data, message):
    from conftest import write_tiny_add

    write_tiny_add(tmp_path / "tiny.onnx")
    np.save(tmp_path / "x.npy", data)
    spec = write_spec(tmp_path, "name: d\nworkloads: [{name: t, model: tiny.onnx, inputs: {x: {data: x.npy}}}]\n"
                      "backends: [{name: onnxruntime}]\nscenarios: [{kind: single_stream}]\n")
    r = run_cli("run", spec, "--inline", "--out", tmp_path / "o")
    assert r.returncode == 2 and "inputs.x.data" in r.stderr and message in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()  # refused before anything ran


def _gather_model(path: Path, rows: int = 10) -> Path:
    """Token ids into an embedding table (int64 ids through a Cast, as exporters write), no range metadata."""
    table = numpy_helper.from_array(np.ones((rows, 4), np.float32), "emb")
    g = helper.make_graph(
        [helper.make_node("Cast", ["ids"], ["ids32"], to=TensorProto.INT32),
         helper.make_node("Gather", ["emb", "ids32"], ["y"])], "emb",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 6, 4])], [table])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    onnx.save(m, str(path))
    return path


def test_integer_inputs_indexing_a_table_take_its_size(tmp_path):
    from benchkit.spec import WorkloadSpec
    from benchkit.workloads import resolve

    _gather_model(tmp_path / "emb.onnx", rows=10)
    wl = resolve(WorkloadSpec(name="e", model=Path("emb.onnx")), tmp_path, "e")
    assert (wl.inputs[0].low, wl.inputs[0].high) == (0, 10)
    ids = np.concatenate([f["ids"] for f in wl.make_feeds(4, 16, 0)[0]])
    assert ids.min() >= 0 and ids.max() < 10 and ids.max() > 5
    # a range the model declares in its metadata is honoured, but never past the table it indexes
    from benchkit.workloads.model import RANGES_METADATA_KEY

    m = onnx.load(str(tmp_path / "emb.onnx"))
    prop = m.metadata_props.add()
    prop.key, prop.value = RANGES_METADATA_KEY, '{"ids": [2, 1000]}'
    onnx.save(m, str(tmp_path / "declared.onnx"))
    wl = resolve(WorkloadSpec(name="e", model=Path("declared.onnx")), tmp_path, "e")
    assert (wl.inputs[0].low, wl.inputs[0].high, wl.inputs[0].range_source) == (2, 10, "declared")


def test_an_error_in_the_first_run_is_named_so(tmp_path):
    _gather_model(tmp_path / "emb.onnx", rows=10)
    spec = write_spec(tmp_path, "name: e\nworkloads: [{name: e, model: emb.onnx, inputs: {ids: {low: 50, high: 60}}}]\n"
                      "backends: [{name: onnxruntime}]\nscenarios: [{kind: single_stream}]\n"
                      "run: {profile: quick, isolation: inline}\n")
    r = run_cli("run", spec, "--out", tmp_path / "o")
    [rec] = _records(tmp_path / "o")
    assert r.returncode == 1 and rec["error"]["phase"] == "first_inference"
    assert rec["validity"]["reasons"][0].startswith("first_inference failed:")


def test_a_catalog_export_runs_back_through_benchkit(tmp_path):
    """`workloads export bert-base` carries its token ranges and sequence length: run back as a file, it works (a
    one-layer, narrow build keeps this test fast; the full size takes the same path)."""
    small = ["--param", "layers=1", "--param", "hidden=64", "--param", "heads=2", "--param", "intermediate=128"]
    cache = tmp_path / "cache"
    e = run_cli("workloads", "export", "bert-base", *small, "-o", tmp_path / "bert.onnx",
                env={"BENCHKIT_CACHE_DIR": str(cache)})
    assert e.returncode == 0, e.stderr
    before = sorted(p.name for p in cache.glob("*.onnx"))
    r = run_cli("run", tmp_path / "bert.onnx", "--quick", "--inline", "--out", tmp_path / "o", "--cache-dir", cache)
    [rec] = _records(tmp_path / "o")
    assert rec["error"] is None and rec["metrics"] is not None, (r.stderr, rec["validity"])
    assert {i["name"]: i["shape"] for i in rec["workload"]["inputs"]}["input_ids"] == [1, 128]
    assert rec["accuracy"]["passed"], rec["accuracy"]
    # the division was decided without building bert-base or bert-large at their default size
    assert sorted(p.name for p in cache.glob("*.onnx")) == before
    assert rec["division"]["name"] == "open"
    assert not any("differs from" in x for x in rec["division"]["reasons"]), rec["division"]["reasons"]


# --------------------------------------------------------------------------- divisions without building


def _bert_named(path: Path) -> Path:
    """A user model with BERT's input names (not BERT): what made benchkit build bert-base and bert-large."""
    table = numpy_helper.from_array(np.ones((30522, 2), np.float32), "emb")
    nodes = [helper.make_node("Gather", ["emb", "input_ids"], ["e"]),
             helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
             helper.make_node("Cast", ["token_type_ids"], ["t"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["m", "t"], ["mt"]),
             helper.make_node("Unsqueeze", ["mt"], ["mt3"], axes=[2]),
             helper.make_node("Mul", ["e", "mt3"], ["y"])]
    ins = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"])
           for n in ("input_ids", "attention_mask", "token_type_ids")]
    g = helper.make_graph(nodes, "bertish", ins, [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                                                ["batch", "seq", 2])], [table])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)])
    m.ir_version = 6
    onnx.save(m, str(path))
    return path


def test_the_division_of_a_bert_named_model_builds_nothing(tmp_path):
    model = _bert_named(tmp_path / "bert-base.onnx")  # named like the catalog entry, too
    cache = tmp_path / "cache"
    r = run_cli("run", model, "--quick", "--inline", "--dim", "seq=8", "--out", tmp_path / "o", "--cache-dir", cache)
    [rec] = _records(tmp_path / "o")
    assert rec["metrics"] is not None, (r.stderr, rec["validity"])
    assert list(cache.rglob("*.onnx")) == []  # nothing built: not bert-base, not bert-large
    reasons = rec["division"]["reasons"]
    assert rec["division"]["name"] == "open" and rec["division"]["standard_workload"] is None
    assert any("no fp32 catalog build with its inputs has its SHA-256 or its graph structure" in x for x in reasons)


def test_a_changed_export_is_named_after_its_own_build(tmp_path):
    """A re-export with its batch fixed has other bytes but the structure of its build: the record names that
    build, not the first candidate with the same inputs in alphabetical order."""
    from benchkit.checks import divisions
    from benchkit.spec import WorkloadSpec
    from benchkit.workloads import resolve

    cache = tmp_path / "cache"
    e = run_cli("workloads", "export", "tiny-add", "--batch", "1", "-o", tmp_path / "t.onnx",
                env={"BENCHKIT_CACHE_DIR": str(cache)})
    assert e.returncode == 0, e.stderr
    for p in cache.glob("*.onnx"):
        p.unlink()  # the table alone decides
    wl = resolve(WorkloadSpec(name="mine", model=Path("t.onnx")), tmp_path, "t", cache)
    build = divisions.standard_build(wl, cache)
    assert build.label == "tiny-add fp32" and build.sha256 != wl.sha256
    assert list(cache.glob("*.onnx")) == []


@pytest.mark.slow  # builds resnet50-v1.5 once (about 100 MB) to export it
def test_a_resnet50_export_is_named_resnet50_not_the_first_candidate(tmp_path):
    """mobilenet-v2 and resnet50-v1.5 take the same input; a re-exported resnet50 is said to depart from resnet50."""
    from benchkit.checks import divisions
    from benchkit.spec import WorkloadSpec
    from benchkit.workloads import resolve

    cache = tmp_path / "cache"
    e = run_cli("workloads", "export", "resnet50-v1.5", "--batch", "1", "-o", tmp_path / "r50.onnx",
                env={"BENCHKIT_CACHE_DIR": str(cache)})
    assert e.returncode == 0, e.stderr
    empty = tmp_path / "empty"
    wl = resolve(WorkloadSpec(name="resnet50", model=Path("r50.onnx")), tmp_path, "t", empty)
    build = divisions.standard_build(wl, empty)
    assert build.label == "resnet50-v1.5 fp32" and build.sha256 != wl.sha256 and not empty.exists()
