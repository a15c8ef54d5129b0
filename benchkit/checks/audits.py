"""Compliance audits: checks that an adapter does the same work when timed as when checked.

They run after a cell's measurement (``benchkit run --audit``, and always
under the ``certify`` profile), outside its timed region, so the measured
figures and the harness-overhead bound are untouched. Each audit becomes a
section of the record's ``audits`` block; a failure makes the record INVALID.

``timed_outputs`` (MLPerf TEST01)
    An audit pass repeats the measured loop exactly (``run``; ``synchronize``
    between two clock reads, inputs cycled from the same pool, results not
    fetched) and, at a few seeded positions, fetches the result of that timed
    call *after* its timed region. Those outputs must match the accuracy-mode
    outputs of the same inputs (the accuracy gate's tolerances of the claimed
    precision). Catches an adapter that does less work when it is not asked
    for outputs, e.g. returns zeros or stale buffers from un-fetched calls.

``repeated_input`` (MLPerf TEST04)
    Interleaved blocks of calls on never-seen inputs (a fresh seed, each
    input used once) and on one input repeated. The repeated input must not
    run more than 10% faster (median latency ratio <= 1.10). Catches a
    runtime or adapter that caches results by input.

``alternate_seed``
    The whole scenario measured again with inputs (and, for Server, arrivals)
    from another seed: the headline must land within 5% of the original.
    Catches results tuned to, or cached for, the standard seed's inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from time import perf_counter_ns
from typing import Any

import numpy as np

from benchkit.results.records import Audit, Audits

REPEATED_MAX_SPEEDUP = 1.10
"""Distinct-input median latency / repeated-input median latency above this fails ``repeated_input``."""
ALTERNATE_SEED_MAX_DEVIATION = 0.05
"""|alternate headline - headline| / headline above this fails ``alternate_seed``."""
FRESH_SEED_OFFSET = 0x7E5704
"""Seed offset of the never-seen inputs of ``repeated_input`` (distinct from every pool seed)."""
ALTERNATE_SEED_OFFSET = 1_000_003
"""Seed offset of ``alternate_seed``'s second measurement."""

_TIMED_PASS_MIN_CALLS = 64
_CAPTURES = 8


def timed_outputs(
    backend: Any,
    staged: Sequence[Any],
    expected: Sequence[Sequence[np.ndarray]],
    compare: Callable[[Sequence[Sequence[np.ndarray]], Sequence[Sequence[np.ndarray]]], tuple[Any, list[str]]],
    seed: int,
    measured_p50_ns: int | None = None,
    clock: Callable[[], int] = perf_counter_ns,
) -> Audit:
    """Audit (a): outputs of timed calls, fetched afterwards, match accuracy-mode outputs of the same inputs."""
    k = len(staged)
    m = min(len(expected), k)
    if m == 0:
        return Audit(passed=True, summary="not applicable: the backend computes no outputs to compare",
                     figures={"calls": 0})
    n = max(_TIMED_PASS_MIN_CALLS, 4 * k)
    rng = np.random.default_rng(seed)
    # Positions whose input has an accuracy-mode output, never two in a row, never the first: each captured
    # call follows a call whose result nobody asked for, as in the measured loop.
    eligible = [j for j in range(1, n) if j % k < m]
    picks: set[int] = set()
    for j in rng.permutation(eligible):
        if len(picks) >= _CAPTURES:
            break
        if j - 1 not in picks and j + 1 not in picks:
            picks.add(int(j))
    run, sync, fetch = backend.run, backend.synchronize, backend.fetch
    lat = np.empty(n, dtype=np.int64)
    captured: dict[int, list[np.ndarray]] = {}
    for j in range(n):
        s = staged[j % k]
        t0 = clock()
        r = run(s)
        sync()
        t1 = clock()
        lat[j] = t1 - t0
        if j in picks:
            # Fetched after the timed region of this call and before the next run (the protocol's promise).
            captured[j] = [np.array(a, copy=True) for a in fetch(r)]
    order = sorted(captured)
    _, failures = compare([captured[j] for j in order], [expected[j % k] for j in order])
    p50 = int(np.median(lat))
    figures: dict[str, Any] = {"calls": n, "compared_calls": len(order), "audit_p50_ns": p50}
    if measured_p50_ns:
        figures["measured_p50_ns"] = int(measured_p50_ns)
    if failures:
        return Audit(passed=False, figures=figures,
                     summary=f"outputs of {len(order)} timed calls differ from accuracy-mode outputs: "
                             + "; ".join(failures[:3]))
    return Audit(passed=True, figures=figures,
                 summary=f"outputs of {len(order)} timed calls match accuracy-mode outputs")


