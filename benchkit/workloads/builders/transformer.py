"""Transformer workloads: BERT encoders and a GPT-2 decoder (prefill and decode).

Both follow the published architectures exactly in structure and parameter
count; weights are random (the workloads measure speed, not quality) but
initialised the way the originals were before training: every weight matrix
and embedding ``N(0, 0.02)`` (BERT's and GPT-2's ``initializer_range``),
biases 0, LayerNorm gamma 1 / beta 0. Post-LN (BERT) and the final LayerNorm
(GPT-2) keep activations finite and non-degenerate at any depth.

Graph conventions shared by all three builders:

* dense layers are ``MatMul(x, W) + b`` with ``W`` stored ``[in, out]``;
* attention is written out (MatMul, Softmax, MatMul) in the pattern that
  ONNX exporters emit, so runtimes may fuse it but need not;
* masks are additive biases of ``-10000`` (not ``-inf``): a row whose keys are
  all masked still softmaxes to finite values, whatever mask the harness feeds;
* constants that are not parameters (shapes, axes, ``sqrt(2)``, ``-10000``)
  are ``Constant`` nodes, so the initializers are exactly the parameters and
  their element count is the published parameter count.

MACs (multiply-accumulates) per forward pass, for hidden size ``h``, ``l``
layers, feed-forward size ``4h``, sequence ``s`` and vocabulary ``V``, follow
Narayanan et al. 2021 (Megatron-LM, SC'21, section 5.1), whose training step
costs ``96 B s l h^2 (1 + s/6h + V/16lh)`` FLOPs: four passes' worth of the
layers (forward, backward twice, recomputed forward) and three of the logit
layer. One forward pass of one sequence is then::

    12 s l h^2 + 2 s^2 l h  (+ s h V with a language-model head)

BERT adds ``h^2`` for the pooler; a decode step with ``p`` cached positions
does ``12 l h^2 + 2 (p + 1) l h + h V``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from benchkit.errors import WorkloadError
from benchkit.workloads.builders._graph import GraphBuilder

INIT_STD = 0.02
"""Standard deviation of every weight matrix and embedding (BERT/GPT-2 ``initializer_range``)."""
MASK_BIAS = -10000.0
"""Additive attention bias of a masked key: large enough to zero its weight, finite in fp16."""

BERT_BASE: dict[str, Any] = {
    "layers": 12,
    "hidden": 768,
    "heads": 12,
    "intermediate": 3072,
    "vocab": 30522,
    "max_position": 512,
    "type_vocab": 2,
    "pooler": True,
    "layer_norm_eps": 1e-12,
}
"""Default BERT configuration (bert-base-uncased); a manifest or spec overrides any key."""

GPT2_SMALL: dict[str, Any] = {
    "layers": 12,
    "hidden": 768,
    "heads": 12,
    "vocab": 50257,
    "n_ctx": 1024,
    "layer_norm_eps": 1e-5,
}
"""Default GPT-2 configuration (the 124 M model); a manifest or spec overrides any key."""


def bert(params: Mapping[str, Any], rng: np.random.Generator) -> onnx.ModelProto:
    """BERT encoder (Devlin et al. 2019): embeddings, ``layers`` post-LN blocks, optional pooler.

    Inputs ``input_ids``, ``attention_mask`` (1 keeps a token, 0 masks it) and
    ``token_type_ids`` (segment A/B), all int64 ``[batch, seq]``. Outputs ``last_hidden_state`` ``[batch, seq, hidden]``
    and, with ``pooler`` (the default, as in the published parameter count),
    ``pooler_output`` ``[batch, hidden]`` (tanh dense layer on the first token).
    The feed-forward activation is GELU in its exact Erf form.
    """
    p = _config(params, BERT_BASE, "bert")
    h, heads, inter, eps = p["hidden"], p["heads"], p["intermediate"], p["layer_norm_eps"]
    _check_heads(h, heads, "bert")
    g = _Builder("bert", rng)
    ids = g.input("input_ids", ["batch", "seq"], "int64")
    mask = g.input("attention_mask", ["batch", "seq"], "int64")
    types = g.input("token_type_ids", ["batch", "seq"], "int64")

    word = _embedding(g, "embeddings.word", p["vocab"], h)
    pos = _embedding(g, "embeddings.position", p["max_position"], h)
    typ = _embedding(g, "embeddings.token_type", p["type_vocab"], h)
    x = g.node("Gather", [word, ids], name="embeddings.word_lookup")
    x = g.node("Add", [x, _first_positions(g, pos, ids)], name="embeddings.add_position")
    x = g.node("Add", [x, g.node("Gather", [typ, types], name="embeddings.type_lookup")], name="embeddings.sum")
    x = _layer_norm(g, x, h, "embeddings.layer_norm", eps)

    # [batch, seq] 0/1 -> additive bias [batch, 1, 1, seq], broadcast over heads and queries.
    keep = g.node("Cast", [mask], name="mask.cast", to=TensorProto.FLOAT)
    dropped = g.node("Sub", [g.f32(1.0), keep], name="mask.invert")
    bias = g.node("Mul", [dropped, g.f32(MASK_BIAS)], name="mask.bias")
    bias = g.node("Unsqueeze", [bias, g.i64([1, 2])], name="mask.bias_4d")

    for i in range(p["layers"]):
        pre = f"encoder.{i}"
        q = _dense(g, x, h, h, f"{pre}.attention.query")
        k = _dense(g, x, h, h, f"{pre}.attention.key")
        v = _dense(g, x, h, h, f"{pre}.attention.value")
        a = _attention(g, q, k, v, heads, h, bias, pre)
        a = _dense(g, a, h, h, f"{pre}.attention.output")
        x = _layer_norm(g, g.node("Add", [a, x], name=f"{pre}.attention.residual"), h, f"{pre}.attention.layer_norm", eps)
        f = _gelu_erf(g, _dense(g, x, h, inter, f"{pre}.intermediate"), f"{pre}.intermediate.gelu")
        f = _dense(g, f, inter, h, f"{pre}.output")
        last = "last_hidden_state" if i == p["layers"] - 1 else None
        f = g.node("Add", [f, x], name=f"{pre}.output.residual")
        x = _layer_norm(g, f, h, f"{pre}.output.layer_norm", eps, out=last)

    g.output(x, ["batch", "seq", h])
    if p["pooler"]:
        first = g.node("Gather", [x, g.i64(0)], name="pooler.first_token", axis=1)
        pooled = g.node("Tanh", [_dense(g, first, h, h, "pooler.dense")], name="pooler.tanh", out="pooler_output")
        g.output(pooled, ["batch", h])
    return g.model(
        f"BERT encoder: {p['layers']} layers, hidden {h}, {heads} heads, feed-forward {inter}, "
        f"vocabulary {p['vocab']}, {p['max_position']} positions, pooler {'on' if p['pooler'] else 'off'}."
    )


def gpt2_prefill(params: Mapping[str, Any], rng: np.random.Generator) -> onnx.ModelProto:
    """GPT-2 decoder over a whole prompt (Radford et al. 2019).

    Input ``input_ids`` int64 ``[batch, seq]`` (positions ``0..seq-1``).
    Outputs ``logits`` ``[batch, seq, vocab]`` from the LM head tied to the
    token embedding, and the attention cache ``present.<i>.key`` /
    ``present.<i>.value`` ``[batch, heads, seq, head_dim]`` for each layer,
    which :func:`gpt2_decode` (same ``params`` and seed: same weights) continues.
    """
    return _gpt2(params, rng, decode=False)


def gpt2_decode(params: Mapping[str, Any], rng: np.random.Generator) -> onnx.ModelProto:
    """One GPT-2 generation step with a key/value cache.

    Inputs ``input_ids`` int64 ``[batch, 1]`` (the new token, at position
    ``past``) and ``past.<i>.key`` / ``past.<i>.value``
    ``[batch, heads, past, head_dim]`` for each layer. Outputs ``logits``
    ``[batch, 1, vocab]`` and ``present.<i>.key`` / ``present.<i>.value``
    ``[batch, heads, past+1, head_dim]``. The new token attends to every
    cached position, so no mask is needed.
    """
    return _gpt2(params, rng, decode=True)


def _gpt2(params: Mapping[str, Any], rng: np.random.Generator, *, decode: bool) -> onnx.ModelProto:
    where = "gpt2_decode" if decode else "gpt2_prefill"
    p = _config(params, GPT2_SMALL, where)
    h, heads, eps, layers = p["hidden"], p["heads"], p["layer_norm_eps"], p["layers"]
    _check_heads(h, heads, where)
    hd = h // heads
    g = _Builder("gpt2", rng)
    seq = 1 if decode else "seq"
    ids = g.input("input_ids", ["batch", seq], "int64")
    past = []
    if decode:
        for i in range(layers):
            past.append(
                (
                    g.input(f"past.{i}.key", ["batch", heads, "past", hd]),
                    g.input(f"past.{i}.value", ["batch", heads, "past", hd]),
                )
            )
    cache_len = "past+1" if decode else "seq"
    present: list[str] = []

    # Weights are drawn in the same order for prefill and decode, so both
    # workloads built from one seed are the same network.
    wte = _embedding(g, "wte", p["vocab"], h)
    wpe = _embedding(g, "wpe", p["n_ctx"], h)
    x = g.node("Gather", [wte, ids], name="wte.lookup")
    if decode:
        # The new token's position is the cache length: Gather of a [1] index keeps shapes static.
        position = g.node("Shape", [past[0][0]], name="position.past_len", start=2, end=3)
        positions = g.node("Gather", [wpe, position], name="wpe.lookup")
        bias = None
    else:
        positions = _first_positions(g, wpe, ids)
        bias = _causal_bias(g, ids)
    x = g.node("Add", [x, positions], name="embeddings.sum")

    for i in range(layers):
        pre = f"h.{i}"
        a = _layer_norm(g, x, h, f"{pre}.ln_1", eps)
        qkv = _dense(g, a, h, 3 * h, f"{pre}.attn.c_attn")
        q, k, v = g.outputs_of(g.node("Split", [qkv, g.i64([h, h, h])], name=f"{pre}.attn.split", axis=-1, n_out=3))
        # The cache holds keys and values split into heads: [batch, heads, positions, head_dim].
        if decode:
            k = _split_heads(g, k, heads, hd, f"{pre}.attn.key")
            v = _split_heads(g, v, heads, hd, f"{pre}.attn.value")
            k = g.node("Concat", [past[i][0], k], name=f"{pre}.attn.cat_key", out=f"present.{i}.key", axis=2)
            v = g.node("Concat", [past[i][1], v], name=f"{pre}.attn.cat_value", out=f"present.{i}.value", axis=2)
        else:
            k = _split_heads(g, k, heads, hd, f"{pre}.attn.key", out=f"present.{i}.key")
            v = _split_heads(g, v, heads, hd, f"{pre}.attn.value", out=f"present.{i}.value")
        present += [k, v]
        a = _attention_heads(g, _split_heads(g, q, heads, hd, f"{pre}.attn.query"), k, v, h, hd, bias, pre)
        x = g.node("Add", [x, _dense(g, a, h, h, f"{pre}.attn.c_proj")], name=f"{pre}.attn.residual")
        m = _layer_norm(g, x, h, f"{pre}.ln_2", eps)
        m = _gelu_tanh(g, _dense(g, m, h, 4 * h, f"{pre}.mlp.c_fc"), f"{pre}.mlp.gelu")
        x = g.node("Add", [x, _dense(g, m, 4 * h, h, f"{pre}.mlp.c_proj")], name=f"{pre}.mlp.residual")

    x = _layer_norm(g, x, h, "ln_f", eps)
    # Tied LM head: logits = x @ wte^T. Gemm(transB) reads wte as stored, so
    # the tied matrix is one initializer and no transpose runs per call.
    flat = g.node("Reshape", [x, g.i64([-1, h])], name="lm_head.flatten")
    logits = g.node("Gemm", [flat, wte], name="lm_head", transB=1)
    lead = g.node("Shape", [ids], name="lm_head.lead_shape")
    out_shape = g.node("Concat", [lead, g.i64([p["vocab"]])], name="lm_head.out_shape", axis=0)
    logits = g.node("Reshape", [logits, out_shape], name="lm_head.unflatten", out="logits")
    g.output(logits, ["batch", seq, p["vocab"]])
    for name in present:
        g.output(name, ["batch", heads, cache_len, hd])
    step = "one decode step with a key/value cache" if decode else "prefill of a whole prompt"
    return g.model(
        f"GPT-2 decoder, {step}: {layers} layers, hidden {h}, {heads} heads, vocabulary {p['vocab']}, "
        f"context {p['n_ctx']}, LM head tied to the token embedding."
    )


# -- pieces ---------------------------------------------------------------------


def _config(params: Mapping[str, Any], defaults: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Merge ``params`` over ``defaults``, rejecting unknown keys and wrong types."""
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise WorkloadError(
            f"{where}: unknown param(s) {', '.join(unknown)}; expected some of {', '.join(sorted(defaults))}"
        )
    out = dict(defaults)
    for key, value in params.items():
        kind = type(defaults[key])
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise WorkloadError(f"{where}: param {key} must be {kind.__name__}, got {value!r}")
        if kind is int and value <= 0:
            raise WorkloadError(f"{where}: param {key} must be a positive integer, got {value}")
        out[key] = value
    return out


