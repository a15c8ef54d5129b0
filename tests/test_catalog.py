"""The workload catalog: manifest validation, params, variants, determinism, cache; the micro-kernels."""

from __future__ import annotations

import hashlib
import importlib
import textwrap
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, numpy_helper

from benchkit._resources import data_dir
from benchkit._version import __version__
from benchkit.errors import WorkloadError
from benchkit.workloads import catalog
from benchkit.workloads.builders._graph import IR_VERSION, OPSET

from conftest import build_hashes_in_fresh_processes

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = sorted(data_dir("workloads").glob("*.yaml"))
MICRO = ("tiny-add", "gemm", "mlp", "conv2d", "attention", "layernorm", "softmax", "stream")
# Overrides that keep test tensors small; the defaults are checked by build-only tests.
SMALL = {"stream": {"elements": 4096}, "softmax": {"rows": 64, "cols": 256}}


# -- helpers -------------------------------------------------------------------


def concrete(shape, dims):
    return tuple(dims[d] if isinstance(d, str) else d for d in shape)


def make_feed(decls, dims, seed=0):
    rng = np.random.default_rng(seed)
    feed = {}
    for d in decls:
        shape = concrete(d.shape, dims)
        if d.dtype.startswith("int"):
            feed[d.name] = rng.integers(int(d.range[0]), int(d.range[1]), size=shape).astype(d.dtype)
        else:
            feed[d.name] = rng.standard_normal(shape, dtype=np.float32)
    return feed


def run(model, feed, optimize=True):
    so = ort.SessionOptions()
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(catalog.serialize(model), so, providers=["CPUExecutionProvider"])
    return s.run(None, feed)


def init(model, name):
    return next(numpy_helper.to_array(i) for i in model.graph.initializer if i.name == name)


@pytest.fixture
def fake_catalog(tmp_path, monkeypatch):
    """Point the catalog at an empty manifest folder; returns a function writing one manifest."""
    folder = tmp_path / "workloads"
    folder.mkdir()
    monkeypatch.setattr(catalog, "data_dir", lambda kind: folder)
    catalog._load_all.cache_clear()

    def write(name, text):
        p = folder / f"{name}.yaml"
        p.write_text(textwrap.dedent(text))
        catalog._load_all.cache_clear()
        return p

    yield write
    catalog._load_all.cache_clear()


GOOD = """\
    name: toy
    family: micro
    task: overhead
    description: test manifest
    builder: benchkit.workloads.builders.micro:tiny_add
    params: {width: 16}
    dims: {batch: 1}
    inputs:
      - {name: input, dtype: float32, shape: [batch, $width]}
    variants: [fp32, fp16]
    weights_seed: 0
"""


# -- manifests -----------------------------------------------------------------


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.stem)
def test_every_manifest_loads_and_names_an_importable_builder(path):
    entry = catalog.get(path.stem)
    assert entry.manifest_path == path
    module, _, fn = entry.builder.partition(":")
    assert callable(getattr(importlib.import_module(module), fn))
    assert "fp32" in entry.variants
    assert all(d.shape[0] == "batch" for d in entry.inputs)
    for d in entry.inputs:  # $param references are resolved in the public view
        assert all(isinstance(x, int) or x in entry.dims for x in d.shape)
    if "params" in entry.published or "macs" in entry.published:
        assert entry.published["source"]


def test_entries_are_sorted_and_cached():
    a, b = catalog.entries(), catalog.entries()
    assert list(a) == sorted(a) and set(a) >= set(MICRO)
    assert a == b and a is not b and a["gemm"] is b["gemm"]
    a.clear()  # callers get a copy, the catalog is untouched
    assert "gemm" in catalog.entries()
    assert len({catalog.get("gemm"), catalog.get("gemm"), catalog.get("mlp")}) == 2  # hashable


def test_unknown_workload_names_close_matches():
    with pytest.raises(WorkloadError, match=r"unknown workload 'resnet50'.*resnet50-v1\.5"):
        catalog.get("resnet50")
    with pytest.raises(WorkloadError, match="known: .*tiny-add"):
        catalog.get("zzzzzzzz")


