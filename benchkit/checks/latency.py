"""Latency validity of a measured run, by MLPerf LoadGen's rules (``PerformanceSummary`` in loadgen/results.cc).

=============  ==========================================================  =====================
scenario       INVALID when                                                early stopping
=============  ==========================================================  =====================
single_stream  fewer queries than the early-stopping estimate needs        estimate of the p90
multi_stream   fewer queries than the early-stopping estimate needs        estimate of the p99
server         plain percentile above ``target_latency_ns``, or the        overlatency queries
               early-stopping check fails                                  vs. total queries
offline        (no latency constraint)                                     -
=============  ==========================================================  =====================

The plain percentile uses LoadGen's index rule (:func:`benchkit.stats.percentile_ns`);
the early-stopping figures use :mod:`benchkit.stats` at LoadGen's 99%
confidence. The minimum duration and query count are checked by the runner
for every scenario. Pure functions of the samples: the same trace always gets
the same verdict, which is what the tests pin down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchkit import stats
from benchkit.results.records import EarlyStopping

CONFIDENCE = 0.99
"""LoadGen's early-stopping confidence."""

LATENESS_WARN_FRACTION = 0.1
"""Warn when the p99 issue lateness exceeds this fraction of the Server latency bound."""


@dataclass(frozen=True)
class Verdict:
    """What a run's latencies say about its validity."""

    reasons: list[str] = field(default_factory=list)  # each one makes the record INVALID
    warnings: list[str] = field(default_factory=list)
    early_stopping: EarlyStopping | None = None


def default_percentile(kind: str) -> float:
    return 90.0 if kind == "single_stream" else 99.0


def latency_verdict(scenario: Any, sorted_ns: np.ndarray, lateness: Any = None) -> Verdict:
    """Validity reasons, warnings and the early-stopping block for one run of a resolved scenario.

    ``sorted_ns`` are the per-query latencies sorted ascending (for MultiStream,
    per-query latency of ``samples_per_query`` samples; for Server, from the
    scheduled time). ``lateness`` is the Server's issue lateness (a
    ``stats.LatencyStats``), where measured.
    """
    kind = scenario.kind
    if kind == "offline" or sorted_ns.size == 0:
        return Verdict()
    pct = float(scenario.latency_percentile or default_percentile(kind))
    if kind in ("single_stream", "multi_stream"):
        return _stream_verdict(sorted_ns, pct)
    if kind == "server":
        return _server_verdict(scenario, sorted_ns, pct, lateness)
    raise ValueError(f"unknown scenario kind {kind!r}")


def _stream_verdict(sorted_ns: np.ndarray, pct: float) -> Verdict:
    es = stats.early_stopping_percentile_ns(sorted_ns, pct, CONFIDENCE)
    block = EarlyStopping(
        percentile=pct,
        confidence=CONFIDENCE,
        count=es.count,
        queries_needed=es.min_queries_needed,
        passed=es.estimate_ns is not None,
        estimate_ns=es.estimate_ns,
        overlatency_allowed=es.overlatency_count_allowed if es.estimate_ns is not None else None,
        reason=es.reason,
    )
    reasons = []
    if es.estimate_ns is None:
        reasons.append(f"early stopping not satisfied: {es.reason} (raise min_query_count)")
    return Verdict(reasons=reasons, early_stopping=block)


def _server_verdict(scenario: Any, sorted_ns: np.ndarray, pct: float, late: Any) -> Verdict:
    bound = int(scenario.target_latency_ns)
    reasons: list[str] = []
    warnings: list[str] = []
    plain = stats.percentile_ns(sorted_ns, pct)
    if plain > bound:
        reasons.append(
            f"p{pct:g} latency {plain:,} ns exceeds target_latency_ns {bound:,} "
            f"at target_qps {scenario.target_qps} (lower target_qps)"
        )
    es = stats.early_stopping_server(sorted_ns, bound, pct, CONFIDENCE)
    if not es.passed:
        reasons.append(f"early stopping not satisfied: {es.reason}")
    block = EarlyStopping(
        percentile=pct,
        confidence=CONFIDENCE,
        count=es.count,
        queries_needed=es.queries_needed,
        passed=es.passed,
        target_latency_ns=bound,
        overlatency_count=es.overlatency_count,
        reason=es.reason,
    )
    p99_late = getattr(late, "p99", None)
    if p99_late is not None and p99_late > LATENESS_WARN_FRACTION * bound:
        warnings.append(
            f"issue lateness p99 {p99_late:,} ns is over {LATENESS_WARN_FRACTION:.0%} of target_latency_ns: "
            "the harness fell behind its schedule (counted in latency, as LoadGen does); "
            "the machine may be overloaded, or the adapter's submit() too slow"
        )
    return Verdict(reasons=reasons, warnings=warnings, early_stopping=block)