def _check_heads(hidden: int, heads: int, where: str) -> None:
    if hidden % heads:
        raise WorkloadError(f"{where}: hidden ({hidden}) must be divisible by heads ({heads})")


class _Builder(GraphBuilder):
    """:class:`GraphBuilder` whose non-parameter constants are ``Constant`` nodes.

    Shapes, axes, indices and float scalars (``sqrt(2)``, ``-10000``) are not
    weights; keeping them out of the initializers makes the initializer
    element count, and :func:`benchkit.workloads.flops.analyze`'s ``params``,
    exactly the published parameter count. One node per distinct value.
    """

    def __init__(self, name: str, rng: np.random.Generator) -> None:
        super().__init__(name, rng)
        self._constants: dict[tuple[str, Any], str] = {}

    def i64(self, value: int | list[int]) -> str:
        """An int64 constant: a scalar for an int, a 1-D tensor for a list."""
        key = ("i64", value if isinstance(value, int) else tuple(value))
        text = str(value) if isinstance(value, int) else "[" + ",".join(map(str, value)) + "]"
        return self._constant(key, f"i64:{text}", np.asarray(value, dtype=np.int64))

    def f32(self, value: float) -> str:
        """A float32 scalar constant."""
        return self._constant(("f32", float(value)), f"f32:{float(value)!r}", np.asarray(value, dtype=np.float32))

    def _constant(self, key: tuple[str, Any], text: str, arr: np.ndarray) -> str:
        if key not in self._constants:
            tensor = numpy_helper.from_array(arr, "value")
            self._constants[key] = self.node("Constant", [], name=f"const.{text}", out=text, value=tensor)
        return self._constants[key]