def test_fake_manifest_roundtrip(fake_catalog):
    fake_catalog("toy", GOOD)
    e = catalog.get("toy")
    assert e.inputs == (catalog.InputDecl("input", "float32", ("batch", 16)),)
    assert e.variants == ("fp32", "fp16") and e.published == {} and e.mlperf_latency_bound_ms is None
    with pytest.raises(TypeError):
        e.params["width"] = 3  # params are read-only


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda t: t + "colour: red\n", "colour"),
        (lambda t: t.replace("weights_seed: 0", "weights_seed: many"), "weights_seed"),
        (lambda t: t.replace("weights_seed: 0", "weights_seed: -1"), "weights_seed"),
        (lambda t: t.replace("name: toy", "name: other"), "name"),
        (lambda t: t.replace("dims: {batch: 1}", "dims: {}"), "dynamic dim 'batch'"),
        (lambda t: t.replace("dims: {batch: 1}", "dims: {batch: 0}"), "dims"),
        (lambda t: t.replace("[batch, $width]", "[$width, batch]"), "leading dim"),
        (lambda t: t.replace("$width", "$height"), "$height"),
        (lambda t: t.replace("dtype: float32", "dtype: int64"), "range"),
        (lambda t: t.replace("dtype: float32", "dtype: complex64"), "inputs.0.dtype"),
        (lambda t: t.replace("[fp32, fp16]", "[fp16]"), "fp32"),
        (lambda t: t.replace("[fp32, fp16]", "[fp32, bf16]"), "variants"),
        (lambda t: t.replace("micro:tiny_add", "micro.tiny_add"), "builder"),
        (lambda t: t + "published: {params: 10}\n", "source"),
        (lambda t: t + "published: {flops: 10, source: x}\n", "published.flops"),
        (lambda t: t + "mlperf_latency_bound_ms: 0\n", "mlperf_latency_bound_ms"),
        (lambda t: "- just\n- a list\n", "mapping"),
        (lambda t: "name: [unclosed\n", "YAML"),
    ],
    ids=[
        "unknown-key", "seed-type", "seed-negative", "name-stem", "dim-default", "dim-zero",
        "batch-leading", "bad-param-ref", "int-without-range", "dtype", "no-fp32", "variant",
        "builder-syntax", "unsourced", "published-key", "latency-zero", "not-mapping", "yaml",
    ],
)
def test_bad_manifest_is_rejected_naming_file_and_field(fake_catalog, edit, field):
    path = fake_catalog("toy", edit(textwrap.dedent(GOOD)))
    with pytest.raises(WorkloadError) as ei:
        catalog.entries()
    assert str(path) in str(ei.value) and field in str(ei.value)


def test_builder_that_disagrees_with_manifest_is_caught(fake_catalog):
    fake_catalog("toy", GOOD.replace("[batch, $width]", "[batch, 8]"))
    with pytest.raises(WorkloadError, match=r"input 'input' is float32\['batch', 16\].*\['batch', 8\] in toy.yaml"):
        catalog.build("toy")


def test_unimportable_builder(fake_catalog):
    fake_catalog("toy", GOOD.replace("micro:tiny_add", "micro:no_such_builder"))
    with pytest.raises(WorkloadError, match="no_such_builder.*cannot be imported"):
        catalog.build("toy")


# -- params and variants --------------------------------------------------------


def test_unknown_param_names_key_and_allowed():
    with pytest.raises(WorkloadError, match=r"unknown param 'mm'; allowed: k, m, n"):
        catalog.build("gemm", {"mm": 3})


@pytest.mark.parametrize("value", ["big", 2.5, True, None])
def test_param_of_wrong_type(value):
    with pytest.raises(WorkloadError, match="param 'm' must be int"):
        catalog.build("gemm", {"m": value})


def test_builder_rejecting_params_becomes_workload_error():
    with pytest.raises(WorkloadError, match="not divisible by heads"):
        catalog.build("attention", {"hidden": 100, "heads": 12})


def test_param_override_changes_inputs():
    decls = catalog.input_decls("gemm", {"m": 8, "k": 4})
    assert decls[0].shape == ("batch", 8, 4)
    assert catalog.get("gemm").inputs[0].shape == ("batch", 1024, 1024)  # defaults untouched
    m = catalog.build("gemm", {"m": 8, "k": 4, "n": 5})
    x = np.random.default_rng(0).standard_normal((3, 8, 4), dtype=np.float32)
    (y,) = run(m, {"input": x})
    np.testing.assert_allclose(y, x @ init(m, "weight"), rtol=1e-5, atol=1e-5)


