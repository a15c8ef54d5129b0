"""Outputs that are not tensors: what the accuracy gate and the output checks can compare of them.

ONNX graphs may return sequences and maps (scikit-learn classifiers converted by skl2onnx end in ``ZipMap``: a
sequence of ``{class: probability}`` maps). Runtimes hand them back as Python lists of dicts, which numpy holds as
object arrays. :func:`numeric_view` turns such an output into a numeric array where its structure allows it, so
the gate compares it with the reference's value for value; what has no numeric form is reported as not
comparable, with the reason, rather than failing the cell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def is_tensor(x: Any) -> bool:
    """A numeric (or boolean) array: what the gate compares directly."""
    return isinstance(x, np.ndarray) and not x.dtype.hasobject and x.dtype.kind in "biufc"


def _items(x: Any) -> list[Any] | None:
    if isinstance(x, np.ndarray) and x.dtype.hasobject:
        return list(x.reshape(-1)) if x.ndim else [x.item()]
    if isinstance(x, (list, tuple)):
        return list(x)
    return None


def _describe(x: Any) -> str:
    if isinstance(x, np.ndarray):
        inner = type(x.reshape(-1)[0]).__name__ if x.size else "nothing"
        return f"an array of {x.dtype} holding {inner}" if x.dtype.hasobject else f"an array of {x.dtype}"
    return type(x).__name__


def numeric_view(x: Any) -> tuple[np.ndarray | None, tuple | None, str | None]:
    """``(array, structure, why not)``: a numeric array with the output's values, a description of its structure
    (map keys, sequence length) that the reference's must equal, or ``why not`` when it has no numeric form.

    * a numeric array is itself (structure ``None``);
    * a sequence of maps with the same keys (ZipMap) is ``[rows, keys]``, keys in sorted order;
    * a sequence of numeric arrays of one shape is their stack.
    """
    if is_tensor(x):
        return x, None, None
    items = _items(x)
    if items is None:
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError):
            return None, None, f"the output is {_describe(x)}"
        return (arr, None, None) if is_tensor(arr) else (None, None, f"the output is {_describe(x)}")
    if items and all(isinstance(i, Mapping) for i in items):
        keys = tuple(sorted(items[0], key=repr))
        if any(tuple(sorted(i, key=repr)) != keys for i in items):
            return None, None, "a sequence of maps whose keys differ from map to map"
        try:
            rows = np.asarray([[float(np.asarray(i[k])) for k in keys] for i in items], dtype=np.float64)
        except (TypeError, ValueError):
            return None, None, "a sequence of maps whose values are not numbers"
        return rows, ("maps", keys), None
    if items and all(is_tensor(np.asarray(i)) for i in items if not isinstance(i, Mapping)) \
            and not any(isinstance(i, Mapping) for i in items):
        arrays = [np.asarray(i) for i in items]
        if len({a.shape for a in arrays}) == 1:
            return np.stack(arrays), ("sequence", len(arrays)), None
        return None, None, "a sequence of tensors of different shapes"
    if not items:
        return np.zeros((0,), np.float64), ("sequence", 0), None
    return None, None, f"a sequence holding {type(items[0]).__name__}"


def structure_mismatch(got: tuple | None, want: tuple | None) -> str | None:
    """Why an output's structure differs from the reference's (None when it is the same)."""
    if got == want:
        return None
    if want is not None and want[0] == "maps":
        have = f"maps with keys {list(got[1])}" if got is not None and got[0] == "maps" else "not a sequence of maps"
        return f"the reference is a sequence of maps with keys {list(want[1])}; the output is {have}"
    return f"structure {got} differs from the reference's {want}"


def numeric_outputs(outputs: Sequence[Any]) -> list[np.ndarray]:
    """The numeric arrays among one call's outputs (NaN/Inf checks apply to these only)."""
    out = []
    for a in outputs:
        arr, _, why = numeric_view(a)
        if why is None and arr is not None:
            out.append(arr)
    return out


__all__ = ["is_tensor", "numeric_view", "structure_mismatch", "numeric_outputs"]
