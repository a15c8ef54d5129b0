"""benchkit: a performance-evaluation standard for AI accelerators.

Public surface::

    from benchkit import load_spec, run, Spec, ResultRecord, Backend

Attributes are imported lazily so that ``import benchkit`` (and the CLI's
start-up) pulls in no runtime and no numerical library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from benchkit._version import __version__
from benchkit.errors import BenchkitError

if TYPE_CHECKING:
    from benchkit.backends.base import Backend
    from benchkit.results.records import ResultRecord
    from benchkit.spec import Spec, load_spec

__all__ = ["__version__", "BenchkitError", "load_spec", "run", "Spec", "ResultRecord", "Backend"]

_LAZY = {
    "load_spec": ("spec", "load_spec"),
    "Spec": ("spec", "Spec"),
    "ResultRecord": ("records", "ResultRecord"),
    "Backend": ("backends.base", "Backend"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{mod}", __name__), attr)
    raise AttributeError(f"module 'benchkit' has no attribute {name!r}")


def run(spec_path: str, out_dir: str = "results", **options: Any):
    """Run a spec file end to end, as ``benchkit run`` does, and return the :class:`benchkit.runner.SuiteResult`.

    ``options`` are the fields of :class:`benchkit.runner.RunOptions` (``profile``, ``isolation``, ``audit``,
    ``engine``, ``backends``, ``workloads``, ``cache_dir``, ``resume``, ``system_file`` ...): the CLI's flags.
    """
    from pathlib import Path

    from benchkit.runner.suite import RunOptions, plan_cells, run_suite
    from benchkit.spec import load_spec

    loaded = load_spec(spec_path)
    opts = RunOptions(out_dir=Path(out_dir), **{k: tuple(v) if k in ("backends", "workloads") else v
                                                 for k, v in options.items()})
    # An adapter that hangs or crashes while starting costs its own cells (error records), as in `benchkit run`.
    return run_suite(loaded, plan_cells(loaded, opts, adapter_faults="record"), opts)
