"""DLRM recommender (Naumov et al. 2019) in the configuration of MLPerf's DLRM, tables scaled down.

The architecture is MLPerf Inference's DLRM on Criteo Terabyte (the
``--max-ind-range=40000000`` configuration of facebookresearch/dlrm): 13 dense
features through a bottom MLP 13-512-256-128, 26 categorical features looked
up in 26 embedding tables of dimension 128, the pairwise dot-product
interaction of the 27 vectors (351 pairs, no self-interaction) concatenated
with the bottom MLP's output, and a top MLP 479-1024-1024-512-256-1 with a
sigmoid. Its 26 tables hold 187.8 M rows (24 G parameters, 96 GB), so each
table here keeps at most ``max_ind_range`` rows: DLRM's own hashing trick
(``--max-ind-range``), category id modulo the table size. The MLPs and the
interaction, so the MACs, are those of the full model.

The 26 tables are stored as one ``[sum(rows), 128]`` initializer and looked
up with one Gather at per-table row offsets, the layout of batched embedding
kernels (FBGEMM's table-batched embedding); parameters are the same as 26
separate tables. The modulo is part of the graph, so the input is a category
id of any non-negative value and any table size stays in range.

Weights follow the reference implementation (``dlrm_s_pytorch.py``):
embeddings ``U(-sqrt(1/rows), sqrt(1/rows))`` per table, MLP weights
``N(0, sqrt(2/(fan_in+fan_out)))``, biases ``N(0, sqrt(1/fan_out))``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from benchkit.errors import WorkloadError
from benchkit.workloads.builders._graph import _SHAPES_ONLY, GraphBuilder

CRITEO_TERABYTE_TABLE_ROWS: tuple[int, ...] = (
    39884406, 39043, 17289, 7420, 20263, 3, 7120, 1543, 63, 38532951, 2953546, 403346, 10,
    2208, 11938, 155, 4, 976, 14, 39979771, 25641295, 39664984, 585935, 12972, 108, 36,
)  # fmt: skip
"""Rows of the 26 tables of MLPerf's DLRM (Criteo Terabyte, category ids below 40 M)."""

DEFAULTS: dict[str, Any] = {
    "dense_features": 13,
    "embedding_dim": 128,
    "bottom_mlp": [512, 256, 128],
    "top_mlp": [1024, 1024, 512, 256, 1],
    "table_rows": list(CRITEO_TERABYTE_TABLE_ROWS),
    "max_ind_range": 40000,
}
"""Default configuration; a manifest or spec overrides any key."""


def table_sizes(params: Mapping[str, Any]) -> list[int]:
    """Rows of each embedding table as built: ``min(table_rows[i], max_ind_range)``."""
    p = _config(params)
    return [min(int(r), p["max_ind_range"]) for r in p["table_rows"]]


