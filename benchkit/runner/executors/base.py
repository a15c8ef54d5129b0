"""The executor interface and the local executor: a job is one run of one cell, handed to ``work``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from benchkit.results import records
from benchkit.results.records import PlacementRecord, ResultRecord

if TYPE_CHECKING:
    from benchkit.runner.plan import Cell
    from benchkit.runner.worker import CellRunner

Progress = Callable[[str, str], None]  # (cell_id, phase)


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
    def run(self, jobs: Sequence[Job], work: CellRunner, *, progress_for: ProgressFor, emit: Emit) -> None:
        """Run every job through ``work`` and call ``emit(job, record)`` once for each, as it finishes.

        ``work(cell, progress)`` runs one cell and returns its record (isolated in a worker process with its
        timeout, or inline, as the suite chose); ``work.failed(...)`` makes the error record of a cell that
        never returned one. ``progress_for(job)`` gives the callback that receives the job's phases.
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

    def run(self, jobs, work, *, progress_for, emit) -> None:
        submitted = records.utcnow()  # the whole suite is handed over at once, as with a cluster
        for job in jobs:
            progress = progress_for(job)
            dispatched = records.utcnow()
            rec = work(job.cell, progress)
            emit(job, with_placement(rec, PlacementRecord(executor=self.name, submitted_at=submitted,
                                                          dispatched_at=dispatched)))


__all__ = ["Executor", "LocalExecutor", "Job", "Emit", "ProgressFor", "Progress", "with_placement", "EXECUTORS"]
