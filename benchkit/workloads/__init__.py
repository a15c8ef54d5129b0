"""Workloads: the standard catalog (built deterministically) and any ONNX file, resolved for a run.

``resolve()`` turns a spec's workload entry into a :class:`ResolvedWorkload`:
a model file on disk, its SHA-256 (:func:`model_sha256`: the graph and every
external-data file it references), and the input signature with every
dynamic dimension except the batch fixed.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from benchkit.errors import WorkloadError
from benchkit.workloads.model import (BATCH, GraphInput, ResolvedWorkload, file_sha256, gather_ranges, graph_precision,
                                     metadata_dims, metadata_ranges, model_sha256, read_model, signature)

__all__ = ["resolve", "ResolvedWorkload", "GraphInput", "file_sha256", "model_sha256"]


def resolve(entry, base_dir: Path, origin: str, cache_dir: Path | None = None) -> ResolvedWorkload:
    """Resolve one ``WorkloadSpec`` (catalog name or file) into a ready-to-run workload.

    ``origin`` names the entry in errors, e.g. ``"specs/x.yaml: workloads[0] (resnet)"``.
    """
    if BATCH in entry.dims:
        raise WorkloadError(
            f"{origin}.dims.batch: the batch dimension is set by the scenario "
            "(offline.batch_size, multi_stream.samples_per_query), not by dims"
        )
    declared_ranges = None
    dims = dict(entry.dims)
    if entry.catalog_name is not None:
        from benchkit.workloads import catalog

        try:
            cat = catalog.get(entry.catalog_name)
        except WorkloadError as e:
            raise WorkloadError(f"{origin}.{'catalog' if entry.catalog else 'name'}: {e}") from None
        if entry.variant not in cat.variants:
            raise WorkloadError(
                f"{origin}.variant: {cat.name} has no {entry.variant!r} variant; available: {', '.join(cat.variants)}"
            )
        dims = {**{k: v for k, v in cat.dims.items() if k != BATCH}, **dims}
        declared_ranges = {i.name: i.range for i in cat.inputs if i.range is not None}
        try:
            path = catalog.materialize(cat.name, entry.params, entry.variant, cache_dir=cache_dir)
        except WorkloadError as e:
            raise WorkloadError(f"{origin}: {e}") from None
        source, cat_name = "catalog", cat.name
    else:
        path = (base_dir / entry.model).resolve()
        source, cat_name = "file", None
    model = read_model(path, origin)
    digest = model_sha256(path, model, origin)
    if entry.sha256 is not None and entry.sha256 != digest:
        from benchkit.workloads.model import external_data_files

        n = len(external_data_files(model))
        covers = f" (over the graph and its {n} external-data file{'s' if n != 1 else ''})" if n else ""
        raise WorkloadError(
            f"{origin}.sha256: model {path.name} has SHA-256 {digest}{covers}, but the spec pins {entry.sha256}"
        )
    # an integer input indexing a table (Gather) takes its size, and never more, whatever is declared
    inferred = gather_ranges(model)
    if source == "file":
        declared_ranges = metadata_ranges(model) or None  # benchkit's exports declare their inputs' ranges
        dims = {**metadata_dims(model), **dims}  # the spec's dims win over the defaults the model declares
    data = _input_data(model, entry, base_dir, origin)
    inputs, outputs, used_dims = signature(model, origin, dims, entry.inputs, declared_ranges, data, inferred)
    unused = sorted(set(entry.dims) - set(used_dims))
    if unused:
        raise WorkloadError(f"{origin}.dims: {', '.join(unused)} is not a dynamic dimension of any input")
    resolved = ResolvedWorkload(
        name=entry.name,
        path=path,
        sha256=digest,
        source=source,
        inputs=inputs,
        output_names=outputs,
        dims=used_dims,
        graph_precision=graph_precision(model),
        catalog=cat_name,
        variant=entry.variant if cat_name else None,
        params=dict(entry.params),
        origin=origin,
    )
    if data:
        from benchkit.workloads.data import check_sample_shape

        shapes, _ = resolved.call_shapes(1)
        fixed = tuple(replace(i, data=check_sample_shape(i.data, shapes[i.name], f"{origin}.inputs.{i.name}.data"))
                      if i.data is not None else i for i in resolved.inputs)
        resolved = replace(resolved, inputs=fixed)
    return resolved


def _input_data(model, entry, base_dir: Path, origin: str) -> dict:
    """Real samples the spec names for the graph's inputs (``inputs.NAME.data``), read and hashed."""
    from benchkit.workloads.data import load_input_data
    from benchkit.workloads.model import _ONNX_DTYPES

    wanted = {name: ov.data for name, ov in entry.inputs.items() if ov.data is not None}
    if not wanted:
        return {}
    types = {vi.name: vi.type.tensor_type.elem_type for vi in model.graph.input}
    out = {}
    for name, rel in wanted.items():
        where = f"{origin}.inputs.{name}.data"
        if types.get(name) not in _ONNX_DTYPES:
            continue  # signature() reports the unknown input or type, naming the field
        out[name] = load_input_data((base_dir / rel).resolve(), name, np.dtype(_ONNX_DTYPES[types[name]]), where)
    return out