def dlrm(params: Mapping[str, Any], rng: np.random.Generator) -> onnx.ModelProto:
    """DLRM with dot-product interaction.

    Inputs ``dense_features`` float32 ``[batch, dense_features]`` and
    ``sparse_ids`` int64 ``[batch, n_tables]`` (one category id per table,
    any non-negative value; the graph reduces it modulo the table's rows).
    Output ``probability`` ``[batch, 1]``: the sigmoid of the top MLP.
    """
    p = _config(params)
    dim, bottom, top = p["embedding_dim"], p["bottom_mlp"], p["top_mlp"]
    rows = table_sizes(p)
    n_tables = len(rows)
    if bottom[-1] != dim:
        raise WorkloadError(f"dlrm: bottom_mlp must end in embedding_dim ({dim}) for the interaction, got {bottom}")
    if top[-1] != 1:
        raise WorkloadError(f"dlrm: top_mlp must end in 1 (the click probability), got {top}")

    g = GraphBuilder("dlrm", rng)
    dense = g.input("dense_features", ["batch", p["dense_features"]])
    ids = g.input("sparse_ids", ["batch", n_tables], "int64")

    x = _mlp(g, dense, [p["dense_features"], *bottom], "bottom_mlp", sigmoid_last=False)

    offsets = np.concatenate([[0], np.cumsum(rows[:-1])]).astype(np.int64)
    table = _tables(g, rng, rows, offsets, dim)
    local = g.node("Mod", [ids, _constant(g, "embeddings.rows", rows)], name="embeddings.hash")
    flat = g.node("Add", [local, _constant(g, "embeddings.offsets", offsets)], name="embeddings.row")
    emb = g.node("Gather", [table, flat], name="embeddings.lookup")  # [batch, tables, dim]

    # Dot products of every pair of the 27 vectors (bottom MLP output + 26 embeddings),
    # strictly lower triangle in DLRM's order (i, j < i), after the bottom MLP output.
    dense_vec = g.node("Unsqueeze", [x, _constant(g, "axis1", [1])], name="interaction.dense")
    feats = g.node("Concat", [dense_vec, emb], name="interaction.vectors", axis=1)  # [batch, 27, dim]
    feats_t = g.node("Transpose", [feats], name="interaction.t", perm=[0, 2, 1])
    gram = g.node("MatMul", [feats, feats_t], name="interaction.dot")  # [batch, 27, 27]
    n = n_tables + 1
    gram = g.node("Reshape", [gram, _constant(g, "interaction.flat_shape", [0, n * n])], name="interaction.flat")
    pairs = [i * n + j for i in range(n) for j in range(i)]
    pairs_t = g.node("Gather", [gram, _constant(g, "interaction.pair_index", pairs)], name="interaction.pairs", axis=1)
    z = g.node("Concat", [x, pairs_t], name="interaction", axis=1)  # [batch, dim + n(n-1)/2]

    y = _mlp(g, z, [dim + n * (n - 1) // 2, *top], "top_mlp", sigmoid_last=True, out="probability")
    g.output(y, ["batch", 1])
    return g.model(
        f"DLRM: bottom MLP {'-'.join(map(str, [p['dense_features'], *bottom]))}, {n_tables} embedding tables "
        f"of dimension {dim} (rows capped at {p['max_ind_range']}, {sum(rows)} in all), dot interaction, "
        f"top MLP {'-'.join(map(str, [dim + n * (n - 1) // 2, *top]))}, sigmoid."
    )



def _tables(g: GraphBuilder, rng: np.random.Generator, rows: list[int], offsets: np.ndarray, dim: int) -> str:
    """The 26 embedding tables as one initializer, uniform(+-1/sqrt(rows)) per table (a placeholder under
    ``shapes_only``: the tables are most of the model's bytes)."""
    if _SHAPES_ONLY.get():
        return g._placeholder("embeddings", (sum(rows), dim))
    weights = np.empty((sum(rows), dim), dtype=np.float32)
    for start, n in zip(offsets.tolist(), rows):
        block = weights[start : start + n]
        rng.random(out=block, dtype=np.float32)  # drawn in place: the tables can be hundreds of MB
        block *= np.float32(2.0 * np.sqrt(1.0 / n))
        block -= np.float32(np.sqrt(1.0 / n))
    table = g.const("embeddings", weights)
    del weights, block
    return table

def _mlp(g: GraphBuilder, x: str, sizes: Sequence[int], name: str, *, sigmoid_last: bool, out: str | None = None) -> str:
    """Gemm layers ``sizes[0] -> ... -> sizes[-1]``, ReLU between, and ReLU or sigmoid after the last."""
    rng = g.rng
    for k, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layer = f"{name}.{k}"
        w = g.const(f"{layer}.weight", rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), (fan_out, fan_in)))
        b = g.const(f"{layer}.bias", rng.normal(0.0, np.sqrt(1.0 / fan_out), fan_out))
        x = g.node("Gemm", [x, w, b], name=layer, transB=1)
        last = k == len(sizes) - 2
        act = "Sigmoid" if last and sigmoid_last else "Relu"
        x = g.node(act, [x], name=f"{layer}.{act.lower()}", out=out if last else None)
    return x


def _constant(g: GraphBuilder, name: str, values: Sequence[int] | np.ndarray) -> str:
    """An int64 ``Constant`` node: indices and shapes are not parameters, so they stay out of the initializers."""
    tensor = numpy_helper.from_array(np.asarray(values, dtype=np.int64), "value")
    return g.node("Constant", [], name=name, value=tensor)


def _config(params: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise WorkloadError(f"dlrm: unknown param(s) {', '.join(unknown)}; expected some of {', '.join(sorted(DEFAULTS))}")
    p = {**DEFAULTS, **params}
    for key in ("dense_features", "embedding_dim", "max_ind_range"):
        v = p[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise WorkloadError(f"dlrm: param {key} must be a positive integer, got {v!r}")
    for key in ("bottom_mlp", "top_mlp", "table_rows"):
        v = p[key]
        if (
            not isinstance(v, (list, tuple))
            or not v
            or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in v)
        ):
            raise WorkloadError(f"dlrm: param {key} must be a non-empty list of positive integers, got {v!r}")
        p[key] = [int(n) for n in v]
    return p
