"""Compare result records: candidate / base, per metric, with bootstrap confidence intervals.

Matching. Records are matched by workload name, scenario kind, effective
batch size and precision (and, for Server, the offered load ``target_qps``:
latency at 100 QPS says nothing about latency at 200). The backend may differ:
comparing vendors is the point. A different model SHA-256 under the same
workload name, or a different system fingerprint, gives a warning, not a
refusal.

Statistics. For every matched pair and metric the ratio ``cand / base`` gets
a percentile-bootstrap confidence interval (default 95 %) computed from the
raw ``samples_ns`` of both records, resampled independently:

* Latency percentiles (p50, p99, a p90 headline ...) use the *exact*
  bootstrap distribution of an order statistic instead of a (B, n) resample
  matrix. If a resample draws n indices ``floor(n * U_i)`` with uniform
  ``U_i``, its k-th smallest value is ``sorted[floor(n * U_(k))]``, and
  ``U_(k)`` is Beta(k, n + 1 - k) distributed. Drawing B Beta variates is
  therefore the same bootstrap as resampling B x n indices, at O(B) cost after
  one sort; k follows the LoadGen index rule of :func:`benchkit.stats.percentile_ns`.
* Latencies are serially correlated (a burst of background load slows a run
  of queries), and an i.i.d. bootstrap then gives intervals too narrow: false
  regressions. Both Beta parameters are therefore divided by the quantile's
  *design effect*, estimated from 32 contiguous blocks in issue order (see
  ``_Sample.design_effect``; never below 1). On i.i.d. samples this changes
  nothing but noise; on AR(1) latencies (phi = 0.9) it cut the two-sided
  false-alarm rate of p50 from 55 % to about 6 %.
* Throughput of a closed-loop scenario (SingleStream, MultiStream, Offline)
  is ``samples per query / mean query latency`` up to the harness's own
  overhead, so its replicates are ``throughput * mean / mean*`` with ``mean*``
  from a *block* bootstrap of the latencies in issue order (the same 32
  blocks). Server throughput is set by the Poisson arrival schedule, not by
  latency; its replicates scale it by ``Poisson(N) / N`` for N completed
  queries (conservative when both runs used the same seed, and so the same
  schedule).

Verdict. A change is *significant* when the interval excludes 1: the
verdict is then read straight off the interval shown beside it, so the two
can never disagree (a separate Mann-Whitney test would answer a different
question - a location shift of the whole distribution, not of p99 - and could
contradict the printed interval). With thousands of samples tiny shifts are
significant, so a *practical threshold* (default 5 %) separates a
``regression``/``improvement`` from a ``small change``. ``--fail-on
"p99:5%,throughput:3%"`` fails only on a significant regression beyond its
metric's threshold.

Reads records only; never touches a backend.
"""

from __future__ import annotations

import functools
import json
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from benchkit.results import recordio as _recordio, records
from benchkit import stats
from benchkit._format import fmt_value
from benchkit.errors import BenchkitError
from benchkit.results.records import ResultRecord

COMPARE_FORMAT_VERSION = 1  # 1: first version of the JSON output

# Contiguous blocks (in issue order) of the block bootstrap and of the
# design-effect estimate: enough blocks for a usable variance estimate, each
# long enough to hold short-range correlation (with AR(1) latencies at
# phi = 0.9, 32 blocks gave fewer false alarms than 64 at equal power).
_BLOCKS = 32

VERDICTS = ("regression", "improvement", "small change", "no change", "no samples")


class CompareError(BenchkitError):
    """Bad compare input: a malformed --fail-on, an unknown metric, an empty side."""


class MatchKey(NamedTuple):
    workload: str
    scenario: str
    batch: int
    precision: str
    target_qps: float | None  # Server only

    def label(self) -> str:
        load = f" @ {self.target_qps:g} QPS" if self.target_qps is not None else ""
        return f"{self.workload}/{self.scenario}/{self.precision}/batch {self.batch}{load}"

    def sort_key(self) -> tuple:
        return (self.workload, self.scenario, self.batch, self.precision, self.target_qps or -1.0)


@dataclass(frozen=True)
class CompareSettings:
    """How intervals and verdicts are computed."""

    confidence: float = 0.95
    resamples: int = 1000
    seed: int = 0
    threshold: float = 0.05  # default practical threshold, as a fraction
    # --fail-on: metric (or "headline") -> its threshold; these metrics gate the exit status.
    fail_on: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
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
        }


