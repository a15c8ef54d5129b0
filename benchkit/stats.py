"""Statistics on latency samples: pure functions on integer nanoseconds.

Every scenario hands its raw samples here, and :class:`LatencyStats` goes
verbatim into the result record as ``metrics.latency_ns``. Two rules shape the
module:

* Every reported latency is an actual sample. Percentiles pick an element of the
  sorted samples by a published index rule (MLPerf LoadGen's), never an
  interpolation, so anyone holding the raw samples can reproduce each figure
  exactly.
* Validity follows MLPerf LoadGen's early-stopping criterion
  (``loadgen/early_stopping.cc`` and ``PerformanceSummary::EarlyStopping`` in
  ``loadgen/results.cc``): the same binomial bound, the same search for the
  overlatency count, the same sample picked as the estimate.

Samples are integer nanoseconds (``perf_counter_ns`` differences); floats appear
only in derived figures (mean, stdev, cv, throughput).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from benchkit.errors import BenchkitError

__all__ = [
    "PERCENTILES",
    "STABILITY_CV",
    "EarlyStoppingResult",
    "LatencyStats",
    "ServerEarlyStoppingResult",
    "StatsError",
    "early_stopping_percentile_ns",
    "early_stopping_server",
    "min_passing_queries",
    "percentile_ns",
    "stability_warning",
    "summarize",
    "throughput_per_s",
]

PERCENTILES: tuple[float, ...] = (50, 90, 95, 99, 99.9)
"""The percentiles every :class:`LatencyStats` reports, in percent."""

STABILITY_CV = 0.025
"""Coefficient of variation above which a latency distribution is flagged as noisy."""

# Tukey's fences: samples further than 1.5 interquartile ranges outside the
# quartiles are counted as outliers. Written as 3/2 so the fences can be kept in
# integer arithmetic (see _outlier_counts).
_TUKEY_NUM, _TUKEY_DEN = 3, 2


class StatsError(BenchkitError):
    """Samples or arguments that no statistic can be computed from (empty, unsorted, out of range)."""


class LatencyStats(BaseModel):
    """Summary of one set of latency samples, all latencies in integer nanoseconds.

    Stored verbatim in the result record as ``metrics.latency_ns``. Percentiles
    follow :func:`percentile_ns`; outliers are counted, never dropped, so every
    other figure here describes all ``count`` samples.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    count: int = Field(ge=1, description="Number of samples.")
    min: int = Field(ge=0, description="Smallest sample, ns.")
    max: int = Field(ge=0, description="Largest sample, ns.")
    mean: float = Field(ge=0, description="Arithmetic mean, ns.")
    stdev: float = Field(ge=0, description="Sample standard deviation (ddof=1), ns; 0.0 for a single sample.")
    cv: float = Field(ge=0, description="Coefficient of variation stdev / mean; 0.0 when mean is 0.")
    p50: int = Field(ge=0, description="50th percentile (LoadGen index rule, see percentile_ns), ns.")
    p90: int = Field(ge=0, description="90th percentile, ns.")
    p95: int = Field(ge=0, description="95th percentile, ns.")
    p99: int = Field(ge=0, description="99th percentile, ns.")
    p999: int = Field(ge=0, description="99.9th percentile, ns.")
    outliers_low: int = Field(ge=0, description="Samples below Q1 - 1.5*IQR (Tukey); counted, not dropped.")
    outliers_high: int = Field(ge=0, description="Samples above Q3 + 1.5*IQR (Tukey); counted, not dropped.")


