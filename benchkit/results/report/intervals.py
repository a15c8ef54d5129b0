"""The figures behind the leaderboards: each headline's 95 % interval, the spread of a cell's runs, ratios to a
baseline with their intervals, the down-sampling of the latency-over-time chart, and which stability notes mean
something. Pure functions on records and samples; no HTML here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from benchkit import stats
from benchkit._format import fmt_ns
from benchkit.results.records import ResultRecord

CONFIDENCE = 0.95
TIMELINE_MAX_POINTS = 2000
"""The latency-over-time chart draws at most this many points (half of them per-bucket maxima)."""

# The text of the CV warning written before the rule needed the run to be too short for its spread (stats e8a7ae5):
# records still carry it, but it judged the heavy tail, not the figures.
_LEGACY_CV_WARNING = "latency is unstable: coefficient of variation"
_CURRENT_CV_WARNING = "latency is too noisy for the run's length"
STABILITY_CHECKS = ("stability.headline", "stability.drift")


@dataclass(frozen=True)
class HeadlineInterval:
    """A headline and how precisely its own record's samples know it (``low``/``high`` None: not known, ``missing``
    says why)."""

    value: float
    unit: str
    higher_is_better: bool
    low: float | None = None
    high: float | None = None
    method: str = ""
    missing: str = ""

    @property
    def known(self) -> bool:
        return self.low is not None and self.high is not None

    @property
    def rel_half_width(self) -> float | None:
        """(high - low) / 2 / value: how precisely the run knows its headline's value (``stats.headline_stability``
        judges it; a percentile headline may instead pass on the fraction of calls beyond it)."""
        if not self.known or self.value <= 0:
            return None
        return (self.high - self.low) / 2.0 / self.value


def headline_percentile(rec: ResultRecord) -> float | None:
    """The percentile a latency headline reports, in percent: the scenario's setting, else read from its name."""
    pct = rec.scenario.settings.get("target_latency_percentile")
    if pct is not None:
        return float(pct)
    m = re.fullmatch(r"latency_p(\d+)_ns", rec.metrics.headline.name) if rec.metrics else None
    if not m:
        return None
    digits = m.group(1)  # p90, p99, p999 (99.9: the name drops the point)
    return float(digits) if len(digits) <= 2 else float(f"{digits[:2]}.{digits[2:]}")


def headline_interval(rec: ResultRecord, samples_ns: np.ndarray | None) -> HeadlineInterval | None:
    """The 95 % interval of a record's headline from its raw samples (None for a failed cell).

    Latency headlines: the distribution-free interval of the percentile (``stats.percentile_interval``, order
    statistics widened for serial correlation). Closed-loop throughput: the interval of the mean latency
    (``stats.mean_interval``, contiguous blocks) carried over to throughput, which is samples per query over the
    mean latency at a fixed concurrency. Server throughput follows the offered load, not the latencies: no
    within-run interval (several runs give a spread).
    """
    m = rec.metrics
    if m is None:
        return None
    h = m.headline
    base = dict(value=float(h.value), unit=h.unit, higher_is_better=h.higher_is_better)
    if samples_ns is None:
        return HeadlineInterval(**base, missing="no interval: the record keeps no raw samples (run.keep_samples: "
                                               "false, or a summary-only record)")
    n = int(samples_ns.size)
    if n < 2:
        return HeadlineInterval(**base, missing=f"no interval: {n} sample(s)")
    if h.unit == "ns":
        pct = headline_percentile(rec)
        if pct is None or not 0 < pct < 100:
            return HeadlineInterval(**base, missing=f"no interval: cannot tell which percentile {h.name} is")
        iv = stats.percentile_interval(samples_ns, pct, CONFIDENCE)
        method = (f"{CONFIDENCE:.0%} interval of p{pct:g}: distribution-free, from order statistics of {n:,} samples"
                  + (f", widened x{math.sqrt(iv.design_effect):.2f} for serial correlation"
                     if iv.design_effect > 1.001 else ""))
        if iv.estimate_ns != int(h.value):
            method += (f"; the headline is the engine's own estimate (e.g. LoadGen's early-stopping one), the "
                       f"interval is that of the samples' p{pct:g}, {fmt_ns(iv.estimate_ns)}")
        return HeadlineInterval(**base, low=float(iv.low_ns), high=float(iv.high_ns), method=method)
    if rec.scenario.kind == "server":
        return HeadlineInterval(**base, missing="no within-run interval: a Server run's throughput follows its "
                                               "offered load (target_qps), not its latencies; several runs give "
                                               "a spread")
    mean, lo, hi = stats.mean_interval(samples_ns, CONFIDENCE)
    if not lo > 0:
        return HeadlineInterval(**base, missing="no interval: the mean latency's interval reaches zero")
    v = float(h.value)
    return HeadlineInterval(**base, low=v * mean / hi, high=v * mean / lo,
                            method=f"{CONFIDENCE:.0%} interval of the mean latency ({fmt_ns(lo)}-{fmt_ns(hi)}, "
                                   f"contiguous blocks of {n:,} samples in issue order) carried over to "
                                   "throughput: closed loop, throughput is samples per query / mean latency")


@dataclass(frozen=True)
class RunSpread:
    """The headline of each run (record, or repeat session) of one cell."""

    values: tuple[float, ...]
    source: str  # "records" | "repeat block"
    invalid: int = 0  # runs among them that are INVALID

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)


