"""The zygote: the fork server's own process (the parent side is :mod:`benchkit.runner.forkserver`).

``python -m benchkit.runner.zygote FD CPUS PADDING``, started by benchkit with
one end of a ``SOCK_SEQPACKET`` socket pair as FD. It imports :data:`PRELOAD`,
does the one-time set-up every cell would repeat (:func:`_warm`), says hello,
then waits: each request (arguments, environment, working directory, CPU
affinity, and three descriptors: a channel for this cell, the write end of its
phase pipe, its stderr file) is answered with a fork. The child becomes what
``python -m benchkit.runner.child`` would have been and runs its ``main``; the
zygote sends the child's pid on the channel, reaps it, and sends its wait
status. It never runs a cell itself, loads a model or opens a runtime session.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import json
import os
import select
import signal
import socket
import sys
import warnings
from typing import NoReturn

ENV_PRELOAD = "BENCHKIT_FORKSERVER_PRELOAD"
"""More modules for the zygote to import, comma-separated (``torch``): only modules that start no thread and
open no device when imported, or every child inherits their locks without the threads that own them."""

PRELOAD = (
    "numpy",
    "numpy.random",
    "onnx",
    "onnx.numpy_helper",
    "onnx.shape_inference",
    "benchkit.runner.child",
    "benchkit.runner.cell",
    "benchkit.workloads",
    "benchkit.workloads.catalog",
    "benchkit.workloads.builders.micro",
    "benchkit.workloads.builders.vision",
    "benchkit.workloads.builders.transformer",
    "benchkit.workloads.builders.dlrm",
    "benchkit.workloads.builders.digits",
    "benchkit.workloads.flops",
    "benchkit.machine.description",
    "benchkit.backends",
    # benchkit's own adapters import their runtime only when a cell loads a model: their modules are benchkit
    "benchkit.backends.onnxruntime",
    "benchkit.backends.null",
)
"""What the zygote imports before its first fork: what every cell imports; no runtime and no vendor's adapter."""

MAX_MESSAGE = 1 << 20
_POLL_S = 0.5


def serve(sock: socket.socket, cpus: list[int]) -> None:
    """The zygote's life: preload, say hello, then fork on request and report each child's wait status."""
    parent = os.getppid()
    _retitle([sys.executable, "-m", "benchkit.runner.zygote", f"(zygote of benchkit process {parent})"])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # in its own session already; never stopped by a stray Ctrl-C
    # Python 3.12+ warns at each fork of a process with native threads (here numpy's OpenBLAS pool, which stops
    # itself across a fork); under `-W error` the warning would end the zygote in the middle of a fork.
    warnings.filterwarnings("ignore", message=r".*multi-threaded.*fork", category=DeprecationWarning)
    if cpus and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, cpus)
    import importlib

    loaded, failed = [], {}
    extra = [m.strip() for m in os.environ.get(ENV_PRELOAD, "").split(",") if m.strip()]
    for name in (*PRELOAD, *extra):
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception as e:  # noqa: BLE001 - not preloaded is only slower: the child imports it, or fails there
            failed[name] = f"{type(e).__name__}: {e}"
    _warm(failed)
    # Objects that exist now are never collected: a collection in a child would otherwise write to (and so
    # copy) every page holding one of them.
    gc.freeze()
    # Threads now, for diagnosis: numpy's OpenBLAS pool besides this one, which OpenBLAS's own pthread_atfork
    # handler stops across each fork (a child that needs it starts it again).
    try:
        threads = len(os.listdir("/proc/self/task"))
    except OSError:
        threads = None
    sock.send(json.dumps({"pid": os.getpid(), "preloaded": loaded, "failed": failed, "threads": threads}).encode())

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # only to write to the wakeup pipe
    children: dict[int, socket.socket] = {}
    try:
        while os.getppid() == parent:
            ready, _, _ = select.select([sock, wake_r], [], [], _POLL_S)
            if wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_r, 512):
                        pass
            _reap(children)
            if sock in ready:
                try:
                    msg, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, 3)
                except OSError:
                    break
                if not msg:
                    break  # benchkit closed its end, or died
                _fork_one(msg, fds, [sock.fileno(), wake_r, wake_w], children)
    finally:
        for pid in children:
            for kill in (os.killpg, os.kill):
                with contextlib.suppress(OSError):
                    kill(pid, signal.SIGKILL)
        for pid, channel in children.items():
            with contextlib.suppress(OSError):
                _, status = os.waitpid(pid, 0)
                channel.send(json.dumps({"status": status}).encode())
            channel.close()


