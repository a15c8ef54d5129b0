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