def _embedding(g: _Builder, name: str, rows: int, dim: int) -> str:
    return g.small(name, (rows, dim), std=INIT_STD)


def _dense(g: _Builder, x: str, n_in: int, n_out: int, name: str) -> str:
    """``x @ W + b`` with ``W ~ N(0, 0.02)`` stored ``[n_in, n_out]`` and ``b = 0``."""
    w = g.small(f"{name}.weight", (n_in, n_out), std=INIT_STD)
    b = g.const(f"{name}.bias", np.zeros(n_out, dtype=np.float32))
    y = g.node("MatMul", [x, w], name=f"{name}.matmul")
    return g.node("Add", [y, b], name=name)


def _layer_norm(g: _Builder, x: str, dim: int, name: str, eps: float, out: str | None = None) -> str:
    gamma = g.const(f"{name}.weight", np.ones(dim, dtype=np.float32))
    beta = g.const(f"{name}.bias", np.zeros(dim, dtype=np.float32))
    return g.node("LayerNormalization", [x, gamma, beta], name=name, out=out, axis=-1, epsilon=eps)


def _first_positions(g: _Builder, table: str, ids: str) -> str:
    """Rows ``0..seq-1`` of a position table, as ``[batch, seq, dim]``.

    The position ids are a running count over ``ids`` rather than a Slice of
    ``0..seq`` by a computed bound: ONNX shape inference follows elementwise
    ops and CumSum but not a Slice whose bound is computed, and the FLOP
    accounting needs every shape static.
    """
    ones = g.node("Add", [g.node("Mul", [ids, g.i64(0)], name=f"{table}.zeros"), g.i64(1)], name=f"{table}.ones")
    count = g.node("CumSum", [ones, g.i64(1)], name=f"{table}.count")
    positions = g.node("Sub", [count, g.i64(1)], name=f"{table}.ids")
    return g.node("Gather", [table, positions], name=f"{table}.lookup")