class EarlyStoppingResult(BaseModel):
    """LoadGen's early-stopping percentile estimate (SingleStream and MultiStream validity)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    percentile: float = Field(description="Target percentile, in percent (90 for LoadGen's 0.9).")
    confidence: float = Field(description="Confidence that the true percentile is at most the estimate.")
    count: int = Field(ge=0, description="Number of samples (LoadGen: queries issued).")
    min_queries_needed: int = Field(
        ge=1, description="Fewest samples for which any estimate exists: one overlatency query allowed."
    )
    overlatency_count_allowed: int = Field(
        ge=0,
        description=(
            "LoadGen's t: the most overlatency queries `count` queries can absorb at this confidence. "
            "The estimate is the t-th largest sample, so t-1 samples are discarded; 0 when there is no estimate."
        ),
    )
    estimate_ns: int | None = Field(description="Early-stopping percentile estimate (a sample); None below min_queries_needed.")
    reason: str | None = Field(description="Why there is no estimate; None when there is one.")


class ServerEarlyStoppingResult(BaseModel):
    """LoadGen's early-stopping check against a latency bound (Server validity)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    percentile: float = Field(description="Percentile that must meet the target latency, in percent.")
    confidence: float = Field(description="Confidence required that the true percentile meets the target.")
    count: int = Field(ge=0, description="Number of samples (LoadGen: queries issued).")
    target_latency_ns: int = Field(ge=0, description="Latency bound; a sample strictly above it is overlatency.")
    overlatency_count: int = Field(ge=0, description="Samples strictly above target_latency_ns.")
    queries_needed: int = Field(
        ge=1, description="Fewest samples that would pass with this many overlatency ones (LoadGen: h + t)."
    )
    passed: bool = Field(description="count >= queries_needed.")
    reason: str | None = Field(description="Why the check failed and how many more queries it needs; None when passed.")


# ---------------------------------------------------------------------------
# Percentiles and the summary
# ---------------------------------------------------------------------------


def _percent_to_fraction(percentile: float) -> float:
    """The double LoadGen would hold for this percentile (90 -> 0.9, 99.9 -> 0.999).

    ``99.9 / 100`` is 0.9990000000000001 in binary floating point, not the 0.999
    that LoadGen's settings hold. Dividing the decimal the caller wrote (its
    shortest repr) exactly and rounding once gives the same double as LoadGen's
    literal, so the index ``floor(n * fraction)`` and the early-stopping bound
    are computed from the very number LoadGen uses.
    """
    return float(Fraction(repr(float(percentile))) / 100)


def _check_percentile(percentile: float, *, lo_open: bool, hi_open: bool) -> None:
    p = float(percentile)
    ok_lo = p > 0 if lo_open else p >= 0
    ok_hi = p < 100 if hi_open else p <= 100
    if not (ok_lo and ok_hi):  # also rejects NaN
        interval = f"{'(' if lo_open else '['}0, 100{')' if hi_open else ']'}"
        raise StatsError(f"percentile must be in {interval} percent, got {percentile!r}")


def _as_sorted_ns(sorted_ns: np.ndarray, name: str = "sorted_ns") -> np.ndarray:
    """Validate an ascending 1-D integer array of nanoseconds, returned as int64 without copying when possible."""
    a = np.asarray(sorted_ns)
    if a.ndim != 1 or a.dtype.kind not in "iu":
        raise StatsError(f"{name} must be a 1-D integer array of nanoseconds, got dtype {a.dtype} with shape {a.shape}")
    a = a.astype(np.int64, copy=False)
    if a.size > 1 and not bool(np.all(a[1:] >= a[:-1])):
        raise StatsError(f"{name} must be sorted ascending (np.sort the samples once and pass the result)")
    return a


def _index(n: int, fraction: float) -> int:
    # LoadGen: sorted[sample_count * percentile], the size_t * double product
    # truncated to an index. Clamped so that percentile 100 means the maximum
    # (LoadGen asserts percentile < 1 instead).
    return min(int(n * fraction), n - 1)


def percentile_ns(sorted_ns: np.ndarray, p: float) -> int:
    """The ``p``-th percentile of ascending samples, always one of the samples.

    Index rule: ``sorted_ns[floor(p/100 * n)]``, clamped to ``n - 1``. This is
    the rule MLPerf LoadGen uses for every latency percentile it reports
    (``pr.sample_latencies[sample_count * percentile]`` in
    ``PerformanceSummary::ProcessLatencies``, loadgen/results.cc), followed
    here so benchkit's figures match LoadGen's on the same samples. Equivalently
    it is the smallest sample such that *more than* p% of the samples are at or
    below it.

    It differs from the textbook nearest-rank rule, ``sorted_ns[ceil(p/100 *
    n) - 1]`` (the smallest sample with *at least* p% at or below it), exactly
    when ``p/100 * n`` is a whole number: then LoadGen takes the next sample up
    (for n = 100, p = 99: index 99, the maximum, where nearest-rank takes 98).

    Reporting an actual sample rather than an interpolated value keeps every
    percentile reproducible bit for bit from the raw samples. ``p`` is in
    percent and is read as the decimal it is written as, so ``99.9`` indexes
    with LoadGen's double ``0.999``.

    Raises :class:`StatsError` on an empty, non-integer, or unsorted array, or
    ``p`` outside [0, 100].
    """
    a = _as_sorted_ns(sorted_ns)
    if a.size == 0:
        raise StatsError("cannot take a percentile of zero samples")
    _check_percentile(p, lo_open=False, hi_open=False)
    return int(a[_index(a.size, _percent_to_fraction(p))])


