"""ONNX Runtime adapter: the CPU reference backend, and any execution provider the installed build has.

Options (``backends[].options`` in a spec)::

    providers: [CPUExecutionProvider]            # or [[CUDAExecutionProvider, {device_id: 0}], CPUExecutionProvider]
    intra_op_num_threads: 0                      # 0 = runtime default
    inter_op_num_threads: 0
    graph_optimization_level: all                # disable_all | basic | extended | all
    execution_mode: sequential                   # sequential | parallel
    io_binding: null                             # null = on for device providers, off for CPU
    session_config: {}                           # SessionOptions.add_session_config_entry pairs

Execution providers beyond the CPU are used when the installed onnxruntime build
has them (``benchkit backends`` lists the providers present; naming one the
build lacks is an error that lists those it has). Common ones::

    providers: [[CUDAExecutionProvider, {device_id: 0, use_tf32: 0}]]      # pip install onnxruntime-gpu
    providers: [[TensorrtExecutionProvider, {trt_fp16_enable: true}], CUDAExecutionProvider]
    providers: [[OpenVINOExecutionProvider, {device_type: CPU, precision: FP32}]]  # pip install onnxruntime-openvino
    providers: [DmlExecutionProvider]                                       # Windows: pip install onnxruntime-directml
    providers: [[CoreMLExecutionProvider, {ModelFormat: MLProgram}]]        # macOS builds

The effective precision is read from what the session resolved: TensorRT with
fp16 enabled and CUDA with TF32 math (``use_tf32`` resolved to 1) report
``mixed`` for an fp32 graph, the OpenVINO EP its ``precision``; pin them off
(``use_tf32: 0``) for a result that claims fp32.

With a device provider (CUDA, TensorRT, ...) inputs are staged on the device
through an IOBinding outside the timed region, and ``synchronize`` waits for
the outputs, so the timed call measures device work, not host copies.

Asynchronous submission (Server scenario) uses ``InferenceSession.run_async``,
which runs each call on a thread of the session's intra-op pool and reports
completion through a callback. It is offered when inputs are plain numpy feeds
(no IOBinding) and the session has such a pool (``intra_op_num_threads`` not
1); otherwise the Server scenario falls back to its worker-thread pool.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from benchkit.errors import BackendError, BackendUnavailable
from benchkit.backends.base import Backend, BackendInfo, Done, WorkloadInfo, parse_options

_LEVELS = ("disable_all", "basic", "extended", "all")
_DEVICE_PROVIDERS = {
    "CUDAExecutionProvider": "cuda",
    "TensorrtExecutionProvider": "cuda",
    "ROCMExecutionProvider": "cuda",  # ORT addresses ROCm devices as 'cuda' in OrtValue APIs
}


def _ort():
    try:
        import onnxruntime
    except ImportError as e:  # core dependency, but the message should still say what to do
        raise BackendUnavailable("onnxruntime is not installed: pip install onnxruntime (or onnxruntime-gpu)") from e
    return onnxruntime


class OrtOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    providers: list[str | tuple[str, dict[str, Any]]] = Field(
        default_factory=lambda: ["CPUExecutionProvider"], description="Execution providers in priority order."
    )
    intra_op_num_threads: int = Field(0, ge=0)
    inter_op_num_threads: int = Field(0, ge=0)
    graph_optimization_level: Literal["disable_all", "basic", "extended", "all"] = "all"
    execution_mode: Literal["sequential", "parallel"] = "sequential"
    io_binding: bool | None = None
    session_config: dict[str, str] = Field(default_factory=dict)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        self.opts = parse_options(OrtOptions, options)
        ort = _ort()
        available = ort.get_available_providers()
        self._providers: list[Any] = []
        for p in self.opts.providers:
            pname = p if isinstance(p, str) else p[0]
            if pname not in available:
                raise BackendUnavailable(
                    f"providers: {pname!r} is not in this onnxruntime build "
                    f"(available: {', '.join(available)}); for CUDA: pip install onnxruntime-gpu"
                )
            self._providers.append(p if isinstance(p, str) else (p[0], dict(p[1])))
        self._sess = None
        self._device_kind: str | None = None
        self._workload: WorkloadInfo | None = None
        self._binding = False
        self._last_binding = None
        self._async_ok: bool | None = None

    @classmethod
    def describe_installation(cls) -> dict[str, Any]:
        ort = _ort()
        return {"version": ort.__version__, "providers": ort.get_available_providers(), "device": ort.get_device()}

    def load(self, model_path: Path, workload: WorkloadInfo) -> None:
        ort = _ort()
        so = ort.SessionOptions()
        so.log_severity_level = 3  # warnings from the runtime would interleave with progress output
        so.intra_op_num_threads = self.opts.intra_op_num_threads
        so.inter_op_num_threads = self.opts.inter_op_num_threads
        so.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, "ORT_" + {"disable_all": "DISABLE_ALL", "basic": "ENABLE_BASIC",
                                                  "extended": "ENABLE_EXTENDED", "all": "ENABLE_ALL"}[
                self.opts.graph_optimization_level]
        )
        so.execution_mode = (
            ort.ExecutionMode.ORT_PARALLEL if self.opts.execution_mode == "parallel" else ort.ExecutionMode.ORT_SEQUENTIAL
        )
        for k, v in self.opts.session_config.items():
            so.add_session_config_entry(k, v)
        try:
            self._sess = ort.InferenceSession(str(model_path), sess_options=so, providers=self._providers)
        except Exception as e:  # ORT raises its own Fail/InvalidGraph/NotImplemented types
            raise BackendError(f"onnxruntime could not load {model_path.name}: {_short(e)}") from None
        self._workload = workload
        self._out_names = [o.name for o in self._sess.get_outputs()]
        first = self._sess.get_providers()[0]
        self._device_kind = _DEVICE_PROVIDERS.get(first)
        self._device_id = int(self._sess.get_provider_options().get(first, {}).get("device_id", 0) or 0)
        use_binding = self.opts.io_binding if self.opts.io_binding is not None else self._device_kind is not None
        self._binding = use_binding
        self._last_binding = None
        self._run = self._sess.run  # bound once: attribute lookups are measurable at ~5 µs per call
        self._run_async = self._sess.run_async
        self._async_ok = None

    def stage(self, feeds: Mapping[str, np.ndarray]) -> Any:
        if not self._binding:
            return dict(feeds)
        ort = _ort()
        binding = self._sess.io_binding()
        dev = self._device_kind or "cpu"
        for name, arr in feeds.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(arr), dev, self._device_id))
        for name in self._out_names:
            binding.bind_output(name, dev, self._device_id)
        return binding

    def run(self, staged: Any) -> Any:
        if self._binding:
            self._sess.run_with_iobinding(staged)
            self._last_binding = staged
            return staged
        return self._run(self._out_names, staged)

    def synchronize(self) -> None:
        # sess.run is synchronous; with IOBinding on a device the outputs may still be in flight.
        if self._last_binding is not None:
            self._last_binding.synchronize_outputs()

    def supports_async(self) -> bool:
        if self._async_ok is None:
            self._async_ok = not self._binding and self._probe_async()
        return self._async_ok

    def _probe_async(self) -> bool:
        """One untimed run_async on zero inputs: the session may lack the intra-op pool it needs."""
        wl = self._workload
        if self._sess is None or wl is None:
            return False
        feeds = {name: np.zeros(shape, dtype=wl.input_dtypes[name]) for name, shape in wl.inputs.items()}
        finished = threading.Event()
        errors: list[str] = []

        def callback(results: Any, user_data: Any, err: str) -> None:
            errors.append(err)
            finished.set()

        try:
            self._run_async(self._out_names, feeds, callback, None)
        except Exception:  # noqa: BLE001 - "intra op thread pool must have at least one thread for RunAsync"
            return False
        return finished.wait(60.0) and not errors[0]

    def submit(self, staged: Any, done: Done, tag: int) -> None:
        self._run_async(self._out_names, staged, _async_done, (done, tag))

    def fetch(self, result: Any) -> list[np.ndarray]:
        if self._binding:
            result.synchronize_outputs()
            return [np.asarray(a) for a in result.copy_outputs_to_cpu()]
        return [np.asarray(a) for a in result]

    def close(self) -> None:
        self._sess = None

    def info(self) -> BackendInfo:
        ort = _ort()
        if self._sess is None:
            raise BackendError("onnxruntime: info() before load()")
        providers = self._sess.get_providers()
        opts = self._sess.get_provider_options()
        graph_precision = str((self._workload.extra if self._workload else {}).get("graph_precision", "fp32"))
        precision = graph_precision
        trt = opts.get("TensorrtExecutionProvider", {})
        if providers[0] == "TensorrtExecutionProvider" and trt.get("trt_fp16_enable") in ("1", "True", True):
            precision = "mixed" if graph_precision == "fp32" else graph_precision
        # Reduced-precision math modes of other providers, read from the options the session resolved:
        # CUDA's TF32 tensor cores (use_tf32) and the OpenVINO EP's device precision.
        if providers[0] == "CUDAExecutionProvider" and opts.get(providers[0], {}).get("use_tf32") in ("1", "True"):
            precision = "mixed" if graph_precision == "fp32" else graph_precision
        ov_prec = str(opts.get("OpenVINOExecutionProvider", {}).get("precision", "")).upper()
        if providers[0] == "OpenVINOExecutionProvider" and ov_prec in ("FP16", "BF16") and graph_precision == "fp32":
            precision = ov_prec.lower()
        if self._device_kind is None:
            from benchkit.machine.host import cpu_model

            device = f"cpu: {cpu_model()}"
        else:
            device = f"{providers[0].removesuffix('ExecutionProvider').lower()}:{self._device_id}"
            name = _cuda_device_name(self._device_id)
            if name:
                device += f" {name}"
        resolved = self.opts.model_dump()
        resolved["providers"] = [[p, {k: v for k, v in sorted(opts.get(p, {}).items())}] for p in providers]
        resolved["io_binding"] = self._binding
        return BackendInfo(
            name=self.name,
            version=ort.__version__,
            device=device,
            precision=precision,
            options=resolved,
            adapter=f"{type(self).__module__}:{type(self).__qualname__}",
        )


def _async_done(results: Any, user_data: tuple[Done, int], err: str) -> None:
    """run_async's callback, on an intra-op pool thread: hand completion (or the error) to the scenario."""
    done, tag = user_data
    done(tag, BackendError(f"onnxruntime run_async failed: {err}") if err else None)


def _cuda_device_name(index: int) -> str | None:
    """Best effort GPU name through NVML (nvidia-ml-py), if present; never fatal."""
    try:
        import pynvml  # type: ignore[import-not-found]

        pynvml.nvmlInit()
        name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(index))
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:  # noqa: BLE001 - optional information only
        return None


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[-1] if text else type(e).__name__
