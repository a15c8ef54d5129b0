"""DLRM workload: the MLPerf architecture, checked against a numpy forward pass and closed forms."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from benchkit.errors import WorkloadError
from benchkit.workloads import catalog, flops
from benchkit.workloads.builders import dlrm

from conftest import build_hashes_in_fresh_processes

SMALL = {"max_ind_range": 1000}  # MLPs as MLPerf's; tables capped hard so the file is ~12 MB


def closed_form_params(p) -> int:
    rows = sum(min(r, p["max_ind_range"]) for r in p["table_rows"])
    sizes_b = [p["dense_features"], *p["bottom_mlp"]]
    n = len(p["table_rows"]) + 1
    sizes_t = [p["embedding_dim"] + n * (n - 1) // 2, *p["top_mlp"]]
    mlp = sum(i * o + o for s in (sizes_b, sizes_t) for i, o in zip(s[:-1], s[1:]))
    return rows * p["embedding_dim"] + mlp


def closed_form_macs(p) -> int:
    sizes_b = [p["dense_features"], *p["bottom_mlp"]]
    n = len(p["table_rows"]) + 1
    sizes_t = [p["embedding_dim"] + n * (n - 1) // 2, *p["top_mlp"]]
    mlp = sum(i * o for s in (sizes_b, sizes_t) for i, o in zip(s[:-1], s[1:]))
    return mlp + n * n * p["embedding_dim"]  # the whole Gram matrix is computed


def test_mlperf_configuration_figures():
    p = dlrm.DEFAULTS
    assert p["top_mlp"][0] == 1024 and closed_form_macs(p) == 2_458_496
    assert sum(p["table_rows"]) == 187_767_399  # MLPerf's tables, before capping
    assert closed_form_params(p) == 58_838_017


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(catalog.serialize(model), opts, providers=["CPUExecutionProvider"])


def feeds(rng, batch):
    return {
        "dense_features": rng.uniform(0, 5, (batch, 13)).astype(np.float32),
        "sparse_ids": rng.integers(0, 40_000_000, (batch, 26)),
    }


@pytest.fixture(scope="module")
def small():
    return catalog.build("dlrm", SMALL)


def reference_forward(model: onnx.ModelProto, params, x: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """DLRM's forward pass as dlrm_s_pytorch.py writes it, in float64 numpy, on the model's weights."""
    w = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in model.graph.initializer}

    def mlp(h, prefix, n_layers, sigmoid_last):
        for k in range(n_layers):
            h = h @ w[f"{prefix}.{k}.weight"].T + w[f"{prefix}.{k}.bias"]
            h = 1 / (1 + np.exp(-h)) if (sigmoid_last and k == n_layers - 1) else np.maximum(h, 0)
        return h

    rows = dlrm.table_sizes(params)
    starts = np.cumsum([0, *rows[:-1]])
    dense = mlp(x.astype(np.float64), "bottom_mlp", len(params["bottom_mlp"]), False)
    vectors = [dense] + [w["embeddings"][starts[t] + ids[:, t] % rows[t]] for t in range(len(rows))]
    t = np.stack(vectors, axis=1)  # [batch, 27, dim]
    z = t @ t.transpose(0, 2, 1)
    n = t.shape[1]
    pairs = np.stack([z[:, i, j] for i in range(n) for j in range(i)], axis=1)
    return mlp(np.concatenate([dense, pairs], axis=1), "top_mlp", len(params["top_mlp"]), True)


def test_small_dlrm_matches_numpy_reference(small):
    params = catalog.resolve_params("dlrm", SMALL)
    f = feeds(np.random.default_rng(0), 6)
    (got,) = session(small).run(None, f)
    want = reference_forward(small, params, f["dense_features"], f["sparse_ids"])
    assert got.shape == (6, 1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert np.isfinite(got).all() and (0 < got).all() and (got < 1).all()
    assert got.std() > 1e-4


def test_every_table_and_the_hash_matter(small):
    s = session(small)
    f = feeds(np.random.default_rng(1), 1)
    (base,) = s.run(None, f)
    for t in range(26):
        other = {k: v.copy() for k, v in f.items()}
        other["sparse_ids"][0, t] += 1  # the next row of table t (modulo its size)
        assert s.run(None, other)[0] != base, f"table {t} does not reach the output"
    rows = dlrm.table_sizes(catalog.resolve_params("dlrm", SMALL))
    wrapped = {k: v.copy() for k, v in f.items()}
    wrapped["sparse_ids"][0] += np.asarray(rows)  # ids are hashed modulo each table's rows
    np.testing.assert_array_equal(s.run(None, wrapped)[0], base)


def test_small_dlrm_params_and_macs(small):
    params = catalog.resolve_params("dlrm", SMALL)
    cost = flops.analyze(small, {"batch": 1})
    assert cost.unknown_ops == ()
    assert cost.params == closed_form_params(params)
    assert cost.macs == closed_form_macs(params)
    assert flops.analyze(small, {"batch": 4}).macs == 4 * cost.macs


@pytest.mark.slow  # two fresh interpreters build it
def test_small_dlrm_is_byte_identical_across_processes(small):
    here = hashlib.sha256(catalog.serialize(small)).hexdigest()
    assert build_hashes_in_fresh_processes([("dlrm", SMALL, "fp32")]) == [[here], [here]]


@pytest.mark.parametrize("variant", ["fp16", "int8"])
def test_small_dlrm_variants_track_fp32(small, variant):
    f = feeds(np.random.default_rng(2), 16)
    (ref,) = session(small).run(None, f)
    (got,) = session(catalog.build("dlrm", SMALL, variant)).run(None, f)
    assert np.isfinite(got).all()
    assert np.abs(got - ref).max() < (1e-3 if variant == "fp16" else 0.05)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"bottom_mlp": [512, 64]}, "end in embedding_dim"),
        ({"top_mlp": [256, 2]}, "end in 1"),
        ({"max_ind_range": 0}, "positive integer"),
        ({"table_rows": []}, "non-empty list"),
        ({"tables": 3}, "unknown param"),
    ],
)
def test_bad_params(params, match):
    with pytest.raises(WorkloadError, match=match):
        dlrm.dlrm(params, np.random.default_rng(0))


@pytest.mark.slow  # the manifest's full configuration
def test_full_configuration():
    """The manifest's configuration: published figures within 1% / 2%, exact to the closed forms; runs."""
    entry = catalog.get("dlrm")
    params = catalog.resolve_params("dlrm")
    model = catalog.build("dlrm")
    cost = flops.analyze(model, dict(entry.dims))
    assert cost.params == closed_form_params(params) == entry.published["params"]
    assert cost.macs == closed_form_macs(params) == entry.published["macs"]
    f = feeds(np.random.default_rng(3), 1)
    (p,) = session(model).run(None, f)
    assert np.isfinite(p).all() and 0 < p.item() < 1
