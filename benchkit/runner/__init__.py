"""Running a suite: from a loaded spec to one written record per cell.

======================  =====================================================================
module                  what it does
======================  =====================================================================
``plan``                cells (typed, JSON-portable) from a spec
``preflight``           checks before anything runs; ``adapters`` / ``probe``: each adapter started in isolation
``suite``               the one suite driver (CLI, ``benchkit.run()``, pytest plugin)
``session``             run directory, power, stability, memory limit, repeats around cells
``worker`` / ``child``  parent and child of process isolation; ``CellRunner`` for executors
``isolate``             a confined process with a deadline (``confine``: cgroup or subreaper tree, memory)
``forkserver``          the zygote that forks each cell's worker with the heavy imports done
``cell``                one cell in this process: measure, check, audit
``assemble``            the record's blocks (no verdict: that is ``benchkit.checks.verdict``)
``peak``                ``--find-peak``: the highest VALID Server rate
``executors/``          where cells run: this machine, or a Ray cluster
======================  =====================================================================

The names below are imported lazily, so ``import benchkit.runner.executors``
(say) does not pull the whole driver in.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "Cell": "plan", "SuiteContext": "plan", "expand": "plan", "preflight": "preflight", "new_run_id": "plan",
    "RunOptions": "suite", "Suite": "suite", "SuiteResult": "suite", "plan_cells": "suite", "run_suite": "suite",
    "execute_cell": "cell", "CellRunner": "worker", "run_in_worker": "worker", "error_record": "assemble",
    "PeakOptions": "peak", "PeakResult": "peak", "run_peak_search": "peak",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"benchkit.runner.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'benchkit.runner' has no attribute {name!r}")
