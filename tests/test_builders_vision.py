"""ResNet-50 v1.5, MobileNetV2 and DS-CNN: faithful to the published architectures, numerically sane.

Parameters are counted from the float initializers, excluding BatchNormalization
running mean/variance (``.mean``/``.var``), which published counts (torchvision
``num_params``, Keras trainable parameters) do not include. MACs are counted
here, independently of benchkit's FLOP counter: Conv ``out_elems * cin/g * kh * kw``,
Gemm ``M * N * K``.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from benchkit.workloads import catalog
from benchkit.workloads.builders._graph import BN_STAT_SUFFIXES

from conftest import build_hashes_in_fresh_processes

VISION = ("resnet50-v1.5", "mobilenet-v2", "ds-cnn")


@functools.lru_cache(maxsize=None)
def built(name: str, variant: str = "fp32") -> onnx.ModelProto:
    return catalog.build(name, None, variant)


def param_count(model: onnx.ModelProto) -> int:
    return sum(
        int(np.prod(i.dims))
        for i in model.graph.initializer
        if i.data_type == onnx.TensorProto.FLOAT and not i.name.endswith(BN_STAT_SUFFIXES)
        and not i.name.startswith("const.")  # shared scalars (ReLU6 bounds), not parameters
    )


def shapes_at(model: onnx.ModelProto, batch: int = 1) -> dict[str, list[int]]:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in m.graph.input:
        d = vi.type.tensor_type.shape.dim[0]
        d.Clear()
        d.dim_value = batch
    m = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    out = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
           for vi in [*m.graph.value_info, *m.graph.input, *m.graph.output]}
    out.update({i.name: list(i.dims) for i in m.graph.initializer})
    return out


def macs(model: onnx.ModelProto) -> int:
    shapes = shapes_at(model)
    total = 0
    for n in model.graph.node:
        if n.op_type == "Conv":
            total += int(np.prod(shapes[n.output[0]])) * int(np.prod(shapes[n.input[1]][1:]))
        elif n.op_type == "Gemm":
            a, w = shapes[n.input[0]], shapes[n.input[1]]
            total += a[0] * w[0] * w[1]
    return total


def attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def session(model: onnx.ModelProto, expose_all: bool = False) -> ort.InferenceSession:
    if expose_all:  # every intermediate tensor becomes an output, to check them all
        m = onnx.ModelProto()
        m.CopyFrom(model)
        have = {o.name for o in m.graph.output}
        for n in m.graph.node:
            for t in n.output:
                if t not in have:
                    m.graph.output.append(onnx.ValueInfoProto(name=t))
        model = m
    return ort.InferenceSession(catalog.serialize(model), providers=["CPUExecutionProvider"])


def image(name: str, batch: int = 1, seed: int = 0) -> np.ndarray:
    shape = catalog.get(name).inputs[0].shape[1:]
    return np.random.default_rng(seed).standard_normal((batch, *shape), dtype=np.float32)


# -- published figures ---------------------------------------------------------


@pytest.mark.parametrize("name", VISION)
def test_parameters_and_macs_match_published(name):
    pub = catalog.get(name).published
    p, m = param_count(built(name)), macs(built(name))
    assert abs(p / pub["params"] - 1) <= 0.01, (p, pub["params"])
    assert abs(m / pub["macs"] - 1) <= 0.02, (m, pub["macs"])


def test_exact_counts():
    # The layer-by-layer definitions reproduce the reference counts exactly.
    assert param_count(built("resnet50-v1.5")) == 25_557_032
    assert param_count(built("mobilenet-v2")) == 3_504_872
    assert param_count(built("ds-cnn")) == 23_756
    assert macs(built("resnet50-v1.5")) == 4_089_184_256
    assert macs(built("mobilenet-v2")) == 300_774_272
    assert macs(built("ds-cnn")) == 2_656_768


# -- architecture --------------------------------------------------------------


def test_resnet50_v1_5_structure():
    g = built("resnet50-v1.5").graph
    ops = [n.op_type for n in g.node]
    assert ops.count("Conv") == 53 and ops.count("BatchNormalization") == 53
    assert ops.count("Add") == 16 and ops.count("MaxPool") == 1 and ops.count("Gemm") == 1
    assert ops[-3:] == ["GlobalAveragePool", "Flatten", "Gemm"]
    convs = {n.name: n for n in g.node if n.op_type == "Conv"}
    # v1.5: the first block of stages 2-4 downsamples in its 3x3 conv, not its first 1x1.
    for stage in (2, 3, 4):
        first = f"layer{stage}.0"
        assert attr(convs[f"{first}.1.conv"], "strides") == [1, 1]
        assert attr(convs[f"{first}.2.conv"], "strides") == [2, 2]
        assert attr(convs[f"{first}.2.conv"], "kernel_shape") == [3, 3]
        assert attr(convs[f"{first}.downsample.conv"], "strides") == [2, 2]
    assert attr(convs["stem.conv"], "kernel_shape") == [7, 7] and attr(convs["stem.conv"], "strides") == [2, 2]
    shapes = shapes_at(built("resnet50-v1.5"))
    assert shapes["layer4.2.add"] == [1, 2048, 7, 7] and shapes["logits"] == [1, 1000]


def test_mobilenet_v2_structure():
    model = built("mobilenet-v2")
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    depthwise = [n for n in convs if attr(n, "group", 1) > 1]
    assert len(convs) == 52 and len(depthwise) == 17
    assert all(attr(n, "group") == numpy_helper.to_array(
        next(i for i in model.graph.initializer if i.name == n.input[1])).shape[0] for n in depthwise)
    assert sum(n.op_type == "Add" for n in model.graph.node) == 10  # identity shortcuts
    clips = [n for n in model.graph.node if n.op_type == "Clip"]
    assert len(clips) == 35  # ReLU6 after every conv but the 17 linear projections
    shapes = shapes_at(model)
    assert shapes["features.18.bn"] == [1, 1280, 7, 7] and shapes["logits"] == [1, 1000]


def test_ds_cnn_structure():
    model = built("ds-cnn")
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == 9 and sum(attr(n, "group", 1) == 64 for n in convs) == 4
    assert attr(convs[0], "kernel_shape") == [10, 4] and attr(convs[0], "pads") == [4, 1, 5, 1]  # TF "same"
    pool = next(n for n in model.graph.node if n.op_type == "AveragePool")
    assert attr(pool, "kernel_shape") == [24, 5]  # Keras pool_size (49//2, 10//2)
    shapes = shapes_at(model)
    assert shapes["conv1"] == [1, 64, 25, 5] and shapes["avgpool"] == [1, 64, 1, 1]
    assert model.graph.output[0].name == "probabilities"


def test_mobilenet_width_and_resolution_params():
    m = catalog.build("mobilenet-v2", {"width_mult": 0.5, "image_size": 160})
    assert catalog.input_decls("mobilenet-v2", {"image_size": 160})[0].shape == ("batch", 3, 160, 160)
    assert param_count(m) < param_count(built("mobilenet-v2"))
    (y,) = session(m).run(None, {"input": np.ones((1, 3, 160, 160), np.float32)})
    assert y.shape == (1, 1000) and np.isfinite(y).all()


# -- numerics ------------------------------------------------------------------


@pytest.mark.parametrize("name", VISION)
def test_every_activation_finite_and_non_degenerate(name):
    model = built(name)
    sess = session(model, expose_all=True)
    names = [o.name for o in sess.get_outputs()]
    outs = sess.run(None, {"input": image(name)})
    for n, o in zip(names, outs):
        assert np.isfinite(o).all(), n
        assert o.std() > 1e-3, (n, float(o.std()))
        assert np.abs(o).max() < 1e3, (n, float(np.abs(o).max()))  # bounded: fp16-safe with margin
    final = outs[0]
    assert final.shape[0] == 1 and final.std() > 1e-3


@pytest.mark.parametrize("name", VISION)
def test_batch_samples_are_independent_and_input_dependent(name):
    sess = session(built(name))
    x = image(name, batch=3, seed=1)
    (y,) = sess.run(None, {"input": x})
    (y0,) = sess.run(None, {"input": x[:1]})
    np.testing.assert_allclose(y[:1], y0, rtol=1e-4, atol=1e-5)
    assert not np.allclose(y[0], y[1])


@pytest.mark.parametrize("name", ["mobilenet-v2", "ds-cnn"])
@pytest.mark.parametrize("variant", ["fp16", "int8"])
def test_reduced_precision_tracks_fp32(name, variant):
    x = image(name, batch=2, seed=2)
    (ref,) = session(built(name)).run(None, {"input": x})
    (y,) = session(built(name, variant)).run(None, {"input": x})
    assert y.dtype == np.float32 and np.isfinite(y).all()
    assert np.corrcoef(ref.ravel(), y.ravel())[0, 1] > 0.99


def test_int8_folds_batchnorm():
    ops = {n.op_type for n in built("ds-cnn", "int8").graph.node}
    assert "BatchNormalization" not in ops and {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["fp16", "int8"])
def test_resnet50_reduced_precision_tracks_fp32(variant):
    x = image("resnet50-v1.5", seed=3)
    (ref,) = session(built("resnet50-v1.5")).run(None, {"input": x})
    (y,) = session(built("resnet50-v1.5", variant)).run(None, {"input": x})
    assert np.isfinite(y).all() and np.corrcoef(ref.ravel(), y.ravel())[0, 1] > 0.98


@pytest.mark.slow
def test_resnet50_and_mobilenet_bytes_identical_across_processes():
    items = [("resnet50-v1.5", None, "fp32"), ("resnet50-v1.5", None, "fp16"), ("mobilenet-v2", None, "fp32"),
             ("mobilenet-v2", None, "int8")]
    outs = build_hashes_in_fresh_processes(items)
    assert outs[0] == outs[1] and len(outs[0]) == len(items)
    here = hashlib.sha256(catalog.serialize(built("resnet50-v1.5"))).hexdigest()
    assert outs[0][0] == here
