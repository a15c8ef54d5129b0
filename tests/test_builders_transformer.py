"""BERT and GPT-2 workloads: faithful to the published sizes, numerically sane, deterministic.

Parameter counts and MACs are checked against closed forms written here from
the architectures (not from the builder): parameters layer by layer, MACs as
the forward part of Narayanan et al. 2021 (Megatron-LM, section 5.1),
``12 s l h^2 + 2 s^2 l h (+ s h V)``. The graph's own figures come from
benchkit's FLOP counter, and must equal the closed forms exactly.
"""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from benchkit.errors import WorkloadError
from benchkit.workloads import catalog, flops
from benchkit.workloads.builders import transformer

from conftest import build_hashes_in_fresh_processes

# Small widths and depths keep these quick. Vocabulary and positions stay at least those of
# the manifests: their input ranges and default dims (used for int8 calibration) are fixed.
SMALL_BERT = {"layers": 2, "hidden": 64, "heads": 4, "intermediate": 256, "max_position": 384}
SMALL_GPT2 = {"layers": 2, "hidden": 64, "heads": 4}
VOCAB_BERT = transformer.BERT_BASE["vocab"]
VOCAB_GPT2 = transformer.GPT2_SMALL["vocab"]


# -- closed forms -------------------------------------------------------------------


def bert_params(layers, hidden, intermediate, vocab, max_position, type_vocab=2, pooler=True, **_):
    h, f = hidden, intermediate
    embeddings = (vocab + max_position + type_vocab) * h + 2 * h
    block = 4 * (h * h + h) + (h * f + f) + (f * h + h) + 2 * 2 * h
    return embeddings + layers * block + (h * h + h if pooler else 0)


def bert_macs(seq, layers, hidden, intermediate, pooler=True, **_):
    s, h = seq, hidden
    block = 4 * s * h * h + 2 * s * s * h + 2 * s * h * intermediate
    return layers * block + (h * h if pooler else 0)


def gpt2_params(layers, hidden, vocab, n_ctx, **_):
    h = hidden
    block = 2 * h + (h * 3 * h + 3 * h) + (h * h + h) + 2 * h + (h * 4 * h + 4 * h) + (4 * h * h + h)
    return (vocab + n_ctx) * h + layers * block + 2 * h  # LM head tied: no extra matrix


def gpt2_prefill_macs(seq, layers, hidden, vocab, **_):
    return 12 * seq * layers * hidden**2 + 2 * seq**2 * layers * hidden + seq * hidden * vocab


def gpt2_decode_macs(past, layers, hidden, vocab, **_):
    return 12 * layers * hidden**2 + 2 * (past + 1) * layers * hidden + hidden * vocab


def test_closed_forms_reproduce_the_usual_figures():
    assert bert_params(**transformer.BERT_BASE) == 109_482_240
    assert gpt2_params(**transformer.GPT2_SMALL) == 124_439_808


# -- helpers ------------------------------------------------------------------------


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(catalog.serialize(model), opts, providers=["CPUExecutionProvider"])


def bert_feeds(rng, batch, seq, vocab):
    return {
        "input_ids": rng.integers(0, vocab, (batch, seq)),
        "attention_mask": rng.integers(0, 2, (batch, seq)),
        "token_type_ids": rng.integers(0, 2, (batch, seq)),
    }


def assert_sane(*arrays):
    for a in arrays:
        assert np.isfinite(a).all()
        assert a.std() > 1e-3, "output is (nearly) constant"


@pytest.fixture(scope="module")
def small_bert():
    return catalog.build("bert-base", SMALL_BERT)


@pytest.fixture(scope="module")
def small_gpt2():
    return catalog.build("gpt2-prefill", SMALL_GPT2), transformer.gpt2_decode(
        SMALL_GPT2, np.random.default_rng(catalog.get("gpt2-prefill").weights_seed)
    )


# -- BERT -------------------------------------------------------------------------


