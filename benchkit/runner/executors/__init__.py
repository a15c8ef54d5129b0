"""Executors: where and in what order a suite's cells run.

The suite driver (:mod:`benchkit.runner.suite`) writes each record; an executor
is handed the work to do (a :class:`~benchkit.runner.worker.CellRunner`: one cell
in, one record out) and only decides where and in what order cells run,
handing each record back (``emit``) as soon as it exists. Executors import
no orchestration: the launcher is handed its worker. Two exist:

* :class:`LocalExecutor` (default): one cell after another on this machine.
* ``benchkit.runner.executors.ray.RayExecutor``: each cell a Ray task on a node of a
  cluster that has the resources the cell asks for (the ``ray``
  extra); the task calls the same runner there.

Both stamp the record's ``placement`` block, so records of either have the
same shape.
"""

from __future__ import annotations

from pathlib import Path

from benchkit.runner.executors.base import (
    EXECUTORS,
    Emit,
    Executor,
    Job,
    LocalExecutor,
    ProgressFor,
    with_placement,
)


def make_executor(name: str, address: str | None = None, fleet_file: Path | None = None) -> Executor:
    """The executor called `name` (``local`` or ``ray``); `address` and `fleet_file` apply to ``ray`` only."""
    from benchkit.errors import BenchkitError

    if name == "local":
        if address is not None or fleet_file is not None:
            raise BenchkitError("--address and --fleet apply to --executor ray only")
        return LocalExecutor()
    if name == "ray":
        from benchkit.runner.executors.ray import RayExecutor

        return RayExecutor(address=address, fleet_file=fleet_file)
    raise BenchkitError(f"--executor: unknown executor {name!r}; expected one of {', '.join(EXECUTORS)}")


__all__ = ["Executor", "LocalExecutor", "Job", "Emit", "ProgressFor", "make_executor", "with_placement", "EXECUTORS"]
