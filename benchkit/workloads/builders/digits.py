"""digits-mlp: a real-data accuracy workload, trained at build time on scikit-learn's 8x8 digits.

Every other standard workload has random weights and measures speed only;
this one is a trained classifier with a fixed held-out set, so a backend's
own outputs give a top-1 accuracy that shows whether it computes the model
faithfully (fp16 and int8 variants included).

The data is ``sklearn.datasets.load_digits`` (1797 images of 8x8 pixels with
values 0..16, bundled inside scikit-learn: nothing is downloaded), scaled to
[0, 1]. A permutation seeded with :data:`SPLIT_SEED` fixes the split: the
last :data:`TEST_FRACTION` of it (539 images) is held out, the rest trains.

Training is plain numpy, and bit-for-bit reproducible on any machine:

* float64 throughout, cast to float32 once at the end;
* mean-squared error on one-hot targets, so the loop needs only +, x and max,
  which IEEE 754 rounds the same everywhere (no exp/log, whose last bit
  differs between math libraries);
* no BLAS: every matrix product is an elementwise product summed over one
  axis in index order (:func:`_matmul`), because BLAS kernels pick their
  summation order by CPU and thread count;
* the weight initialisation and the minibatch order come from the catalog's
  generator (``weights_seed``), the split from :data:`SPLIT_SEED`.

scikit-learn is needed only here; it is imported lazily and its absence is a
:class:`~benchkit.errors.WorkloadError` naming the extra to install.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx

from benchkit._install import install_hint
from benchkit.errors import WorkloadError
from benchkit.workloads.builders._graph import GraphBuilder

SPLIT_SEED = 20190531
"""Seed of the permutation that fixes the train / held-out split (independent of ``weights_seed``)."""
TEST_FRACTION = 0.3
"""Share of the 1797 images held out for evaluation: the last 539 of the seeded permutation."""
PIXELS = 64
CLASSES = 10

DEFAULTS: dict[str, Any] = {
    "hidden": [128, 64],
    "epochs": 15,
    "batch_size": 32,
    "learning_rate": 0.02,
    "momentum": 0.9,
}
"""Default architecture and training schedule; a manifest or spec overrides any key."""


def mlp(params: Mapping[str, Any], rng: np.random.Generator) -> onnx.ModelProto:
    """Train the classifier on the training split and export it.

    Input ``pixels`` float32 ``[batch, 64]`` (pixel values / 16, in [0, 1],
    row-major 8x8). Output ``logits`` float32 ``[batch, 10]``; the predicted
    digit is the arg-max. Layers are ``Gemm`` with ReLU between them.
    """
    p = _config(params)
    x, y = _dataset()
    train_idx, _ = _split(len(x))
    weights, biases = _train(x[train_idx], y[train_idx], p, rng)

    g = GraphBuilder("digits_mlp", rng)
    h = g.input("pixels", ["batch", PIXELS])
    last = len(weights) - 1
    for k, (w, b) in enumerate(zip(weights, biases)):
        name = f"fc{k + 1}"
        wt = g.const(f"{name}.weight", w.T.astype(np.float32))  # Gemm(transB=1) reads [out, in]
        bt = g.const(f"{name}.bias", b.astype(np.float32))
        h = g.node("Gemm", [h, wt, bt], name=name, out="logits" if k == last else None, transB=1)
        if k != last:
            h = g.node("Relu", [h], name=f"{name}.relu")
    g.output(h, ["batch", CLASSES])
    sizes = "-".join(map(str, [PIXELS, *p["hidden"], CLASSES]))
    return g.model(
        f"MLP {sizes} trained on scikit-learn's 8x8 digits ({len(train_idx)} training images, "
        f"{p['epochs']} epochs of SGD with momentum, squared error on one-hot targets)."
    )


def evaluation_set(dims: Mapping[str, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The held-out images and their labels: ``(float32 [n, 64], int64 [n])``.

    With ``dims={"batch": b}`` the set is padded to a multiple of ``b`` by
    repeating its first images, with label ``-1``, which :func:`top1`
    ignores; so the harness can feed whole batches of ``b`` and still score
    exactly the 539 held-out images. Other dims are ignored (this model has
    no other dynamic dim).
    """
    x, y = _dataset()
    _, test_idx = _split(len(x))
    inputs, labels = x[test_idx].astype(np.float32), y[test_idx].astype(np.int64)
    batch = (dims or {}).get("batch", 1)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise WorkloadError(f"digits evaluation_set: dims.batch must be a positive integer, got {batch!r}")
    pad = -len(labels) % batch
    if pad:
        inputs = np.concatenate([inputs, np.resize(inputs, (pad, PIXELS))])
        labels = np.concatenate([labels, np.full(pad, -1, dtype=np.int64)])
    return inputs, labels