def _outlier_counts(a: np.ndarray) -> tuple[int, int]:
    """Counts below Q1 - 1.5 IQR and above Q3 + 1.5 IQR, quartiles by the percentile_ns rule."""
    n = a.size
    q1 = int(a[_index(n, 0.25)])
    q3 = int(a[_index(n, 0.75)])
    iqr = q3 - q1
    # Samples are integers, so "x < q1 - 1.5*iqr" is "x < q1 - floor(1.5*iqr)"
    # and "x > q3 + 1.5*iqr" is "x > q3 + floor(1.5*iqr)": exact integer fences,
    # and searchsorted on int64 without converting 10^7 samples to float.
    slack = (_TUKEY_NUM * iqr) // _TUKEY_DEN
    low = int(np.searchsorted(a, np.int64(q1 - slack), side="left"))
    high = n - int(np.searchsorted(a, np.int64(q3 + slack), side="right"))
    return low, high


def summarize(samples_ns: Sequence[int] | np.ndarray) -> LatencyStats:
    """Summarize latency samples (integer ns, any order) into :class:`LatencyStats`.

    The samples are sorted once (skipped when already ascending) and every
    figure is read from that one sorted copy; the input is never modified.
    Vectorised throughout: 10^7 samples take about 0.3 s on one core, nearly
    all of it the sort (nothing to sort when the input is already ascending). Raises :class:`StatsError` on no samples, non-integer samples, or
    negative ones.
    """
    a = np.asarray(samples_ns)
    if a.size == 0:
        raise StatsError("cannot summarize zero latency samples")
    if a.ndim != 1 or a.dtype.kind not in "iu":
        raise StatsError(
            f"latency samples must be a 1-D sequence of integer nanoseconds, got dtype {a.dtype} with shape {a.shape}"
        )
    a = a.astype(np.int64, copy=False)
    if a.size > 1 and not bool(np.all(a[1:] >= a[:-1])):
        a = np.sort(a)
    if a[0] < 0:
        raise StatsError(f"latency samples must be >= 0 ns, got {int(a[0])}")

    n = int(a.size)
    lo, hi = int(a[0]), int(a[-1])
    # The integer sum is exact while it cannot overflow int64 (10^7 samples of
    # up to ~15 minutes each); past that the float64 pairwise sum is used.
    if hi <= (2**63 - 1) // n:
        mean = int(a.sum(dtype=np.int64)) / n
    else:
        mean = float(a.mean(dtype=np.float64))
    stdev = float(np.std(a, ddof=1, dtype=np.float64)) if n > 1 else 0.0
    cv = stdev / mean if mean > 0 else 0.0
    p50, p90, p95, p99, p999 = (int(a[_index(n, _percent_to_fraction(p))]) for p in PERCENTILES)
    outliers_low, outliers_high = _outlier_counts(a)
    return LatencyStats(
        count=n,
        min=lo,
        max=hi,
        mean=mean,
        stdev=stdev,
        cv=cv,
        p50=p50,
        p90=p90,
        p95=p95,
        p99=p99,
        p999=p999,
        outliers_low=outliers_low,
        outliers_high=outliers_high,
    )


def throughput_per_s(count: int, duration_ns: int) -> float:
    """``count`` completions over ``duration_ns`` nanoseconds, per second.

    The caller chooses what counts and over which span (LoadGen's Server
    figure, for one, divides ``sample_count - 1`` by the run's span, the last
    sample marking its open end). Raises
    :class:`StatsError` when ``count`` is negative or ``duration_ns`` is not
    positive.
    """
    if count < 0:
        raise StatsError(f"throughput count must be >= 0, got {count}")
    if duration_ns <= 0:
        raise StatsError(f"throughput duration_ns must be > 0, got {duration_ns}")
    # Integer product first: exact, then one correctly rounded division.
    return int(count) * 1_000_000_000 / int(duration_ns)


