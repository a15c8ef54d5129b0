"""Checks of one measured run: its length, the engine's and the latency rules' verdicts, the precision claim,
the latency spread and the machine's state. Each returns :class:`~benchkit.checks.verdict.Finding` objects;
:mod:`benchkit.checks.verdict` alone turns them into ``validity``."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchkit import stats
from benchkit.checks.latency import Verdict, latency_verdict
from benchkit.checks.verdict import Finding, finding, reason, warning
from benchkit.measure.loops import Measurement

FLAGGED_PROFILES = frozenset({"certify"})
"""Profiles under which machine-state flags and an unstable latency make a record INVALID instead of warning."""


def run_length(scenario: Any, m: Measurement) -> list[Finding]:
    """A run stopped by a maximum before both minimums were met (LoadGen's rule). An engine that judges its own
    run length (LoadGen) is trusted for it: its verdict comes through :func:`engine`."""
    if m.stop_reason == "min_duration_and_query_count" or m.engine != "benchkit":
        return []
    short = []
    # Server: the minimum duration is met by the last *scheduled* query (LoadGen's rule).
    spanned = m.final_scheduled_ns if m.final_scheduled_ns is not None else m.duration_ns
    if spanned < scenario.min_duration_ms * 1_000_000:
        short.append(f"duration {spanned / 1e6:.0f} ms < min_duration_ms {scenario.min_duration_ms}")
    if scenario.kind == "offline" and m.sample_count < scenario.min_query_count:
        short.append(f"{m.sample_count} samples < min_query_count {scenario.min_query_count} (Offline counts samples)")
    elif scenario.kind != "offline" and m.query_count < scenario.min_query_count:
        short.append(f"{m.query_count} queries < min_query_count {scenario.min_query_count}")
    if not short:
        return []
    return [reason("stop_rule", f"stopped at {m.stop_reason} before the minimums were met: " + "; ".join(short))]


IN_FLIGHT_MIN_FRACTION = 0.5
"""An in-flight query's median latency below this fraction of one call alone is not physically plausible."""


def in_flight(m: Measurement) -> list[Finding]:
    """Offline with queries in flight (``loops.in_flight_loop``): their latencies come from the adapter's
    ``done`` callbacks, not from the synchronous boundary, so they are held to it. A call among others on the same
    device cannot finish sooner than one call alone; a median far below it means ``done`` came before the work
    (a completion reported early), and the throughput is not a measurement."""
    alone = m.extra.get("alone_call_ns") if m.extra.get("issue_mode") == "in_flight" else None
    if not alone or not m.samples_ns.size:
        return []
    p50 = float(np.median(m.samples_ns))
    if p50 >= IN_FLIGHT_MIN_FRACTION * alone:
        return []
    return [reason("boundary", f"queries in flight completed in {p50 / 1e3:,.1f} µs (median), under "
                               f"{IN_FLIGHT_MIN_FRACTION:.0%} of one call alone through run + synchronize "
                               f"({alone / 1e3:,.1f} µs): the adapter reports completions before the work is done")]


def calls_per_query(scenario: Any, effective_batch: int) -> int:
    """Calls of ``effective_batch`` samples one query takes: for MultiStream on a model whose batch dimension is
    fixed below ``samples_per_query``, enough calls to carry them all (rounded up; :func:`query_size` judges a
    batch that does not divide the query); one everywhere else."""
    if scenario.kind != "multi_stream" or effective_batch >= scenario.samples_per_query:
        return 1
    return -(-scenario.samples_per_query // max(1, int(effective_batch)))


def query_size(scenario: Any, effective_batch: int | None, samples_per_query: int) -> list[Finding]:
    """A MultiStream query must carry exactly ``samples_per_query`` samples, whatever the model's batch dimension:
    a fixed batch that does not make up the query (above it, or not dividing it) measures other queries."""
    if scenario.kind != "multi_stream" or samples_per_query == scenario.samples_per_query:
        return []
    how = (f"in calls of the model's fixed batch {effective_batch}, which does not divide it"
           if effective_batch is not None and effective_batch < scenario.samples_per_query
           else f"the model fixes its batch dimension to {effective_batch}")
    return [reason("multi_stream", f"each query carried {samples_per_query} samples, not samples_per_query "
                   f"{scenario.samples_per_query} ({how}); export the model with a dynamic batch dimension or "
                   f"a batch that divides {scenario.samples_per_query}")]


def precision_claim(claimed: str, effective: str, allow_mismatch: bool) -> list[Finding]:
    """The adapter ran at another precision than the result claims."""
    if effective == claimed:
        return []
    msg = f"effective precision {effective} differs from the claimed {claimed}"
    if allow_mismatch:
        return [warning("precision", msg + " (allowed by allow_precision_mismatch)")]
    return [reason("precision", msg)]


def latency(scenario: Any, m: Measurement, sorted_ns: np.ndarray) -> tuple[list[Finding], Verdict]:
    """The latency rules (bound, early stopping, issue lateness) and the engine's own verdict.

    LoadGen's verdict stands for its own runs: its reasons are the record's, and a disagreement with
    benchkit's latency rules on the same samples is a warning worth a look."""
    verdict = latency_verdict(scenario, sorted_ns, m.issue_lateness_ns)
    found = [reason("engine", r) for r in m.engine_reasons]
    if m.engine == "benchkit":
        found += [reason("latency", r) for r in verdict.reasons]
    elif m.engine_latency_met is not None and m.engine_latency_met != (not verdict.reasons):
        found.append(warning("engine", "benchkit's latency rules disagree with LoadGen's on these samples: "
                             + ("; ".join(verdict.reasons) or "benchkit finds the latency constraints met")))
    found += [warning("latency", w) for w in verdict.warnings]
    return found, verdict


def spread(lat: stats.LatencyStats, profile: str) -> list[Finding]:
    """A warning when the spread leaves even the mean poorly known (``stats.stability_warning``). Never a reason:
    the coefficient of variation of heavy-tailed latency measures a few stalls, not the headline
    (:func:`headline_stability` is the certify rule)."""
    msg = stats.stability_warning(lat)
    return [warning("stability", msg)] if msg else []


def headline_stability(samples_ns: np.ndarray, head: Any, scenario: Any, profile: str) -> list[Finding]:
    """Does the run pin its headline down? (``stats.headline_stability``: p90/p99 for latency headlines, pinned
    down in value to ±5 % or in the fraction of calls beyond it to ±50 % of the tail; the mean latency to ±5 % for
    throughput). Not pinned down is a reason under the certify profile and a warning elsewhere: a rerun of this
    length may land elsewhere."""
    if len(samples_ns) < 2:
        return []
    pct = scenario.latency_percentile if head.unit == "ns" else None
    hs = stats.headline_stability(samples_ns, pct)
    if hs.passed:
        return []
    msg = f"the headline is not pinned down: {hs.summary}; run longer (min_duration_ms) or on a quieter machine"
    if profile in FLAGGED_PROFILES:
        return [reason("stability.headline", f"stability ({profile} profile): {msg}")]
    return [warning("stability.headline", msg)]


def drift(samples_ns: np.ndarray, profile: str) -> list[Finding]:
    """Throttling or a neighbour that came and stayed (``stats.drift``): the last third's median latency against
    the first third's, the whole 99 % interval beyond 10 %, with a trend over the run's segments that the same
    segments in random order rarely give (the run's own wandering is not drift). A reason under certify."""
    d = stats.drift(samples_ns)
    if not d.drifted:
        return []
    msg = f"latency drifted during the run: {d.summary}"
    if profile in FLAGGED_PROFILES:
        return [reason("stability.drift", f"stability ({profile} profile): {msg}")]
    return [warning("stability.drift", msg)]


def machine_state(flags: list[str], profile: str) -> list[Finding]:
    """The machine changed state during the measurement (clocks fell, throttling, ...: ``machine.stability``)."""
    if profile in FLAGGED_PROFILES:
        return [reason("stability", f"stability ({profile} profile): {f}") for f in flags]
    return [warning("stability", f"stability: {f}") for f in flags]


def check_achieved_flops(
    achieved_flops_per_s: float | None,
    peak_flops_per_s: float | None,
    peak_source: str | None,
    *,
    require_peak: bool,
) -> list[Finding]:
    """The plausibility rule: achieved FLOP/s above the peak is impossible; no peak is INVALID where required.

    ``require_peak`` is True under the certify profile. A record whose FLOPs are
    unknown (a graph the counter could not analyse) cannot be checked: that is
    a warning, and a reason where a peak is required, since the check did not run.
    """
    check = "plausibility.peak"
    if peak_flops_per_s is None or not peak_flops_per_s > 0:
        msg = ("no peak FLOP/s is known at the effective precision, so achieved FLOP/s cannot be checked for "
               "plausibility")
        return [finding(check, msg, "reason" if require_peak else "warning")]
    if achieved_flops_per_s is None:
        msg = ("achieved FLOP/s is unknown (the graph's FLOPs could not be counted), so it cannot be checked against "
               "the peak")
        return [finding(check, msg, "reason" if require_peak else "warning")]
    if achieved_flops_per_s > peak_flops_per_s:
        ratio = achieved_flops_per_s / peak_flops_per_s
        return [finding(check, f"achieved {achieved_flops_per_s:.3g} FLOP/s is {ratio:.3g}x the peak "
                               f"{peak_flops_per_s:.3g} FLOP/s ({peak_source or 'source not given'}): "
                               "physically impossible, so work was done outside the timed region or skipped")]
    return []


__all__ = ["FLAGGED_PROFILES", "IN_FLIGHT_MIN_FRACTION", "in_flight", "run_length", "precision_claim", "latency", "spread", "headline_stability", "drift",
           "machine_state",
           "check_achieved_flops"]
