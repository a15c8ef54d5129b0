"""The parent side of process isolation, and :class:`CellRunner`, the work an executor is handed.

Each cell runs in a fresh worker process by default (:mod:`benchkit.runner.child`
is the other side): a crash, a hang past ``cell_timeout_s`` or an
out-of-memory kill inside a vendor runtime ends that cell with an error
record, and the suite goes on. On Linux the worker is forked from a zygote
that has done the heavy imports once (:mod:`benchkit.runner.forkserver`),
elsewhere it is a fresh interpreter; the guarantees are the same. Executors (:mod:`benchkit.runner.executors`) are
handed a :class:`CellRunner` and call it; they never import the orchestration
above them (the way a launcher is handed its worker).
"""

from __future__ import annotations

import dataclasses
import signal
from dataclasses import dataclass
from datetime import datetime

from benchkit.errors import RecordError
from benchkit.results import records
from benchkit.results.records import ResultRecord
from benchkit.runner import limits
from benchkit.runner.assemble import error_record
from benchkit.runner.isolate import run_isolated
from benchkit.runner.plan import Cell, Progress, SuiteContext


@dataclass(frozen=True)
class CellRunner:
    """Runs one cell of a suite and returns its record; picklable, so a Ray task can carry it to a node.

    ``isolation`` is ``process`` (a fresh worker process per cell, killed after ``timeout_s``) or ``inline``
    (this process: debugging, no crash isolation)."""

    ctx: SuiteContext
    isolation: str = "process"
    timeout_s: float = 600.0
    broken: tuple[tuple[str, str], ...] = ()  # (backend id, why): adapters preflight saw hang or crash starting

    def __call__(self, cell: Cell, progress: Progress | None = None) -> ResultRecord:
        why = dict(self.broken).get(cell.backend_id)
        if why is not None:  # run, it would only hang or crash again: a cell_timeout_s each, for nothing
            return error_record(cell, self.ctx, records.utcnow(), f"not run: {why}", "AdapterFault", "preflight")
        if self.isolation == "inline":
            from benchkit.runner.cell import execute_cell

            return execute_cell(cell, self.ctx, progress)
        return run_in_worker(cell, self.ctx, self.timeout_s, progress)

    def failed(self, cell: Cell, started: datetime, message: str, etype: str, phase: str,
               detail: str = "") -> ResultRecord:
        """The error record of a cell that never produced one (lost node, task failure)."""
        return error_record(cell, self.ctx, started, message, etype, phase, detail)

    def elsewhere(self, **ctx_updates) -> CellRunner:
        """The same runner with some context replaced (a Ray node's own folders)."""
        return dataclasses.replace(self, ctx=dataclasses.replace(self.ctx, **ctx_updates))


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def run_in_worker(cell: Cell, ctx: SuiteContext, timeout_s: float, progress: Progress | None = None) -> ResultRecord:
    """Run one cell in a fresh process (:func:`benchkit.runner.isolate.run_isolated`); turn a crash, hang, kill
    or the memory limit into an error record."""
    started = records.utcnow()

    def on_phase(name: str) -> None:
        if progress:
            progress(cell.cell_id, name)

    out = run_isolated({"cell": cell.model_dump(mode="json"), "ctx": dataclasses.asdict(ctx)}, timeout_s, on_phase,
                       memory_limit_bytes=ctx.max_memory_bytes)
    # (a worker that wrote its record has its say, even when the kernel ended one of its helpers at the limit)
    if out.memory is not None and out.answer is None and ctx.max_memory_bytes:
        return error_record(cell, ctx, started, limits.memory_limit_message(ctx.max_memory_bytes, out.memory),
                            "MemoryLimit", "worker", out.stderr)
    if out.timed_out:
        return error_record(cell, ctx, started, f"cell exceeded cell_timeout_s={timeout_s:g} and was killed "
                            "(with every process it started)", "Timeout", "worker", out.stderr)
    if out.answer is not None:
        try:
            return records.parse(out.answer, f"worker result of {cell.cell_id}")
        except RecordError as e:
            out = dataclasses.replace(out, answer=None, answer_error=str(e))
    if out.answer_error is not None:
        # The adapter ran in that process and could have written anything there: a hand-over that is no record
        # costs this cell only.
        return error_record(cell, ctx, started, f"the worker handed over no readable record ({out.answer_error})",
                            "WorkerCrash", "worker", out.stderr)
    if out.rc < 0:
        why = f"worker process killed by {_signal_name(out.rc)}"
        if out.rc == -signal.SIGKILL:
            why += " (out of memory, or killed from outside)"
    else:
        why = f"worker process exited with status {out.rc} without a record"
    return error_record(cell, ctx, started, why, "WorkerCrash", "worker", out.stderr)


__all__ = ["CellRunner", "run_in_worker"]