@pytest.mark.parametrize("seq", [16, 37])
def test_small_bert_params_and_macs_match_closed_forms(small_bert, seq):
    cost = flops.analyze(small_bert, {"batch": 1, "seq": seq})
    cfg = {**transformer.BERT_BASE, **SMALL_BERT}
    assert cost.unknown_ops == ()
    assert cost.params == bert_params(**cfg)
    assert cost.macs == bert_macs(seq, **cfg)


def test_bert_without_pooler():
    m = transformer.bert({**SMALL_BERT, "pooler": False}, np.random.default_rng(0))
    assert [o.name for o in m.graph.output] == ["last_hidden_state"]
    cost = flops.analyze(m, {"batch": 1, "seq": 8})
    cfg = {**transformer.BERT_BASE, **SMALL_BERT, "pooler": False}
    assert (cost.params, cost.macs) == (bert_params(**cfg), bert_macs(8, **cfg))


def test_bert_interface(small_bert):
    assert [i.name for i in small_bert.graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    dims = [[d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in small_bert.graph.output]
    assert dims == [["batch", "seq", 64], ["batch", 64]]
    ops = {n.op_type for n in small_bert.graph.node}
    assert {"Erf", "LayerNormalization", "Softmax"} <= ops


def test_small_bert_runs_finite_with_random_and_all_zero_masks(small_bert):
    rng = np.random.default_rng(0)
    feeds = bert_feeds(rng, 3, 24, VOCAB_BERT)
    feeds["attention_mask"][1] = 0  # every key masked: softmax must stay finite
    feeds["attention_mask"][2] = 1
    hidden, pooled = session(small_bert).run(None, feeds)
    assert hidden.shape == (3, 24, 64) and pooled.shape == (3, 64)
    assert_sane(hidden, pooled)
    assert hidden[0].std(axis=0).mean() > 1e-3  # positions differ from each other


def test_masked_tokens_do_not_reach_unmasked_positions(small_bert):
    rng = np.random.default_rng(1)
    feeds = bert_feeds(rng, 1, 20, VOCAB_BERT)
    feeds["attention_mask"][:] = 1
    feeds["attention_mask"][0, 12:] = 0
    other = {k: v.copy() for k, v in feeds.items()}
    other["input_ids"][0, 12:] = (other["input_ids"][0, 12:] + 7) % VOCAB_BERT
    s = session(small_bert)
    a, b = s.run(["last_hidden_state"], feeds)[0], s.run(["last_hidden_state"], other)[0]
    np.testing.assert_allclose(a[0, :12], b[0, :12], atol=1e-5)
    assert np.abs(a[0, 12:] - b[0, 12:]).max() > 1e-2  # the masked tokens' own outputs did change
    feeds["attention_mask"][:] = 1
    other["attention_mask"][:] = 1
    a, b = s.run(["last_hidden_state"], feeds)[0], s.run(["last_hidden_state"], other)[0]
    assert np.abs(a[0, :12] - b[0, :12]).max() > 1e-3  # unmasked, the same change is visible


@pytest.mark.slow  # two fresh interpreters build it
def test_small_bert_is_byte_identical_across_processes(small_bert):
    here = hashlib.sha256(catalog.serialize(small_bert)).hexdigest()
    assert build_hashes_in_fresh_processes([("bert-base", SMALL_BERT, "fp32")]) == [[here], [here]]


@pytest.mark.parametrize("variant", ["fp16", "int8"])
def test_small_bert_variants_track_fp32(small_bert, variant):
    m = catalog.build("bert-base", SMALL_BERT, variant)
    feeds = bert_feeds(np.random.default_rng(2), 1, 16, VOCAB_BERT)
    ref = session(small_bert).run(None, feeds)[0]
    got = session(m).run(None, feeds)[0]
    assert_sane(got)
    assert np.corrcoef(ref.ravel(), got.ravel())[0, 1] > (0.999 if variant == "fp16" else 0.95)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"layer": 2}, "unknown param"),
        ({"hidden": 60, "heads": 8}, "divisible"),
        ({"layers": 0}, "positive"),
        ({"pooler": 1}, "must be bool"),
    ],
)
def test_bert_rejects_bad_params(params, match):
    with pytest.raises(WorkloadError, match=match):
        transformer.bert(params, np.random.default_rng(0))


