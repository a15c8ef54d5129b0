"""OpenVINO adapter (the ``openvino`` extra): CPU, GPU, NPU or AUTO through ``openvino.Core``.

Options (``backends[].options`` in a spec)::

    device: CPU                      # CPU | GPU | GPU.1 | NPU | AUTO | AUTO:GPU,CPU | HETERO:GPU,CPU
    inference_precision: auto        # auto: from the spec's claimed precision (fp32 -> f32, bf16 -> bf16,
                                     #   fp16 -> f16; int8/mixed: runtime default); default: never set it
                                     #   (the runtime's choice, e.g. bf16 on CPUs with AMX); or f32 | bf16 | f16
    performance_hint: null           # LATENCY | THROUGHPUT | CUMULATIVE_THROUGHPUT; null: LATENCY for
                                     #   single_stream/multi_stream, THROUGHPUT for offline/server
    num_streams: null                # int or AUTO (NUM_STREAMS); null: what the hint picks
    inference_num_threads: null      # int (INFERENCE_NUM_THREADS)
    num_requests: 0                  # infer requests for async work; 0: twice the compiled model's optimal number
    config: {}                       # any other compile_model properties, e.g. {ENABLE_CPU_PINNING: "YES"}

Precision is read back, not assumed: after compiling, ``INFERENCE_PRECISION_HINT``
of the compiled model says what the plugin will compute in (a CPU without
bf16 support keeps f32 whatever was asked), and ``info().precision`` and
``info().options["inference_precision"]`` report that value. A spec claiming
fp32 on a CPU where OpenVINO defaults to bf16 is therefore INVALID unless the
precision is pinned (``inference_precision: auto`` or ``f32``).

Async: Server and Offline submit through an ``AsyncInferQueue`` of
``num_requests`` requests (:meth:`submit`; 0 = twice the compiled model's
``OPTIMAL_NUMBER_OF_INFER_REQUESTS``: one queued behind each running one, as
the Python side's hand-over would otherwise leave a stream idle), as OpenVINO's
own benchmark_app drives a throughput-mode device: Offline keeps that many
queries in flight (:meth:`max_in_flight`), so a model with a fixed batch
dimension still keeps every stream busy. On a model whose batch dimension is
free, an Offline call of ``batch_size`` samples is instead split across up to
``num_requests`` infer requests started together (``start_async``), and
``synchronize`` waits for all of them. Outputs are read by index, never by
name: OpenVINO may rename a graph's output ports.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from benchkit._install import install_hint
from benchkit.errors import BackendError, BackendUnavailable, BenchkitError
from benchkit.backends.base import Backend, BackendInfo, WorkloadInfo, parse_options

Done = Callable[[int, "BaseException | None"], None]  # the completion callback of Backend.submit

_EXTRA = install_hint("openvino")
_DEVICE_RE = re.compile(r"^(CPU|GPU(\.\d+)?|NPU(\.\d+)?|AUTO(:[A-Z0-9.,]+)?|HETERO:[A-Z0-9.,]+|MULTI:[A-Z0-9.,]+)$")
_HINT_FOR_CLAIM = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
_PRECISION_OF_TYPE = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}
_RESERVED = {"INFERENCE_PRECISION_HINT": "inference_precision", "PERFORMANCE_HINT": "performance_hint",
             "NUM_STREAMS": "num_streams", "INFERENCE_NUM_THREADS": "inference_num_threads"}


def _ov():
    try:
        import openvino
    except ImportError as e:
        raise BackendUnavailable(f"openvino is not installed: {_EXTRA}") from e
    return openvino


class OpenVinoOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    device: str = Field("CPU", description="OpenVINO device name.")
    inference_precision: Literal["auto", "default", "f32", "bf16", "f16"] = Field(
        "auto", description="INFERENCE_PRECISION_HINT: auto (from the claimed precision), default (unset), or a type."
    )
    performance_hint: Literal["LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT"] | None = Field(
        None, description="PERFORMANCE_HINT; default: by scenario."
    )
    num_streams: int | Literal["AUTO"] | None = Field(None, description="NUM_STREAMS.")
    inference_num_threads: int | None = Field(None, ge=1, description="INFERENCE_NUM_THREADS.")
    num_requests: int = Field(0, ge=0, description="Infer requests for async work; 0 = twice the compiled "
                              "model's optimal number (one queued behind each running request).")
    config: dict[str, str | int | bool] = Field(default_factory=dict, description="Other compile_model properties.")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not _DEVICE_RE.match(v):
            raise ValueError(f"expected CPU, GPU[.N], NPU, AUTO[:list], HETERO:list or MULTI:list, got {v!r}")
        return v

    @field_validator("num_streams")
    @classmethod
    def _streams(cls, v: Any) -> Any:
        if isinstance(v, int) and v < 1:
            raise ValueError("must be a positive integer or AUTO")
        return v

    @field_validator("config")
    @classmethod
    def _config(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in v:
            if key in _RESERVED:
                raise ValueError(f"{key} has its own option: set `{_RESERVED[key]}` instead")
        return v


class OpenVinoBackend(Backend):
    name = "openvino"

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        self.opts = parse_options(OpenVinoOptions, options)
        ov = _ov()
        self._core = ov.Core()
        physical = self._core.available_devices  # e.g. ['CPU', 'GPU.0', 'GPU.1']
        for dev in _physical_devices(self.opts.device):
            if not any(d == dev or d.split(".")[0] == dev for d in physical):
                raise BackendUnavailable(
                    f"device: {dev!r} is not available to this OpenVINO {_version(ov)} "
                    f"(available: {', '.join(physical) or 'none'})"
                )
        self._compiled = None
        self._req = None
        self._queue = None
        self._chunk_reqs: list[Any] = []
        self._chunks = 1
        self._workload: WorkloadInfo | None = None
        self._resolved: dict[str, Any] = {}
        self._precision = "fp32"

    @classmethod
    def describe_installation(cls) -> dict[str, Any]:
        ov = _ov()
        core = ov.Core()
        devices = []
        for d in core.available_devices:
            try:
                devices.append(f"{d} ({core.get_property(d, 'FULL_DEVICE_NAME')})")
            except Exception:  # noqa: BLE001 - a device that cannot describe itself is still listed
                devices.append(d)
        return {"version": _version(ov), "devices": devices}

    # ------------------------------------------------------------------ load

    def _compile_config(self, workload: WorkloadInfo) -> dict[str, Any]:
        o = self.opts
        cfg: dict[str, Any] = {k: str(v) if not isinstance(v, bool) else ("YES" if v else "NO")
                               for k, v in o.config.items()}
        claimed = str(workload.extra.get("claimed_precision", "fp32"))
        hint = o.inference_precision
        if hint == "auto":
            hint = _HINT_FOR_CLAIM.get(claimed, "default")
        if hint != "default":
            cfg["INFERENCE_PRECISION_HINT"] = hint
        perf = o.performance_hint
        if perf is None:
            perf = "THROUGHPUT" if workload.extra.get("scenario") in ("offline", "server") else "LATENCY"
        cfg["PERFORMANCE_HINT"] = perf
        if o.num_streams is not None:
            cfg["NUM_STREAMS"] = str(o.num_streams)
        if o.inference_num_threads is not None:
            cfg["INFERENCE_NUM_THREADS"] = str(o.inference_num_threads)
        return cfg

    def load(self, model_path: Path, workload: WorkloadInfo) -> None:
        try:
            model = self._core.read_model(str(model_path))
        except Exception as e:  # RuntimeError with a multi-line report naming unconverted ops
            raise BackendError(f"openvino could not read {model_path.name}: {_short(e)}") from None
        self._workload = workload
        cfg = self._compile_config(workload)
        batch = int(workload.batch_size)
        shapes = {p.get_any_name(): list(workload.inputs[p.get_any_name()]) for p in model.inputs
                  if p.get_any_name() in workload.inputs}
        free_batch = all(p.get_partial_shape().rank.is_static and p.get_partial_shape().rank.get_length() > 0
                         and p.get_partial_shape()[0].is_dynamic for p in model.inputs)
        chunks = 1
        try:
            if shapes:
                model.reshape(shapes)  # static shapes compile to faster kernels than dynamic ones
            self._compiled = self._core.compile_model(model, self.opts.device, cfg)
            if workload.extra.get("scenario") == "offline" and batch > 1 and free_batch:
                want = self.opts.num_requests or int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
                chunks = max(d for d in range(1, min(want, batch) + 1) if batch % d == 0)
                if chunks > 1:
                    # One Offline call becomes `chunks` requests of batch/chunks samples run side by side.
                    model.reshape({n: [s[0] // chunks, *s[1:]] for n, s in shapes.items()})
                    self._compiled = self._core.compile_model(model, self.opts.device, cfg)
        except BenchkitError:
            raise
        except Exception as e:
            raise BackendError(f"openvino could not compile {model_path.name} for {self.opts.device}: {_short(e)}") \
                from None
        self._tensor = _ov().Tensor  # looked up once: run() wraps each input with it, inside the timed call
        self._ports = list(self._compiled.inputs)
        self._port_names = [p.get_any_name() for p in self._ports]
        self._n_out = len(self._compiled.outputs)
        self._chunks = chunks
        self._req = self._compiled.create_infer_request()
        self._chunk_reqs = [self._compiled.create_infer_request() for _ in range(chunks)] if chunks > 1 else []
        self._queue = None
        self._read_back(workload)

    def _read_back(self, workload: WorkloadInfo) -> None:
        cm = self._compiled
        ov = _ov()

        def prop(key: str, default: Any = None) -> Any:
            try:
                return cm.get_property(key)
            except Exception:  # noqa: BLE001 - AUTO/HETERO do not forward every property
                return default

        ptype = prop("INFERENCE_PRECISION_HINT")
        if ptype is None:
            # AUTO and friends: ask the device that ended up executing.
            for dev in prop("EXECUTION_DEVICES", []) or []:
                try:
                    ptype = self._core.get_property(dev, "INFERENCE_PRECISION_HINT")
                    break
                except Exception:  # noqa: BLE001
                    continue
        infer_prec = ptype.to_string() if isinstance(ptype, ov.Type) else (str(ptype) if ptype else "f32")
        graph = str(workload.extra.get("graph_precision", "fp32"))
        self._precision = _effective(graph, _PRECISION_OF_TYPE.get(infer_prec, infer_prec))
        streams = prop("NUM_STREAMS")
        self._resolved = {
            "device": self.opts.device,
            "execution_devices": [str(d) for d in (prop("EXECUTION_DEVICES", []) or [])],
            "inference_precision": infer_prec,
            "inference_precision_requested": self._compile_config(workload).get("INFERENCE_PRECISION_HINT", "default"),
            "performance_hint": str(prop("PERFORMANCE_HINT", "")),
            "num_streams": int(streams) if isinstance(streams, int) or str(streams).isdigit() else str(streams),
            "inference_num_threads": prop("INFERENCE_NUM_THREADS"),
            "optimal_number_of_infer_requests": prop("OPTIMAL_NUMBER_OF_INFER_REQUESTS"),
            "num_requests": self.opts.num_requests,
            "offline_split_requests": self._chunks,
            # The AsyncInferQueue's size (Server, and Offline on a fixed batch): what num_requests resolves to.
            # 0 (auto): two per optimal request, so each stream has the next query queued behind the running one
            # and never waits while Python hands it over (measured: Offline at 0.87-0.95x benchmark_app's
            # throughput with one per request, 0.92-1.01x with two; tests/benchmarks/bench_openvino_app.py)
            "async_requests": self.opts.num_requests
            or 2 * int(prop("OPTIMAL_NUMBER_OF_INFER_REQUESTS", 1) or 1),
            "config": dict(self.opts.config),
            "build": ov.get_version(),
        }

    # ------------------------------------------------------------------ timed path

    def stage(self, feeds: Mapping[str, np.ndarray]) -> Any:
        arrays = [np.ascontiguousarray(feeds[n]) for n in self._port_names]
        if self._chunks > 1:
            # Views of the call's arrays, wrapped in run(): one wrap per input costs a microsecond or two hot, in a
            # call of milliseconds, where a stage of chunks x inputs wraps made cold after a call took 15-20 µs each.
            # Slices along the batch axis of C-contiguous arrays are contiguous views: no copy, little Python.
            step = arrays[0].shape[0] // self._chunks  # every input has the call's batch, a multiple of chunks
            return [tuple(a[c * step:(c + 1) * step] for a in arrays) for c in range(self._chunks)]
        # The arrays themselves, wrapped in run(): a wrap costs 1.4 µs hot in the timed call, 30-95 µs as the first
        # work after a call (the untimed stage of a shared machine), more than copying a small input there.
        return tuple(arrays)

    def run(self, staged: Any) -> Any:
        if self._chunks > 1:
            tensor = self._tensor
            for req, arrays in zip(self._chunk_reqs, staged):
                for port, a in zip(self._ports, arrays):
                    req.set_tensor(port, tensor(a, shared_memory=True))
                req.start_async()
            return self._chunk_reqs
        req, tensor = self._req, self._tensor
        for port, a in zip(self._ports, staged):
            req.set_tensor(port, tensor(a, shared_memory=True))
        # share_outputs: the call returns views of the request's output tensors instead of copies; the one copy
        # is fetch()'s, outside the timed region and timed on its own (as benchmark_app copies nothing).
        req.infer(share_outputs=True)
        return req

    def synchronize(self) -> None:
        # Offline splits a call over several requests started asynchronously: the call ends when all have.
        for req in self._chunk_reqs:
            req.wait()

    def fetch(self, result: Any) -> list[np.ndarray]:
        if isinstance(result, list):
            for req in result:
                req.wait()
            return [np.concatenate([req.get_output_tensor(i).data for req in result], axis=0)
                    for i in range(self._n_out)]
        return [np.array(result.get_output_tensor(i).data, copy=True) for i in range(self._n_out)]

    # ------------------------------------------------------------------ async (Server)

    def supports_async(self) -> bool:
        return self._compiled is not None and self._chunks == 1

    def max_in_flight(self) -> int:
        # The request pool is made here, before timing, not in the first submit().
        if self._queue is None:
            self._open_queue()
        return len(self._queue)

    def submit(self, staged: Any, done: Done, tag: int) -> None:
        if self._queue is None:
            self._open_queue()
        tensor = self._tensor
        self._queue.start_async({p: tensor(a, shared_memory=True) for p, a in zip(self._ports, staged)}, (done, tag))

    def _open_queue(self) -> None:
        ov = _ov()
        self._queue = ov.AsyncInferQueue(self._compiled, max(1, int(self._resolved["async_requests"])))
        self._queue.set_callback(_queue_done)

    def close(self) -> None:
        if self._queue is not None:
            self._queue.wait_all()
        self._queue = None
        self._req = None
        self._chunk_reqs = []
        self._compiled = None

    def info(self) -> BackendInfo:
        ov = _ov()
        if self._compiled is None:
            raise BackendError("openvino: info() before load()")
        devs = self._resolved.get("execution_devices") or [self.opts.device]
        names = []
        for d in devs:
            try:
                names.append(f"{d}: {self._core.get_property(d, 'FULL_DEVICE_NAME')}")
            except Exception:  # noqa: BLE001
                names.append(d)
        return BackendInfo(
            name=self.name,
            version=_version(ov),
            device="; ".join(names),
            precision=self._precision,
            options=self._resolved,
            adapter=f"{type(self).__module__}:{type(self).__qualname__}",
        )


def _version(ov) -> str:
    """The release (2026.4.1), not the build string (2026.4.1-22982-e213a14...), which goes in options."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("openvino")
    except PackageNotFoundError:
        return ov.__version__.split("-")[0]


def _queue_done(request: Any, userdata: Any) -> None:
    done, tag = userdata
    done(tag, None)


def _physical_devices(device: str) -> list[str]:
    """The concrete devices a device string names (none for a bare AUTO: it picks among what exists)."""
    if ":" in device:
        return [d for d in device.split(":", 1)[1].split(",") if d]
    return [] if device == "AUTO" else [device]


def _effective(graph: str, compute: str) -> str:
    """What a graph of precision `graph` computes in when the plugin computes in `compute`.

    The narrower of the two decides: an fp32 graph under a bf16 hint runs in
    bf16; an fp16 graph under f32 is still limited by its fp16 weights and
    activations; an int8 graph is int8 when the rest runs in f32, and mixed
    when the rest runs in a 16-bit type.
    """
    if graph == compute or compute == "fp32":
        return graph
    if graph == "fp32":
        return compute
    return "mixed"


def _short(e: BaseException) -> str:
    """The informative lines of an OpenVINO exception (it prefixes each with the C++ source location)."""
    lines = [ln.strip() for ln in str(e).splitlines()]
    keep = [ln for ln in lines if ln and not ln.startswith(("Exception from src/", "Check '")) and ln != "Summary:"]
    return " ".join(keep)[:600] or type(e).__name__
