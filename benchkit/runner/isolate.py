"""Running a piece of benchkit in a process of its own, with a deadline: a cell, or a check of an adapter.

The code that runs is :func:`benchkit.runner.child.main` with a payload (a JSON
file); it writes its answer as JSON and reports phases on stdout. The process is
forked from the zygote (:mod:`benchkit.runner.forkserver`) where it can be, else
a fresh interpreter; either way it is new, in its own process group and its own
confinement (:mod:`benchkit.runner.confine`: a cgroup, or a subreaper tree and a
memory monitor), and its answer, exit status, phases and stderr reach the caller
the same way. A hang past the deadline, a crash (``os.abort()``, a segfault) or
the memory limit ends that process and everything it started, and the caller
gets an :class:`Outcome` saying which, never an exception.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from benchkit._fsutil import loads_json, read_bounded
from benchkit.errors import BenchkitError
from benchkit.runner import forkserver
from benchkit.runner.confine import Confinement

MAX_ANSWER_BYTES = 512 << 20  # as records.MAX_RECORD_BYTES: the largest record a cell hands over


@dataclass(frozen=True)
class Outcome:
    """How an isolated process ended."""

    rc: int  # as Popen.returncode: negative is the signal that killed it
    answer: Any  # the JSON it wrote, when it exited 0 having written one; else None
    stderr: str  # the tail of its stderr
    timed_out: bool
    phase: str | None  # the last phase it reported ("phase NAME" on stdout)
    memory: str | None  # why the memory limit ended it, when it did
    answer_error: str | None = None  # why what it wrote is no answer (too large, too deep, not JSON)


def run_isolated(payload: dict, timeout_s: float, on_phase: Callable[[str], None] | None = None,
                 memory_limit_bytes: int | None = None) -> Outcome:
    """Run ``child.main`` on ``payload`` in a fresh, confined process; kill it and all it started after ``timeout_s``."""
    last: list[str] = []

    def phase(name: str) -> None:
        last.append(name)
        if on_phase:
            on_phase(name)

    box = Confinement(memory_limit_bytes)
    try:
        with tempfile.TemporaryDirectory(prefix="benchkit-cell-") as tmp, forkserver.borrowed() as zygote:
            payload_file = Path(tmp) / "cell.json"
            result = Path(tmp) / "record.json"
            errlog = Path(tmp) / "stderr.txt"
            argv = [str(payload_file), str(result)]

            def write_payload(parent_pid: int) -> None:
                # The child dies with the process that forked it: the zygote, or this one.
                payload_file.write_text(json.dumps({**payload, "parent_pid": parent_pid,
                                                    "confine": box.for_child()}))

            timed_out = False
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
                        stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                        start_new_session=True,  # its own process group, at the least
                    )
                box.started(proc.pid)
                reader = threading.Thread(target=_relay_phases, args=(proc.stdout, phase), daemon=True)
                reader.start()
                try:
                    rc = proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    timed_out = True
                    _kill(proc, box)
                    rc = proc.returncode if proc.returncode is not None else -9
                except BaseException:
                    _kill(proc, box)
                    raise
                reader.join(5)
            answer, answer_error = None, None
            if rc == 0 and not timed_out and result.exists():
                # The adapter ran in that process and could have written anything there: read bounded, parsed
                # with a depth bound.
                try:
                    answer = loads_json(read_bounded(result, MAX_ANSWER_BYTES, what="hand-over"))
                except (ValueError, BenchkitError) as e:
                    answer_error = str(e)
            memory = box.exceeded
            if memory is None and box.oom_killed():
                memory = "the kernel's out-of-memory killer ended a process of the cell at the cgroup's memory.max"
            return Outcome(rc, answer, _tail(errlog), timed_out, last[-1] if last else None, memory, answer_error)
    finally:
        box.close()


def _relay_phases(stdout: BinaryIO, phase: Callable[[str], None]) -> None:
    with stdout:
        for line in stdout:
            text = line.decode(errors="replace").strip()
            if text.startswith("phase "):
                phase(text[6:])


def _kill(proc: subprocess.Popen | forkserver.ForkedWorker, box: Confinement) -> None:
    box.kill_all()  # the cgroup, or the subreaper's tree: grandchildren in sessions of their own included
    if isinstance(proc, forkserver.ForkedWorker):
        proc.kill_group()
        return
    proc.wait()


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            data = f.read()
    except OSError:
        return ""
    return data.decode(errors="replace")


__all__ = ["Outcome", "run_isolated"]
