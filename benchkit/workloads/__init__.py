"""Workloads: the standard catalog (built deterministically) and any ONNX file, resolved for a run.

``resolve()`` turns a spec's workload entry into a :class:`ResolvedWorkload`:
a model file on disk, its SHA-256 (:func:`model_sha256`: the graph and every
external-data file it references), and the input signature with every
dynamic dimension except the batch fixed.
"""

from __future__ import annotations

from pathlib import Path

from benchkit.errors import WorkloadError
from benchkit.workloads.model import (BATCH, GraphInput, ResolvedWorkload, file_sha256, graph_precision, model_sha256, read_model,
                    signature)

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
    inputs, outputs, used_dims = signature(model, origin, dims, entry.inputs, declared_ranges)
    unused = sorted(set(entry.dims) - set(used_dims))
    if unused:
        raise WorkloadError(f"{origin}.dims: {', '.join(unused)} is not a dynamic dimension of any input")
    return ResolvedWorkload(
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