def test_missing_variant_lists_available():
    with pytest.raises(WorkloadError, match=r"'stream' has no variant 'int8'; available: fp32"):
        catalog.build("stream", SMALL["stream"], variant="int8")


# -- micro-kernels: graph semantics against numpy ------------------------------


def test_tiny_add_is_one_add():
    m = catalog.build("tiny-add")
    assert [n.op_type for n in m.graph.node] == ["Add"]
    x = np.random.default_rng(1).standard_normal((5, 16), dtype=np.float32)
    (y,) = run(m, {"input": x})
    np.testing.assert_array_equal(y, x + init(m, "c"))


def test_mlp_matches_numpy():
    m = catalog.build("mlp")
    x = np.random.default_rng(2).standard_normal((4, 784), dtype=np.float32)
    h = x
    for i in (1, 2, 3):
        h = h @ init(m, f"fc{i}.weight").T + init(m, f"fc{i}.bias")
        h = np.maximum(h, 0) if i < 3 else h
    (y,) = run(m, {"input": x})
    np.testing.assert_allclose(y, h, rtol=1e-4, atol=1e-4)


def test_attention_matches_numpy():
    params = {"hidden": 64, "heads": 4}
    m = catalog.build("attention", params)
    x = np.random.default_rng(3).standard_normal((2, 10, 64), dtype=np.float32)

    def lin(t, name):
        return t @ init(m, f"{name}.weight") + init(m, f"{name}.bias")

    def heads(t):
        return t.reshape(2, 10, 4, 16).transpose(0, 2, 1, 3)

    q, k, v = heads(lin(x, "q")), heads(lin(x, "k")), heads(lin(x, "v"))
    s = q @ k.transpose(0, 1, 3, 2) / 4.0
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    ref = lin((p @ v).transpose(0, 2, 1, 3).reshape(2, 10, 64), "out")
    (y,) = run(m, {"input": x})
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


def test_layernorm_and_softmax_match_numpy():
    m = catalog.build("layernorm", {"hidden": 32})
    x = np.random.default_rng(4).standard_normal((2, 7, 32), dtype=np.float32) * 3 + 1
    (y,) = run(m, {"input": x})
    ref = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(y, ref * init(m, "ln.scale") + init(m, "ln.bias"), rtol=1e-4, atol=1e-4)

    m = catalog.build("softmax", SMALL["softmax"])
    x = np.random.default_rng(5).standard_normal((2, 64, 256), dtype=np.float32)
    (y,) = run(m, {"input": x})
    e = np.exp(x - x.max(-1, keepdims=True))
    np.testing.assert_allclose(y, e / e.sum(-1, keepdims=True), rtol=1e-5, atol=1e-7)


def test_stream_scales_by_three_and_keeps_the_file_tiny():
    m = catalog.build("stream")  # the default 64 Mi elements
    assert catalog.get("stream").inputs[0].shape == ("batch", 64 * 2**20)
    assert len(catalog.serialize(m)) < 1024  # a scalar, not a 256 MiB constant
    m = catalog.build("stream", SMALL["stream"])
    x = np.random.default_rng(6).standard_normal((2, 4096), dtype=np.float32)
    np.testing.assert_array_equal(run(m, {"input": x})[0], x * np.float32(3))


