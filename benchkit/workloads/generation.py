"""Generation workloads: a decoder-only transformer as a prefill graph and a key/value-cache decode graph.

A generation workload is a pair of graphs built from one seed, so both hold the
same weights (:func:`benchkit.workloads.builders.transformer.gpt2_prefill` and
``gpt2_decode`` draw them in the same order):

* ``prefill``: ``input_ids [batch, seq]`` -> ``logits [batch, seq, vocab]`` and
  ``present.<i>.key|value [batch, heads, seq, head_dim]``;
* ``decode``: ``input_ids [batch, 1]`` and ``past.<i>.key|value`` -> ``logits``
  and ``present.<i>.key|value`` one position longer.

A backend runs them in a token loop (greedy: each next token is the arg-max of
the last position's logits). ``gpt2-generate`` has GPT-2 small's architecture
(124 M parameters, the catalog's ``gpt2-prefill`` and ``gpt2-decode`` graphs);
``gpt2-tiny-generate`` (2 layers, hidden 64, vocabulary 512) is the same network
scaled down, for tests and smoke runs. Both are the catalog builders' graphs with
the decoder blocks' weight matrices scaled by :data:`LAYER_WEIGHT_GAIN`.

Builds are deterministic and cached like the catalog's (:func:`materialize`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from onnx import numpy_helper

from benchkit._fsutil import write_atomic
from benchkit._version import __version__
from benchkit.errors import WorkloadError


LAYER_WEIGHT_GAIN = 10.0
"""Factor on the decoder blocks' weight matrices (drawn N(0, 0.02) as GPT-2's were): with untrained weights at
GPT-2's scale the tied LM head makes greedy decoding repeat one token, which a backend could emit without computing
anything; at N(0, 0.2) each token depends on the context, so token agreement shows that the model ran."""


@dataclass(frozen=True)
class GenerationModel:
    """One generation workload of the catalog: the builder's parameters and the weights' seed."""

    name: str
    description: str
    params: Mapping[str, Any]
    weights_seed: int

    @property
    def vocab(self) -> int:
        return int(self.params["vocab"])

    @property
    def n_ctx(self) -> int:
        return int(self.params["n_ctx"])

    @property
    def layers(self) -> int:
        return int(self.params["layers"])


def _models() -> dict[str, GenerationModel]:
    from benchkit.workloads.builders.transformer import GPT2_SMALL

    small = dict(GPT2_SMALL)
    tiny = {**small, "layers": 2, "hidden": 64, "heads": 2, "vocab": 512, "n_ctx": 256}
    return {
        "gpt2-generate": GenerationModel(
            "gpt2-generate",
            "GPT-2 small (124 M: 12 layers, hidden 768, 12 heads, vocabulary 50257, context 1024) as prefill and "
            "KV-cache decode graphs (the catalog's gpt2-prefill and gpt2-decode graphs, block weights x10).",
            MappingProxyType(small), 124),
        "gpt2-tiny-generate": GenerationModel(
            "gpt2-tiny-generate",
            "GPT-2's architecture scaled down (2 layers, hidden 64, 2 heads, vocabulary 512, context 256), as "
            "prefill and KV-cache decode graphs: for tests and smoke runs.",
            MappingProxyType(tiny), 124),
    }


MODELS: Mapping[str, GenerationModel] = MappingProxyType(_models())
"""Every generation workload, by name."""


def is_generation_model(name: str | None) -> bool:
    return name is not None and name in MODELS


def get(name: str) -> GenerationModel:
    try:
        return MODELS[name]
    except KeyError:
        raise WorkloadError(f"unknown generation workload {name!r}; expected one of {', '.join(sorted(MODELS))}") \
            from None


@dataclass(frozen=True)
class GenerationGraphs:
    """A generation workload built and on disk: what a generative backend loads."""

    name: str
    prefill: Path
    decode: Path
    prefill_sha256: str
    decode_sha256: str
    vocab: int
    n_ctx: int
    layers: int
    heads: int
    head_dim: int
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def cache_names(self) -> list[tuple[str, str]]:
        """(past input, present output) name pairs of the key/value cache, layer by layer."""
        out = []
        for i in range(self.layers):
            for kind in ("key", "value"):
                out.append((f"past.{i}.{kind}", f"present.{i}.{kind}"))
        return out


def _key(model: GenerationModel, part: str) -> str:
    import onnx

    h = hashlib.sha256()
    for piece in (model.name, part, json.dumps(dict(model.params), sort_keys=True), str(model.weights_seed),
                  str(LAYER_WEIGHT_GAIN), __version__, f"numpy={np.__version__};onnx={onnx.__version__}"):
        h.update(len(piece).to_bytes(8, "little"))
        h.update(piece.encode())
    return h.hexdigest()


def build(name: str, part: str) -> bytes:
    """The serialized ``part`` ("prefill" or "decode") graph of workload ``name``: deterministic bytes."""
    from benchkit.workloads.builders import transformer

    model = get(name)
    if part not in ("prefill", "decode"):
        raise WorkloadError(f"a generation workload has a prefill and a decode graph, not {part!r}")
    fn = transformer.gpt2_prefill if part == "prefill" else transformer.gpt2_decode
    proto = fn(dict(model.params), np.random.default_rng(model.weights_seed))
    for init in proto.graph.initializer:
        if init.name.startswith("h.") and init.name.endswith(".weight") and len(init.dims) == 2:
            scaled = numpy_helper.to_array(init) * np.float32(LAYER_WEIGHT_GAIN)
            init.CopyFrom(numpy_helper.from_array(scaled.astype(np.float32), init.name))
    return proto.SerializeToString(deterministic=True)


def materialize(name: str, cache_dir: Path | None = None) -> GenerationGraphs:
    """Both graphs of ``name`` on disk (built on a cache miss, written atomically), with their SHA-256."""
    from benchkit.workloads.catalog import cache_dir as default_cache

    model = get(name)
    folder = Path(cache_dir) if cache_dir is not None else default_cache()
    paths = {}
    for part in ("prefill", "decode"):
        path = folder / f"{name}-{part}-{_key(model, part)[:16]}.onnx"
        if not path.is_file():
            try:
                write_atomic(path, build(name, part))
            except OSError as e:
                raise WorkloadError(f"cannot write generation workload {name!r} to cache {folder}: {e}") from e
        paths[part] = path
    p = model.params
    return GenerationGraphs(
        name=name, prefill=paths["prefill"], decode=paths["decode"],
        prefill_sha256=hashlib.sha256(paths["prefill"].read_bytes()).hexdigest(),
        decode_sha256=hashlib.sha256(paths["decode"].read_bytes()).hexdigest(),
        vocab=int(p["vocab"]), n_ctx=int(p["n_ctx"]), layers=int(p["layers"]), heads=int(p["heads"]),
        head_dim=int(p["hidden"]) // int(p["heads"]), params=dict(p))


def prompts(vocab: int, input_lengths: np.ndarray, seed: int) -> list[np.ndarray]:
    """One seeded prompt per request: int64 token ids in [0, vocab), of the drawn lengths."""
    rng = np.random.default_rng([seed, 0x70])
    return [rng.integers(0, vocab, size=int(n), dtype=np.int64) for n in input_lengths]


def reference_greedy(graphs: GenerationGraphs, prompt: np.ndarray, n_tokens: int) -> list[int]:
    """Greedy tokens of ``prompt`` computed by the reference runtime (ONNX Runtime, CPU, fp32), one request at a
    time with plain ``session.run``: the path the token-agreement check compares a backend's tokens with."""
    sessions = _reference_sessions(graphs)
    pre, dec = sessions
    outs = pre.run(None, {"input_ids": prompt[None, :]})
    names = [o.name for o in pre.get_outputs()]
    tokens = [int(np.argmax(outs[0][0, -1]))]
    cache = dict(zip(names[1:], outs[1:]))
    dec_out = [o.name for o in dec.get_outputs()]
    while len(tokens) < n_tokens:
        feed = {"input_ids": np.array([[tokens[-1]]], dtype=np.int64)}
        for past, present in graphs.cache_names:
            feed[past] = cache[present]
        outs = dec.run(None, feed)
        tokens.append(int(np.argmax(outs[0][0, -1])))
        cache = dict(zip(dec_out[1:], outs[1:]))
    return tokens


_SESSIONS: dict[tuple[str, str], Any] = {}


def _reference_sessions(graphs: GenerationGraphs) -> tuple[Any, Any]:
    key = (graphs.prefill_sha256, graphs.decode_sha256)
    if key not in _SESSIONS:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        _SESSIONS.clear()  # one workload's sessions at a time: a cell needs one
        _SESSIONS[key] = tuple(
            ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
            for p in (graphs.prefill, graphs.decode))
    return _SESSIONS[key]


__all__ = ["GenerationModel", "GenerationGraphs", "MODELS", "get", "build", "materialize", "prompts",
           "reference_greedy", "is_generation_model"]
