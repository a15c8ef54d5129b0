"""The accuracy gate: every record's outputs vs a cached reference, per-precision tolerances, task metric."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchkit.checks import accuracy
from benchkit.results.records import ResultRecord
from benchkit.runner.plan import expand
from benchkit.runner.preflight import preflight
from benchkit.runner.suite import RunOptions, run_suite
from benchkit.spec import parse_spec

from fakes.benchkit_cheating_adapters import _bf16

GEMM = "{name: gemm, params: {m: 16, n: 64, k: 64}}"


def run_inline(tmp_path, workloads: str, backends: str, run: str = "", audit: bool | None = None,
               scenario: str = "{kind: single_stream, min_duration_ms: 50, min_query_count: 64}") -> list[ResultRecord]:
    text = f"""
name: acc
seed: 5
workloads: [{workloads}]
backends: [{backends}]
scenarios: [{scenario}]
run: {{profile: quick, isolation: inline, keep_samples: false{', ' + run if run else ''}}}
"""
    loaded = parse_spec(text, "acc.yaml", tmp_path)
    cells = expand(loaded)
    preflight(loaded, cells, tmp_path / "cache")
    return run_suite(loaded, cells, RunOptions(out_dir=tmp_path / "out", cache_dir=tmp_path / "cache", audit=audit)).records


# --------------------------------------------------------------------------- comparison, no runtime


def test_identical_outputs_pass_and_report_zero_error():
    ref = [[np.arange(12, dtype=np.float32).reshape(3, 4)]]
    per, failures = accuracy.compare_outputs(ref, ref, ["y"], accuracy.TOLERANCES["fp32"])
    assert failures == [] and per[0].max_abs_error == 0.0 and per[0].max_rel_error == 0.0
    assert per[0].cosine_similarity == pytest.approx(1.0)


@pytest.mark.parametrize("prec, passes", [("fp32", False), ("fp16", True), ("bf16", True), ("int8", True)])
def test_bf16_rounding_fails_fp32_tolerance_only(prec, passes):
    rng = np.random.default_rng(0)
    ref = [[rng.standard_normal((4, 256)).astype(np.float32)] for _ in range(3)]
    low = [[_bf16(a) for a in call] for call in ref]
    per, failures = accuracy.compare_outputs(low, ref, ["y"], accuracy.TOLERANCES[prec])
    assert (not failures) is passes, failures
    assert 1e-3 < per[0].max_rel_error < 1e-2  # bf16's 8-bit mantissa: ~2^-9 of the scale


def test_shape_nan_and_count_problems_are_failures_not_crashes():
    ref = [[np.ones((2, 3), np.float32)]]
    _, f = accuracy.compare_outputs([[np.ones((3, 2), np.float32)]], ref, ["y"], accuracy.TOLERANCES["fp32"])
    assert "shape [3, 2] differs from the reference's [2, 3]" in f[0]
    _, f = accuracy.compare_outputs([[np.full((2, 3), np.nan, np.float32)]], ref, ["y"], accuracy.TOLERANCES["fp32"])
    assert "NaN" in f[0]
    per, f = accuracy.compare_outputs([[]], ref, ["y"], accuracy.TOLERANCES["fp32"])
    assert "returned 0 outputs" in f[0] and per[0].max_abs_error is None


def test_zeros_fail_every_tolerance_even_int8():
    rng = np.random.default_rng(1)
    ref = [[rng.standard_normal((8, 16)).astype(np.float32)]]
    _, failures = accuracy.compare_outputs([[np.zeros((8, 16), np.float32)]], ref, ["y"], accuracy.TOLERANCES["int8"])
    assert any("max abs error" in f for f in failures) and any("cosine" in f for f in failures)


def test_classifier_top1_agreement():
    ref = [[np.array([[0.1, 0.9], [0.8, 0.2]], np.float32)]]
    swapped = [[np.array([[0.9, 0.1], [0.8, 0.2]], np.float32)]]
    per, failures = accuracy.compare_outputs(swapped, ref, ["logits"], accuracy.TOLERANCES["int8"], classifier=True)
    assert per[0].top1_agreement == 0.5
    assert not any("top-1" in f for f in failures)  # int8 allows 50%
    _, failures = accuracy.compare_outputs(swapped, ref, ["logits"], accuracy.TOLERANCES["fp32"], classifier=True)
    assert any("top-1 agreement 50% < 100%" in f for f in failures)


def test_tolerance_follows_the_claim_unless_a_mismatch_is_allowed():
    assert accuracy.tolerance_for("fp32", "bf16", False)[0] == "fp32"
    assert accuracy.tolerance_for("fp32", "bf16", True)[0] == "bf16"
    assert accuracy.tolerance_for("bf16", "fp32", True)[0] == "bf16"  # never tighter than the claim


# --------------------------------------------------------------------------- in records


def test_every_record_has_an_accuracy_block_and_the_reference_is_cached(tmp_path):
    (rec,) = run_inline(tmp_path, GEMM, "{name: onnxruntime}")
    acc = rec.accuracy
    assert rec.validity.valid, rec.validity.reasons
    assert acc.passed is True and acc.max_abs_error == 0.0 and acc.max_rel_error == 0.0
    assert acc.reference.startswith("onnxruntime ") and "CPUExecutionProvider" in acc.reference
    assert acc.samples == 16 and acc.seed == 5 and acc.precision == "fp32"
    assert acc.reference_model_sha256 == rec.workload.model_sha256
    cached = list((tmp_path / "cache" / "reference").glob("*.npz"))
    assert len(cached) == 1 and cached[0].name.startswith(rec.workload.model_sha256[:16])
    mtime = cached[0].stat().st_mtime_ns
    (again,) = run_inline(tmp_path, GEMM, "{name: onnxruntime}")
    assert again.accuracy.reference == acc.reference
    assert list((tmp_path / "cache" / "reference").glob("*.npz")) == cached
    assert cached[0].stat().st_mtime_ns == mtime  # read, not recomputed


def test_silently_lowered_precision_is_invalid_with_figures(tmp_path, fakes_on_path):
    (rec,) = run_inline(tmp_path, GEMM, "{name: cheat-precision}")
    assert rec.backend.precision == "fp32"  # the lie: the precision check alone cannot see it
    assert rec.accuracy.passed is False and rec.accuracy.max_rel_error > 1e-3
    assert not rec.validity.valid
    (reason,) = [r for r in rec.validity.reasons if r.startswith("accuracy gate failed")]
    assert "at fp32 tolerances" in reason and "max rel error" in reason and "exceeds" in reason


def test_variant_is_judged_against_the_fp32_model_of_its_entry(tmp_path):
    wl = "{name: gemm, params: {m: 16, n: 64, k: 64}, variant: fp16}"
    (rec,) = run_inline(tmp_path, wl, "{name: onnxruntime, precision: fp16}")
    acc = rec.accuracy
    assert rec.workload.graph_precision == "fp16"
    assert acc.reference_model_sha256 != rec.workload.model_sha256 and "fp32 model gemm-fp32" in acc.reference
    assert acc.passed and acc.precision == "fp16" and 0 < acc.max_rel_error < accuracy.TOLERANCES["fp16"].rel


def test_onnx_reference_as_the_reference_backend(tmp_path):
    (rec,) = run_inline(tmp_path, GEMM, "{name: onnxruntime}", run="accuracy_reference: onnx-reference")
    assert rec.accuracy.reference.startswith("onnx-reference ") and rec.accuracy.passed
    assert 0 <= rec.accuracy.max_rel_error < 1e-5  # another implementation: reduction-order noise at most


def test_null_backend_is_exempt_but_never_certifiable(tmp_path):
    (rec,) = run_inline(tmp_path, "{name: tiny-add}", "{name: 'null'}")
    assert rec.accuracy.passed is None and "computes no outputs" in rec.accuracy.skipped
    assert rec.validity.valid and any(w.startswith("accuracy not checked") for w in rec.validity.warnings)
    (audited,) = run_inline(tmp_path, "{name: tiny-add}", "{name: 'null'}", audit=True)
    assert not audited.validity.valid
    assert any("accuracy not checked" in r and "certify" in r for r in audited.validity.reasons)


def test_task_metric_on_the_accuracy_workload(tmp_path):
    pytest.importorskip("sklearn", reason="digits-mlp builds from scikit-learn's bundled digits")
    (rec,) = run_inline(tmp_path, "{name: digits-mlp}", "{name: onnxruntime}")
    tm = rec.accuracy.task_metric
    assert tm is not None and tm.name == "top1" and tm.samples == 539
    assert tm.value == tm.reference_value >= 0.95 and tm.passed
    assert tm.min_value == pytest.approx(0.99 * tm.reference_value)
    assert rec.accuracy.top1_agreement == 1.0


# --------------------------------------------------------------------------- the reference cache is verified


def test_a_reference_cache_written_over_is_rebuilt_never_trusted(tmp_path, monkeypatch):
    """The issue's cheat: the cached reference .npz overwritten with a low-precision adapter's own outputs.

    Trusted as read, the cheat's fp32 claim would pass with error 0.0; the entry's
    tag does not verify, so it is recomputed and the verdict is unchanged.
    """
    from benchkit.spec import WorkloadSpec
    from benchkit.workloads import resolve
    from fakes.benchkit_cheating_adapters import LowPrecisionCheat

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    cache = tmp_path / "cache"
    wl = resolve(WorkloadSpec(name="gemm", params={"m": 16, "n": 64, "k": 64}), tmp_path, "w", cache)
    feeds, batch = wl.make_feeds(1, 4, 5)
    cheat = LowPrecisionCheat({})
    cheat.load(wl.path, accuracy._winfo(wl, feeds[0], "fp32"))
    staged = [cheat.stage(f) for f in feeds]

    def gate():
        acc, _ = accuracy.check(cheat, staged, feeds, wl, claimed="fp32", effective="fp32", allow_mismatch=False,
                                reference="onnxruntime", seed=5, batch=batch, cache_dir=cache)
        return acc

    honest = gate()
    assert honest.passed is False and honest.max_rel_error > 1e-3
    (entry,) = (cache / "reference").glob("*.npz")
    good_bytes = entry.read_bytes()

    def honest_reference_is_back() -> bool:  # np.savez stamps the time: compare contents, not bytes
        with np.load(entry, allow_pickle=False) as z:
            return "tag" in json.loads(str(z["meta"])) and all(
                np.array_equal(z[k], ref) for k, ref in honest_arrays.items())

    with np.load(entry, allow_pickle=False) as z:
        honest_arrays = {k: z[k] for k in z.files if k != "meta"}
    cheat_outputs = [accuracy.run_outputs(cheat, s) for s in staged]

    def overwrite(meta_edit=lambda m: None):
        with np.load(entry, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
        meta_edit(meta)
        arrays = {f"c{c}_o{o}": a for c, call in enumerate(cheat_outputs) for o, a in enumerate(call)}
        np.savez(entry, meta=np.array(json.dumps(meta)), **arrays)

    cases = {
        "arrays replaced, tag kept": lambda m: None,
        "no tag (the old, unverified format)": lambda m: m.pop("tag"),
        "tag made with another secret (a cache copied from elsewhere)": None,
    }
    for what, edit in cases.items():
        if edit is None:  # another user's secret tags the cheat's outputs correctly for *that* secret
            monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "elsewhere"))
            accuracy._write_reference_cache(entry, json.loads(str(np.load(entry)["meta"]))["key"], "forged",
                                            cheat_outputs)
            monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
        else:
            overwrite(edit)
        assert entry.read_bytes() != good_bytes
        again = gate()
        assert again.passed is False and again.max_rel_error == honest.max_rel_error, what
        assert honest_reference_is_back(), what  # rebuilt
    # Garbage in the file: recomputed too, not a crash.
    entry.write_bytes(b"not an npz")
    assert gate().max_rel_error == honest.max_rel_error and honest_reference_is_back()
    cheat.close()


def test_without_a_usable_secret_nothing_cached_is_trusted(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    secret = accuracy.cache_secret_path()
    assert accuracy._cache_secret() is not None and secret.stat().st_mode & 0o777 == 0o600
    assert accuracy._cache_secret() == bytes.fromhex(secret.read_text().strip())  # created once, then read
    secret.chmod(0o666)  # anyone could have written it: it vouches for nothing
    assert accuracy._cache_secret() is None


# --------------------------------------------------------------------------- outputs kept for a reviewer


def test_outputs_are_kept_in_the_record_and_a_reviewer_rechecks_them(tmp_path, monkeypatch, fakes_on_path):
    (rec,) = run_inline(tmp_path, GEMM, "{name: onnxruntime}", run="accuracy_samples: 4")
    kept = rec.accuracy.measured_outputs
    assert kept is not None and not kept.sampled and len(kept.arrays) == rec.accuracy.samples
    outs = accuracy.load_outputs(kept)
    assert [a.shape for call in outs for a in call] == [tuple(k.shape) for k in kept.arrays]
    review = accuracy.recheck(rec, tmp_path / "review")  # a fresh folder: the reviewer's own build and reference
    assert review.passed, review.detail
    assert "within fp32 tolerances of onnxruntime" in review.detail

    # Outputs over the limit are kept as a seeded sample, which any reader can locate again.
    monkeypatch.setattr(accuracy, "OUTPUTS_MAX_BYTES", 1024)
    (big,) = run_inline(tmp_path / "s", GEMM, "{name: onnxruntime}", run="accuracy_samples: 4")
    kept = big.accuracy.measured_outputs
    assert kept.sampled and all(k.elements == 1024 // 4 // 4 for k in kept.arrays)
    review = accuracy.recheck(big, tmp_path / "review2")
    assert review.passed and "a seeded sample of the outputs" in review.detail

    # A low-precision cheat's kept outputs fail the reviewer's comparison too.
    monkeypatch.setattr(accuracy, "OUTPUTS_MAX_BYTES", 1 << 20)
    (cheat,) = run_inline(tmp_path / "c", GEMM, "{name: cheat-precision}")
    review = accuracy.recheck(cheat, tmp_path / "review3")
    assert not review.passed and "exceeds" in review.detail


def test_damaged_kept_outputs_are_refused():
    rng = np.random.default_rng(3)
    outs = [[rng.standard_normal((2, 8)).astype(np.float32)] for _ in range(2)]
    kept = accuracy.store_outputs(outs, [], 0)
    assert all(np.array_equal(a, b[0]) for a, b in zip([c[0] for c in accuracy.load_outputs(kept)], outs))
    import base64
    import zlib

    other = base64.b64encode(zlib.compress(b"\0" * 128)).decode()
    with pytest.raises(ValueError, match="do not match their SHA-256"):
        accuracy.load_outputs(kept.model_copy(update={"data": other}))
    with pytest.raises(ValueError, match="do not decode"):
        accuracy.load_outputs(kept.model_copy(update={"data": "!!"}))


# --------------------------------------------------------------------------- low-precision tolerances from the standard

MOBILENET_96 = "{name: mobilenet-v2, params: {image_size: 96}}"
MOBILENET_96_INT8 = "{name: mobilenet-v2, variant: int8, params: {image_size: 96}}"


def _run_at_seed(tmp_path, seed: int, workloads: str, backends: str) -> list[ResultRecord]:
    """run_inline at another seed (its spec fixes seed 5): the gate's inputs, and so the derived tolerance, change."""
    text = f"""
name: acc
seed: {seed}
workloads: [{workloads}]
backends: [{backends}]
scenarios: [{{kind: single_stream, min_duration_ms: 50, min_query_count: 64}}]
run: {{profile: quick, isolation: inline, keep_samples: false}}
"""
    loaded = parse_spec(text, "acc.yaml", tmp_path)
    cells = expand(loaded)
    preflight(loaded, cells, tmp_path / "cache")
    out = tmp_path / f"out-{seed}"
    return run_suite(loaded, cells, RunOptions(out_dir=out, cache_dir=tmp_path / "cache")).records


