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
from typing import BinaryIO

from benchkit._fsutil import loads_json, read_bounded
from benchkit.errors import RecordError
from benchkit.results import records
from benchkit.results.records import ResultRecord
from benchkit.runner import forkserver
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
    """Run one cell in a fresh process; turn a crash, hang or kill into an error record.

    The process is forked from the zygote (:mod:`benchkit.runner.forkserver`) where it can be, else a fresh
    interpreter; either way it is new for this cell, in its own process group, and its record, exit status,
    phases and stderr reach this function the same way."""
    started = records.utcnow()
    with tempfile.TemporaryDirectory(prefix="benchkit-cell-") as tmp, forkserver.borrowed() as zygote:
        payload = Path(tmp) / "cell.json"
        result = Path(tmp) / "record.json"
        errlog = Path(tmp) / "stderr.txt"
        argv = [str(payload), str(result)]

        def write_payload(parent_pid: int) -> None:
            # The child dies with the process that forked it: the zygote, or this one.
            payload.write_text(json.dumps({"cell": cell.model_dump(mode="json"), "ctx": dataclasses.asdict(ctx),
                                           "parent_pid": parent_pid}))

        with open(errlog, "wb") as err:
            proc: subprocess.Popen | forkserver.ForkedWorker | None = None
            if zygote is not None:
                write_payload(zygote.pid)
                try:
                    proc = zygote.fork(argv, err)
                except forkserver.ForkServerError as e:
                    err.write(f"benchkit: the fork server failed, starting a fresh interpreter: {e}\n".encode())
                    err.flush()
            if proc is None:
                write_payload(os.getpid())
                proc = subprocess.Popen(
                    [sys.executable, "-m", "benchkit.runner.child", *argv],
                    stdout=subprocess.PIPE,
                    stderr=err,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # its own process group: a timeout kills the runtime's threads and children
                )
            reader = threading.Thread(target=_relay_progress, args=(proc.stdout, cell.cell_id, progress), daemon=True)
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
            # The adapter ran in that process and could have written anything there: read bounded, parsed with a
            # depth bound, and a hand-over that is no record costs this cell only.
            try:
                doc = loads_json(read_bounded(result, records.MAX_RECORD_BYTES, error=RecordError, what="record"))
                return records.parse(doc, f"worker result of {cell.cell_id}")
            except (ValueError, RecordError) as e:
                return error_record(cell, ctx, started, f"the worker handed over no readable record ({e})",
                                    "WorkerCrash", "worker", _tail(errlog))
        if rc < 0:
            why = f"worker process killed by {_signal_name(rc)}"
            if rc == -signal.SIGKILL:
                why += " (out of memory, or killed from outside)"
        else:
            why = f"worker process exited with status {rc} without a record"
        return error_record(cell, ctx, started, why, "WorkerCrash", "worker", _tail(errlog))


def _relay_progress(stdout: BinaryIO, cell_id: str, progress: Progress | None) -> None:
    with stdout:
        for line in stdout:
            text = line.decode(errors="replace").strip()
            if text.startswith("phase ") and progress:
                progress(cell_id, text[6:])


def _kill_group(proc: subprocess.Popen | forkserver.ForkedWorker) -> None:
    if isinstance(proc, forkserver.ForkedWorker):
        proc.kill_group()
        return
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
