"""benchkit compare over several runs a side: pooled intervals, their coverage, the gate's error rates, INVALID marks.

The simulations draw runs whose level varies from run to run (a known
between-run coefficient of variation) around heavy-ish lognormal latencies,
so the truth is known: the ratio of the two sides' true values.
"""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest
from record_factory import T0, lognormal_ns, make_record

from benchkit.results.compare import (
    DEFAULT_BETWEEN_RUN_CV,
    CompareError,
    CompareSettings,
    compare,
    default_between_run_cv,
    gate,
    parse_fail_on,
)
from benchkit.results.records import ResultRecord
from benchkit.stats import student_t_quantile

TEMPLATES: dict[str, ResultRecord] = {}


def run_record(x: np.ndarray, kind: str = "single_stream", minute: int = 0, **kw) -> ResultRecord:
    """A record of samples ``x`` (issue order), cheaply: one validated template per kind, copied.

    The comparison reads the samples, the throughput and the scenario; those
    are set consistently here (closed loop: samples per second over the sum
    of the latencies).
    """
    if kw:
        return make_record(x, kind=kind, started_at=T0 + timedelta(minutes=minute), **kw)
    tpl = TEMPLATES.get(kind) or TEMPLATES.setdefault(kind, make_record(lognormal_ns(100, seed=1), kind=kind))
    batch = tpl.workload.effective_batch_size if kind == "offline" else 1
    thr = x.size * batch * 1e9 / float(x.sum())
    m = tpl.metrics.model_copy(update={"throughput_per_s": thr, "count": int(x.size)})
    return tpl.model_copy(update={"metrics": m, "samples_ns": x.tolist(),
                                  "started_at": T0 + timedelta(minutes=minute)})


def runs(rng: np.random.Generator, r: int, between_cv: float, n: int, factor: float = 1.0,
         kind: str = "single_stream") -> list[ResultRecord]:
    """``r`` runs: each run's level is lognormal with sd ``between_cv`` of its log, then n latencies around it."""
    out = []
    for i in range(r):
        level = factor * np.exp(between_cv * rng.standard_normal())
        x = np.maximum(1, np.round(200_000 * level * np.exp(0.25 * rng.standard_normal(n)))).astype(np.int64)
        out.append(run_record(x, kind, minute=i))
    return out


# --------------------------------------------------------------------------- coverage and error rates


@pytest.mark.parametrize("r", [3, 5])
def test_pooled_interval_covers_the_true_ratio_at_the_nominal_rate(r):
    """200 simulated A/A pairs with 5 % between-run variation: the 95 % interval holds the true ratio (1)
    90-99 % of the time, for a percentile (two-level bootstrap) and for throughput (run-level values).

    With the within-run bootstrap alone these intervals cover about two thirds of the time: each run's 200
    samples pin its own p50 to about ±3 %, while runs differ by 5 %.
    """
    rng = np.random.default_rng(100 + r)
    covered: dict[str, int] = {}
    within_only = 0
    pairs = 200
    for s in range(pairs):
        b, c = runs(rng, r, 0.05, 200), runs(rng, r, 0.05, 200)
        res = compare(b, c, CompareSettings(resamples=200, seed=s))
        for m in res.pairs[0].metrics:
            covered[m.metric] = covered.get(m.metric, 0) + (m.ci_low <= 1.0 <= m.ci_high)
        if s < 40:
            one = compare(b[:1], c[:1], CompareSettings(resamples=200, seed=s, between_run_cv=0.0)).pairs[0]
            p50 = {m.metric: m for m in one.metrics}["p50"]
            within_only += p50.ci_low <= 1.0 <= p50.ci_high
    for metric in ("p50", "p90", "throughput"):
        assert 0.90 * pairs <= covered[metric] <= 0.99 * pairs, covered
    assert covered["p99"] >= 0.90 * pairs, covered  # tails may be conservative: within-run noise counts twice
    assert within_only <= 0.8 * 40, within_only