def test_int8_tolerance_is_derived_from_the_standards_own_int8_build_and_cached(tmp_path, monkeypatch, tiny_model):
    from benchkit.spec import WorkloadSpec
    from benchkit.workloads import catalog, resolve

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    cache = tmp_path / "cache"
    wl = resolve(WorkloadSpec(name="mobilenet-v2", params={"image_size": 96}), tmp_path, "w", cache)
    feeds, _ = wl.make_feeds(1, 8, 5)

    def derive(claimed="int8", effective="int8", allow=False, workload=wl):
        return accuracy.standard_tolerance(workload, feeds if workload is wl else workload.make_feeds(1, 2, 5)[0],
                                           claimed=claimed, effective=effective, allow_mismatch=allow,
                                           reference="onnxruntime", seed=5, cache_dir=cache)

    prec, tol, source = derive()
    # The standard's int8 build, run by the reference on the same inputs, measured as the gate measures.
    int8 = catalog.materialize("mobilenet-v2", {"image_size": 96}, "int8", cache_dir=cache)
    refs, _, _ = accuracy.reference_outputs(wl, feeds, "onnxruntime", 5, cache)
    outs = accuracy._model_outputs("onnxruntime", int8, wl, feeds)
    (build,), _ = accuracy.compare_outputs(outs, refs, wl.output_names, accuracy.TOLERANCES["int8"], True)
    assert prec == "int8" and source.startswith("derived: 3 x the error of mobilenet-v2's int8 build under onnxruntime")
    assert f"max rel error {build.max_rel_error:.3g}" in source
    m = accuracy.TOLERANCE_MARGIN
    assert m * build.max_rel_error <= tol.rel <= m * build.max_rel_error * 1.1  # rounded up to two digits
    assert 1 - tol.min_cosine >= m * m * (1 - build.cosine_similarity)
    assert accuracy.TOLERANCES["fp32"].rel <= tol.rel < accuracy.TOLERANCES["int8"].rel  # floor, ceiling
    assert accuracy.TOLERANCES["int8"].min_cosine < tol.min_cosine < accuracy.TOLERANCES["fp32"].min_cosine

    # Cached like the reference outputs: read back, not recomputed; an entry written over is not trusted.
    (entry,) = (cache / "reference" / "tolerance").glob("*.npz")
    mtime = entry.stat().st_mtime_ns
    assert derive() == (prec, tol, source) and entry.stat().st_mtime_ns == mtime
    with np.load(entry, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
    np.savez(entry, meta=np.array(json.dumps(meta)), c0_o0=np.array([0.1, 0.5, 0.8, 0.5]))  # the old constants
    assert derive() == (prec, tol, source)

    # The claim decides, the effective precision only where a mismatch is allowed; constants where nothing is built.
    assert derive("fp16", "int8", allow=True)[:2] == (prec, tol)
    assert derive("fp16", "int8")[0] == "fp16" and derive("fp16", "int8")[2].startswith("derived: ")
    assert derive("fp32", "fp32")[1:] == (accuracy.TOLERANCES["fp32"], derive("fp32", "fp32")[2])
    assert derive("fp32", "fp32")[2].startswith("constant: ")
    assert derive("bf16", "bf16")[1:] == (accuracy.TOLERANCES["bf16"], "constant: mobilenet-v2 has no bf16 build")
    filed = resolve(WorkloadSpec(name="tiny", model=tiny_model), tmp_path, "w", cache)
    prec, tol, source = derive(workload=filed)
    assert tol == accuracy.TOLERANCES["int8"] and "not a standard build" in source


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_a_pruned_graph_claiming_int8_fails_the_derived_tolerance(tmp_path, fakes_on_path, variant):
    """Issue 13: mobilenet-v2 with its first residual block cut out, claiming int8, passed the constant (0.5).

    On the fp32 graph (fp32 arithmetic) and on the standard int8 graph itself (int8 arithmetic, closed-eligible).
    """
    workload = MOBILENET_96 if variant == "fp32" else MOBILENET_96_INT8
    (rec,) = run_inline(tmp_path, workload, "{name: cheat-pruned-int8, precision: int8}")
    acc = rec.accuracy
    assert acc.precision == "int8" and acc.tolerance_source.startswith("derived: ")
    assert acc.passed is False and not rec.validity.valid
    # Inside today's constant, several times outside the derived bound.
    assert acc.tolerance["rel"] < acc.max_rel_error < accuracy.TOLERANCES["int8"].rel
    assert accuracy.TOLERANCES["int8"].min_cosine < acc.min_cosine_similarity < acc.tolerance["min_cosine"]
    (reason,) = [r for r in rec.validity.reasons if r.startswith("accuracy gate failed")]
    assert f"exceeds 1e-05 + {acc.tolerance['rel']:g} x scale" in reason and "cosine similarity" in reason


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_honest_int8_passes_the_derived_tolerance(tmp_path, seed):
    """The acceptance that matters as much as the refusal: the standard's int8 build, run honestly, passes at every
    seed, by ONNX Runtime's integer kernels and by its unfused QDQ graph (another int8 implementation)."""
    records = _run_at_seed(tmp_path, seed, MOBILENET_96_INT8,
                           "{name: onnxruntime, precision: int8}, {name: onnxruntime, precision: int8, "
                           "label: ort-unfused, options: {graph_optimization_level: disable_all}}")
    assert len(records) == 2
    for rec in records:
        acc = rec.accuracy
        assert acc.tolerance_source.startswith("derived: ") and acc.tolerance["rel"] < accuracy.TOLERANCES["int8"].rel
        assert acc.passed is True, acc.failures
        assert acc.max_rel_error <= acc.tolerance["rel"] / 2  # well inside: the margin is 3
        # Nothing about the answers or the precision claim holds it back (the timing audits are judged elsewhere).
        assert not [f for f in rec.validity.findings if f.severity == "reason"
                    and f.check in ("accuracy", "precision", "outputs", "division")], rec.validity.reasons


def test_openvino_int8_passes_the_derived_tolerance(tmp_path):
    """A third int8 engine on the same QDQ graph (OpenVINO's CPU plugin, its own low-precision transformations)."""
    pytest.importorskip("openvino")
    (rec,) = run_inline(tmp_path, MOBILENET_96_INT8, "{name: openvino, precision: int8}")
    acc = rec.accuracy
    assert acc.tolerance_source.startswith("derived: ") and acc.passed is True, acc.failures
    assert acc.max_rel_error <= acc.tolerance["rel"] / 2


def test_a_reviewer_derives_the_same_int8_tolerance(tmp_path, fakes_on_path):
    (rec,) = run_inline(tmp_path, MOBILENET_96_INT8, "{name: onnxruntime, precision: int8}", run="accuracy_samples: 4")
    review = accuracy.recheck(rec, tmp_path / "review")
    assert review.passed and "within int8 tolerances" in review.detail, review.detail
    # A record that applied a looser tolerance than the standard's derivation (the old constant) is refused...
    loose = rec.model_copy(update={"accuracy": rec.accuracy.model_copy(update={"tolerance": {
        k: float(v) for k, v in vars(accuracy.TOLERANCES["int8"]).items()}})})
    review = accuracy.recheck(loose, tmp_path / "review")
    assert not review.passed and "(abs, rel, min_cosine looser)" in review.detail  # top-1: at the constant here
    assert "derived: 3 x the error of mobilenet-v2's int8 build" in review.detail
    # ...and the pruned cheat's kept outputs fail the reviewer's comparison.
    (cheat,) = run_inline(tmp_path / "c", MOBILENET_96_INT8, "{name: cheat-pruned-int8, precision: int8}",
                          run="accuracy_samples: 4")
    review = accuracy.recheck(cheat, tmp_path / "review")
    assert not review.passed and "exceeds" in review.detail, review.detail
