"""Open Inference Protocol adapter: measure a deployed inference server over REST or gRPC (KServe v2).

Triton, KServe, OpenVINO Model Server, MLServer and many vendors' own servers
speak this protocol. Options (``backends[].options`` in a spec)::

    url: http://127.0.0.1:8080       # REST; for gRPC: 127.0.0.1:8081 (a grpc:// prefix is accepted)
    protocol: rest                   # rest | grpc
    model: resnet50                  # the model's name on the server
    version: ""                      # model version; "" = the server's default
    binary_data: true                # REST: tensors as raw bytes (the binary tensor data extension) or JSON
    timeout_s: 30                    # a request with no complete answer by then fails its cell

``load`` does not load anything: it asks the server whether the model is ready
and reads its metadata (inputs and outputs, datatypes, shapes), which must
agree with the workload, or the cell fails naming the first difference.

The timing boundary. ``stage`` serializes one call's request (REST: the JSON
header and binary tensor body; gRPC: the ``ModelInferRequest`` protobuf), so
serialization is measured apart as ``metrics.stage_ns``; ``run`` sends those
bytes and returns once the complete response has been received (timed: the
transfer both ways plus everything the server does); ``fetch`` parses the
response into numpy arrays (``metrics.fetch_ns``). ``synchronize`` has nothing
to wait for: ``run`` returns only with the full response.

gRPC offers asynchronous submission (a gRPC future per call), used by the
Server scenario and by Offline's ``concurrency``; REST calls are blocking and
those scenarios run them on threads, each thread with its own keep-alive
connection.

The protocol client is tritonclient's (the ``serving`` extra of the checkout):
its HTTP request/response codec and its gRPC message definitions (Triton's
``grpc_service.proto``, a superset of the KServe v2 protocol); the bytes go
over a plain keep-alive ``http.client`` connection (REST) or a ``grpcio``
channel whose calls pass pre-serialized bytes (gRPC).
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from benchkit.backends.base import Backend, BackendInfo, Done, Endpoint, TensorMetadata, WorkloadInfo, parse_options
from benchkit._install import install_hint
from benchkit.errors import BackendError, BackendUnavailable

_EXTRA = install_hint("serving")


def _triton(kind: str):
    """tritonclient's http or grpc package, imported on first use."""
    try:
        if kind == "grpc":
            import tritonclient.grpc as mod  # imports grpcio
        else:
            import tritonclient.http as mod
        import tritonclient.utils as utils
    except ImportError as e:
        raise BackendUnavailable(f"the oip backend needs tritonclient ({e.name or e}): {_EXTRA}") from e
    return mod, utils


class OipOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(description="Server address: [http://]host:port for REST, [grpc://]host:port for gRPC.")
    protocol: Literal["rest", "grpc"] = Field("rest", description="Wire protocol of the Open Inference Protocol.")
    model: str = Field(min_length=1, description="Model name on the server.")
    version: str = Field("", description="Model version; empty for the server's default.")
    binary_data: bool = Field(True, description="REST: send and receive tensors as raw bytes (binary extension).")
    timeout_s: float = Field(30.0, gt=0, description="Per-request limit: no complete answer by then is an error.")


