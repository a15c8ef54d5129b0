"""Write a catalog workload to a file, so a vendor can take the standard graph into its own toolchain."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchkit._fsutil import write_atomic
from benchkit.errors import WorkloadError
from benchkit.workloads import catalog


def fix_dims(model, dims: Mapping[str, int]):
    """Replace named dynamic dims (dim_param) of the graph's inputs and outputs by fixed values, in place."""
    used: set[str] = set()
    for vi in list(model.graph.input) + list(model.graph.output):
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param") and d.dim_param in dims:
                used.add(d.dim_param)
                d.dim_value = int(dims[d.dim_param])  # setting the value clears the oneof dim_param
    unknown = sorted(set(dims) - used)
    if unknown:
        raise WorkloadError(f"--dim/--batch: {', '.join(unknown)} is not a dynamic dimension of this graph")
    return model


def export(name: str, out: Path, params: Mapping[str, Any] | None = None, variant: str = "fp32",
           dims: Mapping[str, int] | None = None) -> str:
    """Build (or take from the cache) catalog workload `name` and write it to `out`. Returns its SHA-256.

    Without `dims` the file is byte-identical to the graph benchkit runs (the `closed` division's graph);
    fixing dims changes the bytes, as any graph edit does.
    """
    import hashlib

    path = catalog.materialize(name, params, variant)
    data = path.read_bytes()
    if dims:
        import onnx

        model = onnx.load_from_string(data)
        data = catalog.serialize(fix_dims(model, dims))
    write_atomic(out, data)
    return hashlib.sha256(data).hexdigest()


__all__ = ["export", "fix_dims"]
