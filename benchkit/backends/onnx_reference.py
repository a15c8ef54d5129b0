"""The ``onnx-reference`` backend: ``onnx.reference.ReferenceEvaluator``, the ONNX specification in numpy.

Slow (pure Python over numpy, no fusion, one operator at a time) and meant for
golden outputs, not for speed figures: it shares no kernel with any vendor
runtime, so a spec can ask the accuracy gate to judge ONNX Runtime itself
against it (``run.accuracy_reference: onnx-reference``). It computes in the
graph's own precision (numpy's float32 for an fp32 graph). It takes no options.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from benchkit.errors import BackendError
from benchkit.backends.base import Backend, BackendInfo, WorkloadInfo


class OnnxReferenceBackend(Backend):
    name = "onnx-reference"

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        if options:
            raise BackendError(f"{', '.join(sorted(options))}: unknown option; onnx-reference takes no options")
        self._ev = None
        self._workload: WorkloadInfo | None = None

    @classmethod
    def describe_installation(cls) -> dict[str, Any]:
        import onnx

        return {"version": onnx.__version__, "device": "cpu (numpy, single thread of Python)"}

    def load(self, model_path: Path, workload: WorkloadInfo) -> None:
        import onnx
        from onnx.reference import ReferenceEvaluator

        try:
            model = onnx.load(str(model_path))
        except Exception as e:  # protobuf errors
            raise BackendError(f"onnx-reference could not read {model_path.name}: {e}") from None
        # The evaluator resolves operators lazily; check every node up front so an unsupported
        # operator is reported at load, by name, like a compiling runtime would.
        try:
            self._ev = ReferenceEvaluator(model)
        except Exception as e:  # NotImplementedError / RuntimeError naming the operator
            raise BackendError(f"onnx-reference could not load {model_path.name}: {_short(e)}") from None
        self._workload = workload
        self._out_names = list(self._ev.output_names)

    def run(self, staged: Any) -> Any:
        try:
            return self._ev.run(None, staged)
        except Exception as e:  # an operator the evaluator implements only partly
            raise BackendError(f"onnx-reference failed while running: {_short(e)}") from None

    def fetch(self, result: Any) -> list[np.ndarray]:
        return [np.asarray(a) for a in result]

    def close(self) -> None:
        self._ev = None

    def info(self) -> BackendInfo:
        import onnx

        if self._ev is None:
            raise BackendError("onnx-reference: info() before load()")
        prec = str((self._workload.extra if self._workload else {}).get("graph_precision", "fp32"))
        return BackendInfo(
            name=self.name,
            version=onnx.__version__,
            device="cpu: numpy (onnx.reference)",
            precision=prec,
            adapter=f"{type(self).__module__}:{type(self).__qualname__}",
        )


def _short(e: BaseException) -> str:
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    return f"{type(e).__name__}: {text}"[:500]