@dataclass(frozen=True)
class RecordRef:
    """Which record one side of a pair came from."""

    cell_id: str
    run_id: str
    backend: str
    path: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"cell_id": self.cell_id, "run_id": self.run_id, "backend": self.backend, "path": self.path}


@dataclass(frozen=True)
class PairResult:
    key: MatchKey
    base: RecordRef
    cand: RecordRef
    metrics: tuple[MetricResult, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.key.workload, "scenario": self.key.scenario, "batch": self.key.batch,
            "precision": self.key.precision, "target_qps": self.key.target_qps,
            "base": self.base.to_dict(), "cand": self.cand.to_dict(),
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

    def failures(self) -> list[tuple[PairResult, MetricResult]]:
        """Rows failing the ``fail_on`` gate: significant regressions beyond their metric's threshold."""
        return [(p, m) for p in self.pairs for m in p.metrics
                if m.verdict == "regression" and self.settings.gated(m.metric, m.headline)]

    def to_dict(self) -> dict[str, Any]:
        s = self.settings
        return {
            "format": "benchkit-compare",
            "version": COMPARE_FORMAT_VERSION,
            "settings": {"confidence": s.confidence, "resamples": s.resamples, "seed": s.seed,
                         "threshold": s.threshold, "fail_on": dict(s.fail_on)},
            "summary": self.counts(),
            "gate": None if not s.fail_on else {
                "passed": not self.failures(),
                "failures": [{"pair": p.key.label(), "metric": m.metric, "change": m.change}
                             for p, m in self.failures()],
            },
            "pairs": [p.to_dict() for p in self.pairs],
            "warnings": list(self.warnings),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def to_markdown(self) -> str:
        return render_markdown(self)


# --------------------------------------------------------------------------- --fail-on

_METRIC_RE = re.compile(r"^(p\d+(?:\.\d+)?|throughput|headline)$")
_FAIL_ON_HELP = 'expected comma-separated METRIC:N% such as "p99:5%,throughput:3%" ' \
                "(metrics: p50, p90, p95, p99, p999 or any pNN, throughput, headline)"


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
    if name.startswith("p"):
        pct = _metric_percentile(name)
        if not 0 < pct < 100:
            raise CompareError(f"{where}: percentile metric {name!r} must be between p0 and p100 (exclusive)")
        return _percentile_metric(pct)
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
    return MatchKey(r.workload.name, r.scenario.kind, r.workload.effective_batch_size or 1, r.backend.precision,
                    float(qps) if qps is not None else None)


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
        return RecordRef(r.cell_id, r.run_id, r.backend.id if r.backend else "-", self.path)


def _index(side: Sequence[_Side], name: str, warnings: list[str]) -> dict[MatchKey, _Side]:
    out: dict[MatchKey, _Side] = {}
    dupes: dict[MatchKey, int] = {}
    for s in side:
        k = match_key(s.record)
        if k is None:
            warnings.append(f"{name}: {s.record.cell_id} (run {s.record.run_id}) has no measurement; skipped")
            continue
        if k in out:
            dupes[k] = dupes.get(k, 1) + 1
            if s.record.started_at <= out[k].record.started_at:
                continue
        out[k] = s
    for k, n in dupes.items():
        warnings.append(f"{name}: {n} records for {k.label()}; using the newest (run {out[k].record.run_id})")
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


def _fingerprint_warnings(pairs: list[tuple[MatchKey, _Side, _Side]]) -> list[str]:
    groups: dict[tuple, list[str]] = {}
    for k, b, c in pairs:
        fb, fc = fingerprint(b.record), fingerprint(c.record)
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
    for name in [head.name, *extra]:
        if name in names or name == "headline":
            continue
        names.add(name)
        defs.append(_MetricDef(name, "ns", False, _metric_percentile(name)))
    # Latency percentiles in ascending order, then throughput.
    defs.sort(key=lambda d: (d.percentile is None, d.percentile or 0.0))
    return defs, head.name


class _Sample:
    """One record's samples prepared once: issue order, sorted copy, blocks, point values."""

    __slots__ = ("record", "x", "sorted_ns", "starts", "block_sums", "block_sizes", "mean_ns")

    def __init__(self, r: ResultRecord, x: np.ndarray | None) -> None:
        self.record = r
        self.x = self.sorted_ns = self.starts = self.block_sums = self.block_sizes = None
        self.mean_ns = None
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

        A sample quantile's variance is that of the fraction of samples at or
        below it (Bahadur), so the ratio of that fraction's between-block
        variance to its i.i.d. variance p(1 - p)/n is the quantile's design
        effect. Clamped at 1: noise in the estimate must never make an
        interval narrower than the i.i.d. bootstrap's.
        """
        n, k = self.x.size, self.starts.size
        if k < 16:  # too few blocks to estimate a variance
            return 1.0
        below = np.add.reduceat(self.x <= self.sorted_ns[idx], self.starts, dtype=np.int64).astype(np.float64)
        p = below.sum() / n
        if p <= 0.0 or p >= 1.0:
            return 1.0
        # Between-block variance of the ratio estimator sum(below) / n (cluster sampling).
        var_blocks = float(np.sum((below - p * self.block_sizes) ** 2)) * k / (k - 1) / (n * n)
        return max(1.0, var_blocks / (p * (1.0 - p) / n))

    @property
    def has_samples(self) -> bool:
        return self.sorted_ns is not None

    def point(self, d: _MetricDef) -> float | None:
        m = self.record.metrics
        if d.percentile is None:
            return float(m.throughput_per_s)
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
        if self.record.scenario.kind == "server":
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
    counts = np.zeros((b, k), dtype=np.float64)
    np.add.at(counts, (np.repeat(np.arange(b), k), idx.ravel()), 1.0)
    return counts


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
    if lo is None or hi is None or not np.isfinite(ratio):
        return False, "no samples"
    if lo <= 1.0 <= hi:
        return False, "no change"
    went_up = lo > 1.0
    worse = went_up != hib
    size = abs(ratio - 1.0)
    if size <= threshold:
        return True, "small change"
    return True, "regression" if worse else "improvement"


def _key_seed(k: MatchKey) -> int:
    return zlib.crc32(repr(k).encode())


def _compare_sides(base: Sequence[_Side], cand: Sequence[_Side], settings: CompareSettings) -> Comparison:
    warnings: list[str] = []
    bi, ci = _index(base, "base", warnings), _index(cand, "cand", warnings)
    keys = sorted(bi.keys() & ci.keys(), key=MatchKey.sort_key)
    matched = [(k, bi[k], ci[k]) for k in keys]
    warnings.extend(_fingerprint_warnings(matched))
    b_count = settings.resamples
    alpha = 1.0 - settings.confidence
    extra = [name for name in settings.fail_on if name != "headline"]
    # One block-count matrix per side, shared by every pair: each pair's
    # interval is still a valid bootstrap, and the (B, blocks) draw is paid once.
    block_counts = {side: _block_counts(np.random.default_rng([settings.seed, side, _BLOCKS]), b_count, _BLOCKS)
                    for side in (0, 1)}
    pairs = []
    no_samples: list[str] = []
    for k, b, c in matched:
        if b.record.workload.model_sha256 != c.record.workload.model_sha256:
            warnings.append(f"{k.label()}: model files differ (sha256 {b.record.workload.model_sha256[:12]}… vs "
                            f"{c.record.workload.model_sha256[:12]}…); compared anyway")
        bh, ch = _headline_def(b.record), _headline_def(c.record)
        if bh != ch:
            warnings.append(f"{k.label()}: headline metrics differ ({bh.name} vs {ch.name}); using the base's")
        defs, head_name = _metric_defs(b.record, extra)
        bs, cs = _Sample(b.record, b.samples_ns), _Sample(c.record, c.samples_ns)
        both = bs.has_samples and cs.has_samples
        if not both:
            no_samples.append(k.label())
        seed = _key_seed(k)
        rng_b = np.random.default_rng([settings.seed, seed, 0])
        rng_c = np.random.default_rng([settings.seed, seed, 1])
        rows = []
        for d in defs:
            bv, cv = bs.point(d), cs.point(d)
            if bv is None or cv is None:
                warnings.append(f"{k.label()}: {d.name} is not in both records and there are no samples; skipped")
                continue
            ratio = cv / bv if bv > 0 else float("inf")
            lo = hi = None
            if both and bv > 0:
                with np.errstate(divide="ignore", invalid="ignore"):
                    reps = (cs.replicates(d, rng_c, b_count, block_counts[1])
                            / bs.replicates(d, rng_b, b_count, block_counts[0]))
                lo, hi = _interval(reps, alpha)
            is_head = d.name == head_name
            thr = settings.threshold_for(d.name, is_head)
            sig, verdict = _verdict(ratio, lo, hi, d.higher_is_better, thr)
            rows.append(MetricResult(d.name, d.unit, d.higher_is_better, is_head, bv, cv, ratio, lo, hi,
                                     _method(d, k.scenario) if lo is not None else "none", sig, thr, verdict))
        pairs.append(PairResult(k, b.ref(), c.ref(), tuple(rows)))
    if no_samples:
        shown = ", ".join(no_samples[:3]) + (f" and {len(no_samples) - 3} more" if len(no_samples) > 3 else "")
        warnings.append(f"{len(no_samples)} pair(s) without raw samples on both sides ({shown}): ratios only, "
                        "no confidence interval and no verdict (run with run.keep_samples: true)")
    for name, only in (("base", bi.keys() - ci.keys()), ("cand", ci.keys() - bi.keys())):
        for k in sorted(only, key=MatchKey.sort_key):
            warnings.append(f"only in {name}: {k.label()}")
    return Comparison(settings, tuple(pairs), tuple(warnings))


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
    arr = np.fromstring(body, dtype=np.int64, sep=",")
    if r.metrics is None or arr.size != r.metrics.latency_ns.count:  # e.g. "1,,2": not JSON; let the reference loader say so
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
}


def render_markdown(c: Comparison) -> str:
    """A pull-request comment: summary line, one table row per metric, warnings."""
    s = c.settings
    counts = c.counts()
    conf = f"{s.confidence:.0%}"
    lines = ["## benchkit compare: candidate / base", ""]
    summary = ", ".join(f"{n} {v}" + ("s" if n != 1 and v in ("regression", "improvement") else "")
                        for v, n in counts.items() if n)
    lines.append(f"{len(c.pairs)} matched pair(s): {summary or 'nothing to compare'}.")
    lines.append("")
    if c.pairs:
        lines.append("| workload | scenario | precision | batch | backend (base → cand) | metric | base | cand | "
                     f"ratio ({conf} CI) | change | verdict |")
        lines.append("|---|---|---|---:|---|---|---:|---:|---:|---:|---|")
        for p in c.pairs:
            k = p.key
            scen = k.scenario + (f" @ {k.target_qps:g} QPS" if k.target_qps is not None else "")
            backends = p.base.backend if p.base.backend == p.cand.backend else f"{p.base.backend} → {p.cand.backend}"
            for m in p.metrics:
                metric = m.metric + (" (headline)" if m.headline else "")
                lines.append(
                    f"| {k.workload} | {scen} | {k.precision} | {k.batch} | {backends} | {metric} | "
                    f"{fmt_value(m.base, m.unit)} | {fmt_value(m.cand, m.unit)} | {_fmt_ratio(m)} | "
                    f"{m.change * 100:+.1f}% | {_MD_VERDICT[m.verdict]} |"
                )
        lines.append("")
    thr = ", ".join(f"{k} {v:.0%}" for k, v in sorted(s.fail_on.items()))
    lines.append(
        f"Ratios are cand / base with a {conf} bootstrap interval from the raw samples ({s.resamples:,} resamples, "
        f"seed {s.seed}). A change is significant when the interval excludes 1, and a regression or improvement "
        f"when it is also beyond the practical threshold ({s.threshold:.0%} by default"
        + (f"; {thr}" if thr else "") + ")."
    )
    if s.fail_on:
        gate = ",".join(f"{k}:{v * 100:g}%" for k, v in s.fail_on.items())
        fails = c.failures()
        lines += ["", f"**Gate `--fail-on {gate}`: {'FAILED' if fails else 'passed'}**"
                  + (f" ({len(fails)} significant regression(s) beyond threshold)" if fails else "")]
    if c.warnings:
        lines += ["", "**Warnings**", ""]
        lines += [f"- {w}" for w in c.warnings]
    return "\n".join(lines) + "\n"


__all__ = ["CompareError", "CompareSettings", "Comparison", "MatchKey", "MetricResult", "PairResult", "RecordRef",
           "VERDICTS", "compare", "compare_paths", "fingerprint", "load_with_samples", "match_key", "parse_fail_on",
           "parse_percent", "render_markdown", "split_paths"]
