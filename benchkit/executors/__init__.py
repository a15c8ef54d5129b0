"""Executors: where and in what order a suite's cells run.

``runner.run_suite`` builds the suite's context and writes each record; an
executor only turns cells into records and hands each one back (``emit``) as
soon as it exists, in whatever order cells finish. Two exist:

* :class:`LocalExecutor` (default): one cell after another on this machine,
  each in a fresh worker process (``runner.run_in_worker``), or in this
  process when isolation is ``inline``.
* ``benchkit.executors.ray.RayExecutor``: each cell a Ray task on a node of a
  cluster that has the resources the cell asks for (``pip install
  'benchkit[ray]'``); inside the task, the same worker process and timeout.

Both stamp the record's ``placement`` block, so records of either have the
same shape.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

from .. import records
from ..records import PlacementRecord, ResultRecord
from ..runner import Cell, Progress, SuiteContext, execute_cell, run_in_worker

Emit = Callable[[Cell, ResultRecord], None]  # called once per cell, as it finishes

EXECUTORS = ("local", "ray")


class Executor(ABC):
    """Runs cells and hands back one record per cell."""

    name: ClassVar[str]

    def check(self, cells: Sequence[Cell]) -> None:
        """Raise a BenchkitError before anything runs if some cell cannot run here (default: every cell can)."""

    @abstractmethod
    def run(self, cells: Sequence[Cell], ctx: SuiteContext, *, isolation: str, timeout_s: float,
            progress: Progress | None, emit: Emit) -> None:
        """Run every cell and call ``emit(cell, record)`` once for each, as it finishes.

        ``isolation`` is ``process`` or ``inline``; ``timeout_s`` is the per-cell limit.
        A cell that fails still gets a record (an error record), never an exception.
        """

    def close(self) -> None:
        """Release what the executor holds (connections); called once the suite is done."""


def with_placement(record: ResultRecord, placement: PlacementRecord) -> ResultRecord:
    return record.model_copy(update={"placement": placement})


class LocalExecutor(Executor):
    """This machine, one cell at a time, in spec order."""

    name = "local"

    def run(self, cells, ctx, *, isolation, timeout_s, progress, emit) -> None:
        submitted = records.utcnow()  # the whole suite is handed over at once, as with a cluster
        for cell in cells:
            dispatched = records.utcnow()
            if isolation == "inline":
                rec = execute_cell(cell, ctx, progress)
            else:
                rec = run_in_worker(cell, ctx, timeout_s, progress)
            emit(cell, with_placement(rec, PlacementRecord(executor=self.name, submitted_at=submitted,
                                                           dispatched_at=dispatched)))


def make_executor(name: str, address: str | None = None, fleet_file: Path | None = None) -> Executor:
    """The executor called `name` (``local`` or ``ray``); `address` and `fleet_file` apply to ``ray`` only."""
    from ..errors import BenchkitError

    if name == "local":
        if address is not None or fleet_file is not None:
            raise BenchkitError("--address and --fleet apply to --executor ray only")
        return LocalExecutor()
    if name == "ray":
        from .ray import RayExecutor

        return RayExecutor(address=address, fleet_file=fleet_file)
    raise BenchkitError(f"--executor: unknown executor {name!r}; expected one of {', '.join(EXECUTORS)}")


__all__ = ["Executor", "LocalExecutor", "Emit", "make_executor", "with_placement", "EXECUTORS"]