def _macs(model, dims):
    """Conv/Gemm/MatMul multiply-accumulates after ONNX shape inference at fixed dims."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in m.graph.input:
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param"):
                v = dims[d.dim_param]
                d.Clear()
                d.dim_value = v
    m = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
              for vi in [*m.graph.value_info, *m.graph.input, *m.graph.output]}
    shapes.update({i.name: list(i.dims) for i in m.graph.initializer})
    total = 0
    for n in m.graph.node:
        if n.op_type == "Conv":
            total += int(np.prod(shapes[n.output[0]])) * int(np.prod(shapes[n.input[1]][1:]))
        elif n.op_type == "Gemm":
            a, w = shapes[n.input[0]], shapes[n.input[1]]
            total += a[0] * w[0] * w[1]
        elif n.op_type == "MatMul":
            total += int(np.prod(shapes[n.output[0]])) * shapes[n.input[0]][-1]
    return total


@pytest.mark.parametrize(
    "name, params, dims, expected",
    [
        ("gemm", {}, {"batch": 1}, 1024**3),
        ("gemm", {"m": 3, "n": 5, "k": 7}, {"batch": 2}, 2 * 3 * 5 * 7),
        ("mlp", {}, {"batch": 1}, 784 * 512 + 512 * 512 + 512 * 10),
        ("conv2d", {}, {"batch": 1}, 64 * 56 * 56 * 64 * 9),
        ("conv2d", {"stride": 2, "kernel": 5, "groups": 64}, {"batch": 1}, 64 * 28 * 28 * 25),
        ("attention", {}, {"batch": 1, "seq": 128}, 4 * 128 * 768**2 + 2 * 128**2 * 768),
    ],
)
def test_micro_kernel_macs(name, params, dims, expected):
    assert _macs(catalog.build(name, params), dims) == expected


@pytest.mark.parametrize("name", MICRO)
def test_micro_kernels_run_finite_in_every_variant(name):
    entry = catalog.get(name)
    params = SMALL.get(name, {})
    decls = catalog.input_decls(name, params)
    ref = None
    for variant in entry.variants:
        m = catalog.build(name, params, variant)
        for batch in (1, 3):
            feed = make_feed(decls, {**entry.dims, "batch": batch}, seed=batch)
            outs = run(m, feed)
            for o in outs:
                assert o.dtype == np.float32 and o.shape[0] == batch
                assert np.isfinite(o).all() and o.std() > 0
            if batch == 1 and variant == "fp32":
                ref = outs[0]
            elif batch == 1:
                # Reduced precision tracks the reference: a broken conversion would not.
                corr = np.corrcoef(ref.ravel(), outs[0].ravel())[0, 1]
                assert corr > 0.99, (variant, corr)


# -- variants ------------------------------------------------------------------


def test_fp16_keeps_float32_edges_and_converts_everything_inside():
    m = catalog.build("mlp", variant="fp16")
    assert [i.type.tensor_type.elem_type for i in m.graph.input] == [TensorProto.FLOAT]
    assert [o.type.tensor_type.elem_type for o in m.graph.output] == [TensorProto.FLOAT]
    assert {i.data_type for i in m.graph.initializer} == {TensorProto.FLOAT16}
    assert m.graph.node[0].op_type == "Cast" and m.graph.node[-1].op_type == "Cast"
    assert m.graph.node[-1].output[0] == "logits"
    x = np.random.default_rng(7).standard_normal((2, 784), dtype=np.float32)
    a, b = run(catalog.build("mlp"), {"input": x})[0], run(m, {"input": x})[0]
    np.testing.assert_allclose(a, b, rtol=2e-2, atol=2e-2)


def test_fp16_converts_cast_targets_and_constant_attributes():
    from onnx import helper

    from benchkit.workloads.builders._graph import GraphBuilder

    g = GraphBuilder("t", np.random.default_rng(0))
    x = g.input("x", ["batch", 4])
    c = g.node("Constant", [], name="c", value=numpy_helper.from_array(np.full(4, 2.0, np.float32)))
    i = g.node("Cast", [x], name="toint", to=TensorProto.INT64)
    f = g.node("Cast", [i], name="tofloat", to=TensorProto.FLOAT)
    y = g.node("Mul", [f, c], name="mul", out="y")
    g.output(y, ["batch", 4])
    m = catalog.to_fp16(g.model("t"))
    by_name = {n.name: n for n in m.graph.node}
    assert helper.get_attribute_value(by_name["tofloat"].attribute[0]) == TensorProto.FLOAT16
    assert by_name["c"].attribute[0].t.data_type == TensorProto.FLOAT16
    assert helper.get_attribute_value(by_name["toint"].attribute[0]) == TensorProto.INT64
    (out,) = run(m, {"x": np.array([[1.7, -2.2, 3.9, 0.1]], np.float32)})
    np.testing.assert_array_equal(out, [[2.0, -4.0, 6.0, 0.0]])


def test_int8_is_qdq_with_int8_weights(monkeypatch):
    snapped = []
    real = catalog._snapped_ranges
    monkeypatch.setattr(catalog, "_snapped_ranges", lambda *a: snapped.append(real(*a)))
    m = catalog.build("gemm", {"m": 16, "n": 32, "k": 64}, "int8")
    assert snapped  # the quantiser got the machine-independent ranges
    ops = {n.op_type for n in m.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "MatMul"} <= ops
    assert any(i.data_type == TensorProto.INT8 and list(i.dims) == [64, 32] for i in m.graph.initializer)
    assert [i.type.tensor_type.elem_type for i in m.graph.input] == [TensorProto.FLOAT]
    assert [(o.domain, o.version) for o in m.opset_import] == [("", OPSET)]


def test_fold_batchnorm_is_exact_and_removes_bn():
    from benchkit.workloads.builders._graph import GraphBuilder

    rng = np.random.default_rng(0)
    g = GraphBuilder("t", rng)
    x = g.input("x", ["batch", 3, 8, 8])
    y = g.conv_bn(x, 3, 4, 3, name="a")  # Conv without bias
    y = g.conv(y, 4, 4, 1, name="b", bias=True)
    y = g.batchnorm(y, 4, name="b.bn")  # Conv with bias
    y = g.node("Identity", [y], name="out", out="y")
    g.output(y, ["batch", 4, 8, 8])
    m = g.model("t")
    f = catalog.fold_batchnorm(m)
    assert [n.op_type for n in f.graph.node] == ["Conv", "Relu", "Conv", "Identity"]
    assert not any(i.name.endswith((".mean", ".var")) for i in f.graph.initializer)
    feed = {"x": rng.standard_normal((2, 3, 8, 8), dtype=np.float32)}
    np.testing.assert_allclose(run(f, feed, optimize=False)[0], run(m, feed, optimize=False)[0], rtol=1e-5, atol=1e-5)


@settings(max_examples=300, deadline=None)
@given(
    st.floats(-1e4, 1e4, allow_nan=False, width=32),
    st.floats(-1e4, 1e4, allow_nan=False, width=32),
)
def test_snap_range_widens_a_little_and_absorbs_ulp_noise(a, b):
    lo, hi = np.array([min(a, b)], np.float32), np.array([max(a, b)], np.float32)
    slo, shi = catalog._snap_range(lo, hi)
    assert slo.dtype == np.float32 and slo.shape == (1,)
    assert slo[0] <= lo[0] and shi[0] >= hi[0]
    mag = max(abs(float(lo[0])), abs(float(hi[0])))
    assert float(shi[0] - hi[0]) <= mag / 64 + 1e-30 and float(lo[0] - slo[0]) <= mag / 64 + 1e-30
    for v in (slo[0], shi[0]):  # on a coarse grid: at most 8 significant bits
        frac = np.frexp(np.float64(v))[0] * 256
        assert frac == np.round(frac)
    # A value one ulp inward snaps to the same grid line unless it sat exactly on one.
    if mag > 1e-30 and float(shi[0]) != float(hi[0]):
        inward = np.nextafter(hi, np.float32(-np.inf))
        if abs(float(inward[0])) * 2 > mag:  # same binade as the magnitude
            assert catalog._snap_range(lo, inward)[1] == shi


# -- determinism, metadata, cache ----------------------------------------------

@pytest.mark.slow  # two fresh interpreters build 16 graphs
def test_builds_are_byte_identical_across_processes():
    items = [(n, None, v) for n in ("tiny-add", "mlp", "conv2d") for v in catalog.get(n).variants]
    items += [("attention", None, "fp32"), ("ds-cnn", None, "fp32"), ("ds-cnn", None, "fp16"), ("ds-cnn", None, "int8")]
    a, b = build_hashes_in_fresh_processes(items)
    assert a == b and len(a) == len(items)
    here = {f"{n}@{v}": sha for (n, _, v), sha in zip(items, a)}
    assert here["mlp@int8"] == hashlib.sha256(catalog.serialize(catalog.build("mlp", None, "int8"))).hexdigest()


@pytest.mark.parametrize("variant", ["fp32", "fp16", "int8"])
def test_fixed_metadata_and_dynamic_batch(variant, tmp_path):
    m = catalog.build("conv2d", {"height": 9, "width": 9}, variant)
    assert (m.producer_name, m.producer_version, m.ir_version) == ("benchkit", __version__, IR_VERSION)
    assert [(o.domain, o.version) for o in m.opset_import] == [("", OPSET)]
    assert m.doc_string == "" and not m.metadata_props
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    data = catalog.serialize(m)
    assert str(ROOT).encode() not in data and b"/tmp" not in data and str(tmp_path).encode() not in data
    onnx.checker.check_model(m, full_check=True)


def test_materialize_caches_by_content(tmp_path, monkeypatch):
    p = catalog.materialize("tiny-add", cache_dir=tmp_path)
    key = catalog.cache_key("tiny-add")
    assert p == tmp_path / f"tiny-add-fp32-{key[:16]}.onnx"
    assert p.read_bytes() == catalog.serialize(catalog.build("tiny-add"))
    assert [x.name for x in tmp_path.iterdir()] == [p.name]  # no temporary files left

    def boom(*a, **k):
        raise AssertionError("a cache hit must not build")

    monkeypatch.setattr(catalog, "build", boom)
    assert catalog.materialize("tiny-add", cache_dir=tmp_path) == p
    monkeypatch.undo()

    others = {
        catalog.materialize("tiny-add", {"width": 8}, cache_dir=tmp_path),
        catalog.materialize("tiny-add", variant="fp16", cache_dir=tmp_path),
    }
    assert len(others | {p}) == 3
    assert catalog.cache_key("tiny-add", {"width": 16}) == key  # an explicit default is the same build


def test_materialize_default_dir_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHKIT_CACHE_DIR", str(tmp_path / "c"))
    assert catalog.cache_dir() == tmp_path / "c"
    assert catalog.materialize("tiny-add").parent == tmp_path / "c"
    monkeypatch.delenv("BENCHKIT_CACHE_DIR")
    assert catalog.cache_dir() == Path.home() / ".cache" / "benchkit" / "workloads"
    with pytest.raises(WorkloadError, match="no variant"):
        catalog.materialize("stream", variant="fp16", cache_dir=tmp_path / "d")
    with pytest.raises(WorkloadError, match="unknown param"):
        catalog.materialize("tiny-add", {"depth": 2}, cache_dir=tmp_path / "d")
    assert not (tmp_path / "d").exists()
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(WorkloadError, match="cannot write workload 'tiny-add'"):
        catalog.materialize("tiny-add", cache_dir=blocker / "sub")


def test_cache_key_follows_the_manifest_bytes(fake_catalog):
    fake_catalog("toy", GOOD)
    k1 = catalog.cache_key("toy")
    fake_catalog("toy", GOOD + "# a comment changes the manifest bytes\n")
    assert catalog.cache_key("toy") != k1
    assert catalog.cache_key("toy", variant="fp16") != catalog.cache_key("toy")


def test_int8_with_a_tied_embedding_runs():
    # A table read by both a Gather (lookup) and a MatMul (LM head), as in GPT-2.
    from benchkit.workloads.builders._graph import GraphBuilder

    g = GraphBuilder("tied", np.random.default_rng(0))
    ids = g.input("ids", ["batch", 4], dtype="int64")
    table = g.weight("wte", (16, 16), fan_in=16, gain=1.0)
    h = g.node("Gather", [table, ids], name="lookup")
    y = g.node("MatMul", [h, table], name="head", out="logits")
    g.output(y, ["batch", 4, 16])
    m = g.model("tied")
    decls = (catalog.InputDecl("ids", "int64", ("batch", 4), (0, 16)),)
    q = catalog.quantize_int8(m, decls, {"batch": 1}, seed=0)
    lookup = next(n for n in q.graph.node if n.op_type == "Gather")
    # Its output is quantised per tensor (as the MatMul's activation), not with the table's per-channel scales.
    inits = {i.name: i for i in q.graph.initializer}
    for n in q.graph.node:
        if n.op_type == "QuantizeLinear" and n.input[0] == lookup.output[0]:
            assert list(inits[n.input[1]].dims) == []
    feed = {"ids": np.array([[0, 3, 7, 15], [1, 1, 2, 9]], np.int64)}
    a, b = run(m, feed)[0], run(q, feed)[0]
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99


def test_int8_with_a_quantiser_that_cannot_take_ranges(monkeypatch):
    # onnxruntime releases before calibration caches: the quantiser calibrates itself.
    import onnxruntime.quantization as q

    real = q.quantize_static
    calls = []

    def old_quantize_static(model_input, model_output, calibration_data_reader=None, **kw):
        calls.append(calibration_data_reader)
        return real(model_input, model_output, calibration_data_reader, **kw)

    monkeypatch.setattr(q, "quantize_static", old_quantize_static)
    m = catalog.build("mlp", None, "int8")
    assert calls and calls[0] is not None  # the seeded reader went to the quantiser
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in m.graph.node}
    x = np.random.default_rng(8).standard_normal((2, 784), dtype=np.float32)
    a, b = run(catalog.build("mlp"), {"input": x})[0], run(m, {"input": x})[0]
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99