# -- GPT-2 ------------------------------------------------------------------------


def test_small_gpt2_params_and_macs_match_closed_forms(small_gpt2):
    prefill, decode = small_gpt2
    cfg = {**transformer.GPT2_SMALL, **SMALL_GPT2}
    for seq in (1, 16):
        cost = flops.analyze(prefill, {"batch": 1, "seq": seq})
        assert cost.unknown_ops == ()
        assert (cost.params, cost.macs) == (gpt2_params(**cfg), gpt2_prefill_macs(seq, **cfg))
    for past in (1, 16):
        cost = flops.analyze(decode, {"batch": 1, "past": past})
        assert cost.unknown_ops == ()
        assert (cost.params, cost.macs) == (gpt2_params(**cfg), gpt2_decode_macs(past, **cfg))


def test_gpt2_tied_head_is_one_matrix(small_gpt2):
    prefill, _ = small_gpt2
    head = next(n for n in prefill.graph.node if n.op_type == "Gemm")
    assert head.input[1] == "wte"
    assert sum(i.name == "wte" for i in prefill.graph.initializer) == 1


def test_gpt2_decode_continues_prefill(small_gpt2):
    """Prefill of n tokens == prefill of n-1 tokens, then one decode step on its cache."""
    prefill, decode = small_gpt2
    ids = np.random.default_rng(3).integers(0, VOCAB_GPT2, (2, 10))
    p, d = session(prefill), session(decode)
    full = p.run(None, {"input_ids": ids})
    head = p.run(None, {"input_ids": ids[:, :9]})
    names = [o.name for o in prefill.graph.output]
    feeds = {"input_ids": ids[:, 9:]}
    feeds.update({n.replace("present", "past"): v for n, v in zip(names[1:], head[1:])})
    step = d.run(None, feeds)
    assert [o.name for o in decode.graph.output] == names
    np.testing.assert_allclose(step[0][:, 0], full[0][:, 9], atol=1e-4)
    for got, want in zip(step[1:], full[1:]):
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert_sane(full[0], step[0])


def test_gpt2_prefill_is_causal(small_gpt2):
    prefill, _ = small_gpt2
    ids = np.random.default_rng(4).integers(0, VOCAB_GPT2, (1, 12))
    changed = ids.copy()
    changed[0, -1] = (changed[0, -1] + 1) % VOCAB_GPT2
    s = session(prefill)
    a, b = s.run(["logits"], {"input_ids": ids})[0], s.run(["logits"], {"input_ids": changed})[0]
    np.testing.assert_allclose(a[0, :-1], b[0, :-1], atol=1e-5)
    assert np.abs(a[0, -1] - b[0, -1]).max() > 1e-3


def test_small_gpt2_fp16_runs():
    m = catalog.build("gpt2-prefill", SMALL_GPT2, "fp16")
    (logits,) = session(m).run(["logits"], {"input_ids": np.arange(8, dtype=np.int64)[None]})
    assert_sane(logits)


@pytest.mark.parametrize("decode", [False, True], ids=["prefill", "decode"])
def test_small_gpt2_int8_tracks_fp32(decode):
    """The tied embedding is read by a Gather and the LM head: the int8 pass must still give a runnable model."""
    params = {**SMALL_GPT2, "vocab": 1000}  # direct calls, so the vocabulary can shrink with the id range
    build = transformer.gpt2_decode if decode else transformer.gpt2_prefill
    model = build(params, np.random.default_rng(0))
    decls = [catalog.InputDecl("input_ids", "int64", ("batch", 1 if decode else "seq"), (0, 1000))]
    feeds = {"input_ids": np.arange(1 if decode else 8, dtype=np.int64)[None]}
    for vi in model.graph.input[1:]:
        decls.append(catalog.InputDecl(vi.name, "float32", ("batch", 4, "past", 16)))
        feeds[vi.name] = np.random.default_rng(1).standard_normal((1, 4, 8, 16), dtype=np.float32)
    q = catalog.quantize_int8(model, tuple(decls), {"batch": 1, "seq": 16, "past": 16}, seed=1)
    assert any(n.op_type == "QuantizeLinear" for n in q.graph.node)
    (ref,), (got,) = session(model).run(["logits"], feeds), session(q).run(["logits"], feeds)
    assert_sane(got)
    assert np.corrcoef(ref.ravel(), got.ravel())[0, 1] > 0.95