def stability_warning(stats: LatencyStats, threshold_cv: float = STABILITY_CV) -> str | None:
    """A human-readable warning when the latency spread exceeds ``threshold_cv``, else None.

    A coefficient of variation above a few percent means run-to-run
    differences of that size are noise (frequency scaling, contention,
    thermal throttling), not a property of the backend.
    """
    if not threshold_cv >= 0:
        raise StatsError(f"threshold_cv must be >= 0, got {threshold_cv!r}")
    if stats.cv <= threshold_cv:
        return None
    return (
        f"latency is unstable: coefficient of variation {stats.cv:.2%} exceeds {threshold_cv:.2%} "
        f"(stdev {stats.stdev:,.0f} ns around a mean of {stats.mean:,.0f} ns over {stats.count} samples; "
        f"{stats.outliers_low} low and {stats.outliers_high} high outliers); "
        "check for frequency scaling, background load or thermal throttling and consider a longer run"
    )


# ---------------------------------------------------------------------------
# MLPerf LoadGen early stopping
# ---------------------------------------------------------------------------
#
# The question. A run produced n queries; t of them exceed some latency L. With
# what confidence is the true p-th percentile at most L? Model each query as
# an independent trial that is overlatency with probability 1 - p. If the true
# percentile were above L, the overlatency probability would be at least 1 - p,
# and seeing only t or fewer overlatency queries among n = h + t would have
# probability at most
#
#     odds(h, t) = P[Binomial(h + t, 1 - p) <= t]
#                = sum_{k=0..t} C(h+t, k) (1-p)^k p^(h+t-k)
#                = I_p(h, t + 1)                       (regularized incomplete beta)
#
# So h under-latency queries alongside t overlatency ones establish the
# percentile at confidence c once odds(h, t) < 1 - c. LoadGen's
# MinPassingQueriesFinder returns the smallest such h for given t, p, c (with
# tolerance d = 0, i.e. the probability is p - d = p); min_passing_queries()
# below is that function.
#
# LoadGen evaluates I_x(a, b) (x = p, a = h, b = t + 1) through DLMF 15.8.E1:
#
#     I_x(a, b) = x^a (1-x)^(b-1) / (a B(a, b)) * 2F1(1, 1-b; 1+a; x/(x-1))
#
# where 2F1 with upper parameter 1 - b = -t is a polynomial of t + 1 terms,
# term_0 = 1, term_{i+1} = term_i * (i - t) z / (1 + h + i) with z = x/(x-1) < 0.
# Both factors of (i - t) z are negative, so every term is positive and no
# cancellation occurs; LoadGen sums terms until one falls to 2^-33 or below
# (that term included). The same formula, the same term recurrence, the same
# stopping rule and the same left-to-right sums are used here, so results match
# LoadGen's up to the last bits of lgamma/exp/log in the C and Python math
# libraries: a decision can differ only where odds(h, t) lies within ~1e-9
# (relative) of 1 - c.
#
# Searching. LoadGen binary-searches h within a bracket extrapolated from earlier
# answers; we bracket differently (below), but both return the least h with
# odds < 1 - c because odds(h, t) falls strictly as h grows (more under-latency
# queries make "at most t overlatency" less likely), so the answer is the same.
#
# SingleStream / MultiStream estimate (results.cc, EarlyStopping): with n
# samples, h(1) + 1 are needed before any estimate exists. Otherwise LoadGen
# scans i = 2, 3, ... and stops at the first i with n < h(i) + i, setting
# t = i - 1: t is the largest overlatency count n queries can absorb. The
# estimate is sorted[n - t], the t-th largest sample ("would discard t - 1
# highest latency queries"): at most t - 1 samples lie strictly above it. Since
# h(i) is non-decreasing in i (odds grows with t), h(i) + i is strictly
# increasing, so a binary search over i finds the same t as LoadGen's linear
# scan in O(log n) steps instead of O(n).
#
# Server (results.cc, EarlyStopping): t = number of samples strictly above the
# target latency, h = h(t); the run passes when n >= h + t, and otherwise needs
# h + t - n more queries, all under latency.

