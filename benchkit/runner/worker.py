"""The parent side of process isolation, and :class:`CellRunner`, the work an executor is handed.

Each cell runs in a fresh worker process by default (:mod:`benchkit.runner.child`
is the other side): a crash, a hang past ``cell_timeout_s`` or an
out-of-memory kill inside a vendor runtime ends that cell with an error
record, and the suite goes on. Executors (:mod:`benchkit.runner.executors`) are
handed a :class:`CellRunner` and call it; they never import the orchestration
above them (the way a launcher is handed its worker).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from benchkit.results import records
from benchkit.results.records import ResultRecord
from benchkit.runner.assemble import error_record
from benchkit.runner.plan import Cell, Progress, SuiteContext


@dataclass(frozen=True)
class CellRunner:
    """Runs one cell of a suite and returns its record; picklable, so a Ray task can carry it to a node.

    ``isolation`` is ``process`` (a fresh worker process per cell, killed after ``timeout_s``) or ``inline``
    (this process: debugging, no crash isolation)."""

    ctx: SuiteContext
    isolation: str = "process"
    timeout_s: float = 600.0

    def __call__(self, cell: Cell, progress: Progress | None = None) -> ResultRecord:
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
    """Run one cell in a fresh Python process; turn a crash, hang or kill into an error record."""
    started = records.utcnow()
    with tempfile.TemporaryDirectory(prefix="benchkit-cell-") as tmp:
        payload = Path(tmp) / "cell.json"
        result = Path(tmp) / "record.json"
        errlog = Path(tmp) / "stderr.txt"
        payload.write_text(json.dumps({"cell": cell.model_dump(mode="json"), "ctx": dataclasses.asdict(ctx),
                                       "parent_pid": os.getpid()}))
        with open(errlog, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "benchkit.runner.child", str(payload), str(result)],
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: a timeout kills the runtime's threads and children too
            )
            reader = threading.Thread(target=_relay_progress, args=(proc, cell.cell_id, progress), daemon=True)
            reader.start()
            try:
                rc = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                reader.join(5)
                return error_record(cell, ctx, started, f"cell exceeded cell_timeout_s={timeout_s:g} and was killed",
                                    "Timeout", "worker", _tail(errlog))
            except BaseException:
                _kill_group(proc)
                raise
            reader.join(5)
        if rc == 0 and result.exists():
            return records.parse(json.loads(result.read_text()), f"worker result of {cell.cell_id}")
        if rc < 0:
            why = f"worker process killed by {_signal_name(rc)}"
            if rc == -signal.SIGKILL:
                why += " (out of memory, or killed from outside)"
        else:
            why = f"worker process exited with status {rc} without a record"
        return error_record(cell, ctx, started, why, "WorkerCrash", "worker", _tail(errlog))


def _relay_progress(proc: subprocess.Popen, cell_id: str, progress: Progress | None) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        text = line.decode(errors="replace").strip()
        if text.startswith("phase ") and progress:
            progress(cell_id, text[6:])


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        data = path.read_bytes()[-limit:]
    except OSError:
        return ""
    return data.decode(errors="replace")


__all__ = ["CellRunner", "run_in_worker"]
