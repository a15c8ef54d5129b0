"""ONNX Runtime as a generative backend: prefill and decode sessions, the key/value cache kept on the device.

Options are the ``onnxruntime`` adapter's (providers, threads, optimisation
level, ...; see :mod:`benchkit.backends.onnxruntime`), applied to both sessions.

Each step runs through an IOBinding: the cache a step produces
(``present.<i>.key|value``) stays where the runtime allocated it, as an
``OrtValue`` on the execution provider's device, and is bound as the next step's
``past.<i>.key|value`` without a copy to the host. Only the logits come back to
the host, where the greedy arg-max picks each next token (the token must be on
the host anyway: it is what the request returns, and what the token loop times).
A batch's requests share one call per step: their prompts have one length, so
their caches stay aligned position for position.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from benchkit.backends.base import BackendInfo, WorkloadInfo
from benchkit.backends.generative import StepGenerator
from benchkit.backends.onnxruntime import OnnxRuntimeBackend, _ort
from benchkit.errors import BackendError


class _Batch:
    """One batch in flight: its binding, its cache (OrtValues on the device) and its token buffer."""

    __slots__ = ("binding", "cache", "size", "ids")

    def __init__(self, binding: Any, cache: list[Any], size: int) -> None:
        self.binding, self.cache, self.size = binding, cache, size
        self.ids = np.zeros((size, 1), dtype=np.int64)


class OrtGenerator(StepGenerator):
    """Greedy generation with ONNX Runtime: one session per graph, the cache bound between steps."""

    name = "onnxruntime"

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        # The single-graph adapter validates the options and resolves the providers; it owns each session.
        self._pre = OnnxRuntimeBackend(options)
        self._dec = OnnxRuntimeBackend(options)
        self._graphs = None

    def load(self, graphs: Any) -> None:
        for backend, path, name in ((self._pre, graphs.prefill, "prefill"), (self._dec, graphs.decode, "decode")):
            info = WorkloadInfo(name=f"{graphs.name}-{name}", inputs={}, input_dtypes={}, output_names=(),
                                batch_size=1, extra={"graph_precision": "fp32", "scenario": "generative"})
            backend.load(path, info)
        self._graphs = graphs
        self._pre_sess, self._dec_sess = self._pre._sess, self._dec._sess
        self._device = self._pre._device_kind or "cpu"
        self._device_id = self._pre._device_id
        self._cache_out = [present for _, present in graphs.cache_names]
        self._cache_in = [past for past, _ in graphs.cache_names]
        self._from_numpy = _ort().OrtValue.ortvalue_from_numpy

    def prefill(self, prompts: Sequence[np.ndarray]) -> tuple[np.ndarray, _Batch]:
        ids = np.stack(prompts) if len(prompts) > 1 else np.asarray(prompts[0])[None, :]
        binding = self._pre_sess.io_binding()
        binding.bind_ortvalue_input("input_ids", self._from_numpy(np.ascontiguousarray(ids, np.int64),
                                                                  self._device, self._device_id))
        binding.bind_output("logits", "cpu")
        for name in self._cache_out:
            binding.bind_output(name, self._device, self._device_id)
        self._pre_sess.run_with_iobinding(binding)
        outs = binding.get_outputs()
        tokens = outs[0].numpy()[:, -1, :].argmax(axis=-1)
        batch = _Batch(self._dec_sess.io_binding(), outs[1:], len(prompts))
        return tokens, batch

    def decode(self, state: _Batch, tokens: np.ndarray) -> np.ndarray:
        b = state.binding
        state.ids[:, 0] = tokens
        b.bind_ortvalue_input("input_ids", self._from_numpy(state.ids, self._device, self._device_id))
        for name, value in zip(self._cache_in, state.cache):
            b.bind_ortvalue_input(name, value)
        b.bind_output("logits", "cpu")
        for name in self._cache_out:
            b.bind_output(name, self._device, self._device_id)
        self._dec_sess.run_with_iobinding(b)
        outs = b.get_outputs()
        state.cache = outs[1:]
        return outs[0].numpy()[:, -1, :].argmax(axis=-1)

    def release(self, state: _Batch) -> None:
        state.cache = []
        state.binding.clear_binding_inputs()
        state.binding.clear_binding_outputs()

    def info(self) -> BackendInfo:
        if self._graphs is None:
            raise BackendError("onnxruntime: info() before load()")
        base = self._dec.info()
        return base.model_copy(update={"adapter": f"{type(self).__module__}:{type(self).__qualname__}"})

    def close(self) -> None:
        self._pre.close()
        self._dec.close()


__all__ = ["OrtGenerator"]