# LoadGen's kTolerance for the hypergeometric series.
_SERIES_TOLERANCE = 1.0 / (1 << 33)


def _hypergeometric_2f1_a1(t: int, h: int, z: float) -> float:
    """2F1(1, -t; 1 + h; z) summed exactly as LoadGen sums it (see the derivation above)."""
    result = 1.0
    term = 1.0
    start = 0
    chunk = 256
    # The factor (i - t) is zero at i = t, so the series ends after t + 1 terms
    # at the latest; the tolerance usually stops it after a few sqrt(t) terms,
    # hence chunks that grow rather than one array of t + 1 ratios.
    while start <= t:
        stop = min(start + chunk, t + 1)
        i = np.arange(start, stop, dtype=np.int64)
        ratios = ((i - t) * z) / (1 + h + i)
        ratios[0] = term * ratios[0]  # continue the running product across chunks
        terms = np.multiply.accumulate(ratios)
        small = np.flatnonzero(np.abs(terms) <= _SERIES_TOLERANCE)
        used = terms[: small[0] + 1] if small.size else terms
        # Left-to-right running sum, as LoadGen's `result += term`.
        result = float(np.add.accumulate(np.concatenate(([result], used)))[-1])
        if small.size:
            return result
        term = float(terms[-1])
        if not math.isfinite(term):
            raise StatsError(f"early-stopping series diverged for h={h}, t={t}; this is a benchkit bug")
        start = stop
        chunk *= 4
    return result


def _odds(h: int, t: int, x: float) -> float:
    """P[at most t overlatency queries among h + t] = I_x(h, t + 1), evaluated as LoadGen does."""
    # lbeta(h, t + 1) = lgamma(h) + lgamma(t + 1) - lgamma(h + t + 1)
    lbeta = math.lgamma(h) + math.lgamma(1 + t) - math.lgamma(h + 1 + t)
    prefactor = math.exp(h * math.log(x) + t * math.log(1 - x) - lbeta) / h
    return prefactor * _hypergeometric_2f1_a1(t, h, x / (x - 1))


def _min_passing_h(t: int, x: float, confidence: float) -> int:
    """Least h >= 1 with _odds(h, t, x) < 1 - confidence."""
    bound = 1 - confidence  # LoadGen compares against the double 1 - c, strictly
    # Lower end: with h + t queries the expected overlatency count is (h+t)(1-x);
    # while that is below t, t is at or above the binomial median and
    # odds >= 1/2 >= 1 - c (confidence >= 0.5 is enforced by the callers). So
    # h(t) >= t x / (1 - x); starting there also keeps every series term <= 1.
    lo = max(1, math.floor(t * x / (1 - x)))
    if _odds(lo, t, x) < bound:
        # Only reachable through rounding at the boundary; fall back to the full range.
        lo = 1
        if _odds(lo, t, x) < bound:
            return lo
    # Invariant: odds(lo) >= bound. Gallop up to a passing hi, then bisect.
    step = max(1, math.ceil(math.log(bound) / math.log(x)))  # h(0), the t = 0 answer
    hi = lo + step
    while _odds(hi, t, x) >= bound:
        lo, hi = hi, hi + 2 * (hi - lo)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _odds(mid, t, x) < bound:
            hi = mid
        else:
            lo = mid
    return hi


def _check_confidence(confidence: float) -> None:
    if not 0.5 <= confidence < 1:
        raise StatsError(f"early-stopping confidence must be in [0.5, 1) (LoadGen uses 0.99), got {confidence!r}")


def min_passing_queries(overlatency_count: int, percentile: float, confidence: float = 0.99) -> int:
    """LoadGen's ``h``: least under-latency queries that, alongside ``overlatency_count``
    overlatency ones, show the ``percentile`` (percent) is met with ``confidence``.

    That is the least h with P[Binomial(h + t, 1 - p) <= t] < 1 - c, for
    t = ``overlatency_count`` and p = ``percentile`` / 100 (see the derivation in
    this module). For example ``min_passing_queries(0, 99) == 459`` and
    ``min_passing_queries(1, 90) == 63``, the 64-query minimum LoadGen prints for
    a 90th-percentile SingleStream run.
    """
    if overlatency_count < 0:
        raise StatsError(f"overlatency_count must be >= 0, got {overlatency_count}")
    _check_percentile(percentile, lo_open=True, hi_open=True)
    _check_confidence(confidence)
    return _min_passing_h(int(overlatency_count), _percent_to_fraction(percentile), float(confidence))