def test_gate_false_fails_and_detection_on_synthetic_runs():
    """The guide's gate ("p50:5%,p90:10%", 10 runs a side) on runs that differ by 5 % from run to run: at most
    5 % false fails over 80 no-change pairs, at least 95 % of 80 candidates 20 % slower caught."""
    rng = np.random.default_rng(7)
    fail_on = parse_fail_on("p50:5%,p90:10%")
    false_fails = detections = 0
    pairs = 80
    for s in range(pairs):
        base = runs(rng, 10, 0.05, 150)
        same, slower = runs(rng, 10, 0.05, 150), runs(rng, 10, 0.05, 150, factor=1.2)
        settings = CompareSettings(resamples=200, seed=s, fail_on=fail_on)
        false_fails += bool(compare(base, same, settings).failures())
        detections += bool(compare(base, slower, settings).failures())
    assert false_fails <= 0.05 * pairs, false_fails
    assert detections >= 0.95 * pairs, detections


def test_one_run_per_side_is_widened_by_the_default_and_says_so():
    rng = np.random.default_rng(3)
    b, c = runs(rng, 1, 0.0, 2000), runs(rng, 1, 0.0, 2000)
    plain = {m.metric: m for m in compare(b, c, CompareSettings(between_run_cv=0.0)).pairs[0].metrics}
    res = compare(b, c)
    wide = {m.metric: m for m in res.pairs[0].metrics}
    for name in ("p50", "p99", "throughput"):
        assert wide[name].between_run == "default" and plain[name].between_run == "ignored"
        assert wide[name].ci_high - wide[name].ci_low > plain[name].ci_high - plain[name].ci_low
    assert wide["p50"].between_run_cv == DEFAULT_BETWEEN_RUN_CV["p50"]
    assert wide["p99"].between_run_cv == DEFAULT_BETWEEN_RUN_CV["p99"]
    assert wide["throughput"].between_run_cv == DEFAULT_BETWEEN_RUN_CV["throughput"]
    # The default adds sqrt(2) x CV of log-ratio spread: the 95 % interval spans about 2 x 1.96 x 1.41 x CV.
    cv = DEFAULT_BETWEEN_RUN_CV["p50"]
    assert 5.0 * cv < np.log(wide["p50"].ci_high / wide["p50"].ci_low) < 6.5 * cv
    (warning,) = [w for w in res.warnings if w.startswith("1 run per side")]
    assert "(between-run variation not measured)" in warning and f"p50 {cv:.0%}" in warning
    assert "default between-run CV" in wide["p50"].method
    # A user who knows their machine sets it.
    given = compare(b, c, CompareSettings(between_run_cv=0.01))
    p50 = {m.metric: m for m in given.pairs[0].metrics}["p50"]
    assert (p50.between_run, p50.between_run_cv) == ("given", 0.01) and "given between-run CV 1%" in p50.method
    assert any("given between-run CV" in w for w in given.warnings)


def test_default_between_run_cv_by_metric():
    assert default_between_run_cv(50.0) == DEFAULT_BETWEEN_RUN_CV["p50"]
    assert default_between_run_cv(90.0) == default_between_run_cv(95.0) == DEFAULT_BETWEEN_RUN_CV["tail"]
    assert default_between_run_cv(99.0) == default_between_run_cv(99.9) == DEFAULT_BETWEEN_RUN_CV["p99"]
    assert default_between_run_cv(None) == DEFAULT_BETWEEN_RUN_CV["throughput"]
    with pytest.raises(CompareError, match="between_run_cv"):
        CompareSettings(between_run_cv=5.0)