def test_gpt2_decode_manifest_cannot_change_the_layer_count():
    with pytest.raises(WorkloadError, match="differ from manifest"):
        catalog.build("gpt2-decode", {**SMALL_GPT2, "layers": 1})


# -- full configurations -------------------------------------------------------------

CLOSED_FORMS = {
    "bert-base": (bert_params, lambda dims, cfg: bert_macs(dims["seq"], **cfg)),
    "bert-large": (bert_params, lambda dims, cfg: bert_macs(dims["seq"], **cfg)),
    "gpt2-prefill": (gpt2_params, lambda dims, cfg: gpt2_prefill_macs(dims["seq"], **cfg)),
    "gpt2-decode": (gpt2_params, lambda dims, cfg: gpt2_decode_macs(dims["past"], **cfg)),
}
OTHER_DIMS = {"bert-base": {"seq": 384}, "bert-large": {"seq": 128}, "gpt2-prefill": {"seq": 1024}, "gpt2-decode": {"past": 1023}}


def full_feeds(name: str, model: onnx.ModelProto, dims: dict[str, int]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    feeds = {}
    for decl in catalog.get(name).inputs:
        shape = tuple(dims.get(d, 1) if isinstance(d, str) else d for d in decl.shape)
        if decl.dtype == "int64":
            feeds[decl.name] = rng.integers(int(decl.range[0]), int(decl.range[1]), shape)
        else:
            feeds[decl.name] = rng.standard_normal(shape, dtype=np.float32)
    return feeds


def _check_counts(name: str, model: onnx.ModelProto) -> None:
    """Published parameter count within 1%, MACs within 2%, both exact to the closed forms."""
    entry = catalog.get(name)
    cfg = catalog.resolve_params(name)
    count_params, count_macs = CLOSED_FORMS[name]
    dims = dict(entry.dims)
    cost = flops.analyze(model, dims)
    assert cost.unknown_ops == ()
    assert cost.params == count_params(**cfg)
    assert cost.macs == count_macs(dims, cfg)
    assert abs(cost.params / entry.published["params"] - 1) <= 0.01
    assert abs(cost.macs / entry.published["macs"] - 1) <= 0.02
    other = {**dims, **OTHER_DIMS[name]}
    assert flops.analyze(model, other).macs == count_macs(other, cfg)


@pytest.mark.parametrize("name", ["bert-base", "gpt2-prefill", "gpt2-decode", "bert-large"])
def test_published_configuration_counts(name):
    """Every published configuration's counts, from its graph built without weights (exact: shapes only)."""
    from benchkit.workloads.builders._graph import shapes_only

    with shapes_only():
        model = catalog.build(name)
    _check_counts(name, model)


@pytest.mark.slow  # the published models: 110M to 124M parameters each
@pytest.mark.parametrize("name", ["bert-base", "gpt2-prefill", "gpt2-decode"])
def test_full_configuration(name):
    """A published configuration built with its weights counts the same and runs finite. (bert-large is the
    same builder at 24 layers and 1024 wide: its counts are checked above; its 340M weights would add half a
    minute and nothing the builder has not shown at bert-base's size.)"""
    model = catalog.build(name)
    _check_counts(name, model)
    dims = dict(catalog.get(name).dims)
    run_dims = {**dims, "seq": 32, "past": 32}  # short sequences keep the run quick; the weights are the point
    outputs = session(model).run(None, full_feeds(name, model, run_dims))
    assert_sane(*outputs[:2])