def early_stopping_percentile_ns(
    sorted_ns: np.ndarray, percentile: float, confidence: float = 0.99
) -> EarlyStoppingResult:
    """MLPerf LoadGen's early-stopping estimate of the ``percentile`` (percent) latency.

    Follows ``PerformanceSummary::EarlyStopping`` (SingleStream and
    MultiStream) in loadgen/results.cc: no estimate below ``h(1) + 1`` samples;
    otherwise t is the largest overlatency count with ``h(t) + t <= n`` and the
    estimate is ``sorted_ns[n - t]``, the t-th largest sample. The true
    percentile is at most the estimate with probability ``confidence``, so the
    estimate is never below :func:`percentile_ns` and falls towards it as the
    run grows. ``sorted_ns`` must be ascending (the raw samples sorted once).
    """
    a = _as_sorted_ns(sorted_ns)
    _check_percentile(percentile, lo_open=True, hi_open=True)
    _check_confidence(confidence)
    x = _percent_to_fraction(percentile)
    c = float(confidence)
    n = int(a.size)

    h_min = _min_passing_h(1, x, c)
    needed = h_min + 1
    common = dict(percentile=float(percentile), confidence=c, count=n, min_queries_needed=needed)
    if n < needed:
        return EarlyStoppingResult(
            **common,
            overlatency_count_allowed=0,
            estimate_ns=None,
            reason=(
                f"only {n} samples; early stopping needs at least {needed} "
                f"for a {percentile:g}th percentile estimate at {c:.0%} confidence"
            ),
        )
    # Largest t with h(t) + t <= n; t = 1 passes (checked above). h(t) >= t x/(1-x)
    # gives h(t) + t >= t/(1-x), so t <= n(1-x) and floor(n(1-x)) + 1 fails; the
    # gallop only guards that bound against rounding.
    good, bad = 1, max(2, math.floor(n * (1 - x)) + 1)
    while _min_passing_h(bad, x, c) + bad <= n:
        good, bad = bad, 2 * bad
    while bad - good > 1:
        mid = (good + bad) // 2
        if _min_passing_h(mid, x, c) + mid <= n:
            good = mid
        else:
            bad = mid
    t = good
    return EarlyStoppingResult(
        **common, overlatency_count_allowed=t, estimate_ns=int(a[n - t]), reason=None
    )


def early_stopping_server(
    sorted_ns: np.ndarray, target_latency_ns: int, percentile: float, confidence: float = 0.99
) -> ServerEarlyStoppingResult:
    """MLPerf LoadGen's early-stopping check that the ``percentile`` latency meets a bound.

    Follows the Server branch of ``PerformanceSummary::EarlyStopping``
    (loadgen/results.cc): t = samples strictly above ``target_latency_ns``,
    h = :func:`min_passing_queries` (t); the check passes when n >= h + t.
    LoadGen's Server validity also requires the plain percentile
    (:func:`percentile_ns`) to be within the target; that is the caller's
    second check. ``sorted_ns`` must be ascending.
    """
    a = _as_sorted_ns(sorted_ns)
    _check_percentile(percentile, lo_open=True, hi_open=True)
    _check_confidence(confidence)
    if target_latency_ns < 0:
        raise StatsError(f"target_latency_ns must be >= 0, got {target_latency_ns}")
    n = int(a.size)
    t = n - int(np.searchsorted(a, np.int64(target_latency_ns), side="right"))
    needed = _min_passing_h(t, _percent_to_fraction(percentile), float(confidence)) + t
    passed = n >= needed
    reason = None
    if not passed:
        reason = (
            f"only {n} samples with {t} above {target_latency_ns} ns; early stopping needs at least "
            f"{needed - n} more, and passes only if every additional one is within the target latency"
        )
    return ServerEarlyStoppingResult(
        percentile=float(percentile),
        confidence=float(confidence),
        count=n,
        target_latency_ns=int(target_latency_ns),
        overlatency_count=t,
        queries_needed=needed,
        passed=passed,
        reason=reason,
    )