def top1(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Share of images whose arg-max output is the label, over labels >= 0 (padding excluded).

    ``outputs`` holds one row of ``10`` scores per image, in any float dtype
    (``[n, 10]``, or batches ``[k, b, 10]`` with ``k * b = n``).
    """
    scores = np.asarray(outputs)
    labels = np.asarray(labels)
    if scores.ndim < 2 or scores.shape[-1] != CLASSES:
        raise WorkloadError(f"digits top1: outputs must end in a dim of {CLASSES} scores, got shape {scores.shape}")
    scores = scores.reshape(-1, CLASSES)
    if labels.ndim != 1 or len(labels) != len(scores):
        raise WorkloadError(
            f"digits top1: {len(scores)} output rows but labels have shape {labels.shape}; expected ({len(scores)},)"
        )
    keep = labels >= 0
    if not keep.any():
        raise WorkloadError("digits top1: no labelled images (every label is padding)")
    if not np.isfinite(scores[keep]).all():
        return 0.0  # a NaN row has no arg-max worth crediting
    return float(np.mean(scores[keep].argmax(axis=1) == labels[keep]))


# -- data -----------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _dataset() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 images as float64 [n, 64] in [0, 1] and int64 labels; read-only."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise WorkloadError(
            "the digits-mlp workload needs scikit-learn for its bundled digits data: " + install_hint("digits")
        ) from e
    data = load_digits()
    x = np.asarray(data.data, dtype=np.float64) / 16.0  # exact: a power of two
    y = np.asarray(data.target, dtype=np.int64)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def _split(n: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    n_test = round(TEST_FRACTION * n)
    return order[:-n_test], order[-n_test:]


# -- training -------------------------------------------------------------------


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` with a fixed summation order: products summed over the middle axis, k = 0, 1, ...

    numpy reduces a non-contiguous axis by adding whole slices elementwise in
    index order, so each output element is ``((a0 b0 + a1 b1) + a2 b2) + ...``
    on every machine; ``np.matmul`` would call BLAS, whose order varies.
    """
    return (a[:, :, None] * b[None, :, :]).sum(axis=1)


def _train(
    x: np.ndarray, y: np.ndarray, p: Mapping[str, Any], rng: np.random.Generator
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    sizes = [PIXELS, *p["hidden"], CLASSES]
    # He-normal weights (ReLU layers), zero biases; float64 until export.
    weights = [rng.standard_normal((i, o)) * np.sqrt(2.0 / i) for i, o in zip(sizes[:-1], sizes[1:])]
    biases = [np.zeros(o) for o in sizes[1:]]
    vel_w = [np.zeros_like(w) for w in weights]
    vel_b = [np.zeros_like(b) for b in biases]
    targets = np.eye(CLASSES)[y]
    lr, mom, bs = p["learning_rate"], p["momentum"], p["batch_size"]
    for _ in range(p["epochs"]):
        order = rng.permutation(len(x))
        for start in range(0, len(x), bs):
            idx = order[start : start + bs]
            acts = [x[idx]]
            for k, (w, b) in enumerate(zip(weights, biases)):
                z = _matmul(acts[-1], w) + b
                acts.append(np.maximum(z, 0.0) if k < len(weights) - 1 else z)
            # d/dz of the mean over the batch of the squared error summed over classes.
            delta = (acts[-1] - targets[idx]) * (2.0 / len(idx))
            for k in reversed(range(len(weights))):
                grad_w, grad_b = _matmul(acts[k].T, delta), delta.sum(axis=0)
                if k:
                    delta = _matmul(delta, weights[k].T) * (acts[k] > 0.0)
                vel_w[k] = mom * vel_w[k] - lr * grad_w
                vel_b[k] = mom * vel_b[k] - lr * grad_b
                weights[k] = weights[k] + vel_w[k]
                biases[k] = biases[k] + vel_b[k]
    return weights, biases


def _config(params: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise WorkloadError(
            f"digits-mlp: unknown param(s) {', '.join(unknown)}; expected some of {', '.join(sorted(DEFAULTS))}"
        )
    p = {**DEFAULTS, **params}
    hidden: Sequence[Any] = p["hidden"]
    if not isinstance(hidden, (list, tuple)) or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in hidden):
        raise WorkloadError(f"digits-mlp: param hidden must be a list of positive integers, got {hidden!r}")
    p["hidden"] = [int(n) for n in hidden]
    for key in ("epochs", "batch_size"):
        if isinstance(p[key], bool) or not isinstance(p[key], int) or p[key] < 1:
            raise WorkloadError(f"digits-mlp: param {key} must be a positive integer, got {p[key]!r}")
    for key, low_ok, high in (("learning_rate", False, 10.0), ("momentum", True, 1.0)):
        v = p[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 <= v if low_ok else 0 < v) or v >= high:
            bounds = f"{'[' if low_ok else '('}0, {high:g})"
            raise WorkloadError(f"digits-mlp: param {key} must be a number in {bounds}, got {v!r}")
        p[key] = float(v)
    return p
