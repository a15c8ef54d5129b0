"""The checks made before anything runs: workloads resolve, adapters start (in isolation), meters exist.

Apart from :mod:`benchkit.runner.plan` because checking an adapter starts a
process (:mod:`benchkit.runner.adapters`), and the machinery that does is
below the cells it plans.
"""

from __future__ import annotations

from pathlib import Path

from benchkit.errors import BenchkitError, SpecError
from benchkit.runner.plan import AdapterFaults, Cell
from benchkit.spec import LoadedSpec, load_device_file


def preflight(loaded: LoadedSpec, cells: list[Cell], cache_dir: Path | None = None,
              adapter_faults: AdapterFaults = "raise") -> list[Cell]:
    """Fail fast, before anything is measured: every workload resolves, every backend imports and accepts its options.

    Each adapter is imported, constructed with its options and closed in an isolated process
    (:mod:`benchkit.runner.adapters`), never here, within ``run.cell_timeout_s`` (at most
    :data:`~benchkit.runner.adapters.CHECK_TIMEOUT_S`). An adapter that refuses (unknown name, runtime not
    installed, bad options) is a :class:`SpecError`. One that hangs, crashes or raises a plain exception is a
    fault of the adapter: a SpecError too with ``adapter_faults="raise"`` (``validate``), and with ``"record"``
    (``run``) its cells are returned marked (:attr:`Cell.preflight_error`): each becomes an error record and
    the suite goes on. Returns the cells, so marked.
    """
    from benchkit.runner.adapters import CHECK_TIMEOUT_S, check_all
    from benchkit.workloads import resolve

    src = str(loaded.path) if loaded.path else loaded.spec.name
    seen_w: set[str] = set()
    backends = {}  # id -> BackendSpec, in spec order
    generative = {c.backend_id for c in cells if c.kind == "generative"}  # driven as generators, not Backends
    for c in cells:
        if c.workload_name not in seen_w:
            seen_w.add(c.workload_name)
            if c.kind == "generative":
                from benchkit.workloads import generation

                generation.materialize(c.workload.catalog_name, cache_dir)
            else:
                resolve(c.workload, loaded.base_dir, c.origin, cache_dir)
        backends.setdefault(c.backend_id, c.backend)
    # Checked side by side (each in its own process): a hung adapter costs the deadline once, not once each.
    timeout_s = min(loaded.spec.run.cell_timeout_s, CHECK_TIMEOUT_S)
    checks = check_all([(b.name, b.options, b.id in generative) for b in backends.values()], timeout_s)
    ids = [x.id for x in loaded.spec.backends]
    broken: dict[str, str] = {}
    for b, got in zip(backends.values(), checks):
        where = f"{src}: backends[{ids.index(b.id)}] ({b.id})"
        if got.user_error:
            field = "options" if got.stage == "options" else "name"
            raise SpecError(f"{where}.{field}: {got.message}")
        if not got.ok:
            message = f"{where}: adapter {b.name!r} {got.message}"
            if adapter_faults == "raise":
                raise SpecError(message)
            broken[b.id] = message
        if b.device_file is not None:
            load_device_file(Path(b.device_file), f"{where}.device_file")
    _check_lengths(loaded, cells, src)
    _check_power_meters(loaded, src)
    return [c.model_copy(update={"preflight_error": broken[c.backend_id]}) if c.backend_id in broken else c
            for c in cells]


def _check_lengths(loaded: LoadedSpec, cells: list[Cell], src: str) -> None:
    """A generative scenario's prompt and output lengths fit each generation model's context."""
    generative = [(si, s) for si, s in enumerate(loaded.spec.scenarios) if s.kind == "generative"]
    if not generative:
        return
    from benchkit.measure.generate import check_lengths
    from benchkit.workloads.generation import get, is_generation_model

    for w in sorted({c.workload.catalog_name for c in cells if is_generation_model(c.workload.catalog_name)}):
        for si, s in generative:
            check_lengths(s, loaded.base_dir, f"{src}: scenarios[{si}] (generative)", get(w).n_ctx)


def _check_power_meters(loaded: LoadedSpec, src: str) -> None:
    from benchkit import power

    try:
        power.check(loaded.spec.run.power.meters)
    except BenchkitError as e:
        raise SpecError(f"{src}: run.power.meters: {e}") from None


__all__ = ["preflight"]
