"""digits-mlp, the accuracy workload: trained reproducibly, >= 95% top-1 in fp32, scored from any backend's outputs."""

from __future__ import annotations

import hashlib
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from benchkit.errors import WorkloadError
from benchkit.workloads import catalog, flops
from benchkit.workloads.builders import digits

from conftest import build_hashes_in_fresh_processes

pytest.importorskip("sklearn", reason="digits-mlp needs scikit-learn: the digits extra")


@pytest.fixture(scope="module")
def fp32() -> onnx.ModelProto:
    return catalog.build("digits-mlp")


def scores(model: onnx.ModelProto, batch: int = 64) -> float:
    """Top-1 of ``model`` on the held-out set, fed in whole batches as a harness would."""
    x, y = digits.evaluation_set({"batch": batch})
    s = ort.InferenceSession(catalog.serialize(model), providers=["CPUExecutionProvider"])
    outputs = [s.run(None, {"pixels": x[i : i + batch]})[0] for i in range(0, len(x), batch)]
    return digits.top1(np.concatenate(outputs), y)


def test_fp32_reaches_95_percent(fp32, record_property):
    acc = scores(fp32)
    record_property("top1_fp32", acc)
    print(f"digits-mlp fp32 top-1: {acc:.4f}")
    assert acc >= 0.95


@pytest.mark.parametrize("variant, floor", [("fp16", 0.95), ("int8", 0.90)])
def test_variants_keep_accuracy(fp32, variant, floor, record_property):
    # The catalog's own variant passes, applied to the fp32 model built once (training is the slow part).
    entry = catalog.get("digits-mlp")
    if variant == "fp16":
        model = catalog.to_fp16(fp32)
    else:
        model = catalog.quantize_int8(fp32, entry.inputs, entry.dims, seed=entry.weights_seed)
    acc = scores(model)
    record_property(f"top1_{variant}", acc)
    print(f"digits-mlp {variant} top-1: {acc:.4f} (fp32 {scores(fp32):.4f})")
    assert acc >= floor


@pytest.mark.slow  # two fresh interpreters train it
def test_build_is_byte_identical_across_processes(fp32):
    here = hashlib.sha256(catalog.serialize(fp32)).hexdigest()
    assert build_hashes_in_fresh_processes([("digits-mlp", None, "fp32")]) == [[here], [here]]


def test_matmul_sums_in_index_order():
    """Training's reproducibility rests on this: the product adds k = 0, 1, ... for every element."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((7, 33)), rng.standard_normal((33, 5))
    sequential = a[:, 0, None] * b[0]
    for k in range(1, a.shape[1]):
        sequential = sequential + a[:, k, None] * b[k]
    assert np.array_equal(digits._matmul(a, b), sequential)
    np.testing.assert_allclose(digits._matmul(a, b), a @ b, rtol=1e-12, atol=1e-12)


def test_graph_interface_and_size(fp32):
    assert [i.name for i in fp32.graph.input] == ["pixels"] and [o.name for o in fp32.graph.output] == ["logits"]
    cost = flops.analyze(fp32, {"batch": 1})
    assert cost.params == 64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10 == 17_226
    assert cost.macs == 64 * 128 + 128 * 64 + 64 * 10 == 17_024


def test_split_is_fixed_and_disjoint():
    x, _ = digits._dataset()
    train, test = digits._split(len(x))
    assert (len(train), len(test)) == (1258, 539)
    assert not set(train) & set(test) and len(set(train) | set(test)) == len(x)
    ex, ey = digits.evaluation_set()
    assert ex.dtype == np.float32 and ey.dtype == np.int64 and ex.shape == (539, 64)
    np.testing.assert_array_equal(ex, x[test].astype(np.float32))
    assert 0.0 <= ex.min() and ex.max() <= 1.0 and set(np.unique(ey)) == set(range(10))


def test_evaluation_set_pads_to_whole_batches_and_top1_ignores_padding():
    x, y = digits.evaluation_set({"batch": 8, "seq": 3})
    assert len(x) == len(y) == 544 and (y[539:] == -1).all() and (y[:539] >= 0).all()
    perfect = np.eye(10, dtype=np.float32)[np.where(y >= 0, y, 0)]
    perfect[539:] = np.eye(10)[(y[:5] + 1) % 10]  # padding rows "wrong": must not count
    assert digits.top1(perfect, y) == 1.0
    half = perfect.copy()
    half[:270] = np.roll(half[:270], 1, axis=1)
    assert digits.top1(half, y) == pytest.approx(269 / 539)
    assert digits.top1(perfect.reshape(68, 8, 10), y) == 1.0  # batched outputs are fine too
    assert len(digits.evaluation_set({"batch": 539})[0]) == 539


@pytest.mark.parametrize(
    "outputs, labels, match",
    [
        (np.zeros((5, 9)), np.zeros(5, np.int64), "scores"),
        (np.zeros((5, 10)), np.zeros(4, np.int64), "labels have shape"),
        (np.zeros((2, 10)), np.full(2, -1), "no labelled"),
    ],
)
def test_top1_rejects_mismatched_inputs(outputs, labels, match):
    with pytest.raises(WorkloadError, match=match):
        digits.top1(outputs, labels)


def test_top1_scores_nan_outputs_as_wrong():
    assert digits.top1(np.full((3, 10), np.nan), np.array([0, 1, 2])) == 0.0


def test_missing_scikit_learn_names_the_extra(monkeypatch):
    digits._dataset.cache_clear()
    monkeypatch.setitem(sys.modules, "sklearn", None)  # makes `import sklearn...` raise ImportError
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    try:
        with pytest.raises(WorkloadError, match=r"pip install -e '.*\[digits\]'"):
            digits.evaluation_set()
    finally:
        digits._dataset.cache_clear()


@pytest.mark.parametrize(
    "params, match",
    [
        ({"hidden": [0]}, "hidden"),
        ({"epochs": 0}, "epochs"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"momentum": 1.0}, "momentum"),
        ({"dropout": 0.1}, "unknown param"),
    ],
)
def test_bad_params(params, match):
    with pytest.raises(WorkloadError, match=match):
        digits.mlp(params, np.random.default_rng(0))