def _warm(failed: dict[str, str]) -> None:
    """One-time set-up every cell would repeat, done once here; it loads no model and creates no session."""
    try:
        from benchkit.workloads import catalog

        catalog.entries()  # benchkit's own manifests, read and validated once per process
    except Exception as e:  # noqa: BLE001 - the child reads them itself, and reports what is wrong
        failed["catalog"] = f"{type(e).__name__}: {e}"
    try:
        from onnx import TensorProto, helper, shape_inference

        # onnx builds its operator schema registry on the first inference (tens of milliseconds)
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "warm", [x],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        shape_inference.infer_shapes(helper.make_model(graph))
    except Exception as e:  # noqa: BLE001 - only slower without it
        failed["onnx shape inference"] = f"{type(e).__name__}: {e}"
    try:
        from importlib import metadata

        # Fills importlib.metadata's directory listings (each re-read when its folder's mtime changes): the
        # child still discovers the adapters itself, and imports the one its cell names.
        metadata.entry_points(group="benchkit.backends")
        metadata.version("numpy")
    except Exception as e:  # noqa: BLE001 - only slower without it
        failed["entry points"] = f"{type(e).__name__}: {e}"
    from pydantic import BaseModel

    for name, module in list(sys.modules.items()):
        if name.startswith("benchkit.") and module is not None:
            for obj in list(vars(module).values()):
                # Models with forward references are completed on first use: in every child, but for this.
                if isinstance(obj, type) and issubclass(obj, BaseModel) and not obj.__pydantic_complete__:
                    with contextlib.suppress(Exception):
                        obj.model_rebuild()


def _reap(children: dict[int, socket.socket]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        channel = children.pop(pid, None)
        if channel is not None:
            with contextlib.suppress(OSError):
                channel.send(json.dumps({"status": status}).encode())
            channel.close()


def _fork_one(msg: bytes, fds: list[int], own: list[int], children: dict[int, socket.socket]) -> None:
    if len(fds) != 3:
        for fd in fds:
            os.close(fd)
        return
    channel, out_w, err = socket.socket(fileno=fds[0]), fds[1], fds[2]
    try:
        request = json.loads(msg)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
    except (OSError, ValueError) as e:
        with contextlib.suppress(OSError):
            channel.send(json.dumps({"error": f"{type(e).__name__}: {e}"}).encode())
        channel.close()
        os.close(out_w)
        os.close(err)
        return
    if pid == 0:
        _child(request, out_w, err, [*own, channel.fileno(), *(c.fileno() for c in children.values())])
    os.close(out_w)
    os.close(err)
    try:
        channel.send(json.dumps({"pid": pid}).encode())
    except OSError:  # benchkit gave up on this cell already: nobody to report to
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    children[pid] = channel


def _child(request: dict, out_w: int, err: int, inherited: list[int]) -> NoReturn:
    """In the forked child: become what ``python -m benchkit.runner.child ARGV`` would be, run it, exit."""
    rc = 1
    try:
        os.setsid()  # its own process group, first: a timeout kills the group, grandchildren included
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.dup2(out_w, 1)
        os.dup2(err, 2)
        for fd in {out_w, err, *inherited} - {0, 1, 2}:  # the zygote's sockets and the other cells' channels
            with contextlib.suppress(OSError):
                os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        if request.get("cpus") and hasattr(os, "sched_setaffinity"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, request["cpus"])
        if "numpy.random" in sys.modules:  # a fresh interpreter would seed numpy's global generator afresh
            sys.modules["numpy.random"].seed()
        from benchkit.runner import child

        _retitle([sys.executable, "-m", "benchkit.runner.child", *request["argv"]])
        sys.argv = [child.__file__, *request["argv"]]
        rc = child.main(request["argv"])
    except SystemExit as e:  # as the interpreter ends on one: an int is the status, anything else is printed
        if e.code is not None and not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - as an uncaught exception ends a fresh interpreter: traceback, status 1
        import traceback

        traceback.print_exc()
        rc = 1
    finally:
        try:
            atexit._run_exitfuncs()  # an adapter's exit handlers run as they would in a fresh interpreter
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(rc)


def _retitle(argv: list[str]) -> None:
    """Show this process as ``argv`` in ``ps`` and ``/proc/PID/cmdline``, cut to the room its own command line has.

    Written over the command line's memory, as ``setproctitle`` does (the kernel reads it from there); Python
    keeps its own copy of the arguments and never reads that memory again."""
    try:
        import ctypes

        with open("/proc/self/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end: fields 48 and 49 of proc(5)
        data = b"\0".join(os.fsencode(a) for a in argv)[: end - start - 1].ljust(end - start, b"\0")
        ctypes.memmove(start, data, len(data))
    except (OSError, ValueError, IndexError, ImportError):
        pass  # only a name in `ps`


def main(argv: list[str]) -> int:
    sock = socket.socket(fileno=int(argv[0]))
    cpus = [int(c) for c in argv[1].split(",") if c] if len(argv) > 1 else []
    serve(sock, cpus)
    return 0


if __name__ == "__main__":
    # Through the imported module, not this __main__ copy: one set of globals and exit handlers.
    from benchkit.runner import zygote

    sys.exit(zygote.main(sys.argv[1:]))
