"""Output shape check: an adapter must return what the graph declares, at the batch it was given.

Runs once per cell, after the measurement (untimed). Only what the graph
pins down is checked: fixed dimensions, the batch dimension (an output's
dimension named like an input's leading, batch, dimension) and named
dimensions whose value the spec gives. A dimension the graph leaves open is
not guessed.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

Dim = int | str | None


@functools.lru_cache(maxsize=8)
def declared_output_shapes(path: Path, sha256: str) -> dict[str, tuple[Dim, ...]]:
    """Output name -> declared shape, for outputs that declare one (``sha256`` keys the cache)."""
    import onnx

    from benchkit.workloads.model import declared_shape

    model = onnx.load(str(path), load_external_data=False)
    out: dict[str, tuple[Dim, ...]] = {}
    for o in model.graph.output:
        tt = o.type.tensor_type
        if not o.type.HasField("tensor_type") or not tt.HasField("shape"):
            continue
        out[o.name] = declared_shape(tt)
    return out


def output_shape_problems(wl: Any, batch: int | None, outputs: list[Any]) -> list[str]:
    """Why the adapter's outputs do not have the graph's shapes (empty when they do)."""
    import numpy as np

    declared = declared_output_shapes(Path(wl.path), wl.sha256)
    batch_names = {i.shape[0] for i in wl.inputs if i.shape and isinstance(i.shape[0], str)}
    problems = []
    for name, arr in zip(wl.output_names, outputs):
        want = declared.get(name)
        if want is None:
            continue
        got = tuple(np.shape(arr))
        shown = "[" + ", ".join("?" if d is None else str(d) for d in want) + "]"
        if len(got) != len(want):
            problems.append(f"output {name!r} has shape {list(got)} (rank {len(got)}); the graph declares "
                            f"{shown} (rank {len(want)})")
            continue
        for axis, d in enumerate(want):
            if isinstance(d, int):
                expected = d
            elif isinstance(d, str):
                expected = batch if d in batch_names else wl.dims.get(d)
            else:
                expected = None
            if expected is not None and got[axis] != expected:
                problems.append(f"output {name!r} has shape {list(got)}; the graph declares {shown}, so dimension "
                                f"{axis} should be {expected}")
                break
    return problems


def findings(outputs: list[Any], wl: Any, batch: int | None, expect_all: bool = True) -> list:
    """What is wrong with the outputs one call returned: their count, NaN or Inf, their shapes.

    ``expect_all`` is False for an adapter that computes nothing by contract (``null``): it returns no outputs."""
    import numpy as np

    from benchkit.checks.structured import numeric_view
    from benchkit.checks.verdict import reason

    names = wl.output_names
    problems = []
    if expect_all and names and len(outputs) != len(names):
        problems.append(f"adapter returned {len(outputs)} outputs, the graph has {len(names)}")
    for name, out in zip(names, outputs):
        arr, _, _ = numeric_view(out)  # a sequence of maps (ZipMap) is checked through its values
        if arr is not None and np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            problems.append(f"output {name!r} contains NaN or Inf")
    problems += output_shape_problems(wl, batch, outputs)
    return [reason("outputs", p) for p in problems]