def test_small_sample_factor_is_students_t():
    """Few runs: the log-ratio replicates are spread by t(df)/z; 2 + 2 runs are far less sure than 10 + 10."""
    assert student_t_quantile(0.975, 2) == pytest.approx(4.3027, abs=1e-4)
    assert student_t_quantile(0.975, 8) == pytest.approx(2.3060, abs=1e-4)
    rng = np.random.default_rng(11)
    widths = {}
    for r in (2, 10):
        b, c = runs(rng, r, 0.05, 400), runs(rng, r, 0.05, 400)
        m = {m.metric: m for m in compare(b, c, CompareSettings(seed=1)).pairs[0].metrics}["p50"]
        assert m.between_run == "measured" and f"t({2 * r - 2})" in m.method
        widths[r] = np.log(m.ci_high / m.ci_low)
    assert widths[2] > 2 * widths[10]


def test_a_single_run_side_borrows_the_other_sides_variation():
    rng = np.random.default_rng(5)
    b, c = runs(rng, 4, 0.08, 500), runs(rng, 1, 0.0, 500)
    res = compare(b, c, CompareSettings(seed=2))
    m = {m.metric: m for m in res.pairs[0].metrics}["p50"]
    assert (m.runs_base, m.runs_cand, m.between_run) == (4, 1, "measured")
    assert "added to the 1-run side" in m.method
    assert any("taken from the other side's runs" in w for w in res.warnings)
    # Wider than the within-run interval of the single candidate run alone could ever be.
    assert np.log(m.ci_high / m.ci_low) > 2 * 1.96 * 0.05


# --------------------------------------------------------------------------- pooling rules and INVALID records


def test_invalid_records_are_left_out_when_valid_ones_exist():
    rng = np.random.default_rng(1)
    good = runs(rng, 2, 0.0, 300)
    bad = run_record(lognormal_ns(300, seed=9, median_ns=900_000), minute=5, valid=False,
                     reasons=["latency bound missed"])
    res = compare(good + [bad], good)
    p = res.pairs[0]
    assert len(p.runs("base")) == 2 and p.invalid == ()
    assert any("1 INVALID record(s) of mlp/single_stream/fp32/batch 1 left out" in w for w in res.warnings)


def test_a_side_with_only_invalid_records_is_marked_not_ranked():
    rng = np.random.default_rng(2)
    base = runs(rng, 1, 0.0, 300)
    cand = run_record(lognormal_ns(300, seed=4), valid=False, reasons=["early stopping: too few queries"])
    res = compare(base, [cand], CompareSettings(fail_on={"p50": 0.5}))
    p = res.pairs[0]
    assert p.invalid == ("cand",) and res.invalid_pairs() == [p]
    assert any("cand: mlp/single_stream/fp32/batch 1 is INVALID" in w and "early stopping" in w
               for w in res.warnings)
    md = res.to_markdown()
    assert "(cand INVALID)" in md and "1 pair(s) INVALID: not results to rank." in md
    doc = json.loads(res.to_json())
    assert doc["version"] == 2 and doc["pairs"][0]["invalid"] == ["cand"]
    assert doc["pairs"][0]["cand"]["valid"] is False and doc["gate"]["invalid"][0]["sides"] == ["cand"]



def test_terminal_table_marks_invalid_and_shows_runs_per_side():
    from benchkit.cli.tables import compare_table

    rng = np.random.default_rng(2)
    base = runs(rng, 3, 0.0, 300)
    cand = run_record(lognormal_ns(300, seed=4), valid=False, reasons=["early stopping: too few queries"])
    text = compare_table(compare(base, [cand]), "cand", "base", to_terminal=False)
    rows = [ln for ln in text.splitlines() if " mlp " in ln]
    assert rows and all("3/1" in ln and "INVALID cand" in ln for ln in rows)
    assert "1 pair(s) INVALID" in text and "runs: records pooled base/cand" in text
    ok = compare_table(compare(base, base[:2]), "cand", "base", to_terminal=False)
    assert "INVALID" not in ok and any("3/2" in ln for ln in ok.splitlines() if " mlp " in ln)


