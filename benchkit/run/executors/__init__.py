"""Executors: where and in what order a suite's cells run.

``runner.run_suite`` builds the suite's context and writes each record; an
executor only turns cells into records and hands each one back (``emit``) as
soon as it exists, in whatever order cells finish. Two exist:

* :class:`LocalExecutor` (default): one cell after another on this machine,
  each in a fresh worker process (``runner.run_in_worker``), or in this
  process when isolation is ``inline``.
* ``benchkit.run.executors.ray.RayExecutor``: each cell a Ray task on a node of a
  cluster that has the resources the cell asks for (``pip install
  'benchkit[ray]'``); inside the task, the same worker process and timeout.

Both stamp the record's ``placement`` block, so records of either have the
same shape.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from benchkit.results import records
from benchkit.results.records import PlacementRecord, ResultRecord
from benchkit.run.runner import Cell, Progress, SuiteContext, execute_cell, run_in_worker


@dataclass(frozen=True)
class Job:
    """One run of one cell: the cell, and which of the suite's ``run.repeats`` sessions it is."""

    cell: Cell
    repeat: int = 1

    @property
    def key(self) -> str:
        """Unique within a suite run."""
        return self.cell.cell_id if self.repeat == 1 else f"{self.cell.cell_id}-r{self.repeat}"


Emit = Callable[[Job, ResultRecord], None]  # called once per job, as it finishes
ProgressFor = Callable[[Job], Progress]  # the phase callback of a job, asked for once, when it is handed over

EXECUTORS = ("local", "ray")


class Executor(ABC):
    """Runs jobs (cells) and hands back one record per job."""

    name: ClassVar[str]
    local: ClassVar[bool]  # cells run on this machine: the suite may meter them here (power, machine state)

    def check(self, cells: Sequence[Cell]) -> None:
        """Raise a BenchkitError before anything runs if some cell cannot run here (default: every cell can)."""

    @abstractmethod
    def run(self, jobs: Sequence[Job], ctx: SuiteContext, *, isolation: str, timeout_s: float,
            progress_for: ProgressFor, emit: Emit) -> None:
        """Run every job and call ``emit(job, record)`` once for each, as it finishes.

        ``isolation`` is ``process`` or ``inline``; ``timeout_s`` is the per-cell limit;
        ``progress_for(job)`` gives the callback that receives the job's phases.
        A cell that fails still gets a record (an error record), never an exception.
        """

    def close(self) -> None:
        """Release what the executor holds (connections); called once the suite is done."""


def with_placement(record: ResultRecord, placement: PlacementRecord) -> ResultRecord:
    return record.model_copy(update={"placement": placement})


class LocalExecutor(Executor):
    """This machine, one cell at a time, in spec order."""

    name = "local"
    local = True

    def run(self, jobs, ctx, *, isolation, timeout_s, progress_for, emit) -> None:
        submitted = records.utcnow()  # the whole suite is handed over at once, as with a cluster
        for job in jobs:
            progress = progress_for(job)
            dispatched = records.utcnow()
            if isolation == "inline":
                rec = execute_cell(job.cell, ctx, progress)
            else:
                rec = run_in_worker(job.cell, ctx, timeout_s, progress)
            emit(job, with_placement(rec, PlacementRecord(executor=self.name, submitted_at=submitted,
                                                          dispatched_at=dispatched)))


def make_executor(name: str, address: str | None = None, fleet_file: Path | None = None) -> Executor:
    """The executor called `name` (``local`` or ``ray``); `address` and `fleet_file` apply to ``ray`` only."""
    from benchkit.errors import BenchkitError

    if name == "local":
        if address is not None or fleet_file is not None:
            raise BenchkitError("--address and --fleet apply to --executor ray only")
        return LocalExecutor()
    if name == "ray":
        from benchkit.run.executors.ray import RayExecutor

        return RayExecutor(address=address, fleet_file=fleet_file)
    raise BenchkitError(f"--executor: unknown executor {name!r}; expected one of {', '.join(EXECUTORS)}")


__all__ = ["Executor", "LocalExecutor", "Job", "Emit", "ProgressFor", "make_executor", "with_placement", "EXECUTORS"]
