"""Cheap worker starts: a fork server (zygote) with benchkit's heavy imports done forks one fresh child per cell.

A fresh interpreter per cell spends about a second importing numpy, onnx and
benchkit's cell module before the cell begins. The zygote does those imports
once, per benchkit process, and then only ever forks: each cell still gets a
process of its own, forked from a zygote that has never loaded a model, imported
a runtime or a vendor's adapter, or opened a session, so nothing of one cell is
seen by the next. The child runs exactly what ``python -m benchkit.runner.child`` runs
(:func:`benchkit.runner.child.main`), and the parent (:mod:`benchkit.runner.worker`)
treats it exactly as it treats a fresh interpreter: its own process group, its
stderr in a file, phases on its stdout, killed with its group after
``cell_timeout_s``, its real exit status or signal.

What the child is handed, so that it looks as if benchkit had started it now:
benchkit's environment, working directory and the calling thread's CPU
affinity at the moment of the request (a Ray task's ``CUDA_VISIBLE_DEVICES``,
a cell's pinned cores), never the zygote's. What it inherits from the zygote:
the modules in :data:`benchkit.runner.zygote.PRELOAD` (and any named in
``BENCHKIT_FORKSERVER_PRELOAD``), already imported. Those read their
environment when imported, so the zygote is keyed by the environment (less the
``*_VISIBLE_DEVICES``-style variables that only a device runtime reads, when it
initialises a device in the child), the working directory and the interpreter:
when any of them changes (a test setting ``PYTHONPATH``) the next cell gets a
new zygote, and the old one ends when its last cell does.

Not preloaded: ``onnxruntime``, any other runtime, and vendors' adapters.
Importing onnxruntime starts a native timer thread that the main thread
signals and joins at exit, and a fork copies none of a parent's threads but all
of the locks and condition variables they own (a forked child joining a thread
it does not have waits for ever): the child imports it itself (about 0.07 s). numpy's OpenBLAS pool, which numpy's
import does start, shuts itself down across a fork (``pthread_atfork``).
Adapters are discovered through the entry points in the child, and a vendor's
is imported there, as before (benchkit's own adapter modules are preloaded:
they import their runtime only when a cell loads a model).

Lifetime. The zygote is a child of benchkit in a session of its own (so Ctrl-C
reaches benchkit, which kills the cell's group, and not the zygote). It ends
when benchkit closes its socket (``atexit``, :func:`shutdown`) or dies (the
socket's end of file, or a changed parent pid, within half a second), and then
SIGKILLs the process group of every cell still running. Each child also asks
the kernel to kill it when the zygote dies (``PR_SET_PDEATHSIG``), so
``kill -9`` of benchkit, then of the zygote, still leaves no worker behind.

Where it is not used (the fresh-interpreter path of :mod:`benchkit.runner.worker`):
off Linux (``fork`` without ``exec`` is unsafe on macOS, and ``PR_SET_PDEATHSIG``
is Linux's), with ``BENCHKIT_FORKSERVER=0`` in the environment, and when the
zygote cannot start (the reason is printed once).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import BinaryIO

from benchkit.runner.zygote import MAX_MESSAGE

ENV_SWITCH = "BENCHKIT_FORKSERVER"
"""``BENCHKIT_FORKSERVER=0`` (or ``off``, ``no``, ``false``): every cell starts a fresh interpreter instead."""

# Variables a device runtime reads when it initialises a device, in the child; Ray sets them per task, so
# keying the zygote on them would start a new one for every cell.
_LATE_ENV = re.compile(r"_VISIBLE_(DEVICES|CORES|CHIPS)$|^ONEAPI_DEVICE_SELECTOR$")
_HELLO_TIMEOUT_S = 120.0  # a cold disk can take tens of seconds to import numpy and onnx
_PID_TIMEOUT_S = 30.0
_REAP_TIMEOUT_S = 10.0
# Bytes of command line the zygote starts with, so that each child can write its own over them: `ps` (and any
# tool that finds a cell's worker by its command line) sees `python -m benchkit.runner.child CELL RESULT`.
_TITLE_ROOM = 1024


class ForkServerError(OSError):
    """The zygote could not start or fork: the caller falls back to a fresh interpreter."""


def enabled() -> bool:
    """May cells be forked from a zygote here (Linux, not switched off)?"""
    if not sys.platform.startswith("linux") or not hasattr(socket, "send_fds"):
        return False
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "off", "no", "false")


def _key() -> tuple:
    env = tuple(sorted((k, v) for k, v in os.environ.items() if not _LATE_ENV.search(k)))
    return sys.executable, os.getcwd(), env


class Zygote:
    """One running zygote, seen from benchkit."""

    def __init__(self, key: tuple) -> None:
        self.key = key
        self.active = 0  # cells running from it; a retired zygote is closed when this reaches 0
        self.retired = False
        self.hello: dict | None = None
        self._sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._log = tempfile.TemporaryFile(prefix="benchkit-zygote-")
        try:
            # The zygote takes benchkit's affinity, not that of a thread pinned to one cell's cores.
            cpus = sorted(os.sched_getaffinity(os.getpid()))
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "benchkit.runner.zygote", str(theirs.fileno()), ",".join(map(str, cpus)),
                 "_" * _TITLE_ROOM],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._log,
                start_new_session=True)  # Ctrl-C goes to benchkit, which kills the cell; never to the zygote
        except BaseException:
            self._sock.close()
            self._log.close()
            raise
        finally:
            theirs.close()
        self.pid = self.proc.pid

    def ready(self, timeout_s: float | None = None) -> None:
        """Wait for the zygote's preload to finish; ForkServerError (with its stderr) when it does not."""
        if self.hello is not None:
            return
        timeout_s = _HELLO_TIMEOUT_S if timeout_s is None else timeout_s
        self._sock.settimeout(timeout_s)
        try:
            msg = self._sock.recv(MAX_MESSAGE)
            self._sock.settimeout(None)
        except OSError as e:
            msg, why = b"", f"no answer within {timeout_s:g} s ({e})"
        else:
            why = f"it exited with status {self.proc.poll()}"
        try:
            self.hello = json.loads(msg) if msg else None
        except ValueError:
            why = f"it said {msg[:200]!r}"
        if self.hello is None:
            self.close()
            raise ForkServerError(f"{why}; its stderr: {self._stderr_tail() or '(empty)'}")

    def alive(self) -> bool:
        return self.proc.poll() is None and self._sock.fileno() >= 0

    def fork(self, argv: list[str], stderr: BinaryIO) -> ForkedWorker:
        """A fresh child running ``benchkit.runner.child.main(argv)``, its stderr into ``stderr``."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        out_r, out_w = os.pipe()
        try:
            request = {"argv": argv, "env": dict(os.environ), "cwd": os.getcwd(),
                       "cpus": sorted(os.sched_getaffinity(0))}  # the calling thread's cores (a pinned cell's)
            socket.send_fds(self._sock, [json.dumps(request).encode()], [theirs.fileno(), out_w, stderr.fileno()])
            mine.settimeout(_PID_TIMEOUT_S)
            answer = json.loads(mine.recv(MAX_MESSAGE) or b'{"error": "the zygote closed the channel"}')
        except (OSError, ValueError) as e:
            mine.close()
            os.close(out_r)
            raise ForkServerError(f"the zygote did not fork: {e}") from e
        finally:
            theirs.close()
            os.close(out_w)  # the child holds the only write end now: its exit is the reader's end of file
        if "pid" not in answer:
            mine.close()
            os.close(out_r)
            raise ForkServerError(f"the zygote did not fork: {answer.get('error')}")
        return ForkedWorker(answer["pid"], mine, os.fdopen(out_r, "rb"))

    def close(self) -> None:
        """End the zygote: it kills any cell still running from it."""
        self._sock.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def forget(self) -> None:
        """In a forked copy of benchkit: drop this copy of the socket, never touch the zygote."""
        self._sock.close()

    def _stderr_tail(self, limit: int = 2000) -> str:
        try:
            self._log.seek(0)
            return self._log.read()[-limit:].decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""


class ForkedWorker:
    """A cell's child process forked by the zygote; :mod:`benchkit.runner.worker` uses it like a ``Popen``.

    The zygote, not benchkit, is its parent: it reaps the child and sends the raw wait status on the channel."""

    def __init__(self, pid: int, channel: socket.socket, stdout: BinaryIO) -> None:
        self.pid, self.stdout, self._channel = pid, stdout, channel
        self.returncode: int | None = None

    def wait(self, timeout: float | None = None) -> int:
        """The exit code as ``Popen.returncode`` has it (negative: killed by that signal).

        Raises ``subprocess.TimeoutExpired`` after ``timeout`` seconds."""
        if self.returncode is not None:
            return self.returncode
        self._channel.settimeout(timeout)
        try:
            msg = self._channel.recv(MAX_MESSAGE)
        except TimeoutError:
            raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout) from None
        finally:
            self._channel.settimeout(None)
        if not msg:
            # The zygote died; the kernel killed this child with it (PR_SET_PDEATHSIG).
            self.returncode = -signal.SIGKILL
        else:
            self.returncode = os.waitstatus_to_exitcode(json.loads(msg)["status"])
        self._channel.close()
        return self.returncode

    def kill_group(self) -> None:
        """SIGKILL the child's process group (its runtime's threads and its own children), then reap it."""
        for kill in (os.killpg, os.kill):  # the group, and the child itself should it not have left ours yet
            with contextlib.suppress(ProcessLookupError, PermissionError):
                kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            self.wait(_REAP_TIMEOUT_S)


_lock = threading.Lock()
_current: Zygote | None = None
_retired: list[Zygote] = []
_refused: dict[tuple, str] = {}  # keys whose zygote could not start: not retried for every cell


def _zygote_for(key: tuple) -> Zygote | None:
    """The zygote for ``key``, started if need be (under ``_lock``)."""
    global _current
    if key in _refused:
        return None
    if _current is not None and (_current.key != key or not _current.alive()):
        _retire(_current)
        _current = None
    if _current is None:
        _current = Zygote(key)
    return _current


def _retire(z: Zygote) -> None:
    z.retired = True
    if z.active == 0:
        z.close()
    else:
        _retired.append(z)


@contextlib.contextmanager
def borrowed() -> Iterator[Zygote | None]:
    """A ready zygote for one cell, or None: then start a fresh interpreter (see :func:`enabled`)."""
    if not enabled():
        yield None
        return
    key = _key()
    with _lock:
        try:
            z = _zygote_for(key)
            if z is not None:
                z.ready()
                z.active += 1
        except OSError as e:
            _refused[key] = str(e)
            global _current
            _current = None
            print(f"benchkit: no fork server, each cell starts a fresh interpreter: {e}", file=sys.stderr, flush=True)
            z = None
    try:
        yield z
    finally:
        if z is not None:
            with _lock:
                z.active -= 1
                if z.retired and z.active == 0:
                    z.close()
                    with contextlib.suppress(ValueError):
                        _retired.remove(z)


def prewarm() -> None:
    """Start this process's zygote now, without waiting for it: its one-time preload (about one interpreter's
    start) then overlaps the suite's own preparation (workloads, preflight) instead of delaying the first cell."""
    if not enabled():
        return
    with _lock:
        with contextlib.suppress(OSError):
            _zygote_for(_key())


def settle() -> None:
    """Wait until a started zygote has finished its preload (before the power meters' idle baseline, which its
    imports would disturb); a zygote that fails is left for :func:`borrowed` to report."""
    with _lock:
        if _current is not None:
            with contextlib.suppress(OSError):
                _current.ready()


def shutdown() -> None:
    """End every zygote of this process (at exit; tests call it to leave no process behind)."""
    global _current
    with _lock:
        for z in [*_retired, *([_current] if _current else [])]:
            z.close()
        _retired.clear()
        _current = None
        _refused.clear()


def _after_fork_in_child() -> None:
    # A forked copy of benchkit must not hold the zygote's socket open (the zygote ends at its end of file),
    # nor ever send on it.
    global _current
    for z in [*_retired, *([_current] if _current else [])]:
        z.forget()
    _retired.clear()
    _current = None


atexit.register(shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