def _causal_bias(g: _Builder, ids: str) -> str:
    """``[seq, seq]`` additive bias: 0 where key <= query, ``MASK_BIAS`` above the diagonal."""
    seq = g.node("Shape", [ids], name="causal.seq_len", start=1, end=2)
    square = g.node("Concat", [seq, seq], name="causal.shape", axis=0)
    one = helper.make_tensor("value", TensorProto.FLOAT, [1], [1.0])
    ones = g.node("ConstantOfShape", [square], name="causal.ones", value=one)
    lower = g.node("Trilu", [ones], name="causal.lower", upper=0)
    dropped = g.node("Sub", [g.f32(1.0), lower], name="causal.upper")
    return g.node("Mul", [dropped, g.f32(MASK_BIAS)], name="causal.bias")


def _split_heads(g: _Builder, x: str, heads: int, head_dim: int, name: str, out: str | None = None) -> str:
    """``[batch, seq, hidden]`` -> ``[batch, heads, seq, head_dim]``."""
    x = g.node("Reshape", [x, g.i64([0, 0, heads, head_dim])], name=f"{name}.reshape")
    return g.node("Transpose", [x], name=f"{name}.heads", out=out, perm=[0, 2, 1, 3])


def _attention(g: _Builder, q: str, k: str, v: str, heads: int, hidden: int, bias: str, pre: str) -> str:
    hd = hidden // heads
    q = _split_heads(g, q, heads, hd, f"{pre}.attention.query")
    k = _split_heads(g, k, heads, hd, f"{pre}.attention.key")
    v = _split_heads(g, v, heads, hd, f"{pre}.attention.value")
    return _attention_heads(g, q, k, v, hidden, hd, bias, f"{pre}.attention")


