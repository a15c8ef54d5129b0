"""The generative adapter protocol: how a backend produces tokens for the generative scenario.

A generation is a prefill (the whole prompt in one call, giving the first
token) and then one decode step per further token, each reading the key/value
cache the earlier steps left on the device. Two shapes of adapter exist,
because two kinds of system exist:

``StepGenerator`` (in-process runtimes: ONNX Runtime, a vendor's runtime)
    benchkit's token loop (:mod:`benchkit.measure.generate`) schedules the
    requests and calls::

        prefill(prompts) -> (tokens, state)  prompts of one length, as one batch; the first token of each
        decode(state, tokens) -> tokens      one step for every request of the batch: the next token of each
        release(state)                       the batch is done; free its cache

    Tokens are int64 numpy arrays on the host, so a returned call has finished
    (the token loop needs each token to feed the next step): no separate
    ``synchronize``. The cache stays inside ``state``, on the device.

``StreamGenerator`` (a server that schedules its own batches: vLLM, TGI, a vendor's)
    benchkit issues each request on its own thread and times every token as it
    arrives::

        stream(prompt, max_tokens) -> iterator of token ids

Both: ``Generator(options)`` validates options; ``load(graphs)`` loads (or,
for a remote server, checks) the model, untimed; ``info()`` describes what
ran; ``close()`` releases everything. Greedy decoding, and exactly
``max_tokens`` tokens per request: an end-of-sequence token is not a stop.

Adapters are found by backend name in the ``benchkit.generators``
entry-point group, then among benchkit's own (``onnxruntime``, ``openai``).
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any, ClassVar

import numpy as np

from benchkit.backends.base import BackendInfo
from benchkit.errors import BackendError, BackendUnavailable

GROUP = "benchkit.generators"
# benchkit's own generative adapters; the group above is searched first, so a vendor's adapter of the same name
# is found before these (and benchkit's are found even where the installed metadata predates them).
BUILTIN = {
    "onnxruntime": "benchkit.backends.ort_generate:OrtGenerator",
    "openai": "benchkit.backends.openai_stream:OpenAIStream",
}


class Generator(abc.ABC):
    """What every generative adapter has."""

    name: ClassVar[str] = ""
    #: False only for an adapter that emits tokens without computing them (a test's cheat): never VALID.
    computes_tokens: ClassVar[bool] = True

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = dict(options)

    @abc.abstractmethod
    def load(self, graphs: Any) -> None:
        """Load both graphs of a :class:`benchkit.workloads.generation.GenerationGraphs` (untimed)."""

    @abc.abstractmethod
    def info(self) -> BackendInfo:
        """What ran: runtime version, device, effective precision, resolved options."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release everything."""


class StepGenerator(Generator):
    """An adapter whose prefill and decode steps benchkit's token loop schedules."""

    #: Whether requests of equal length may share one call (a batch dimension); False: one request per call.
    batches: ClassVar[bool] = True

    @abc.abstractmethod
    def prefill(self, prompts: Sequence[np.ndarray]) -> tuple[np.ndarray, Any]:
        """Run the prompts (equal lengths) as one batch; their first tokens (int64 [batch]) and the batch's state."""

    @abc.abstractmethod
    def decode(self, state: Any, tokens: np.ndarray) -> np.ndarray:
        """One decode step of the batch in ``state`` fed ``tokens`` (int64 [batch]); the next tokens."""

    def release(self, state: Any) -> None:  # noqa: B027 - optional
        """The batch in ``state`` is finished."""


class StreamGenerator(Generator):
    """An adapter that streams one request's tokens; the system behind it schedules and batches."""

    #: Requests in flight at once (each on its own thread).
    concurrency: int = 16

    @abc.abstractmethod
    def stream(self, prompt: np.ndarray, max_tokens: int) -> Iterator[int]:
        """Yield the request's tokens as they arrive: exactly ``max_tokens`` of them."""


def load_generator_class(name: str) -> type[Generator]:
    """The generative adapter registered as ``name`` (entry points first, then benchkit's own)."""
    target = None
    for ep in entry_points(group=GROUP):
        if ep.name == name:
            target = ep.value
            break
    if target is None:
        target = BUILTIN.get(name)
    if target is None:
        known = sorted({*BUILTIN, *(ep.name for ep in entry_points(group=GROUP))})
        raise BackendError(f"backend {name!r} has no generative adapter; generative backends: {', '.join(known)}")
    module, _, attr = target.partition(":")
    try:
        import importlib

        cls = getattr(importlib.import_module(module), attr)
    except BackendUnavailable:
        raise
    except (ImportError, AttributeError) as e:
        raise BackendUnavailable(f"generative backend {name!r} ({target}) cannot be imported: {e}") from e
    if not (isinstance(cls, type) and issubclass(cls, (StepGenerator, StreamGenerator))):
        raise BackendError(f"generative backend {name!r} ({target}) is not a StepGenerator or StreamGenerator")
    return cls


__all__ = ["Generator", "StepGenerator", "StreamGenerator", "load_generator_class", "GROUP", "BUILTIN"]
