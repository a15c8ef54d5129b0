"""Compare result records: candidate / base, per metric, with confidence intervals that include run-to-run variation.

Matching. Records are matched by workload name, scenario kind, effective
batch size and precision (and by the offered load: for Server ``target_qps``,
for Offline ``concurrency``, the calls kept in flight: latency at 100 QPS
says nothing about latency at 200). The backend may differ:
comparing vendors is the point. A different model SHA-256 under the same
workload name, or a different system fingerprint, gives a warning, not a
refusal.

Pooling. Every record of a cell on one side is one *run* of it: the
sessions of ``run.repeats`` and the records of several ``benchkit run``
invocations alike (each ran in a fresh process). All of them are pooled, and
a side's value of a metric is the mean of its runs' values. INVALID records
are left out of a pool that has VALID ones; a side with nothing but INVALID
records is compared, and the pair is marked INVALID in every output (a
warning names the reasons) instead of being ranked as if nothing were wrong.
Records of several backends under one key on one side are not pooled: the
newest record's backend is used, with a warning.

Why runs matter. Two processes measuring the same thing differ by more than
either one's samples suggest: memory layout, thread placement, clocks and
neighbours change from run to run. On a shared 2-core runner the headline
moved 10-25 % between no-change runs while each run's own interval was
1-2 % wide, so an interval from one run's samples calls noise a regression
(an A/A compare reported +27 %, 95 % CI 1.07-1.49).

Statistics. For every matched pair and metric the ratio ``cand / base`` gets
a percentile-bootstrap confidence interval (default 95 %) from a *two-level
bootstrap*: each replicate draws a side's runs with replacement, then a
within-run replicate of each drawn run (below), and averages them.

* Within one run, latency percentiles (p50, p99, a p90 headline ...) use the
  *exact* bootstrap distribution of an order statistic instead of a (B, n)
  resample matrix. If a resample draws n indices ``floor(n * U_i)`` with
  uniform ``U_i``, its k-th smallest value is ``sorted[floor(n * U_(k))]``,
  and ``U_(k)`` is Beta(k, n + 1 - k) distributed. Drawing B Beta variates is
  therefore the same bootstrap as resampling B x n indices, at O(B) cost
  after one sort; k follows the LoadGen index rule of
  :func:`benchkit.stats.percentile_ns`.
* Latencies are serially correlated (a burst of background load slows a run
  of queries), and an i.i.d. bootstrap then gives intervals too narrow: false
  regressions. Both Beta parameters are therefore divided by the quantile's
  *design effect*, estimated from 32 contiguous blocks in issue order (see
  :func:`benchkit.stats.quantile_design_effect`; never below 1). On i.i.d.
  samples this changes nothing but noise; on AR(1) latencies (phi = 0.9) it
  cut the two-sided false-alarm rate of p50 from 55 % to about 6 %.
* Throughput of a closed-loop scenario (SingleStream, MultiStream, Offline)
  is ``samples per query / mean query latency`` up to the harness's own
  overhead, so its within-run replicates are ``throughput * mean / mean*``
  with ``mean*`` from a *block* bootstrap of the latencies in issue order
  (the same 32 blocks). Server throughput is set by the Poisson arrival
  schedule, not by latency; its replicates scale it by ``Poisson(N) / N`` for
  N completed queries (conservative when both runs used the same seed, and
  so the same schedule). Between runs, throughput is one value per run, and
  the first level resamples those.

Few runs. A bootstrap over R runs sees a spread (R - 1)/R of the runs' true
variance, its second level adds within-run noise that the run values already
carry, and it ignores that the spread itself is estimated from R values: with
the 3 to 5 runs a CI job can afford, its intervals would be too narrow. Two
small-sample corrections, both named in the output's ``method``: each side's
log-replicates are rescaled about the side's value to the variance
``max(s2, w) / R`` (s2 the sample variance of the log run values, w the mean
within-run variance: the floor a few runs that happen to agree cannot go
under), and the log-ratio replicates are spread by ``t(nu) / z`` about the
observed ratio, with ``nu = (R_base - 1) + (R_cand - 1)`` (Student's t of a
two-sample comparison with pooled variance; pyperf's ``compare_to`` likewise
judges its worker processes' values by a two-sample t-test). On synthetic runs with known
between-run variance the 95 % interval then covers the true ratio 93-99 % of
the time from 2 to 10 runs a side (tests/test_compare_pooled.py).

One run on a side. Its runs cannot show their spread. When the other side
has two or more runs, their log-variance is added to the one-run side (the
same cell on the same machine). When both sides have one run, nothing
measures it: each side gets a *default* between-run coefficient of variation
(:data:`DEFAULT_BETWEEN_RUN_CV`, measured on a shared 2-core CI runner;
``CompareSettings.between_run_cv`` overrides it, 0 restores the within-run
interval) and a warning says so: "1 run per side: interval widened by ...
(between-run variation not measured)". Such a gate is only as good as that
default; docs/ci-guide.md recommends ``run.repeats`` instead.

Verdict. A change is *significant* when the interval excludes 1. It is a
``regression`` or an ``improvement`` only when the *whole* interval lies
beyond the practical threshold (default 5 %) in that direction: the data must
show that the change exceeds what the threshold tolerates, not merely that
there is some change and the point estimate is large. A significant change
whose interval reaches back inside the threshold is a ``small change``. The
verdict is read straight off the interval printed beside it, so the two can
never disagree. ``--fail-on "p50:10%,headline:10%"`` fails only on a
regression of a gated metric: a change within its threshold fails the gate
at most (1 - confidence)/2 of the time, whatever its size below the
threshold and however noisy the runner, provided the interval is honest.

Reads records only; never touches a backend.
"""

from __future__ import annotations

import functools
import json
import math
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from benchkit.results import recordio as _recordio, records
from benchkit import stats
from benchkit._format import fmt_value, md_text
from benchkit.errors import BenchkitError
from benchkit.results.records import ResultRecord

COMPARE_FORMAT_VERSION = 2
# 2: pooled runs (pairs[].base_runs / cand_runs, metrics[].runs_base / runs_cand / between_run /
#    between_run_cv, settings.between_run_cv); pairs[].invalid; a regression needs the whole interval beyond
#    the threshold (was: the interval excluding 1 and the point estimate beyond it); gate.invalid
# 1: first version of the JSON output

# Contiguous blocks (in issue order) of the block bootstrap and of the
# design-effect estimate: enough blocks for a usable variance estimate, each
# long enough to hold short-range correlation (with AR(1) latencies at
# phi = 0.9, 32 blocks gave fewer false alarms than 64 at equal power).
_BLOCKS = 32

VERDICTS = ("regression", "improvement", "small change", "no change", "no samples", "no interval")
# "no interval": a figure measured once per run (peak memory), shown as a ratio and never given a verdict.