def _attention_heads(
    g: _Builder, q: str, k: str, v: str, hidden: int, head_dim: int, bias: str | None, pre: str
) -> str:
    """Scaled dot-product attention on ``[batch, heads, seq, head_dim]`` tensors -> ``[batch, seq, hidden]``."""
    kt = g.node("Transpose", [k], name=f"{pre}.key_t", perm=[0, 1, 3, 2])
    s = g.node("MatMul", [q, kt], name=f"{pre}.scores")
    s = g.node("Mul", [s, g.f32(1.0 / math.sqrt(head_dim))], name=f"{pre}.scaled")
    if bias is not None:
        s = g.node("Add", [s, bias], name=f"{pre}.masked")
    w = g.node("Softmax", [s], name=f"{pre}.softmax", axis=-1)
    c = g.node("MatMul", [w, v], name=f"{pre}.context")
    c = g.node("Transpose", [c], name=f"{pre}.context_t", perm=[0, 2, 1, 3])
    return g.node("Reshape", [c, g.i64([0, 0, hidden])], name=f"{pre}.merge_heads")


def _gelu_erf(g: _Builder, x: str, name: str) -> str:
    """``0.5 x (1 + erf(x / sqrt 2))``: BERT's exact GELU (opset 17 has no Gelu op)."""
    e = g.node("Erf", [g.node("Mul", [x, g.f32(1.0 / math.sqrt(2.0))], name=f"{name}.scale")], name=f"{name}.erf")
    e = g.node("Add", [e, g.f32(1.0)], name=f"{name}.shift")
    return g.node("Mul", [g.node("Mul", [x, e], name=f"{name}.gate"), g.f32(0.5)], name=name)


def _gelu_tanh(g: _Builder, x: str, name: str) -> str:
    """``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``: GPT-2's ``gelu_new``."""
    cube = g.node("Mul", [g.node("Mul", [x, x], name=f"{name}.square"), x], name=f"{name}.cube")
    inner = g.node("Add", [x, g.node("Mul", [cube, g.f32(0.044715)], name=f"{name}.cubic")], name=f"{name}.inner")
    t = g.node("Tanh", [g.node("Mul", [inner, g.f32(math.sqrt(2.0 / math.pi))], name=f"{name}.scale")], name=f"{name}.tanh")
    t = g.node("Add", [t, g.f32(1.0)], name=f"{name}.shift")
    return g.node("Mul", [g.node("Mul", [x, t], name=f"{name}.gate"), g.f32(0.5)], name=name)
