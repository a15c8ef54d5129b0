"""PyTorch adapter (entry point ``torch``): the ONNX model converted to a ``torch.fx`` module by onnx2torch.

Install a torch build for your device first (the CPU and CUDA builds are
different wheels and several GB apart, so benchkit never picks one for you),
then onnx2torch without its dependencies: ``pip install --no-deps 'onnx2torch>=1.5'`` (its unpinned
torch/torchvision requirements would otherwise let pip replace your torch with the newest CUDA build).

Options (``backends[].options`` in a spec)::

    device: cpu               # cpu | cuda | cuda:N
    dtype: auto               # auto: from the spec's claimed precision (fp16 -> float16, bf16 -> bfloat16,
                              #   else float32); or float32 | float16 | bfloat16
    compile: false            # true or a torch.compile mode: default | reduce-overhead | max-autotune
    compile_backend: inductor # torch.compile backend
    allow_tf32: false         # CUDA fp32 matmul/conv through TF32 (reported as precision "mixed")
    num_threads: null         # torch.set_num_threads on CPU

Timing: ``run`` launches the module under ``torch.inference_mode()``;
``synchronize`` calls ``torch.cuda.synchronize`` on a CUDA device, so the
timed region ends when the kernels have finished, not when they were queued.
Inputs are copied to the device in ``stage`` and outputs back in ``fetch``,
both untimed. With ``compile`` the module is compiled and run once inside
``load``, so compilation is reported as load time rather than as a slow first
query.

Precision is reported from what ran: the module's parameter dtype, "mixed"
when TF32 is allowed on CUDA, and the graph's own precision where it is
narrower (an fp16 variant). onnx2torch runs an int8 QDQ graph as float
fake-quantisation, so such a graph reports the float dtype, not int8.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from benchkit.errors import BackendError, BackendUnavailable
from benchkit.backends.base import Backend, BackendInfo, WorkloadInfo, parse_options

_EXTRA = "pip install --no-deps 'onnx2torch>=1.5'"
_TORCH_HINT = ("torch is not installed: install the build for your device first "
               "(CPU: pip install torch --index-url https://download.pytorch.org/whl/cpu; CUDA: pip install torch), "
               f"then {_EXTRA}")
_DTYPE_FOR_CLAIM = {"fp16": "float16", "bf16": "bfloat16"}
_PRECISION_OF_DTYPE = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


def _torch():
    try:
        import torch
    except ImportError as e:
        raise BackendUnavailable(_TORCH_HINT) from e
    return torch


def _onnx2torch():
    """Import onnx2torch, tolerating a torchvision that does not match torch.

    onnx2torch imports torchvision at start-up for two converters only
    (NonMaxSuppression and RoiAlign). A torchvision wheel built for another
    torch (PyPI's CUDA torchvision next to a CPU torch, the usual case) fails
    to import with "operator torchvision::nms does not exist" and would take
    every other converter down with it. In that case torchvision is stood in
    for during the import by a module whose ops raise BackendError, and
    removed again, so nothing else in the process sees the stand-in.
    """
    _torch()
    if "onnx2torch" in sys.modules:
        return sys.modules["onnx2torch"]
    try:
        import onnx2torch
        return onnx2torch
    except ImportError as e:
        if getattr(e, "name", "") != "torchvision" and "torchvision" not in str(e):
            raise BackendUnavailable(f"onnx2torch is not installed: {_EXTRA}") from e
        cause = f"{type(e).__name__}: {e}"
    except RuntimeError as e:  # torchvision built for another torch
        cause = f"{type(e).__name__}: {e}"
    for key in [k for k in sys.modules if k == "onnx2torch" or k.startswith("onnx2torch.")]:
        del sys.modules[key]

    def unavailable(*_a: Any, **_k: Any) -> Any:
        raise BackendError(f"this operator needs torchvision, which does not import here ({cause}); "
                           "install the torchvision build matching your torch")

    stand_in = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    ops.nms = ops.roi_align = ops.box_convert = unavailable  # type: ignore[attr-defined]
    stand_in.ops = ops  # type: ignore[attr-defined]
    saved = {k: sys.modules.pop(k) for k in ("torchvision", "torchvision.ops") if k in sys.modules}
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = stand_in, ops
    try:
        import onnx2torch
    except ImportError as e:
        raise BackendUnavailable(f"onnx2torch is not installed: {_EXTRA}") from e
    finally:
        del sys.modules["torchvision"], sys.modules["torchvision.ops"]
        sys.modules.update(saved)
    onnx2torch._benchkit_torchvision = cause  # type: ignore[attr-defined]  # reported in info().options
    return onnx2torch


class TorchOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?)$", description="cpu, cuda or cuda:N.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field("auto", description="Parameter/input dtype.")
    compile: bool | Literal["default", "reduce-overhead", "max-autotune"] = Field(
        False, description="torch.compile the converted module (true = mode default)."
    )
    compile_backend: str = Field("inductor", description="torch.compile backend.")
    allow_tf32: bool = Field(False, description="Allow TF32 for fp32 matmul/conv on CUDA.")
    num_threads: int | None = Field(None, ge=1, description="torch.set_num_threads on CPU.")

    @field_validator("compile_backend")
    @classmethod
    def _backend(cls, v: str) -> str:
        if not v:
            raise ValueError("must name a torch.compile backend, e.g. inductor")
        return v


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        self.opts = parse_options(TorchOptions, options)
        torch = _torch()
        _onnx2torch()
        if self.opts.device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise BackendUnavailable(f"device: {self.opts.device!r} but this torch {torch.__version__} "
                                         "has no usable CUDA device (a CPU build, or no GPU visible)")
            index = int(self.opts.device.split(":")[1]) if ":" in self.opts.device else 0
            if index >= torch.cuda.device_count():
                raise BackendUnavailable(f"device: {self.opts.device!r} but only {torch.cuda.device_count()} "
                                         "CUDA device(s) are visible")
        self._module = None
        self._workload: WorkloadInfo | None = None
        self._dtype_name = "float32"
        self._precision = "fp32"

    @classmethod
    def describe_installation(cls) -> dict[str, Any]:
        torch = _torch()
        _onnx2torch()
        devices = ["cpu"]
        if torch.cuda.is_available():
            devices += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
        return {"version": torch.__version__, "devices": devices}

    def load(self, model_path: Path, workload: WorkloadInfo) -> None:
        torch = _torch()
        o2t = _onnx2torch()
        import onnx

        o = self.opts
        self._workload = workload
        self._device = torch.device(o.device)
        self._cuda = self._device.type == "cuda"
        claimed = str(workload.extra.get("claimed_precision", "fp32"))
        self._dtype_name = o.dtype if o.dtype != "auto" else _DTYPE_FOR_CLAIM.get(claimed, "float32")
        dtype = getattr(torch, self._dtype_name)
        if o.num_threads is not None and not self._cuda:
            torch.set_num_threads(o.num_threads)
        if self._cuda:
            # Process-wide switches: set on every load so a previous adapter in this process cannot leak TF32 in.
            torch.backends.cuda.matmul.allow_tf32 = o.allow_tf32
            torch.backends.cudnn.allow_tf32 = o.allow_tf32
            torch.cuda.reset_peak_memory_stats(self._device)  # the record's peak device memory is this model's
        torch.set_float32_matmul_precision("high" if o.allow_tf32 else "highest")
        try:
            model = onnx.load(str(model_path))
            _explicit_defaults(model.graph)
            module = o2t.convert(model)
        except BackendError:
            raise
        except Exception as e:  # NotImplementedError naming the operator, and conversion bugs
            raise BackendError(f"onnx2torch could not convert {model_path.name}: {_short(e)}") from None
        initializers = {t.name for t in model.graph.initializer}
        self._input_names = [i.name for i in model.graph.input if i.name not in initializers]
        self._float_inputs = {n for n, dt in workload.input_dtypes.items() if np.issubdtype(np.dtype(dt), np.floating)}
        module = module.eval().to(self._device)
        if dtype != torch.float32:
            module = module.to(dtype)
        if o.compile:
            mode = None if o.compile is True else o.compile
            try:
                module = torch.compile(module, mode=mode, backend=o.compile_backend)
            except Exception as e:  # noqa: BLE001 - bad backend names, missing compilers
                raise BackendError(f"compile: torch.compile failed: {_short(e)}") from None
        self._module = module
        self._torch_dtype = dtype
        graph = str(workload.extra.get("graph_precision", "fp32"))
        compute = _PRECISION_OF_DTYPE[self._dtype_name]
        if self._cuda and o.allow_tf32 and compute == "fp32":
            compute = "mixed"
        self._precision = compute if graph in ("fp32", "int8") or graph == compute else (
            graph if compute == "fp32" else "mixed")
        if o.compile:
            # Compile now (it happens on the first call): load time, not a slow first query.
            feeds = {n: np.zeros(workload.inputs[n], dtype=workload.input_dtypes[n]) for n in self._input_names}
            try:
                self.run(self.stage(feeds))
                self.synchronize()
            except BackendError:
                raise
            except Exception as e:  # noqa: BLE001
                raise BackendError(f"compile: the compiled module failed on its first call: {_short(e)}") from None

    def stage(self, feeds: Mapping[str, np.ndarray]) -> Any:
        torch = _torch()
        out = []
        for n in self._input_names:
            t = torch.from_numpy(np.ascontiguousarray(feeds[n])).to(self._device)
            if n in self._float_inputs and self._torch_dtype != torch.float32:
                t = t.to(self._torch_dtype)
            out.append(t)
        if self._cuda:
            torch.cuda.synchronize(self._device)  # staging must not spill into the timed region
        return tuple(out)

    def run(self, staged: Any) -> Any:
        torch = _torch()
        with torch.inference_mode():
            try:
                return self._module(*staged)
            except BackendError:
                raise
            except Exception as e:
                raise BackendError(f"torch failed while running: {_short(e)}") from None

    def synchronize(self) -> None:
        # run() only queues CUDA kernels; the call is finished when the device says so.
        if self._cuda:
            _torch().cuda.synchronize(self._device)

    def fetch(self, result: Any) -> list[np.ndarray]:
        torch = _torch()
        outs = result if isinstance(result, (tuple, list)) else [result]
        arrays = []
        for t in outs:
            t = t.detach()
            if t.is_floating_point() and t.dtype != torch.float32:
                t = t.float()  # the graph's outputs are float32; numpy has no bfloat16
            arrays.append(t.cpu().numpy())
        return arrays

    def peak_device_memory_bytes(self) -> int | None:
        # What the caching allocator handed out at most since load (not what it reserved from the driver).
        return int(_torch().cuda.max_memory_allocated(self._device)) if getattr(self, "_cuda", False) else None

    def close(self) -> None:
        self._module = None
        if getattr(self, "_cuda", False):
            _torch().cuda.empty_cache()

    def info(self) -> BackendInfo:
        torch = _torch()
        if self._module is None:
            raise BackendError("torch: info() before load()")
        if self._cuda:
            device = f"{self._device}: {torch.cuda.get_device_name(self._device)}"
        else:
            from benchkit.machine.host import cpu_model

            device = f"cpu: {cpu_model()}"
        opts = self.opts.model_dump()
        opts["dtype"] = self._dtype_name
        opts["num_threads"] = torch.get_num_threads() if not self._cuda else None
        opts["float32_matmul_precision"] = torch.get_float32_matmul_precision()
        tv = getattr(sys.modules.get("onnx2torch"), "_benchkit_torchvision", None)
        if tv:
            opts["torchvision"] = f"unavailable, NonMaxSuppression/RoiAlign unsupported ({tv[:120]})"
        return BackendInfo(
            name=self.name,
            version=torch.__version__,
            device=device,
            precision=self._precision,
            options=opts,
            adapter=f"{type(self).__module__}:{type(self).__qualname__}",
        )


# Attributes whose ONNX default onnx2torch reads wrongly when the attribute is absent: 1.5.x converts a CumSum
# without `reverse` as a reverse cumulative sum (its converter's default is 1, ONNX's is 0), so a BERT's position
# ids counted with CumSum came out backwards and its outputs were wrong (cosine 0.75 against ONNX Runtime).
_ONNX_DEFAULTS = {"CumSum": {"reverse": 0, "exclusive": 0}}


def _explicit_defaults(graph: Any) -> None:
    """Write ONNX's defaults into the nodes of `graph` (and its subgraphs) that onnx2torch would misread."""
    from onnx import AttributeProto, helper

    for node in graph.node:
        for name, value in _ONNX_DEFAULTS.get(node.op_type, {}).items():
            if all(a.name != name for a in node.attribute):
                node.attribute.append(helper.make_attribute(name, value))
        for a in node.attribute:
            if a.type == AttributeProto.GRAPH:
                _explicit_defaults(a.g)
            for g in a.graphs:
                _explicit_defaults(g)


def _short(e: BaseException) -> str:
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return f"{type(e).__name__}: {' '.join(lines[:2])}"[:600]