def run_spread(recs: Sequence[ResultRecord]) -> RunSpread | None:
    """The spread across the runs of one cell: its measured records when there are several, else the newest
    record's ``repeat.between`` block (every session of ``run.repeats``) where it has two values or more."""
    measured = [r for r in recs if r.metrics is not None]
    if len(measured) >= 2:
        return RunSpread(tuple(float(r.metrics.headline.value) for r in measured), "records",
                         sum(not r.validity.valid for r in measured))
    newest = max(recs, key=lambda r: r.started_at, default=None)
    between = newest.repeat.between if newest is not None and newest.repeat else None
    vals = tuple(float(x) for x in (between.values if between else []) if x is not None)
    return RunSpread(vals, "repeat block") if len(vals) >= 2 else None


def comparison_interval(hi: HeadlineInterval, spread: RunSpread | None) -> tuple[float, float] | None:
    """The interval a ratio uses: the within-run 95 % interval, widened to the range of the cell's runs where it
    has several (the within-run interval ignores what changes from one process to the next)."""
    lows = [x for x in (hi.low, spread.low if spread else None) if x is not None]
    highs = [x for x in (hi.high, spread.high if spread else None) if x is not None]
    if not lows or not highs:
        return None
    return min(lows + [hi.value]), max(highs + [hi.value])


@dataclass(frozen=True)
class Ratio:
    """How many times better a row is than the baseline row (> 1: better, whichever way the metric points)."""

    value: float
    low: float | None = None
    high: float | None = None

    @property
    def verdict(self) -> str:
        """better | worse: the whole interval on one side of 1; same: it straddles 1; unknown: no interval."""
        if self.low is None or self.high is None:
            return "unknown"
        return "better" if self.low > 1 else "worse" if self.high < 1 else "same"


def ratio(row: float, base: float, higher_is_better: bool, row_iv: tuple[float, float] | None = None,
          base_iv: tuple[float, float] | None = None) -> Ratio:
    """``row / base`` for a throughput, ``base / row`` for a latency, with a 95 % interval where both sides have one.

    Each side's interval gives a lower and an upper log distance from its estimate (1.96 standard errors each
    way, asymmetric as percentile intervals are); the ratio's log distances combine them in quadrature, as for
    independent estimates: its lower end uses the numerator's lower and the denominator's upper distance.
    """
    num, den = (row, base) if higher_is_better else (base, row)
    num_iv, den_iv = (row_iv, base_iv) if higher_is_better else (base_iv, row_iv)
    if not (num > 0 and den > 0):
        return Ratio(math.nan)
    r = num / den
    if num_iv is None or den_iv is None or min(*num_iv, *den_iv) <= 0:
        return Ratio(r)
    down_num, up_num = math.log(num / num_iv[0]), math.log(num_iv[1] / num)
    down_den, up_den = math.log(den / den_iv[0]), math.log(den_iv[1] / den)
    return Ratio(r, r * math.exp(-math.hypot(down_num, up_den)), r * math.exp(math.hypot(up_num, down_den)))


def downsample_keep_extremes(samples_ns: np.ndarray, max_points: int = TIMELINE_MAX_POINTS
                             ) -> tuple[np.ndarray, np.ndarray]:
    """(indices, values) of the samples to draw, in issue order: all of them when they fit in ``max_points``,
    else ``max_points // 2`` buckets of consecutive samples, each drawn as its minimum and its maximum, so a
    single stall (the bucket's maximum) is always drawn at its full height and the floor stays visible too."""
    x = np.asarray(samples_ns)
    n = x.size
    if n <= max_points:
        return np.arange(n), x
    size = -(-n // max(max_points // 2, 1))  # samples per bucket, rounded up: at most max_points // 2 buckets
    k = -(-n // size)
    # The last bucket is padded with copies of the last sample: argmin/argmax return the first occurrence, so an
    # extreme there is the real sample, never its copy.
    rows = np.concatenate([x, np.full(k * size - n, x[-1], dtype=x.dtype)]).reshape(k, size)
    start = np.arange(k) * size
    idx = np.unique(np.concatenate([start + rows.argmin(axis=1), start + rows.argmax(axis=1)]))
    return idx, x[idx]


def meaningful_warnings(rec: ResultRecord) -> list[str]:
    """The record's warnings, with a CV warning kept only where ``stats.stability_warning`` still gives one (CV
    above 2.5 % *and* the run too short for it); records written under the old rule carry it for any heavy tail.
    The headline-precision and drift findings are left out: the leaderboard shows them beside the interval."""
    shown = {f.message for f in rec.validity.findings if f.check in STABILITY_CHECKS}
    out: list[str] = []
    for w in rec.validity.warnings:
        if w in shown:
            continue
        if w.startswith((_LEGACY_CV_WARNING, _CURRENT_CV_WARNING)):
            current = stats.stability_warning(rec.metrics.latency_ns) if rec.metrics else None
            if current and current not in out:
                out.append(current)
            continue
        out.append(w)
    return out


def stability_findings(rec: ResultRecord) -> list[tuple[str, str, str]]:
    """(check, severity, message) of the record's ``stability.headline`` and ``stability.drift`` findings."""
    return [(f.check, f.severity, f.message) for f in rec.validity.findings if f.check in STABILITY_CHECKS]
