"""Convolutional workloads: ResNet-50 v1.5, MobileNetV2 and the MLPerf Tiny DS-CNN.

Each follows its reference definition layer for layer (torchvision for the
two ImageNet models, the MLCommons Tiny Keras model for DS-CNN), in NCHW,
with BatchNormalization kept as explicit inference-mode nodes rather than
folded into the convolutions: folding is an optimisation a backend is
expected to perform itself, and the explicit form keeps the parameter count
comparable with the published one (BN scale and bias count as parameters,
running statistics do not).

Weights are random, scaled so activations stay O(1) to the logits (see
``_graph``); residual branches end in a BN with ``gamma = 0.5`` so the sum of
16 bottlenecks grows by a bounded factor instead of doubling per block.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx

from benchkit.workloads.builders._graph import GraphBuilder

RESIDUAL_BN_GAMMA = 0.5
"""BN scale at the end of each residual branch (keeps activations bounded over depth)."""


def _conv_out(size: int, kernel: int, stride: int, pad_total: int) -> int:
    return (size + pad_total - kernel) // stride + 1


def _head(g: GraphBuilder, x: str, channels: int, num_classes: int) -> str:
    """GlobalAveragePool -> Flatten -> Gemm to ``logits``."""
    x = g.node("GlobalAveragePool", [x], name="avgpool")
    x = g.node("Flatten", [x], name="flatten", axis=1)
    return g.gemm(x, channels, num_classes, name="fc", gain=1.0, out="logits")


# ---------------------------------------------------------------------------
# ResNet-50 v1.5


def resnet50(params: Mapping[str, Any], rng: np.random.Generator) -> onnx.ModelProto:
    """ResNet-50 v1.5 (He et al. 2016, torchvision layout): stride 2 in the bottleneck's 3x3 conv.

    Stem conv 7x7/2 + BN + ReLU + MaxPool 3x3/2, four stages of [3, 4, 6, 3]
    bottlenecks (1x1 -> 3x3 -> 1x1 x4, projection shortcut on the first block
    of each stage), global average pool, fully-connected classifier.
    """
    num_classes, size = int(params["num_classes"]), int(params["image_size"])
    g = GraphBuilder("resnet50_v1_5", rng)
    x = g.input("input", ["batch", 3, size, size])
    x = g.conv_bn(x, 3, 64, 7, name="stem", stride=2, pads=[3, 3, 3, 3])
    x = g.node("MaxPool", [x], name="maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])

    in_ch = 64
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=1):
        for b in range(blocks):
            stride = 2 if (b == 0 and stage > 1) else 1
            x = _bottleneck(g, x, in_ch, width, stride, name=f"layer{stage}.{b}")
            in_ch = width * 4
    y = _head(g, x, in_ch, num_classes)
    g.output(y, ["batch", num_classes])
    return g.model(
        f"ResNet-50 v1.5 (torchvision layout), {size}x{size} input, {num_classes} classes; random weights."
    )


def _bottleneck(g: GraphBuilder, x: str, in_ch: int, width: int, stride: int, *, name: str) -> str:
    out_ch = width * 4
    y = g.conv_bn(x, in_ch, width, 1, name=f"{name}.1")
    y = g.conv_bn(y, width, width, 3, name=f"{name}.2", stride=stride)  # v1.5: stride on the 3x3
    y = g.conv_bn(y, width, out_ch, 1, name=f"{name}.3", act=None, bn_gamma=RESIDUAL_BN_GAMMA)
    if stride != 1 or in_ch != out_ch:
        shortcut = g.conv_bn(x, in_ch, out_ch, 1, name=f"{name}.downsample", stride=stride, act=None)
    else:
        shortcut = x
    return g.relu(g.node("Add", [y, shortcut], name=f"{name}.add"))


# ---------------------------------------------------------------------------
# MobileNetV2


def _make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's channel rounding: nearest multiple of ``divisor``, never below 90% of ``v``."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


# (expansion t, output channels c, repeats n, first stride s), Sandler et al. 2018, Table 2.
_MOBILENET_V2_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def mobilenet_v2(params: Mapping[str, Any], rng: np.random.Generator) -> onnx.ModelProto:
    """MobileNetV2 (Sandler et al. 2018, torchvision layout) with ReLU6 as ``Clip(0, 6)``.

    Conv 3x3/2 stem, 17 inverted residual blocks (1x1 expand, 3x3 depthwise,
    1x1 linear projection; identity shortcut when shape allows), 1x1 conv to
    1280, global average pool, classifier. Dropout is an identity at inference
    and is omitted.
    """
    num_classes, size = int(params["num_classes"]), int(params["image_size"])
    width_mult = float(params["width_mult"])
    if width_mult <= 0:
        raise ValueError(f"width_mult must be positive, got {width_mult}")
    g = GraphBuilder("mobilenet_v2", rng)
    x = g.input("input", ["batch", 3, size, size])
    in_ch = _make_divisible(32 * width_mult)
    last_ch = _make_divisible(1280 * max(1.0, width_mult))
    x = g.conv_bn(x, 3, in_ch, 3, name="features.0", stride=2, act="relu6")
    idx = 1
    for t, c, n, s in _MOBILENET_V2_SETTINGS:
        out_ch = _make_divisible(c * width_mult)
        for i in range(n):
            x = _inverted_residual(g, x, in_ch, out_ch, s if i == 0 else 1, t, name=f"features.{idx}")
            in_ch = out_ch
            idx += 1
    x = g.conv_bn(x, in_ch, last_ch, 1, name=f"features.{idx}", act="relu6")
    y = _head(g, x, last_ch, num_classes)
    g.output(y, ["batch", num_classes])
    return g.model(
        f"MobileNetV2 width {width_mult} (torchvision layout), {size}x{size} input, {num_classes} classes; "
        "random weights."
    )


def _inverted_residual(g: GraphBuilder, x: str, in_ch: int, out_ch: int, stride: int, t: int, *, name: str) -> str:
    hidden = in_ch * t
    residual = stride == 1 and in_ch == out_ch
    y = x
    if t != 1:
        y = g.conv_bn(y, in_ch, hidden, 1, name=f"{name}.expand", act="relu6")
    y = g.conv_bn(y, hidden, hidden, 3, name=f"{name}.dw", stride=stride, group=hidden, act="relu6")
    gamma = RESIDUAL_BN_GAMMA if residual else 1.0
    y = g.conv_bn(y, hidden, out_ch, 1, name=f"{name}.project", act=None, bn_gamma=gamma)
    if residual:
        y = g.node("Add", [x, y], name=f"{name}.add")
    return y


# ---------------------------------------------------------------------------
# DS-CNN (MLPerf Tiny keyword spotting)


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "same" padding (extra pixel at the end) as (begin, end)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def ds_cnn(params: Mapping[str, Any], rng: np.random.Generator) -> onnx.ModelProto:
    """DS-CNN of the MLPerf Tiny keyword-spotting reference (Zhang et al. 2017, "Hello Edge", DS-CNN S).

    Input ``[batch, 1, frames, mfcc]`` (49 x 10 MFCC features). Conv
    10x4/2 "same" + BN + ReLU, then ``blocks`` depthwise-separable blocks
    (depthwise 3x3 + BN + ReLU, pointwise 1x1 + BN + ReLU), average pool over
    the whole map, Flatten, Dense, Softmax. As in the Keras reference every
    convolution and the Dense layer carry a bias; Dropout is omitted (identity
    at inference).
    """
    frames, mfcc = int(params["frames"]), int(params["mfcc"])
    filters, blocks, num_classes = int(params["filters"]), int(params["blocks"]), int(params["num_classes"])
    g = GraphBuilder("ds_cnn", rng)
    x = g.input("input", ["batch", 1, frames, mfcc])
    (t, b), (l, r) = _same_pads(frames, 10, 2), _same_pads(mfcc, 4, 2)
    h, w = _conv_out(frames, 10, 2, t + b), _conv_out(mfcc, 4, 2, l + r)
    x = g.conv(x, 1, filters, (10, 4), name="conv1", stride=2, pads=[t, l, b, r], bias=True)
    x = g.relu(g.batchnorm(x, filters, name="conv1.bn"))
    for i in range(1, blocks + 1):
        x = g.conv(x, filters, filters, 3, name=f"ds{i}.dw", group=filters, bias=True)
        x = g.relu(g.batchnorm(x, filters, name=f"ds{i}.dw.bn"))
        x = g.conv(x, filters, filters, 1, name=f"ds{i}.pw", bias=True)
        x = g.relu(g.batchnorm(x, filters, name=f"ds{i}.pw.bn"))
    # The reference pools with Keras AveragePooling2D(pool_size=(frames//2, mfcc//2)), stride =
    # pool size, "valid": on the default 25x5 map that is a 24x5 window, so the last frame
    # row is dropped. Reproduced as is: the standard is the reference, quirks included.
    pool = [frames // 2, mfcc // 2]
    x = g.node("AveragePool", [x], name="avgpool", kernel_shape=pool, strides=pool)
    x = g.node("Flatten", [x], name="flatten", axis=1)
    pooled = (h // (frames // 2)) * (w // (mfcc // 2)) * filters
    x = g.gemm(x, pooled, num_classes, name="fc", gain=1.0)
    y = g.node("Softmax", [x], name="softmax", out="probabilities", axis=1)
    g.output(y, ["batch", num_classes])
    return g.model(f"DS-CNN keyword spotting (MLPerf Tiny reference), {frames}x{mfcc} MFCC input; random weights.")