class OipBackend(Backend):
    name = "oip"

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        self.opts = parse_options(OipOptions, options)
        parts = urlsplit(self.opts.url if "//" in self.opts.url else "//" + self.opts.url)
        if not parts.hostname or not parts.port:
            raise BackendError(f"url: {self.opts.url!r} is not host:port (e.g. 127.0.0.1:8080)")
        if parts.scheme not in ("", "http", "grpc"):
            raise BackendError(f"url: scheme {parts.scheme!r} is not supported (http:// for REST, grpc:// or none)")
        self._host, self._port = parts.hostname, parts.port
        self._mod, self._utils = _triton(self.opts.protocol)
        self._local = threading.local()  # REST: one keep-alive connection per calling thread
        self._conns: list[http.client.HTTPConnection] = []
        self._channel = None
        self._infer = None
        self._endpoint: Endpoint | None = None
        self._workload: WorkloadInfo | None = None
        self._out_shapes: dict[str, list[int]] = {}
        v = f"/versions/{self.opts.version}" if self.opts.version else ""
        self._path = f"/v2/models/{self.opts.model}{v}/infer"

    @classmethod
    def describe_installation(cls) -> dict[str, Any]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            # the runtime is the server's, known only once connected: the column shows the protocol client
            return {"version": f"client: tritonclient {version('tritonclient')}",
                    "device": "a remote server (options.url)"}
        except PackageNotFoundError:
            raise BackendUnavailable(f"the oip backend needs tritonclient: {_EXTRA}") from None

    # ------------------------------------------------------------------ load: the server's metadata

    @property
    def _where(self) -> str:
        scheme = "http" if self.opts.protocol == "rest" else "grpc"
        return f"{scheme}://{self._host}:{self._port}"

    def load(self, model_path: Path, workload: WorkloadInfo) -> None:
        o = self.opts
        target = f"{self._host}:{self._port}"
        try:
            if o.protocol == "grpc":
                import grpc

                client = self._mod.InferenceServerClient(target)
                server = client.get_server_metadata(as_json=True, client_timeout=o.timeout_s)
                ready = client.is_model_ready(o.model, o.version, client_timeout=o.timeout_s)
                meta = client.get_model_metadata(o.model, o.version, as_json=True, client_timeout=o.timeout_s) \
                    if ready else {}
                client.close()
                self._channel = grpc.insecure_channel(target, options=[
                    ("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)])
                # Pre-serialized bytes in, raw bytes out: (de)serialization stays in stage() and fetch().
                self._infer = self._channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
            else:
                client = self._mod.InferenceServerClient(target, connection_timeout=o.timeout_s,
                                                         network_timeout=o.timeout_s)
                server = client.get_server_metadata()
                ready = client.is_model_ready(o.model, o.version)
                meta = client.get_model_metadata(o.model, o.version) if ready else {}
                client.close()
        except self._utils.InferenceServerException as e:
            raise BackendError(f"oip: server at {self._where}: {e.message() or e}") from None
        except Exception as e:  # noqa: BLE001 - connection refused, DNS, TLS: say where and what
            raise BackendError(f"oip: cannot reach the server at {self._where}: {type(e).__name__}: {e}") from None
        if not ready:
            raise BackendError(f"oip: model {o.model!r}{' version ' + o.version if o.version else ''} is not ready "
                               f"on {self._where}")
        self._workload = workload
        self._check_metadata(meta, workload)
        params = meta.get("parameters") or {}
        sha = params.get("model_sha256") if isinstance(params, dict) else None
        if isinstance(sha, dict):  # OIP parameters may wrap values ({"string_param": ...})
            sha = next(iter(sha.values()), None)
        self._endpoint = Endpoint(
            url=self._where, protocol=f"oip-{o.protocol}", model=o.model, version=o.version,
            server=f"{server.get('name', '')} {server.get('version', '')}".strip(),
            platform=str(meta.get("platform", "") or ""), model_sha256=str(sha) if sha else None,
            inputs=[TensorMetadata(**_tensor(t)) for t in meta.get("inputs", [])],
            outputs=[TensorMetadata(**_tensor(t)) for t in meta.get("outputs", [])])
        self._server_version = str(server.get("version", "") or "unknown")

    def _check_metadata(self, meta: Mapping[str, Any], wl: WorkloadInfo) -> None:
        """The served model's inputs and outputs against the workload's: names, datatypes, shapes."""
        where = f"oip: model {self.opts.model!r} on {self._where}"
        served = {t["name"]: _tensor(t) for t in meta.get("inputs", [])}
        for name, shape in wl.inputs.items():
            want = self._utils.np_to_triton_dtype(np.dtype(wl.input_dtypes[name]))
            t = served.get(name)
            if t is None:
                raise BackendError(f"{where}: the workload's input {name!r} is not among the server's inputs "
                                   f"({', '.join(served) or 'none'})")
            if t["datatype"] != want:
                raise BackendError(f"{where}: input {name!r} is {t['datatype']} on the server, the workload feeds {want}")
            if not _fits(t["shape"], shape):
                raise BackendError(f"{where}: input {name!r} has shape {t['shape']} on the server, the workload "
                                   f"feeds {list(shape)}")
        extra = sorted(set(served) - set(wl.inputs))
        if extra:
            raise BackendError(f"{where}: the server's model also takes input(s) {', '.join(extra)}, which the "
                               "workload does not feed")
        outs = {t["name"]: _tensor(t) for t in meta.get("outputs", [])}
        missing = [n for n in wl.output_names if n not in outs]
        if missing:
            raise BackendError(f"{where}: the workload's output(s) {', '.join(missing)} are not among the server's "
                               f"outputs ({', '.join(outs) or 'none'})")
        self._out_shapes = {n: outs[n]["shape"] for n in wl.output_names}

    # ------------------------------------------------------------------ the timing boundary

    def stage(self, feeds: Mapping[str, np.ndarray]) -> Any:
        assert self._workload is not None, "stage() before load()"
        names = list(self._workload.output_names)
        if self.opts.protocol == "grpc":
            pb = self._mod.service_pb2
            req = pb.ModelInferRequest(model_name=self.opts.model, model_version=self.opts.version)
            for name, arr in feeds.items():
                a = np.ascontiguousarray(arr)
                t = req.inputs.add(name=name, datatype=self._utils.np_to_triton_dtype(a.dtype))
                t.shape.extend(a.shape)
                req.raw_input_contents.append(a.tobytes())
            for name in names:
                req.outputs.add(name=name)
            return req.SerializeToString()
        http_mod = self._mod
        inputs = []
        for name, arr in feeds.items():
            a = np.ascontiguousarray(arr)
            i = http_mod.InferInput(name, list(a.shape), self._utils.np_to_triton_dtype(a.dtype))
            i.set_data_from_numpy(a, binary_data=self.opts.binary_data)
            inputs.append(i)
        outputs = [http_mod.InferRequestedOutput(n, binary_data=self.opts.binary_data) for n in names]
        body, json_size = http_mod.InferenceServerClient.generate_request_body(inputs, outputs)
        headers = {"Content-Type": "application/octet-stream" if json_size is not None else "application/json"}
        if json_size is not None:
            headers["Inference-Header-Content-Length"] = str(json_size)
        return body, headers

    def run(self, staged: Any) -> Any:
        if self._infer is not None:
            try:
                return self._infer(staged, timeout=self.opts.timeout_s)
            except Exception as e:  # noqa: BLE001 - grpc.RpcError: the status code and the server's message
                raise BackendError(_grpc_error(e, self._where)) from None
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(self._host, self._port, timeout=self.opts.timeout_s)
            self._conns.append(conn)  # every thread's, so close() can close them all
        body, headers = staged
        try:
            conn.request("POST", self._path, body, headers)
            resp = conn.getresponse()
            data = resp.read()
        except Exception as e:  # noqa: BLE001 - refused, reset, timed out: the connection is done for
            conn.close()
            self._local.conn = None
            raise BackendError(f"oip: request to {self._where}{self._path} failed: {type(e).__name__}: {e}") from None
        if resp.status != 200:
            raise BackendError(f"oip: {self._where}{self._path} answered HTTP {resp.status}: "
                               f"{data[:300].decode('utf-8', 'replace')}")
        return data, resp.getheader("Inference-Header-Content-Length"), resp.getheader("Content-Encoding")

    def supports_async(self) -> bool:
        return self._infer is not None

    def submit(self, staged: Any, done: Done, tag: int) -> None:
        future = self._infer.future(staged, timeout=self.opts.timeout_s)
        where = self._where

        def finished(f: Any) -> None:
            e = f.exception()
            done(tag, None if e is None else BackendError(_grpc_error(e, where)))

        future.add_done_callback(finished)

    def fetch(self, result: Any) -> list[np.ndarray]:
        assert self._workload is not None, "fetch() before load()"
        if self.opts.protocol == "grpc":
            parsed = self._mod.InferResult(self._mod.service_pb2.ModelInferResponse.FromString(result))
        else:
            data, header_length, encoding = result
            parsed = self._mod.InferenceServerClient.parse_response_body(
                data, header_length=None if header_length is None else int(header_length), content_encoding=encoding)
        outs = []
        for name in self._workload.output_names:
            a = parsed.as_numpy(name)
            if a is None:
                raise BackendError(f"oip: the response from {self._where} lacks output {name!r}")
            if not _fits(self._out_shapes.get(name, []), a.shape):
                raise BackendError(f"oip: output {name!r} from {self._where} has shape {list(a.shape)}; the "
                                   f"server's metadata declares {self._out_shapes[name]}")
            outs.append(a)
        return outs

    def close(self) -> None:
        for conn in self._conns:
            conn.close()
        self._conns.clear()
        self._local = threading.local()
        if self._channel is not None:
            self._channel.close()
            self._channel = self._infer = None

    def info(self) -> BackendInfo:
        if self._endpoint is None or self._workload is None:
            raise BackendError("oip: info() before load()")
        # The server's compute precision cannot be read back over the protocol: the graph's own is reported,
        # and the accuracy gate against the reference runtime is what vouches for the answers.
        precision = str(self._workload.extra.get("graph_precision", "fp32"))
        return BackendInfo(
            name=self.name,
            version=self._server_version,
            device=f"remote: {self._endpoint.server or 'server'} at {self._where}",
            precision=precision,
            options=self.opts.model_dump(),
            adapter=f"{type(self).__module__}:{type(self).__qualname__}",
            endpoint=self._endpoint,
        )


def _tensor(t: Mapping[str, Any]) -> dict[str, Any]:
    """One metadata tensor, shapes as ints (the gRPC JSON form spells int64 as strings)."""
    return {"name": str(t["name"]), "datatype": str(t["datatype"]), "shape": [int(d) for d in t.get("shape", [])]}


def _fits(declared: list[int], shape: Any) -> bool:
    """Whether a concrete shape agrees with a declared one (-1: any size)."""
    shape = list(shape)
    return len(declared) == len(shape) and all(d < 0 or d == s for d, s in zip(declared, shape))


def _grpc_error(e: BaseException, where: str) -> str:
    code = getattr(e, "code", None)
    details = getattr(e, "details", None)
    if callable(code) and callable(details):
        return f"oip: {where} ModelInfer failed: {code().name}: {details()}"
    return f"oip: {where} ModelInfer failed: {type(e).__name__}: {e}"