DEFAULT_BETWEEN_RUN_CV = {"p50": 0.08, "tail": 0.12, "p99": 0.8, "throughput": 0.3}
"""Between-run variation assumed when both sides have one run (nothing measures it): sd of log(value).

Keys: ``p50`` for percentiles up to the median, ``tail`` above it and below
p99, ``p99`` from p99 up, ``throughput``. Measured on a shared 2-core CI
runner (ONNX Runtime, mlp with one intra-op thread, SingleStream and Offline,
a busy-loop neighbour on one core and other users' jobs; 40 sessions in fresh
processes per cell, ``tests/benchmarks/bench_ci_gate.py --measure-cv``),
rounded from the figures per cell: p50 0.07-0.12, p90 0.09-0.17, p99 0.8-1.5
(a tail that sometimes holds a 4 ms time slice and sometimes not), throughput
0.30-0.32 (the process's share of a contended CPU). So on such a runner a
single run per side can show only large changes of the median, and nothing of
the tail or the throughput: the honest answer, said in the output. A quiet
dedicated machine does far better: measure it with ``run.repeats``, or set
``CompareSettings.between_run_cv``.
"""


def default_between_run_cv(percentile: float | None) -> float:
    """The :data:`DEFAULT_BETWEEN_RUN_CV` of a metric: its percentile, or None for throughput."""
    if percentile is None:
        return DEFAULT_BETWEEN_RUN_CV["throughput"]
    if percentile <= 50:
        return DEFAULT_BETWEEN_RUN_CV["p50"]
    return DEFAULT_BETWEEN_RUN_CV["tail" if percentile < 99 else "p99"]


class CompareError(BenchkitError):
    """Bad compare input: a malformed --fail-on, an unknown metric, an empty side."""


class MatchKey(NamedTuple):
    workload: str
    scenario: str
    batch: int
    precision: str
    target_qps: float | None  # Server only
    concurrency: int | None = None  # Offline with calls in flight (offline.concurrency > 1) only

    def load(self) -> str:
        """The offered load, as the scenario column shows it: ' @ 100 QPS', ' @ concurrency 4' or ''."""
        if self.target_qps is not None:
            return f" @ {self.target_qps:g} QPS"
        return f" @ concurrency {self.concurrency}" if self.concurrency is not None else ""

    def label(self) -> str:
        return f"{self.workload}/{self.scenario}/{self.precision}/batch {self.batch}{self.load()}"

    def sort_key(self) -> tuple:
        return (self.workload, self.scenario, self.batch, self.precision, self.target_qps or -1.0,
                self.concurrency or 1)


@dataclass(frozen=True)
class CompareSettings:
    """How intervals and verdicts are computed."""

    confidence: float = 0.95
    resamples: int = 1000
    seed: int = 0
    threshold: float = 0.05  # default practical threshold, as a fraction
    # --fail-on: metric (or "headline") -> its threshold; these metrics gate the exit status.
    fail_on: Mapping[str, float] = field(default_factory=dict)
    # Between-run variation (sd of log(value), about the coefficient of variation while small) assumed when both
    # sides have a single run: None uses DEFAULT_BETWEEN_RUN_CV per metric, 0 trusts one run's samples alone
    # (records from one session).
    between_run_cv: float | None = None

    def __post_init__(self) -> None:
        if self.between_run_cv is not None and not 0 <= self.between_run_cv <= 3:
            raise CompareError(f"between_run_cv must be between 0 and 3 (sd of log value), got {self.between_run_cv}")
        if not 0.5 <= self.confidence < 1:
            raise CompareError(f"confidence must be in [0.5, 1), got {self.confidence}")
        if not 100 <= self.resamples <= 1_000_000:
            raise CompareError(f"resamples must be between 100 and 1,000,000, got {self.resamples}")
        if not 0 <= self.threshold < 1:
            raise CompareError(f"threshold must be a fraction in [0, 1), got {self.threshold}")

    def threshold_for(self, metric: str, headline: bool) -> float:
        if metric in self.fail_on:
            return self.fail_on[metric]
        if headline and "headline" in self.fail_on:
            return self.fail_on["headline"]
        return self.threshold

    def gated(self, metric: str, headline: bool) -> bool:
        return metric in self.fail_on or (headline and "headline" in self.fail_on)


@dataclass(frozen=True)
class MetricResult:
    """One metric of one matched pair."""

    metric: str  # p50, p99, throughput, p90 ...
    unit: str
    higher_is_better: bool
    headline: bool  # the scenario's headline metric
    base: float
    cand: float
    ratio: float  # cand / base
    ci_low: float | None
    ci_high: float | None
    method: str  # how the interval was computed
    significant: bool
    threshold: float  # practical threshold used for the verdict, fraction
    verdict: str  # one of VERDICTS
    runs_base: int = 1  # runs (records) pooled on each side
    runs_cand: int = 1
    # How between-run variation entered the interval: "measured" (a side had >= 2 runs), "default" (one run per
    # side: DEFAULT_BETWEEN_RUN_CV), "given" (one run per side: CompareSettings.between_run_cv), "ignored"
    # (between_run_cv 0), "none" (no interval).
    between_run: str = "none"
    between_run_cv: float | None = None  # that variation as a coefficient of variation (sd of log value)

    @property
    def change(self) -> float:
        """Relative change cand / base - 1 (positive: the value went up)."""
        return self.ratio - 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric, "unit": self.unit, "higher_is_better": self.higher_is_better,
            "headline": self.headline, "base": self.base, "cand": self.cand, "ratio": self.ratio,
            "ci_low": self.ci_low, "ci_high": self.ci_high, "method": self.method,
            "significant": self.significant, "threshold": self.threshold, "verdict": self.verdict,
            "runs_base": self.runs_base, "runs_cand": self.runs_cand, "between_run": self.between_run,
            "between_run_cv": self.between_run_cv,
        }


@dataclass(frozen=True)
class RecordRef:
    """Which record one side of a pair came from."""

    cell_id: str
    run_id: str
    backend: str
    path: str | None
    valid: bool = True
    reasons: tuple[str, ...] = ()  # why the record is INVALID
    repeat: int | None = None  # session number among run.repeats

    def to_dict(self) -> dict[str, Any]:
        return {"cell_id": self.cell_id, "run_id": self.run_id, "backend": self.backend, "path": self.path,
                "valid": self.valid, "reasons": list(self.reasons), "repeat": self.repeat}


@dataclass(frozen=True)
class PairResult:
    key: MatchKey
    base: RecordRef  # the newest record of each side
    cand: RecordRef
    metrics: tuple[MetricResult, ...]
    base_runs: tuple[RecordRef, ...] = ()  # every record pooled on each side, newest first (empty: just base)
    cand_runs: tuple[RecordRef, ...] = ()

    @property
    def invalid(self) -> tuple[str, ...]:
        """The sides ("base", "cand") whose pooled records are INVALID (a pool holds INVALID ones only when
        there is no VALID record of the cell on that side)."""
        return tuple(name for name, ref in (("base", self.base), ("cand", self.cand)) if not ref.valid)

    def runs(self, side: str) -> tuple[RecordRef, ...]:
        refs = self.base_runs if side == "base" else self.cand_runs
        return refs or ((self.base if side == "base" else self.cand),)

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.key.workload, "scenario": self.key.scenario, "batch": self.key.batch,
            "precision": self.key.precision, "target_qps": self.key.target_qps, "concurrency": self.key.concurrency,
            "base": self.base.to_dict(), "cand": self.cand.to_dict(),
            "base_runs": [r.to_dict() for r in self.runs("base")],
            "cand_runs": [r.to_dict() for r in self.runs("cand")],
            "invalid": list(self.invalid),
            "metrics": [m.to_dict() for m in self.metrics],
        }


