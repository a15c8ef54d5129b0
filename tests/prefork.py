"""A fork server for the documentation examples: `benchkit ...` and `python script.py` without a cold start each.

A documented command is still a process of its own, with its own argv, working directory, environment and
standard streams (the caller's, passed over the socket), exiting with its own status. It is forked from a
server that has already imported what every command imports (numpy, onnx, pydantic, rich, PyYAML and
benchkit's CLI and runner), so each one skips the ~1.5 s of CPU those imports cost. ONNX Runtime is not
preloaded: importing it starts a thread, and a forked child's exit would wait forever on that thread's
condition variable (it costs 0.2 s, imported in the child as usual). What a fresh process
would do differently is put back in the child: the environment, ``tempfile``'s cached folder, the import
system's caches, ``sys.path[0]`` (the script's folder), default signal dispositions; interpreter exit runs as
usual (threads joined, atexit handlers, streams flushed). benchkit reads no environment variable at import
time, so an import made in the server cannot see another command's environment. A request whose PYTHONPATH
differs from the server's runs in a fresh interpreter instead.

    server = PreforkServer(env)           # starts `python tests/prefork.py SOCKET`
    server.client(bindir / "benchkit")    # a console script: benchkit ARGS -> the server
    server.stop()
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PRELOAD = ("numpy", "onnx", "pydantic", "rich.console", "rich.table", "rich.progress", "yaml",
           "benchkit.cli", "benchkit.spec", "benchkit.results.records", "benchkit.runner.suite",
           "benchkit.runner.executors", "benchkit.workloads.catalog")

# The client: as small as Python starts (-I: no site, no environment; the standard library only). It sends its
# argv, cwd, environment and its fds 0-2, then exits with the status the forked command sends back.
_CLIENT = """#!{python} -I
import json, os, socket, sys
argv = [{kind!r}, *sys.argv[1:]]
if os.environ.get("PYTHONPATH", "") != {pythonpath!r}:  # the server's imports would not be what it asks for
    pre = ["-m", "benchkit"] if argv[0] == "benchkit" else []
    os.execv({python!r}, [{python!r}, *pre, *{rewrite}(argv[1:])])
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect({sock!r})
argv[1:] = {rewrite}(argv[1:])
request = {{"argv": argv, "script": os.path.abspath(sys.argv[0]), "cwd": os.getcwd(), "env": dict(os.environ)}}
socket.send_fds(s, [json.dumps(request).encode()], [0, 1, 2])
status = s.recv(16)
sys.exit(int(status) if status else 70)  # 70: the forked command died without a status (EX_SOFTWARE)
"""


class PreforkServer:
    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.env = env
        self.sock = str(folder / "prefork.sock")
        self.proc = subprocess.Popen([sys.executable, __file__, self.sock], env=env, stdin=subprocess.DEVNULL,
                                     start_new_session=True)  # its own group: stop() ends every child too
        deadline = time.monotonic() + 120
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the prefork server did not start ({self.proc.returncode})")
            time.sleep(0.05)

    def client(self, path: Path, kind: str = "benchkit", rewrite: str = "(lambda a: a)") -> Path:
        """Write an executable at `path` that runs `benchkit ARGS` (kind benchkit) or `python ARGS` (kind python)
        in a child of this server; `rewrite` is a Python expression applied to ARGS first."""
        path.write_text(_CLIENT.format(python=sys.executable, kind=kind, sock=self.sock, rewrite=rewrite,
                                       pythonpath=self.env.get("PYTHONPATH", "")))
        path.chmod(0o755)
        return path

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


# --------------------------------------------------------------------------- server side

_status = 70


def _send_status(conn: socket.socket) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    try:
        conn.send(str(_status).encode())
    except OSError:
        pass


def _become(request: dict, fds: list[int], conn: socket.socket) -> None:
    """Turn this fresh fork into the requested command's process."""
    import atexit
    import importlib
    import io
    import tempfile

    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=os.isatty(1))
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True, errors="backslashreplace")
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    tempfile.tempdir = None  # gettempdir() caches TMPDIR; this command's may differ
    importlib.invalidate_caches()
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    atexit.register(_send_status, conn)  # registered first: runs last, after the command's own handlers


def _command(request: dict) -> int:
    kind, args = request["argv"][0], request["argv"][1:]
    if kind == "benchkit":
        sys.argv = [request["script"], *args]
        sys.path[0] = os.path.dirname(request["script"])  # as for a console script: its own folder
        from benchkit.cli import main

        return main(args)
    if args[:1] == ["-c"]:  # kind == "python": `python -c CODE ARGS`
        sys.argv = ["-c", *args[2:]]
        sys.path[0] = ""  # the working directory, as for python -c
        exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
        return 0
    import runpy  # `python SCRIPT ARGS`

    sys.argv = list(args)
    sys.path[0] = os.path.dirname(os.path.abspath(args[0]))
    runpy.run_path(args[0], run_name="__main__")
    return 0


def _child(data: bytes, fds: list[int], conn: socket.socket) -> None:
    global _status
    request = json.loads(data)
    _become(request, fds, conn)
    try:
        _status = _command(request)
    except SystemExit as e:
        _status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if e.code is not None and not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - as the interpreter would: the traceback, status 1
        import traceback

        traceback.print_exc()
        _status = 1
    sys.exit(_status)  # an ordinary exit: threads joined, atexit handlers, then the status to the client


def serve(sock_path: str) -> None:
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    threaded = [m for m in ("onnxruntime", "torch", "openvino") if m in sys.modules]
    assert not threaded, f"{threaded} start threads at import: a forked child could hang on their locks"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(sock_path + ".new")
    listener.listen(16)
    os.rename(sock_path + ".new", sock_path)  # appears only once it accepts
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    while True:
        conn, _ = listener.accept()
        data, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 3)
        if os.fork() == 0:
            listener.close()
            _child(data, fds, conn)
        conn.close()
        for fd in fds:
            os.close(fd)


if __name__ == "__main__":
    serve(sys.argv[1])
