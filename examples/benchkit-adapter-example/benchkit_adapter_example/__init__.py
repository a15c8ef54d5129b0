"""``numpy-example``: a complete benchkit backend adapter, small enough to read in one sitting.

The "runtime" is a numpy interpreter for a dozen ONNX operators. A vendor
replaces it with its own compiler and device calls; the shape of the class
stays the same:

* ``__init__``  validate options; raise BackendError naming a bad one (no model yet)
* ``load``      compile the ONNX file; reject what the device cannot run, naming the operator
* ``stage``     put one call's inputs where the device reads them (untimed)
* ``run``       start one call (timed)            } benchkit times exactly these two
* ``synchronize`` wait until it has finished (timed) }
* ``fetch``     copy outputs back as numpy (untimed, for the accuracy checks)
* ``info``      say what actually ran: versions, device, the *effective* precision
* ``close``     release everything
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from benchkit.backends import Backend, BackendInfo, WorkloadInfo
from benchkit.errors import BackendError

__version__ = "0.1.0"


class Options(BaseModel):
    """Adapter options (``backends[].options`` in a spec). Frozen and strict: a typo is an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    copy_inputs: bool = Field(
        True, description="Copy inputs into private buffers in stage(), as a device upload would."
    )


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _layernorm(x, scale, bias=None, axis=-1, epsilon=1e-5):
    axes = tuple(range(axis % x.ndim, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + epsilon) * scale
    return y + bias if bias is not None else y


def _gemm(a, b, c=None, alpha=1.0, beta=1.0, transA=0, transB=0):
    y = alpha * ((a.T if transA else a) @ (b.T if transB else b))
    return y + beta * c if c is not None else y


def _reshape(x, shape, allowzero=0):
    shape = [x.shape[i] if (d == 0 and not allowzero) else int(d) for i, d in enumerate(shape)]
    return x.reshape(shape)


# ONNX operator -> numpy implementation taking (inputs..., **attributes).
OPS = {
    "Add": lambda a, b: a + b,
    "Sub": lambda a, b: a - b,
    "Mul": lambda a, b: a * b,
    "Div": lambda a, b: a / b,
    "MatMul": lambda a, b: a @ b,
    "Gemm": _gemm,
    "Relu": lambda x: np.maximum(x, 0),
    "Softmax": lambda x, axis=-1: _softmax(x, axis),
    "LayerNormalization": _layernorm,
    "Reshape": _reshape,
    "Transpose": lambda x, perm=None: np.transpose(x, perm),
    "Identity": lambda x: x,
}


class NumpyBackend(Backend):
    name = "numpy-example"  # must equal the entry-point name: records carry it

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        try:
            self.opts = Options.model_validate(dict(options))
        except ValidationError as e:
            first = e.errors(include_url=False)[0]
            raise BackendError(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
        self._nodes: list[tuple[Any, list[str], list[str], dict[str, Any]]] = []
        self._workload: WorkloadInfo | None = None

    @classmethod
    def describe_installation(cls) -> dict[str, Any]:
        return {"version": __version__, "device": f"cpu (numpy {np.__version__})"}

    def load(self, model_path: Path, workload: WorkloadInfo) -> None:
        import onnx
        from onnx import helper, numpy_helper

        model = onnx.load(str(model_path))
        unsupported = sorted({f"{n.domain or 'ai.onnx'}::{n.op_type}" for n in model.graph.node
                              if n.domain not in ("", "ai.onnx") or n.op_type not in OPS})
        if unsupported:
            # Reject at load, naming the operators: benchkit turns this into a clear error record.
            raise BackendError(f"numpy-example does not implement {', '.join(unsupported)} "
                               f"(in {model_path.name}); supported: {', '.join(OPS)}")
        self._consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        self._nodes = [(OPS[n.op_type], list(n.input), list(n.output),
                        {a.name: helper.get_attribute_value(a) for a in n.attribute}) for n in model.graph.node]
        self._outputs = [o.name for o in model.graph.output]
        self._workload = workload

    def stage(self, feeds: Mapping[str, np.ndarray]) -> Any:
        return {k: (np.array(v, copy=True) if self.opts.copy_inputs else v) for k, v in feeds.items()}

    def run(self, staged: Any) -> Any:
        env = dict(self._consts)
        env.update(staged)
        for fn, ins, outs, attrs in self._nodes:
            result = fn(*(env[i] if i else None for i in ins), **attrs)
            env[outs[0]] = result
        return [env[o] for o in self._outputs]

    # synchronize() is inherited: numpy returns when the work is done.

    def fetch(self, result: Any) -> list[np.ndarray]:
        # Keep the graph's output dtype: numpy promotes float32 with Python floats to float32 already.
        return [np.asarray(a, dtype=np.float32) if np.asarray(a).dtype == np.float64 else np.asarray(a)
                for a in result]

    def close(self) -> None:
        self._nodes = []
        self._consts = {}

    def info(self) -> BackendInfo:
        if self._workload is None:
            raise BackendError("numpy-example: info() before load()")
        return BackendInfo(
            name=self.name,
            version=__version__,
            device=f"cpu: numpy {np.__version__}",
            # numpy computes in the graph's own dtypes: the effective precision is the graph's.
            precision=str(self._workload.extra.get("graph_precision", "fp32")),
            options=self.opts.model_dump(),
            adapter=f"{__name__}:NumpyBackend",
            adapter_version=__version__,
        )