def test_one_backend_per_side():
    rng = np.random.default_rng(4)
    ort = runs(rng, 2, 0.0, 200)
    ov = [run_record(lognormal_ns(200, seed=8), minute=9, backend="openvino")]
    res = compare(ort + ov, ort)
    p = res.pairs[0]
    assert p.base.backend == "openvino" and len(p.runs("base")) == 1
    assert any("records of several backends" in w and "pooling only openvino's" in w for w in res.warnings)


def test_json_carries_runs_and_between_run_fields():
    rng = np.random.default_rng(6)
    doc = json.loads(compare(runs(rng, 3, 0.02, 200), runs(rng, 2, 0.02, 200)).to_json())
    pair = doc["pairs"][0]
    assert len(pair["base_runs"]) == 3 and len(pair["cand_runs"]) == 2
    m = pair["metrics"][0]
    assert (m["runs_base"], m["runs_cand"], m["between_run"]) == (3, 2, "measured")
    assert m["between_run_cv"] > 0 and doc["settings"]["between_run_cv"] is None


# --------------------------------------------------------------------------- gate() for the pytest plugin


def test_gate_function_fails_on_regressions_and_invalid_candidates():
    rng = np.random.default_rng(8)
    base = runs(rng, 3, 0.01, 400)
    assert gate(base, runs(rng, 3, 0.01, 400), "p50:10%").passed
    slow = gate(base, runs(rng, 3, 0.01, 400, factor=1.3), "p50:10%,headline:10%")
    assert not slow.passed
    assert any(f.startswith("regression: mlp/single_stream/fp32/batch 1 p50 +") for f in slow.failures)
    bad = run_record(lognormal_ns(400, seed=3), valid=False, reasons=["accuracy gate failed"])
    invalid = gate(base, [bad], {"p50": 0.10})
    assert invalid.failures == ("INVALID candidate: mlp/single_stream/fp32/batch 1: accuracy gate failed",)
    # The baseline's own settings are kept, its fail_on replaced.
    assert gate(base, base, "p99:5%", CompareSettings(resamples=200, fail_on={"p50": 0.01})).comparison.settings \
        .fail_on == {"p99": 0.05}
    with pytest.raises(CompareError, match="unknown metric"):
        gate(base, base, {"latency": 0.1})


def test_interleaved_ab_splits_one_sessions_records_by_backend_id(tmp_path, capsys):
    """Base and candidate measured alternately in one session (two backends of one spec, run.repeats: 3): --ab
    pools each backend's runs as a side; the candidate 30 % slower is a regression."""
    from benchkit.cli import main
    from benchkit.results.compare import CompareError, compare_ab, parse_ab
    from benchkit.results.records import save

    rng = np.random.default_rng(7)
    for i in range(3):
        for bid, median in (("base", 200_000), ("cand", 260_000)):
            x = lognormal_ns(400, seed=int(rng.integers(1 << 30)), median_ns=median)
            rec = run_record(x, minute=2 * i + (bid == "cand"), backend_label=bid)
            save(rec, tmp_path / f"mlp__{bid}__single_stream-r{i + 1}.json")
    res = compare_ab([tmp_path], "base", "cand")
    (p,) = res.pairs
    assert len(p.runs("base")) == 3 and len(p.runs("cand")) == 3
    p50 = next(m for m in p.metrics if m.metric == "p50")
    assert p50.verdict == "regression" and p50.ci_low > 1.15, p50
    assert main(["compare", str(tmp_path), "--ab", "base,cand", "--fail-on", "p50:10%"]) == 1
    assert "3/3" in capsys.readouterr().out
    with pytest.raises(CompareError, match="no record of backend 'other'"):
        compare_ab([tmp_path], "base", "other")
    for bad in ("base", "base,base", "a,b,c"):
        with pytest.raises(CompareError, match="--ab"):
            parse_ab(bad)
