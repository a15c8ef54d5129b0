"""Micro-kernel workloads: single operators or tiny graphs with parametrised shapes.

They isolate one cost (harness overhead, GEMM throughput, memory bandwidth,
...) so a backend's numbers on the full models can be explained. Every graph
takes a leading dynamic ``batch`` dim; the other dims come from params.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx

from benchkit.workloads.builders._graph import GraphBuilder


def tiny_add(params: Mapping[str, Any], rng: np.random.Generator) -> onnx.ModelProto:
    """``output = input + c`` on ``[batch, width]``: the smallest useful model (harness overhead)."""
    width = int(params["width"])
    g = GraphBuilder("tiny_add", rng)
    x = g.input("input", ["batch", width])
    c = g.small("c", (width,), std=1.0)
    y = g.node("Add", [x, c], name="add", out="output")
    g.output(y, ["batch", width])
    return g.model("One Add of the input and a constant: measures harness and runtime overhead.")


def gemm(params: Mapping[str, Any], rng: np.random.Generator) -> onnx.ModelProto:
    """``output[b] = input[b] @ W`` with input ``[batch, m, k]`` and a ``[k, n]`` weight: ``batch*m*n*k`` MACs."""
    m, n, k = int(params["m"]), int(params["n"]), int(params["k"])
    g = GraphBuilder("gemm", rng)
    x = g.input("input", ["batch", m, k])
    w = g.weight("weight", (k, n), fan_in=k, gain=1.0)
    y = g.node("MatMul", [x, w], name="matmul", out="output")
    g.output(y, ["batch", m, n])
    return g.model(f"MatMul of a [batch, {m}, {k}] input and a [{k}, {n}] weight.")


def mlp(params: Mapping[str, Any], rng: np.random.Generator) -> onnx.ModelProto:
    """Fully-connected net: Gemm+Relu for each hidden width, then a Gemm to the outputs."""
    widths = [int(params["in_features"]), *(int(h) for h in params["hidden"]), int(params["out_features"])]
    g = GraphBuilder("mlp", rng)
    x = g.input("input", ["batch", widths[0]])
    last = len(widths) - 2
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        if i < last:
            x = g.relu(g.gemm(x, a, b, name=f"fc{i + 1}"))
        else:
            x = g.gemm(x, a, b, name=f"fc{i + 1}", gain=1.0, out="logits")
    g.output(x, ["batch", widths[-1]])
    return g.model(f"Multi-layer perceptron {' -> '.join(map(str, widths))}.")


def conv2d(params: Mapping[str, Any], rng: np.random.Generator) -> onnx.ModelProto:
    """One Conv (with bias) on ``[batch, in_channels, height, width]``, padding ``(kernel-1)//2``."""
    cin, cout = int(params["in_channels"]), int(params["out_channels"])
    k, s, groups = int(params["kernel"]), int(params["stride"]), int(params["groups"])
    h, w = int(params["height"]), int(params["width"])
    p = (k - 1) // 2
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    if ho <= 0 or wo <= 0:
        raise ValueError(f"kernel {k} does not fit a {h}x{w} input")
    g = GraphBuilder("conv2d", rng)
    x = g.input("input", ["batch", cin, h, w])
    y = g.conv(x, cin, cout, k, name="conv", stride=s, group=groups, bias=True, gain=1.0, out="output")
    g.output(y, ["batch", cout, ho, wo])
    return g.model(f"Conv {cin}->{cout}, {k}x{k}, stride {s}, groups {groups}, on {h}x{w}.")


def attention(params: Mapping[str, Any], rng: np.random.Generator) -> onnx.ModelProto:
    """Multi-head self-attention on ``[batch, seq, hidden]`` written out from MatMul and Softmax.

    Q/K/V projections, per-head ``softmax(Q K^T / sqrt(d)) V``, output
    projection; ``seq`` stays dynamic. MACs: ``4 s h^2 + 2 s^2 h`` per sample.
    """
    hidden, heads = int(params["hidden"]), int(params["heads"])
    if hidden % heads:
        raise ValueError(f"hidden {hidden} is not divisible by heads {heads}")
    d = hidden // heads
    g = GraphBuilder("attention", rng)
    x = g.input("input", ["batch", "seq", hidden])
    split = g.const("shape.heads", [0, 0, heads, d], dtype="int64")
    merge = g.const("shape.merge", [0, 0, hidden], dtype="int64")

    def project(name: str, perm: list[int]) -> str:
        y = g.linear(x, hidden, hidden, name=name)
        y = g.node("Reshape", [y, split], name=f"{name}.split")
        return g.node("Transpose", [y], name=f"{name}.heads", perm=perm)

    q = project("q", [0, 2, 1, 3])  # [b, heads, s, d]
    kt = project("k", [0, 2, 3, 1])  # [b, heads, d, s]
    v = project("v", [0, 2, 1, 3])
    scores = g.node("MatMul", [q, kt], name="scores")
    scores = g.node("Mul", [scores, g.scalar(1.0 / np.sqrt(d))], name="scores.scaled")
    probs = g.node("Softmax", [scores], name="probs", axis=-1)
    ctx = g.node("MatMul", [probs, v], name="context")
    ctx = g.node("Transpose", [ctx], name="context.tokens", perm=[0, 2, 1, 3])
    ctx = g.node("Reshape", [ctx, merge], name="context.merge")
    y = g.linear(ctx, hidden, hidden, name="out", out="output")
    g.output(y, ["batch", "seq", hidden])
    return g.model(f"Multi-head self-attention, hidden {hidden}, {heads} heads of {d}.")


def layernorm(params: Mapping[str, Any], rng: np.random.Generator) -> onnx.ModelProto:
    """LayerNormalization over the last axis of ``[batch, seq, hidden]``."""
    hidden = int(params["hidden"])
    g = GraphBuilder("layernorm", rng)
    x = g.input("input", ["batch", "seq", hidden])
    scale = g.const("ln.scale", rng.uniform(0.9, 1.1, hidden).astype(np.float32))
    bias = g.small("ln.bias", (hidden,))
    y = g.node("LayerNormalization", [x, scale, bias], name="ln", out="output", axis=-1, epsilon=1e-5)
    g.output(y, ["batch", "seq", hidden])
    return g.model(f"LayerNormalization over a hidden size of {hidden}.")


def softmax(params: Mapping[str, Any], rng: np.random.Generator) -> onnx.ModelProto:
    """Softmax over the last axis of ``[batch, rows, cols]``."""
    rows, cols = int(params["rows"]), int(params["cols"])
    g = GraphBuilder("softmax", rng)
    x = g.input("input", ["batch", rows, cols])
    y = g.node("Softmax", [x], name="softmax", out="output", axis=-1)
    g.output(y, ["batch", rows, cols])
    return g.model(f"Softmax over the last axis of [batch, {rows}, {cols}].")


def stream(params: Mapping[str, Any], rng: np.random.Generator) -> onnx.ModelProto:
    """STREAM "scale": ``output = 3 * input`` on ``[batch, elements]`` float32.

    With the default 64 Mi elements each run reads 256 MiB and writes 256 MiB,
    far more than any last-level cache, so the time measures memory bandwidth.
    The only constant is a scalar: the file stays tiny whatever the size.
    """
    n = int(params["elements"])
    g = GraphBuilder("stream", rng)
    x = g.input("input", ["batch", n])
    y = g.node("Mul", [x, g.scalar(3.0)], name="scale", out="output")
    g.output(y, ["batch", n])
    return g.model(f"Elementwise scale of {n} float32 values per sample (memory bandwidth).")