@dataclass(frozen=True)
class Comparison:
    settings: CompareSettings
    pairs: tuple[PairResult, ...]
    warnings: tuple[str, ...]

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(VERDICTS, 0)
        for p in self.pairs:
            for m in p.metrics:
                out[m.verdict] += 1
        return out

    def shown_counts(self) -> dict[str, int]:
        """Rows per verdict as shown to a reader (:func:`verdict_word`: "slower"/"faster" between backends)."""
        out: dict[str, int] = {}
        for p in self.pairs:
            for m in p.metrics:
                w = verdict_word(p, m)
                out[w] = out.get(w, 0) + 1
        return out

    def failures(self) -> list[tuple[PairResult, MetricResult]]:
        """Rows failing the ``fail_on`` gate: regressions (whole interval beyond the threshold) of gated metrics."""
        return [(p, m) for p in self.pairs for m in p.metrics
                if m.verdict == "regression" and self.settings.gated(m.metric, m.headline)]

    def invalid_pairs(self) -> list[PairResult]:
        """Pairs with an INVALID side: compared and shown, but their figures break a rule of the run."""
        return [p for p in self.pairs if p.invalid]

    def to_dict(self) -> dict[str, Any]:
        s = self.settings
        return {
            "format": "benchkit-compare",
            "version": COMPARE_FORMAT_VERSION,
            "settings": {"confidence": s.confidence, "resamples": s.resamples, "seed": s.seed,
                         "threshold": s.threshold, "fail_on": dict(s.fail_on), "between_run_cv": s.between_run_cv},
            "summary": self.counts(),
            "gate": None if not s.fail_on else {
                "passed": not self.failures(),
                "failures": [{"pair": p.key.label(), "metric": m.metric, "change": m.change,
                              "ci_low": m.ci_low, "ci_high": m.ci_high, "threshold": m.threshold}
                             for p, m in self.failures()],
                "invalid": [{"pair": p.key.label(), "sides": list(p.invalid)} for p in self.invalid_pairs()],
            },
            "pairs": [p.to_dict() for p in self.pairs],
            "warnings": list(self.warnings),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def to_markdown(self) -> str:
        return render_markdown(self)


# --------------------------------------------------------------------------- --fail-on

_METRIC_RE = re.compile(r"^((?:ttft_|tpot_)?p\d+(?:\.\d+)?|throughput|headline)$")
_FAIL_ON_HELP = 'expected comma-separated METRIC:N% such as "p99:5%,throughput:3%" ' \
                "(metrics: p50, p90, p95, p99, p999 or any pNN, throughput, headline; generative records also ttft_pNN " \
                "and tpot_pNN)"


def parse_fail_on(text: str) -> dict[str, float]:
    """``"p99:5%,throughput:3%"`` -> ``{"p99": 0.05, "throughput": 0.03}`` (pytest-benchmark's metric:N% form)."""
    out: dict[str, float] = {}
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise CompareError(f"--fail-on {text!r}: empty entry; {_FAIL_ON_HELP}")
    for part in parts:
        m = re.fullmatch(r"([A-Za-z0-9_.]+)\s*:\s*([0-9]+(?:\.[0-9]+)?)\s*%", part)
        if not m:
            raise CompareError(f"--fail-on {text!r}: cannot read {part!r}; {_FAIL_ON_HELP}")
        name, pct = m.group(1).lower(), float(m.group(2))
        name = _normalize_metric(name, f"--fail-on {text!r}")
        if name in out:
            raise CompareError(f"--fail-on {text!r}: metric {name} given twice")
        if pct >= 100:
            raise CompareError(f"--fail-on {text!r}: threshold for {name} must be below 100%, got {pct:g}%")
        out[name] = pct / 100.0
    return out


def parse_percent(text: str, what: str) -> float:
    """``"5%"`` -> 0.05, for --threshold."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*%\s*", text)
    if not m or float(m.group(1)) >= 100:
        raise CompareError(f"{what} {text!r}: expected a percentage below 100 such as 5%")
    return float(m.group(1)) / 100.0


def _normalize_metric(name: str, where: str) -> str:
    if not _METRIC_RE.match(name):
        raise CompareError(f"{where}: unknown metric {name!r}; {_FAIL_ON_HELP}")
    prefix = name[:5] if name.startswith(("ttft_", "tpot_")) else ""
    if name[len(prefix):].startswith("p"):
        pct = _metric_percentile(name[len(prefix):])
        if not 0 < pct < 100:
            raise CompareError(f"{where}: percentile metric {name!r} must be between p0 and p100 (exclusive)")
        return prefix + _percentile_metric(pct)
    return name


def _metric_percentile(name: str) -> float:
    # "p999" is LatencyStats' name for 99.9; "p99.9" is accepted as well.
    return 99.9 if name == "p999" else float(name[1:])


def _percentile_metric(pct: float) -> str:
    return f"p{pct:g}".replace(".", "")


# --------------------------------------------------------------------------- matching


def match_key(r: ResultRecord) -> MatchKey | None:
    if r.metrics is None or r.workload is None or r.backend is None:
        return None
    qps = r.scenario.settings.get("target_qps") if r.scenario.kind == "server" else None
    conc = r.scenario.settings.get("concurrency", 1) if r.scenario.kind == "offline" else 1
    return MatchKey(r.workload.name, r.scenario.kind, r.workload.effective_batch_size or 1, r.backend.precision,
                    float(qps) if qps is not None else None, int(conc) if conc and conc > 1 else None)


@dataclass(frozen=True)
class _Side:
    record: ResultRecord
    path: str | None
    samples_ns: np.ndarray | None  # issue order; None when the record kept none

    @classmethod
    def of(cls, r: ResultRecord, path: str | None = None) -> _Side:
        return cls(r, path, np.asarray(r.samples_ns, dtype=np.int64) if r.samples_ns else None)

    def ref(self) -> RecordRef:
        r = self.record
        return RecordRef(r.cell_id, r.run_id, r.backend.id if r.backend else "-", self.path, r.validity.valid,
                         tuple(r.validity.reasons), r.repeat.index if r.repeat else None)


def _shown(labels: Sequence[str], limit: int = 3) -> str:
    return ", ".join(labels[:limit]) + (f" and {len(labels) - limit} more" if len(labels) > limit else "")


def _pool(side: Sequence[_Side], name: str, warnings: list[str]) -> dict[MatchKey, list[_Side]]:
    """Every measured record of each cell on one side, newest first: the runs that side pools."""
    groups: dict[MatchKey, list[_Side]] = {}
    for s in side:
        k = match_key(s.record)
        if k is None:
            warnings.append(f"{name}: {s.record.cell_id} (run {s.record.run_id}) has no measurement; skipped")
            continue
        groups.setdefault(k, []).append(s)
    out: dict[MatchKey, list[_Side]] = {}
    for k, members in groups.items():
        members.sort(key=lambda s: s.record.started_at, reverse=True)
        backend = members[0].ref().backend
        if any(m.ref().backend != backend for m in members):
            others = sorted({m.ref().backend for m in members} - {backend})
            warnings.append(f"{name}: records of several backends for {k.label()} ({backend}, {', '.join(others)}); "
                            f"pooling only {backend}'s (the newest record's), a side compares one backend")
            members = [m for m in members if m.ref().backend == backend]
        valid = [m for m in members if m.record.validity.valid]
        if valid and len(valid) < len(members):
            warnings.append(f"{name}: {len(members) - len(valid)} INVALID record(s) of {k.label()} left out of the "
                            f"pool ({len(valid)} VALID run(s) compared)")
            members = valid
        elif not valid:
            reasons = members[0].record.validity.reasons
            warnings.append(f"{name}: {k.label()} is INVALID ({len(members)} record(s); "
                            f"{'; '.join(reasons[:2]) or 'no reason recorded'}): compared and marked INVALID, "
                            "not a result to rank")
        shas = {m.record.workload.model_sha256 for m in members}
        if len(shas) > 1:
            warnings.append(f"{name}: the {len(members)} runs pooled for {k.label()} used {len(shas)} different model "
                            "files (sha256); pooled anyway")
        out[k] = members
    return out


# --------------------------------------------------------------------------- fingerprint

# Runtime packages whose versions change results (the backend's own runtime is compared too).
_RUNTIME_PACKAGES = ("onnxruntime", "onnxruntime-gpu", "openvino", "torch", "tensorrt")


def _normalize_model_name(text: str) -> str:
    """CPU/device names without marketing marks and clock readings: what identifies the part."""
    t = text.lower()
    t = re.sub(r"\((r|tm|c)\)|®|™", " ", t)
    t = re.sub(r"@\s*[0-9.]+\s*[gm]hz", " ", t)
    t = re.sub(r"\b[0-9.]+\s*[gm]hz\b", " ", t)
    t = re.sub(r"\b(cpu|processor)\b", " ", t)
    return re.sub(r"\s+", " ", t).strip(" :,")


def fingerprint(r: ResultRecord) -> dict[str, str]:
    """A tolerant system fingerprint: CPU model, core count, accelerator, runtime versions.

    Clock readings, hostnames, memory size and kernel patch levels are left
    out: they differ between identical machines and would cry wolf.
    """
    s = r.system
    fp = {"cpu": _normalize_model_name(s.cpu_model), "cores": str(s.cpu_count)}
    if r.backend is not None:
        fp["device"] = _normalize_model_name(r.backend.device)
        fp["runtime"] = f"{r.backend.name} {r.backend.version}"
    for pkg in _RUNTIME_PACKAGES:
        if pkg in s.packages:
            fp[pkg] = s.packages[pkg]
    fp["benchkit"] = r.benchkit_version
    return fp


def _fingerprint_warnings(pairs: list[tuple[MatchKey, list[_Side], list[_Side]]]) -> list[str]:
    groups: dict[tuple, list[str]] = {}
    for k, bp, cp in pairs:
        fb, fc = fingerprint(bp[0].record), fingerprint(cp[0].record)
        diffs = tuple(
            f"{name} {fb.get(name, '(none)')!r} vs {fc.get(name, '(none)')!r}"
            for name in sorted(fb.keys() | fc.keys()) if fb.get(name) != fc.get(name)
        )
        if diffs:
            groups.setdefault(diffs, []).append(k.label())
    out = []
    for diffs, labels in groups.items():
        shown = ", ".join(labels[:3]) + (f" and {len(labels) - 3} more" if len(labels) > 3 else "")
        out.append(f"systems differ (base vs cand) for {len(labels)} pair(s) ({shown}): " + "; ".join(diffs))
    return out


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class _MetricDef:
    name: str
    unit: str
    higher_is_better: bool
    percentile: float | None  # None: throughput
    source: str = "samples"  # samples_ns; generative records: "ttft" or "tpot" (metrics.tokens' raw samples)


def _headline_def(r: ResultRecord) -> _MetricDef:
    h = r.metrics.headline
    if h.unit != "ns":
        return _MetricDef("throughput", h.unit, h.higher_is_better, None)
    pct = r.scenario.settings.get("target_latency_percentile")
    if pct is None:
        m = re.fullmatch(r"latency_p(\d+)_ns", h.name)
        pct = _metric_percentile(f"p{m.group(1)}") if m else 99.0
    return _MetricDef(_percentile_metric(float(pct)), "ns", False, float(pct))


def _metric_defs(r: ResultRecord, extra: Sequence[str]) -> tuple[list[_MetricDef], str]:
    head = _headline_def(r)
    defs = [_MetricDef("p50", "ns", False, 50.0), _MetricDef("p99", "ns", False, 99.0),
            _MetricDef("throughput", "samples/s", True, None)]
    names = {d.name for d in defs}
    tokens = []
    for name in [head.name, *extra]:
        if name.startswith(("ttft_", "tpot_")):
            tokens.append(name)
            continue
        if name in names or name == "headline":
            continue
        names.add(name)
        defs.append(_MetricDef(name, "ns", False, _metric_percentile(name)))
    # Latency percentiles in ascending order, then throughput.
    defs.sort(key=lambda d: (d.percentile is None, d.percentile or 0.0))
    if r.metrics.tokens is not None:  # generative: the token latencies, after the request latencies
        wanted = [f"{src}_p{p:g}" for src in ("ttft", "tpot") for p in (50.0, 99.0)]
        wanted += [name for name in tokens if name not in wanted]
        defs += [_MetricDef(name, "ns", False, _metric_percentile(name[5:]), name[:4]) for name in wanted
                 if getattr(r.metrics.tokens, f"{name[:4]}_ns") is not None]
    return defs, head.name


def _token_samples(r: ResultRecord, source: str) -> np.ndarray | None:
    tok = r.metrics.tokens
    raw = getattr(tok, f"{source}_samples_ns", None) if tok is not None else None
    return np.asarray(raw, dtype=np.int64) if raw else None


class _Sample:
    """One record's samples prepared once: issue order, sorted copy, blocks, point values."""

    __slots__ = ("record", "x", "sorted_ns", "starts", "block_sums", "block_sizes", "mean_ns", "_deff")

    def __init__(self, r: ResultRecord, x: np.ndarray | None) -> None:
        self.record = r
        self.x = self.sorted_ns = self.starts = self.block_sums = self.block_sizes = None
        self.mean_ns = None
        self._deff: dict[int, float] = {}
        if x is not None and x.size:
            self.x = x
            self.sorted_ns = np.sort(x)
            n = x.size
            k = min(_BLOCKS, n)
            self.starts = (np.arange(k) * n) // k
            self.block_sums = np.add.reduceat(x, self.starts).astype(np.float64)
            self.block_sizes = np.diff(np.append(self.starts, n)).astype(np.float64)
            self.mean_ns = float(self.block_sums.sum() / n)

    def design_effect(self, idx: int) -> float:
        """How much serial correlation inflates the variance of the quantile at sorted index ``idx`` (>= 1).

        :func:`benchkit.stats.quantile_design_effect` over this record's blocks.
        """
        if idx not in self._deff:
            self._deff[idx] = stats.quantile_design_effect(self.x, float(self.sorted_ns[idx]), _BLOCKS)
        return self._deff[idx]

    @property
    def has_samples(self) -> bool:
        return self.sorted_ns is not None

    def point(self, d: _MetricDef) -> float | None:
        m = self.record.metrics
        if d.percentile is None:
            return float(m.throughput_per_s)
        if d.source != "samples" and self.sorted_ns is None:
            st = getattr(m.tokens, f"{d.source}_ns", None) if m.tokens is not None else None
            stored = getattr(st, _percentile_metric(d.percentile), None) if st is not None else None
            return None if stored is None else float(stored)
        if self.sorted_ns is not None:
            return float(self.sorted_ns[_order_index(self.sorted_ns.size, d.percentile)])
        stored = getattr(m.latency_ns, d.name, None)
        if stored is not None:
            return float(stored)
        h = m.headline
        if h.unit == "ns" and _headline_def(self.record).name == d.name:
            return float(h.value)
        return None

    def replicates(self, d: _MetricDef, rng: np.random.Generator, b: int, block_counts: np.ndarray) -> np.ndarray:
        """B bootstrap replicates of the metric.

        ``block_counts`` is a (B, blocks) matrix: how often each block is drawn
        in each resample, so a resample's mean is two dot products.
        """
        s = self.sorted_ns
        n = s.size
        if d.percentile is not None:
            idx = _order_index(n, d.percentile)
            k = idx + 1  # 1-based order statistic
            # Exact i.i.d. bootstrap: Beta(k, n + 1 - k); serial correlation
            # shrinks both parameters by the design effect (an effective
            # sample size), widening the distribution around the same centre.
            shrink = 1.0 / self.design_effect(idx)
            u = rng.beta(k * shrink, (n + 1 - k) * shrink, size=b)
            return s[np.minimum((u * n).astype(np.int64), n - 1)].astype(np.float64)
        m = self.record.metrics
        if self.record.scenario.kind == "server" or self.record.scenario.settings.get("mode") == "server":
            q = max(int(m.count), 1)
            return m.throughput_per_s * rng.poisson(q, size=b) / q
        k = self.block_sums.size
        if block_counts.shape[1] != k:  # fewer samples than blocks: a draw of this record's own
            block_counts = _block_counts(rng, b, k)
        means = (block_counts @ self.block_sums) / (block_counts @ self.block_sizes)
        with np.errstate(divide="ignore"):
            return m.throughput_per_s * self.mean_ns / means


def _block_counts(rng: np.random.Generator, b: int, k: int) -> np.ndarray:
    idx = rng.integers(0, k, size=(b, k))
    # How often each block is drawn in each resample: one bincount over (resample, block) cells.
    flat = (np.arange(b, dtype=np.int64)[:, None] * k + idx).ravel()
    return np.bincount(flat, minlength=b * k).reshape(b, k).astype(np.float64)


@functools.lru_cache(maxsize=64)
def _fraction(percentile: float) -> float:
    return stats._percent_to_fraction(percentile)


def _order_index(n: int, percentile: float) -> int:
    # The LoadGen index rule of stats.percentile_ns, without re-validating the array.
    return stats._index(n, _fraction(percentile))


def _interval(reps: np.ndarray, alpha: float) -> tuple[float, float]:
    """Percentile interval read off two order statistics of the replicates (no interpolation)."""
    b = reps.size
    lo_i = int(np.floor(alpha / 2 * (b - 1)))
    hi_i = int(np.ceil((1 - alpha / 2) * (b - 1)))
    part = np.partition(reps, (lo_i, hi_i))
    return float(part[lo_i]), float(part[hi_i])


def _method(d: _MetricDef, kind: str) -> str:
    if d.percentile is not None:
        return "bootstrap (order statistic)"
    return "poisson count" if kind == "server" else "block bootstrap (mean latency)"


def _verdict(ratio: float, lo: float | None, hi: float | None, hib: bool, threshold: float) -> tuple[bool, str]:
    """(significant, verdict): a regression or improvement needs the *whole* interval beyond the threshold."""
    if lo is None or hi is None or not np.isfinite(ratio):
        return False, "no samples"
    if lo <= 1.0 <= hi:
        return False, "no change"
    went_up = lo > 1.0
    worse = went_up != hib
    beyond = lo > 1.0 + threshold if went_up else hi < 1.0 - threshold
    if not beyond:
        return True, "small change"
    return True, "regression" if worse else "improvement"


def _key_seed(k: MatchKey) -> int:
    # a key without concurrency seeds as it did before the field existed: the same records, the same intervals
    return zlib.crc32(repr(k).replace(", concurrency=None)", ")").encode())


def _metric_order(name: str) -> tuple[bool, str, float]:
    # request latencies, then throughput, then the token latencies (ttft_, tpot_), each by percentile
    token = name[:5] if name.startswith(("ttft_", "tpot_")) else ""
    plain = name[len(token):]
    return (bool(token) or plain == "throughput", token, 0.0 if plain == "throughput" else _metric_percentile(plain))


@dataclass(frozen=True)
class _Interval:
    low: float
    high: float
    method: str
    between_run: str  # measured | default | given | ignored
    between_run_cv: float | None


def _side_log_replicates(runs: Sequence[_Sample], points: Sequence[float], d: _MetricDef, rng: np.random.Generator,
                         b: int, block_counts: np.ndarray) -> tuple[np.ndarray, float | None]:
    """B replicates of log(the side's pooled value), and the log-variance of its run values (None: one run).

    One run: its within-run replicates. Several: a (B, R) draw of run indices;
    a run drawn c times in a replicate contributes c independent within-run
    replicates, and the replicate is their mean over R. That two-level
    bootstrap has the right shape but the wrong spread for few runs: the
    plug-in spread of R values is (R - 1)/R of the true one, and the second
    level adds the within-run noise that the run values already carry. The
    log-replicates are therefore rescaled about log(mean of the run values) to
    the variance ``max(s2, w) / R``: s2 is the sample variance of the log run
    values (unbiased for the variance of one run's value, within-run noise
    included), w the mean within-run variance, which the runs' scatter cannot
    undercut however closely a few runs happen to agree.
    """
    r = len(runs)
    if r == 1:
        reps = runs[0].replicates(d, rng, b, block_counts)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(np.maximum(reps, 1e-300)), None
    draws = rng.integers(0, r, size=(b, r))
    counts = np.bincount((np.arange(b)[:, None] * r + draws).ravel(), minlength=b * r).reshape(b, r)  # run draws
    depth = int(counts.max())
    total = np.zeros(b)
    within = []
    # One (B * depth, blocks) draw of block counts for the side; each run reads it through its own random
    # permutation of the blocks, which is again a multinomial draw, independent of the other runs' up to the
    # multinomial's -1/blocks covariance. (A draw per run cost more than the rest of the comparison.)
    shared = _block_counts(rng, b * depth, _BLOCKS) if d.percentile is None else np.empty((0, 0))
    for j, run in enumerate(runs):
        bc = shared[:, rng.permutation(_BLOCKS)] if shared.size else shared
        w = run.replicates(d, rng, b * depth, bc).reshape(b, depth)
        total += np.where(np.arange(depth) < counts[:, j:j + 1], w, 0.0).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            within.append(float(np.var(np.log(np.maximum(w[:, 0], 1e-300)))))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(np.maximum(total / r, 1e-300))
    centre = math.log(sum(points) / r)
    s2 = float(np.var(np.log(points), ddof=1))
    target = max(s2, float(np.mean(within))) / r
    spread = float(np.var(out))
    if spread > 0 and np.isfinite(spread) and np.isfinite(target):
        out = centre + np.sqrt(target / spread) * (out - centre)
    return out, s2


def _pooled_interval(d: _MetricDef, kind: str, bruns: Sequence[_Sample], cruns: Sequence[_Sample],
                     bpts: Sequence[float], cpts: Sequence[float], settings: CompareSettings,
                     rngs: tuple[np.random.Generator, np.random.Generator, np.random.Generator],
                     block_counts: dict[int, np.ndarray]) -> _Interval:
    """The ratio's interval from the two-level bootstrap, with the small-sample and one-run corrections."""
    b_count = settings.resamples
    alpha = 1.0 - settings.confidence
    lb, s2b = _side_log_replicates(bruns, bpts, d, rngs[0], b_count, block_counts[0])
    lc, s2c = _side_log_replicates(cruns, cpts, d, rngs[1], b_count, block_counts[1])
    reps = lc - lb
    centre = math.log(sum(cpts) / len(cpts)) - math.log(sum(bpts) / len(bpts))
    rb, rc = len(bruns), len(cruns)
    df = (rb - 1) + (rc - 1)
    within = _method(d, kind)
    if df > 0:
        # Pooled log-variance of the run values over the sides with >= 2 runs: the run-to-run variance.
        var = ((rb - 1) * (s2b or 0.0) + (rc - 1) * (s2c or 0.0)) / df
        source, cv = "measured", float(np.sqrt(var))
    else:
        given = settings.between_run_cv is not None
        cv = settings.between_run_cv if given else default_between_run_cv(d.percentile)
        var = cv * cv
        source = "ignored" if cv == 0 else "given" if given else "default"
    single = (rb == 1) + (rc == 1)
    if single and var > 0:
        # A one-run side cannot show its run-to-run spread: add it (from the other side's runs, or the default).
        reps = reps + rngs[2].normal(0.0, float(np.sqrt(single * var)), size=reps.size)
    if df > 0:
        # The spread is estimated from df degrees of freedom: Student's t instead of the normal quantile.
        k = stats.student_t_quantile(1.0 - alpha / 2, df) / stats.normal_quantile(1.0 - alpha / 2)
        reps = centre + k * (reps - centre)
    lo, hi = _interval(reps, alpha)
    if rb == rc == 1:
        method = within if source == "ignored" else f"{within}; 1 run per side, {source} between-run CV {cv:.0%} added"
    else:
        method = f"two-level bootstrap ({rb}+{rc} runs; within: {within}), t({df})"
        if single:
            method += f"; between-run CV {cv:.1%} from the runs added to the 1-run side"
    return _Interval(float(np.exp(lo)), float(np.exp(hi)), method, source, cv)


def _compare_sides(base: Sequence[_Side], cand: Sequence[_Side], settings: CompareSettings) -> Comparison:
    warnings: list[str] = []
    bi, ci = _pool(base, "base", warnings), _pool(cand, "cand", warnings)
    keys = sorted(bi.keys() & ci.keys(), key=MatchKey.sort_key)
    matched = [(k, bi[k], ci[k]) for k in keys]
    warnings.extend(_fingerprint_warnings(matched))
    b_count = settings.resamples
    extra = [name for name in settings.fail_on if name != "headline"]
    # One block-count matrix per side, shared by every one-run side: each pair's interval is still a valid
    # bootstrap, and the (B, blocks) draw is paid once.
    block_counts = {side: _block_counts(np.random.default_rng([settings.seed, side, _BLOCKS]), b_count, _BLOCKS)
                    for side in (0, 1)}
    pairs = []
    no_samples: list[str] = []
    defaulted: dict[str, dict[str, float]] = {}  # pair label -> metric -> between-run CV assumed
    borrowed: list[str] = []
    for k, bpool, cpool in matched:
        b, c = bpool[0], cpool[0]
        if b.record.workload.model_sha256 != c.record.workload.model_sha256:
            warnings.append(f"{k.label()}: model files differ (sha256 {b.record.workload.model_sha256[:12]}… vs "
                            f"{c.record.workload.model_sha256[:12]}…); compared anyway")
        bh, ch = _headline_def(b.record), _headline_def(c.record)
        if bh != ch:
            warnings.append(f"{k.label()}: headline metrics differ ({bh.name} vs {ch.name}); using the base's")
        defs, head_name = _metric_defs(b.record, extra)
        bruns = [_Sample(s.record, s.samples_ns) for s in bpool]
        cruns = [_Sample(s.record, s.samples_ns) for s in cpool]
        sample_runs = (bruns, cruns)
        both = all(r.has_samples for r in bruns + cruns)
        if not both:
            no_samples.append(k.label())
        seed = _key_seed(k)
        rngs = tuple(np.random.default_rng([settings.seed, seed, i]) for i in range(3))
        rows = []
        token_runs = {src: ([_Sample(s.record, _token_samples(s.record, src)) for s in bpool],
                            [_Sample(s.record, _token_samples(s.record, src)) for s in cpool])
                      for src in {d.source for d in defs} - {"samples"}}
        for d in defs:
            bruns, cruns = token_runs.get(d.source, (sample_runs))
            bpts, cpts = [r.point(d) for r in bruns], [r.point(d) for r in cruns]
            if any(v is None for v in bpts + cpts):
                warnings.append(f"{k.label()}: {d.name} is not in both records and there are no samples; skipped")
                continue
            bv, cv = sum(bpts) / len(bpts), sum(cpts) / len(cpts)
            ratio = cv / bv if bv > 0 else float("inf")
            iv = None
            if both and min(bpts + cpts) > 0:
                iv = _pooled_interval(d, k.scenario, bruns, cruns, bpts, cpts, settings, rngs, block_counts)
                if iv.between_run in ("default", "given"):
                    defaulted.setdefault(k.label(), {})[d.name] = iv.between_run_cv
                elif (len(bruns) == 1) != (len(cruns) == 1) and k.label() not in borrowed:
                    borrowed.append(k.label())
            lo, hi = (iv.low, iv.high) if iv else (None, None)
            is_head = d.name == head_name
            thr = settings.threshold_for(d.name, is_head)
            sig, verdict = _verdict(ratio, lo, hi, d.higher_is_better, thr)
            rows.append(MetricResult(d.name, d.unit, d.higher_is_better, is_head, bv, cv, ratio, lo, hi,
                                     iv.method if iv else "none", sig, thr, verdict, len(bruns), len(cruns),
                                     iv.between_run if iv else "none", iv.between_run_cv if iv else None))
        rows += _memory_rows(bpool, cpool, settings)
        pairs.append(PairResult(k, b.ref(), c.ref(), tuple(rows), tuple(s.ref() for s in bpool),
                                tuple(s.ref() for s in cpool)))
    if defaulted:
        cvs: dict[str, float] = {}
        for per_metric in defaulted.values():
            cvs.update(per_metric)
        shown = ", ".join(f"{name} {cv:.0%}" for name, cv in sorted(cvs.items(), key=lambda kv: _metric_order(kv[0])))
        source = "given" if settings.between_run_cv is not None else "default"
        warnings.append(f"1 run per side for {len(defaulted)} pair(s) ({_shown(list(defaulted))}): intervals widened "
                        f"by the {source} between-run CV ({shown}) (between-run variation not measured); for a gate, "
                        "give each side several runs (run.repeats, see docs/ci-guide.md)")
    if borrowed:
        warnings.append(f"one side has a single run for {len(borrowed)} pair(s) ({_shown(borrowed)}): its "
                        "between-run variation is taken from the other side's runs")
    if no_samples:
        warnings.append(f"{len(no_samples)} pair(s) without raw samples on both sides ({_shown(no_samples)}): "
                        "ratios only, no confidence interval and no verdict (run with run.keep_samples: true)")
    for name, only in (("base", bi.keys() - ci.keys()), ("cand", ci.keys() - bi.keys())):
        for k in sorted(only, key=MatchKey.sort_key):
            warnings.append(f"only in {name}: {k.label()}")
    return Comparison(settings, tuple(pairs), tuple(warnings))


def _memory_rows(bpool: Sequence[_Side], cpool: Sequence[_Side], settings: CompareSettings) -> list[MetricResult]:
    """Peak resident memory (records' ``memory`` block), each side the mean of its runs: a ratio, no interval."""
    def peaks(pool: Sequence[_Side]) -> list[int] | None:
        vals = [s.record.memory.peak_rss_bytes if s.record.memory is not None else None for s in pool]
        return None if any(v is None for v in vals) else vals

    bv, cv = peaks(bpool), peaks(cpool)
    if not bv or not cv:
        return []
    b, c = sum(bv) / len(bv), sum(cv) / len(cv)
    return [MetricResult("peak_rss", "bytes", False, False, b, c, c / b if b > 0 else float("inf"), None, None,
                         "none", False, settings.threshold, "no interval", len(bv), len(cv))]


def verdict_word(pair: PairResult, m: MetricResult) -> str:
    """The verdict as shown: between two different backends a change is "faster"/"slower" (or "more"/"less
    memory"), not a regression or an improvement, which would say one vendor's result is a later version of the
    other's."""
    if pair.base.backend == pair.cand.backend or m.verdict not in ("regression", "improvement"):
        return m.verdict
    better = m.verdict == "improvement"
    if m.unit == "bytes":
        return "less memory" if better else "more memory"
    return "faster" if better else "slower"


def compare(base: Sequence[ResultRecord], cand: Sequence[ResultRecord],
            settings: CompareSettings | None = None) -> Comparison:
    """Compare candidate records against base records (see the module docstring for the method)."""
    return _compare_sides([_Side.of(r) for r in base], [_Side.of(r) for r in cand], settings or CompareSettings())


def load_with_samples(path: Path) -> tuple[ResultRecord, np.ndarray | None]:
    """A record (its own ``samples_ns`` left None) and its samples as an int64 array, in issue order.

    Parsing 10^4 samples per record with numpy instead of as Python ints is
    what keeps a 1,000-pair compare within seconds (see ``benchkit.results.recordio``).
    """
    r, body = _recordio.load_split(path)
    if body is None:
        return r, None
    try:
        arr = np.fromstring(body, dtype=np.int64, sep=",")
    except ValueError:  # "[,1": numpy refuses what it cannot read to the end
        arr = None
    if r.metrics is None or arr is None or arr.size != r.metrics.latency_ns.count:
        # e.g. "1,,2": not JSON; the reference loader says so
        r = records.load(path)
        return r.model_copy(update={"samples_ns": None}), np.asarray(r.samples_ns, dtype=np.int64)
    return r, arr


def compare_paths(base: Sequence[str | Path], cand: Sequence[str | Path],
                  settings: CompareSettings | None = None) -> Comparison:
    """Compare record files (or directories of them): candidate against base."""
    sides = []
    for name, paths in (("base", base), ("cand", cand)):
        files = records.find(list(paths))
        if not files:
            raise CompareError(f"{name}: no record files in {', '.join(map(str, paths))}")
        side = []
        for p in files:
            rec, samples = load_with_samples(p)
            side.append(_Side(rec, str(p), samples))
        sides.append(side)
    return _compare_sides(sides[0], sides[1], settings or CompareSettings())


def parse_ab(text: str) -> tuple[str, str]:
    """``"BASE_ID,CAND_ID"`` (--ab) -> the two backend ids."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise CompareError(f"--ab {text!r}: expected two different backend ids as BASE,CAND (the `id` of each "
                           "backend in the spec), e.g. --ab base,candidate")
    return parts[0], parts[1]


def compare_ab(paths: Sequence[str | Path], base_backend: str, cand_backend: str,
               settings: CompareSettings | None = None) -> Comparison:
    """Interleaved A/B: one session's records, split into sides by backend id.

    A spec that lists the base and the candidate as two backends of the same
    workloads (two ids of one adapter with other options, or two adapters)
    and sets ``run.repeats: N`` measures them alternately, base then
    candidate, round after round, in one session: a drift of the machine
    lands on both sides alike instead of between two invocations, the
    strongest defence a shared runner has. Each side pools its N runs.
    """
    files = records.find(list(paths))
    if not files:
        raise CompareError(f"--ab: no record files in {', '.join(map(str, paths))}")
    sides: dict[str, list[_Side]] = {base_backend: [], cand_backend: []}
    seen: set[str] = set()
    for p in files:
        rec, samples = load_with_samples(p)
        bid = rec.backend.id if rec.backend is not None else None
        if bid is not None:
            seen.add(bid)
        if bid in sides:
            sides[bid].append(_Side(rec, str(p), samples))
    for name, bid in (("base", base_backend), ("cand", cand_backend)):
        if not sides[bid]:
            raise CompareError(f"--ab: no record of backend {bid!r} ({name}) in {', '.join(map(str, paths))}; "
                               f"backend ids there: {', '.join(sorted(seen)) or 'none'}")
    return _compare_sides(sides[base_backend], sides[cand_backend], settings or CompareSettings())


def split_paths(paths: Sequence[str]) -> tuple[list[str], list[str]]:
    """``BASE... vs CAND...`` (or exactly ``BASE CAND``) -> (base paths, cand paths)."""
    if "vs" in paths:
        i = list(paths).index("vs")
        base, cand = list(paths[:i]), list(paths[i + 1:])
        if not base or not cand or "vs" in cand:
            raise CompareError("compare: expected BASE... vs CAND... with at least one path on each side of 'vs'")
        return base, cand
    if len(paths) == 2:
        return [paths[0]], [paths[1]]
    raise CompareError(
        f"compare: got {len(paths)} path(s); give exactly BASE CAND, or separate several with 'vs': "
        "benchkit compare base1.json base2.json vs cand1.json cand2.json"
    )


# --------------------------------------------------------------------------- Markdown


def _fmt_ratio(m: MetricResult) -> str:
    if m.ci_low is None:
        return f"{m.ratio:.3f}"
    return f"{m.ratio:.3f} ({m.ci_low:.3f}–{m.ci_high:.3f})"


_MD_VERDICT = {
    "regression": "**regression**",
    "improvement": "improvement",
    "small change": "small change",
    "no change": "no change",
    "no samples": "no samples",
    "no interval": "no interval",
    "slower": "**slower**",
    "faster": "faster",
    "more memory": "more memory",
    "less memory": "less memory",
}


def _invalid_note(p: PairResult) -> str:
    sides = p.invalid
    if not sides:
        return ""
    return " (" + ("base and cand" if len(sides) == 2 else sides[0]) + " INVALID)"


def render_markdown(c: Comparison) -> str:
    """A pull-request comment: summary line, one table row per metric, the method, the gate, warnings."""
    s = c.settings
    counts = c.shown_counts()
    conf = f"{s.confidence:.0%}"
    lines = ["## benchkit compare: candidate / base", ""]
    summary = ", ".join(f"{n} {v}" + ("s" if n != 1 and v in ("regression", "improvement") else "")
                        for v, n in counts.items() if n)
    invalid = c.invalid_pairs()
    lines.append(f"{len(c.pairs)} matched pair(s): {summary or 'nothing to compare'}."
                 + (f" {len(invalid)} pair(s) INVALID: not results to rank." if invalid else ""))
    lines.append("")
    if c.pairs:
        lines.append("| workload | scenario | precision | batch | backend (base → cand) | runs | metric | base | cand | "
                     f"ratio ({conf} CI) | change | verdict |")
        lines.append("|---|---|---|---:|---|---:|---|---:|---:|---:|---:|---|")
        for p in c.pairs:
            k = p.key
            scen = k.scenario + k.load()
            backends = p.base.backend if p.base.backend == p.cand.backend else f"{p.base.backend} → {p.cand.backend}"
            runs = f"{len(p.runs('base'))} / {len(p.runs('cand'))}"
            note = _invalid_note(p)
            for m in p.metrics:
                metric = m.metric + (" (headline)" if m.headline else "")
                lines.append(  # names come from record files: escaped, so that none can end a cell or ping anyone
                    f"| {md_text(k.workload)} | {md_text(scen)} | {md_text(k.precision)} | {k.batch} | "
                    f"{md_text(backends)} | {runs} | {md_text(metric)} | "
                    f"{fmt_value(m.base, m.unit)} | {fmt_value(m.cand, m.unit)} | {_fmt_ratio(m)} | "
                    f"{m.change * 100:+.1f}% | {_MD_VERDICT[verdict_word(p, m)]}{note} |"
                )
        lines.append("")
    thr = ", ".join(f"{k} {v:.0%}" for k, v in sorted(s.fail_on.items()))
    lines.append(
        f"Ratios are cand / base, each side the mean of its runs (records of the cell), with a {conf} two-level "
        f"bootstrap interval over the runs and their raw samples ({s.resamples:,} resamples, seed {s.seed}), so "
        "run-to-run variation is in it. A change is significant when the interval excludes 1, and a regression or "
        f"improvement only when the whole interval is beyond the practical threshold ({s.threshold:.0%} by default"
        + (f"; {thr}" if thr else "") + ")."
    )
    if s.fail_on:
        gate = ",".join(f"{k}:{v * 100:g}%" for k, v in s.fail_on.items())
        fails = c.failures()
        lines += ["", f"**Gate `--fail-on {gate}`: {'FAILED' if fails else 'passed'}**"
                  + (f" ({len(fails)} regression(s) beyond threshold)" if fails else "")]
    if c.warnings:
        lines += ["", "**Warnings**", ""]
        lines += [f"- {md_text(w)}" for w in c.warnings]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- a gate for other tools


@dataclass(frozen=True)
class GateResult:
    """What :func:`gate` decided, with the comparison behind it."""

    comparison: Comparison
    failures: tuple[str, ...]  # one line per reason to fail: a regression, or an INVALID candidate

    @property
    def passed(self) -> bool:
        return not self.failures


def gate(baseline_records: Sequence[ResultRecord], candidate_records: Sequence[ResultRecord],
         fail_on: str | Mapping[str, float], settings: CompareSettings | None = None) -> GateResult:
    """Gate candidate records against a baseline, like pytest-benchmark's ``--benchmark-compare-fail``.

    ``fail_on`` is the ``--fail-on`` text (``"p50:10%,headline:10%"``) or its
    parsed mapping. Fails on each regression of a gated metric (the whole
    interval beyond its threshold: see the module docstring) and on each
    matched cell whose candidate is INVALID (its figures break a rule, so no
    comparison can vouch for them); an INVALID baseline is reported by the
    comparison's warnings, not held against the candidate. Cells only on
    one side are warnings too: a new cell has no baseline to regress from.
    ``settings`` supplies the rest (confidence, resamples, seed ...); its
    ``fail_on`` is replaced. Records are pooled per cell exactly as
    ``benchkit compare`` pools them, so baselines of ``run.repeats`` sessions
    give intervals that include run-to-run variation.

    >>> result = gate(baseline, candidate, "p50:10%,headline:10%")   # doctest: +SKIP
    >>> result.passed, result.failures                                 # doctest: +SKIP
    (False, ('regression: mlp/single_stream/fp32/batch 1 p50 +23.4% (CI 1.168-1.301) beyond 10%',))
    """
    limits = parse_fail_on(fail_on) if isinstance(fail_on, str) else dict(fail_on)
    for name in limits:
        _normalize_metric(name, "gate fail_on")
    base = settings or CompareSettings()
    cmp = compare(baseline_records, candidate_records,
                  CompareSettings(confidence=base.confidence, resamples=base.resamples, seed=base.seed,
                                  threshold=base.threshold, fail_on=limits, between_run_cv=base.between_run_cv))
    lines = [f"regression: {p.key.label()} {m.metric} {m.change * 100:+.1f}% (CI {m.ci_low:.3f}-{m.ci_high:.3f}) "
             f"beyond {m.threshold:.0%}" for p, m in cmp.failures()]
    lines += [f"INVALID candidate: {p.key.label()}: " + ("; ".join(p.cand.reasons) or "no reason recorded")
              for p in cmp.invalid_pairs() if "cand" in p.invalid]
    return GateResult(cmp, tuple(lines))


__all__ = ["DEFAULT_BETWEEN_RUN_CV", "CompareError", "CompareSettings", "Comparison", "GateResult", "MatchKey",
           "MetricResult", "PairResult", "RecordRef", "VERDICTS", "verdict_word", "compare", "compare_paths",
           "default_between_run_cv", "fingerprint", "gate", "load_with_samples", "match_key", "parse_fail_on",
           "parse_percent", "render_markdown", "split_paths"]
