"""A real Open Inference Protocol server for tests and benchmarks: KServe's ModelServer serving an ONNX model.

Run as a script it serves one ONNX file through ONNX Runtime, REST and gRPC,
on 127.0.0.1 only; :class:`OipServer` starts it in a subprocess and stops it.

KServe's servers bind every interface (uvicorn ``host="0.0.0.0"``, gRPC
``[::]:port``), with no option to change it, so the script narrows both to
127.0.0.1 before it starts them: uvicorn's ``Config`` gets the loopback host,
and the gRPC server's ``add_insecure_port`` the loopback address.
:meth:`OipServer.listening` reads the kernel's socket table to prove it.

``--faults`` also serves a dishonest or broken copy of the model per fault
(named ``<name>-<fault>``, for fault tests): ``error`` (every inference
answers an error), ``wrong-shape`` (outputs of another shape than the metadata
declares), ``hang`` (inferences after the first ``--after`` never answer),
``wrong-values`` (answers that are not the model's). ``--die-after N`` makes
the whole process exit after N inferences.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAULTS = ("error", "wrong-shape", "hang", "wrong-values")


def unavailable_reason() -> str | None:
    """Why a KServe test server cannot run here (None: it can)."""
    import importlib.util

    # kserve is looked for, never imported here: its protobuf definitions share the `inference` package with
    # tritonclient's, and one process cannot hold both (the server runs in its own process)
    if importlib.util.find_spec("kserve") is None:
        return "kserve is not installed: pip install 'benchkit[test]'"
    for mod in ("tritonclient.grpc", "tritonclient.http"):
        try:
            __import__(mod)
        except ImportError as e:
            return f"{mod} is not importable ({e}): pip install 'benchkit[serving]'"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OipServer:
    """One KServe ModelServer subprocess serving ``model_path`` as ``name`` on 127.0.0.1 (REST and gRPC)."""

    def __init__(self, model_path: Path, name: str = "m", faults: tuple[str, ...] = (), after: int = 0,
                 die_after: int = 0, threads: int = 1) -> None:
        self.model_path, self.name, self.faults, self.after = model_path, name, tuple(faults), after
        self.die_after, self.threads = die_after, threads
        self.http_port, self.grpc_port = free_port(), free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, timeout_s: float = 60.0) -> OipServer:
        """Start the process and wait until it serves (see :meth:`launch` and :meth:`wait_ready`)."""
        return self.launch().wait_ready(timeout_s)

    def launch(self) -> OipServer:
        """Start the process without waiting: several servers start side by side."""
        self._log = tempfile.TemporaryFile()
        env = {**os.environ, "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen(
            [sys.executable, __file__, str(self.model_path), "--name", self.name, "--http-port", str(self.http_port),
             "--grpc-port", str(self.grpc_port), "--faults", ",".join(self.faults), "--after", str(self.after),
             "--die-after", str(self.die_after), "--threads", str(self.threads)],
            # stderr to a file, never a pipe: an unread pipe fills with the access log and stalls the server
            env=env, stdout=subprocess.DEVNULL, stderr=self._log, start_new_session=True)
        return self

    def wait_ready(self, timeout_s: float = 60.0) -> OipServer:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"test server exited with {self.proc.returncode}: {self.log()[-2000:]}")
            if self._ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"test server not ready within {timeout_s:.0f} s")

    def log(self) -> str:
        """What the server wrote to stderr so far."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def _ready(self) -> bool:
        import http.client

        try:
            c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=1)
            c.request("GET", f"/v2/models/{self.name}/ready")
            ok = c.getresponse().status == 200
            c.close()
        except OSError:
            return False
        if not ok:
            return False
        with socket.socket() as s:  # the gRPC port too
            return s.connect_ex(("127.0.0.1", self.grpc_port)) == 0

    def listening(self) -> set[str]:
        """Local addresses ('ip:port') with a listening TCP socket on this server's ports (from /proc/net/tcp*)."""
        ports = {self.http_port, self.grpc_port}
        found = set()
        for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                local, state = line.split()[1], line.split()[3]
                addr, port = local.split(":")
                if state != "0A" or int(port, 16) not in ports:  # 0A: LISTEN
                    continue
                raw = bytes.fromhex(addr)
                if v6:
                    ip = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
                else:
                    ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
                found.add(f"{ip}:{int(port, 16)}")
        return found

    def stop(self) -> None:
        p = self.proc
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        if p is not None:
            self._log.close()

    def __enter__(self) -> OipServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --------------------------------------------------------------------------- the server process


