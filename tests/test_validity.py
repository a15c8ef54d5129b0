"""Latency validity on synthetic traces: LoadGen's rules, borderline cases, and the early-stopping
figures checked against an independent exact computation (binomial tails in rational arithmetic)."""

from __future__ import annotations

from functools import lru_cache
from math import comb

import numpy as np
import pytest

from benchkit.checks.latency import latency_verdict
from benchkit.stats import summarize
from scenario_factory import scenario

MS = 1_000_000


# --------------------------------------------------------------------------- independent reference


def _passes(h: int, t: int, pct: int) -> bool:
    """Exactly: P[Binomial(h + t, 1 - p) <= t] < 1/100, with p = pct/100, in integers scaled by 100^(h+t)."""
    n = h + t
    tail = sum(comb(n, k) * (100 - pct) ** k * pct ** (n - k) for k in range(t + 1))
    return 100 * tail < 100**n


@lru_cache(maxsize=None)
def ref_min_passing(t: int, pct: int) -> int:
    """Least h >= 1 with the binomial tail below 1 - 0.99, exactly; bisection over h (the tail falls as h grows)."""
    hi = 1
    while not _passes(hi, t, pct):
        hi *= 2
    lo = hi // 2  # fails (or is 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _passes(mid, t, pct):
            hi = mid
        else:
            lo = mid
    return hi


def ref_estimate(sorted_ns: np.ndarray, pct: int) -> tuple[int | None, int]:
    """LoadGen's SingleStream/MultiStream estimate by its own linear scan: (estimate or None, queries needed)."""
    n = sorted_ns.size
    needed = ref_min_passing(1, pct) + 1
    if n < needed:
        return None, needed
    t = 1
    while ref_min_passing(t + 1, pct) + t + 1 <= n:
        t += 1
    return int(sorted_ns[n - t]), needed


def trace(n: int, seed: int = 0, scale_ns: int = MS) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort((rng.lognormal(0.0, 0.3, n) * scale_ns).astype(np.int64))


# --------------------------------------------------------------------------- SingleStream / MultiStream


@pytest.mark.parametrize("kind, pct, needed", [("single_stream", 90, 64), ("multi_stream", 99, 662)])
def test_stream_minimum_query_count_is_the_borderline(kind, pct, needed):
    assert ref_min_passing(1, pct) + 1 == needed  # the reference agrees with LoadGen's printed minimums
    settings = {"target_latency_percentile": float(pct)}
    short = latency_verdict(scenario(kind, **settings), trace(needed - 1))
    assert short.early_stopping is not None and not short.early_stopping.passed
    assert short.early_stopping.estimate_ns is None and short.early_stopping.queries_needed == needed
    assert len(short.reasons) == 1 and f"at least {needed}" in short.reasons[0]
    enough = latency_verdict(scenario(kind, **settings), trace(needed))
    assert enough.reasons == [] and enough.early_stopping.passed
    # with exactly the minimum, one overlatency query is absorbed: the estimate is the largest sample
    assert enough.early_stopping.estimate_ns == int(trace(needed)[-1])
    assert enough.early_stopping.overlatency_allowed == 1


@pytest.mark.parametrize("n, pct", [(64, 90), (100, 90), (257, 90), (1000, 90), (662, 99), (1500, 99), (3000, 99)])
def test_stream_estimate_matches_independent_scan(n, pct):
    s = trace(n, seed=n)
    kind = "single_stream" if pct == 90 else "multi_stream"
    v = latency_verdict(scenario(kind, target_latency_percentile=float(pct)), s)
    expected, needed = ref_estimate(s, pct)
    assert v.early_stopping.estimate_ns == expected
    assert v.early_stopping.queries_needed == needed
    # the estimate is never below the plain percentile, and is one of the samples
    lat = summarize(s)
    assert v.early_stopping.estimate_ns >= (lat.p90 if pct == 90 else lat.p99)
    assert v.early_stopping.estimate_ns in set(s.tolist())


def test_stream_default_percentiles():
    # scenarios without a percentile take LoadGen's: p90 SingleStream, p99 MultiStream
    assert latency_verdict(scenario("single_stream"), trace(100)).early_stopping.percentile == 90
    assert latency_verdict(scenario("multi_stream"), trace(700)).early_stopping.percentile == 99


# --------------------------------------------------------------------------- Server


def server_settings(bound_ns: int, pct: float = 99.0):
    return scenario("server", target_latency_ns=bound_ns, target_latency_percentile=pct, target_qps=100.0)


def with_overlatency(n: int, over: int, bound_ns: int) -> np.ndarray:
    """n samples, exactly `over` of them strictly above the bound, the rest well below it."""
    base = np.full(n - over, bound_ns // 2, dtype=np.int64) + np.arange(n - over, dtype=np.int64)
    high = np.full(over, bound_ns + 1, dtype=np.int64)
    return np.sort(np.concatenate([base, high]))


def test_server_percentile_equal_to_bound_is_valid_one_ns_above_is_not():
    n, bound = 2000, 10 * MS
    s = np.sort(np.linspace(1 * MS, 9 * MS, n).astype(np.int64))
    idx = int(n * 0.99)  # LoadGen's index for p99
    at = s.copy()
    at[idx:] = bound  # p99 exactly at the bound: "within" (only strictly above is overlatency)
    v = latency_verdict(server_settings(bound), at)
    assert not [r for r in v.reasons if "exceeds" in r]
    above = at.copy()
    above[idx:] = bound + 1
    v2 = latency_verdict(server_settings(bound), above)
    assert any("exceeds target_latency_ns" in r for r in v2.reasons)


@pytest.mark.parametrize("over", [0, 1, 2, 5])
def test_server_early_stopping_borderline_against_reference(over):
    bound = 10 * MS
    needed = ref_min_passing(over, 99) + over
    at_need = latency_verdict(server_settings(bound), with_overlatency(needed, over, bound))
    assert at_need.early_stopping.passed and at_need.early_stopping.queries_needed == needed
    assert at_need.early_stopping.overlatency_count == over
    short = latency_verdict(server_settings(bound), with_overlatency(needed - 1, over, bound))
    assert not short.early_stopping.passed
    assert any("early stopping not satisfied" in r and "1 more" in r for r in short.reasons)


def test_server_plain_percentile_can_pass_while_early_stopping_fails():
    # 1000 queries, 9 over the bound: the plain p99 (index 990) is within it, but at 99% confidence
    # nine overlatency queries need far more than 1000 queries: INVALID for early stopping alone.
    bound = 10 * MS
    s = with_overlatency(1000, 9, bound)
    v = latency_verdict(server_settings(bound), s)
    assert not [r for r in v.reasons if "exceeds" in r]
    assert [r for r in v.reasons if "early stopping" in r]
    assert v.early_stopping.queries_needed == ref_min_passing(9, 99) + 9


def test_server_lateness_warning():
    bound = 10 * MS
    s = with_overlatency(2000, 0, bound)
    quiet = latency_verdict(server_settings(bound), s, summarize(np.full(10, 1000)))
    assert quiet.warnings == [] and quiet.reasons == []
    late = summarize(np.full(10, 2 * MS, dtype=np.int64))  # 20% of the bound
    loud = latency_verdict(server_settings(bound), s, late)
    assert len(loud.warnings) == 1 and "issue lateness" in loud.warnings[0]
    assert loud.reasons == []  # lateness is already paid for in latency; it warns, it does not invalidate


def test_offline_has_no_latency_constraint():
    v = latency_verdict(scenario("offline"), trace(3))
    assert v.reasons == [] and v.early_stopping is None