def repeated_input(
    backend: Any,
    repeated: Any,
    fresh: Sequence[Any],
    rounds: int = 2,
    clock: Callable[[], int] = perf_counter_ns,
) -> Audit:
    """Audit (b): one input repeated vs never-seen inputs, in `rounds` interleaved blocks of len(fresh)//rounds."""
    run, sync = backend.run, backend.synchronize
    block = max(1, len(fresh) // rounds)
    distinct: list[int] = []
    same: list[int] = []
    for r in range(rounds):
        for s in fresh[r * block:(r + 1) * block]:
            t0 = clock()
            run(s)
            sync()
            distinct.append(clock() - t0)
        for _ in range(block):
            t0 = clock()
            run(repeated)
            sync()
            same.append(clock() - t0)
    d50, r50 = float(np.median(distinct)), float(np.median(same))
    speedup = d50 / r50 if r50 > 0 else float("inf")
    figures = {"distinct_calls": len(distinct), "repeated_calls": len(same), "distinct_p50_ns": int(d50),
               "repeated_p50_ns": int(r50), "speedup": round(speedup, 4), "max_speedup": REPEATED_MAX_SPEEDUP}
    verdict = speedup <= REPEATED_MAX_SPEEDUP
    return Audit(passed=verdict, figures=figures,
                 summary=f"one input repeated ran {speedup:.2f}x the speed of never-seen inputs "
                         f"({'within' if verdict else 'beyond'} {REPEATED_MAX_SPEEDUP:.2f}x)")


def alternate_seed(headline: float, alternate: float, higher_is_better: bool, name: str, seed: int) -> Audit:
    """Audit (c): the headline of a second measurement with another seed, within 5%."""
    signed = (alternate - headline) / headline if headline else float("inf")
    dev = abs(signed)
    verdict = dev <= ALTERNATE_SEED_MAX_DEVIATION
    figures = {"headline": name, "value": headline, "alternate_value": alternate, "alternate_seed": seed,
               "deviation": round(dev, 5) if np.isfinite(dev) else None,
               "max_deviation": ALTERNATE_SEED_MAX_DEVIATION}
    return Audit(passed=verdict, figures=figures,
                 summary=f"{name} with seed {seed}: {alternate:.4g} vs {headline:.4g} ({signed:+.1%}, "
                         f"{'within' if verdict else 'beyond'} {ALTERNATE_SEED_MAX_DEVIATION:.0%})")


def findings(audits: Audits | None) -> list:
    """A reason for each failed audit."""
    from benchkit.checks.verdict import reason

    if audits is None:
        return []
    out = []
    for name in ("timed_outputs", "repeated_input", "alternate_seed"):
        a = getattr(audits, name)
        if a is not None and not a.passed:
            out.append(reason("audit", f"audit {name} failed: {a.summary}"))
    return out


def fresh_inputs(wl: Any, batch: int, count: int, seed: int) -> list[Mapping[str, np.ndarray]]:
    """`count` never-seen input sets for ``repeated_input``."""
    feeds, _ = wl.make_feeds(batch, count, seed + FRESH_SEED_OFFSET)
    return feeds


__all__ = ["timed_outputs", "repeated_input", "alternate_seed", "findings", "fresh_inputs", "REPEATED_MAX_SPEEDUP",
           "ALTERNATE_SEED_MAX_DEVIATION", "ALTERNATE_SEED_OFFSET", "FRESH_SEED_OFFSET"]