def _loopback_only() -> None:
    """Bind KServe's REST and gRPC servers to 127.0.0.1 instead of every interface."""
    import grpc.aio._server as aio_server
    import uvicorn

    class LoopbackConfig(uvicorn.Config):
        def __init__(self, *args, **kwargs):
            kwargs["host"] = "127.0.0.1"
            super().__init__(*args, **kwargs)

    uvicorn.Config = LoopbackConfig
    add = aio_server.Server.add_insecure_port

    def add_loopback(self, address: str) -> int:
        return add(self, "127.0.0.1:" + address.rsplit(":", 1)[1])

    aio_server.Server.add_insecure_port = add_loopback


def _serve(args: argparse.Namespace) -> None:
    _loopback_only()
    import asyncio

    import kserve
    import numpy as np
    import onnxruntime as ort
    from kserve.protocol.infer_type import InferOutput, InferResponse
    from kserve.utils.utils import from_np_dtype

    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(args.model, sess_options=so, providers=["CPUExecutionProvider"])
    kinds = {"tensor(float)": "FP32", "tensor(float16)": "FP16", "tensor(int64)": "INT64", "tensor(int32)": "INT32",
             "tensor(int8)": "INT8", "tensor(uint8)": "UINT8", "tensor(bool)": "BOOL", "tensor(double)": "FP64"}

    def describe(args_):
        return [{"name": a.name, "datatype": kinds[a.type],
                 "shape": [d if isinstance(d, int) else -1 for d in a.shape]} for a in args_]

    class OnnxModel(kserve.Model):
        served = 0  # inferences answered by the whole process (--die-after)

        def __init__(self, name: str, fault: str | None) -> None:
            super().__init__(name)
            self.fault, self.calls = fault, 0
            self.ready = True

        def get_input_types(self):
            return describe(sess.get_inputs())

        def get_output_types(self):
            return describe(sess.get_outputs())

        async def predict(self, payload, headers=None, response_headers=None):
            self.calls += 1
            OnnxModel.served += 1
            if args.die_after and OnnxModel.served > args.die_after:
                os._exit(3)
            if self.fault == "error":
                raise kserve.errors.InferenceError("injected failure")
            if self.fault == "hang" and self.calls > args.after:
                await asyncio.sleep(3600)
            outs = sess.run(None, {i.name: i.as_numpy() for i in payload.inputs})
            if self.fault == "wrong-shape":
                outs = [o.reshape(-1)[: max(1, o.size // 2)] for o in outs]
            if self.fault == "wrong-values":
                outs = [o + 1 for o in outs]
            result = []
            for meta, arr in zip(sess.get_outputs(), outs):
                o = InferOutput(name=meta.name, shape=list(arr.shape), datatype=from_np_dtype(arr.dtype))
                o.set_data_from_numpy(np.ascontiguousarray(arr), binary_data=payload.use_binary_outputs)
                result.append(o)
            return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=result,
                                 use_binary_outputs=payload.use_binary_outputs,
                                 requested_outputs=payload.request_outputs)

    faults = [f for f in args.faults.split(",") if f]
    models = [OnnxModel(args.name, None), *(OnnxModel(f"{args.name}-{f}", f) for f in faults)]
    kserve.ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, workers=1, grace_period=1).start(models)


def _die_with_parent() -> None:
    """Linux: end this server when the process that started it ends, even by SIGKILL (no orphan keeps a port)."""
    import ctypes
    import signal

    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent ended before prctl took effect
        os._exit(1)


def main() -> None:
    _die_with_parent()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--name", default="m")
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--faults", default="", help=f"comma-separated, of: {', '.join(FAULTS)}")
    p.add_argument("--after", type=int, default=0, help="inferences the `hang` model answers before it hangs")
    p.add_argument("--die-after", type=int, default=0, help="exit after this many inferences (0: never)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    # kserve's ModelServer parses sys.argv itself at import: hand it none of ours
    args, sys.argv[1:] = p.parse_args(), []
    _serve(args)


if __name__ == "__main__":
    main()
