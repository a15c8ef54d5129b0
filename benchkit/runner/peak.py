"""The search behind ``benchkit run --find-peak``: the highest Server arrival rate that stays VALID.

Each probe is a full Server run at one ``target_qps`` with its own record.
The search keeps the highest VALID rate seen (``lower``) and the lowest
INVALID one (``upper``):

1. From the starting rate, double while runs are VALID (``grow``), or halve
   while they are INVALID (``shrink``), until one of each is known.
2. Bisect between them (``bisect``) until ``upper / lower - 1 <= tolerance``.

The number of probes is bounded by ``max_probes``; a search that runs out
reports the best VALID rate it found and says it did not converge.

A search always ends with an answer. When a probe fails the latency bound at
a load where the system is nearly idle (offered rate x median latency at most
``idle_load``: each query has the system to itself almost all the time), no
lower rate can meet the bound either, so the search stops and says the bound
is unattainable, with the percentile it measured at that light load. Every
probe's duration is bounded: a probe stops at ``max(min_duration_ms,
probe_max_s)`` (its ``max_duration_ms``), and the search's worst case, probes
times that bound, is announced before it starts. This is
the question MLPerf LoadGen's FindPeakPerformance mode answers, run as
ordinary, individually recorded Server runs rather than one opaque mode.
Validity is assumed to fall as the rate grows, as it does for any system
whose latency grows with load; noise near the peak can make one probe
disagree with a neighbour, which is why every probe is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchkit.errors import SpecError


@dataclass(frozen=True)
class PeakOptions:
    """How far a search goes."""

    tolerance: float = 0.05  # stop when upper / lower - 1 is at most this
    max_probes: int = 12
    growth: float = 2.0  # factor of each grow / shrink step
    probe_max_s: float = 120.0  # no probe runs longer than this (or its min_duration_ms, if longer)
    idle_load: float = 0.1  # offered rate x median latency at or below which the system is nearly idle

    def __post_init__(self) -> None:
        if not 0 < self.tolerance < 1:
            raise SpecError(f"--peak-tolerance must be in (0, 1), got {self.tolerance!r}")
        if self.max_probes < 2:
            raise SpecError(f"--max-probes must be at least 2, got {self.max_probes!r}")
        if not self.growth > 1:
            raise SpecError(f"peak search growth factor must be > 1, got {self.growth!r}")
        if not self.probe_max_s > 0:
            raise SpecError(f"--probe-max-s must be positive, got {self.probe_max_s!r}")
        if not 0 < self.idle_load < 1:
            raise SpecError(f"peak search idle load must be in (0, 1), got {self.idle_load!r}")


@dataclass
class PeakSearch:
    """State of one search; :meth:`next_probe` proposes a rate, :meth:`observe` records its verdict."""

    start_qps: float
    options: PeakOptions = field(default_factory=PeakOptions)
    lower: float | None = None  # highest VALID rate so far
    upper: float | None = None  # lowest INVALID rate so far
    probes: list[tuple[float, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.start_qps > 0:
            raise SpecError(f"peak search needs a positive starting target_qps, got {self.start_qps!r}")

    @property
    def converged(self) -> bool:
        return self.lower is not None and self.upper is not None and self.upper / self.lower - 1 <= self.options.tolerance

    def phase(self) -> str:
        """What the next probe does: grow, shrink or bisect."""
        if self.lower is not None and self.upper is not None:
            return "bisect"
        return "shrink" if self.upper is not None else "grow"

    def next_probe(self) -> float | None:
        """The next rate to try, or None when the search is over."""
        if not self.probes:
            return self.start_qps
        if self.converged or len(self.probes) >= self.options.max_probes:
            return None
        g = self.options.growth
        if self.lower is None:
            assert self.upper is not None
            return _round(self.upper / g)
        if self.upper is None:
            return _round(self.lower * g)
        mid = _round((self.lower + self.upper) / 2)
        if not self.lower < mid < self.upper:  # rounding closed the gap
            return None
        return mid

    def observe(self, qps: float, valid: bool) -> None:
        self.probes.append((qps, valid))
        if valid:
            self.lower = qps if self.lower is None else max(self.lower, qps)
        else:
            self.upper = qps if self.upper is None else min(self.upper, qps)
        # A noisy pair (VALID above an INVALID) is kept as evidence but cannot bracket: trust the higher VALID.
        if self.lower is not None and self.upper is not None and self.upper <= self.lower:
            self.upper = None


def _round(qps: float) -> float:
    """Four significant digits: probe ids stay readable and no probe repeats a rate to the last bit."""
    return float(f"{qps:.4g}")


@dataclass(frozen=True)
class PeakResult:
    """Outcome of one --find-peak search."""

    cell_id: str
    peak_qps: float | None  # highest VALID target_qps; None if no probe was VALID
    peak_record: Any  # the ResultRecord of that probe, or None
    probes: list[tuple[float, bool]]  # (target_qps, valid) in probe order
    converged: bool  # the bracket closed to the tolerance within max_probes
    unattainable: str | None = None  # why no rate can meet the latency bound (the search stopped there)
    light_load_latency_ns: int | None = None  # the bound's percentile measured at that nearly idle load


def probe_bound_ms(scenario: Any, options: PeakOptions) -> int:
    """The longest any probe of a search may run: ``probe_max_s``, never below the scenario's own minimum
    duration (a shorter run could not be VALID), nor above its own ``max_duration_ms``."""
    bound = max(int(options.probe_max_s * 1000), int(scenario.min_duration_ms or 0))
    return min(bound, scenario.max_duration_ms) if scenario.max_duration_ms else bound


def light_load_failure(rec: Any, qps: float, options: PeakOptions) -> tuple[str, int] | None:
    """``(why, latency at the bound's percentile)`` when ``rec`` (a probe at ``qps``) missed its latency bound
    while the system was nearly idle; None otherwise (VALID, failed, or INVALID for another reason or at load)."""
    from benchkit.stats import percentile_ns

    m = rec.metrics
    if rec.validity.valid or m is None:
        return None
    if not any(f.check == "latency" and f.severity == "reason" for f in rec.validity.findings):
        return None
    settings = rec.scenario.settings
    bound = settings.get("target_latency_ns")
    pct = float(settings.get("target_latency_percentile") or 99.0)
    load = qps * m.latency_ns.p50 / 1e9  # offered rate x median service time: the busy fraction, at most
    if bound is None or load > options.idle_load:
        return None
    at = getattr(m.latency_ns, f"p{pct:g}".replace(".", ""), None)
    if at is None and rec.samples_ns:
        import numpy as np

        at = percentile_ns(np.sort(np.asarray(rec.samples_ns, dtype=np.int64)), pct)
    at = int(at if at is not None else m.latency_ns.p99)
    return (f"the latency bound p{pct:g} <= {bound / 1e6:g} ms is unattainable: at {qps:g} QPS, where the system is "
            f"busy {load:.1%} of the time, p{pct:g} was already {at / 1e6:.3g} ms; no lower rate can do better",
            at)


def run_peak_search(cell: Any, options: PeakOptions, run_one: Callable[[Any], Any],
                    announce: Callable[[str], None] | None = None) -> PeakResult:
    """Search ``cell`` (a Server :class:`~benchkit.runner.plan.Cell`) for its highest VALID target_qps; every
    probe is a cell of its own, run by ``run_one(cell) -> record``. ``announce(line)`` is told the search's
    bounds before the first probe."""
    from benchkit.results.records import Probe
    from benchkit.spec import format_number

    if cell.kind != "server":
        raise SpecError(f"--find-peak searches Server cells only; {cell.cell_id} is {cell.kind}")
    search = PeakSearch(float(cell.scenario.target_qps), options)
    bound_ms = probe_bound_ms(cell.scenario, options)
    if announce is not None:
        total_s = options.max_probes * bound_ms / 1000
        announce(f"peak search {cell.cell_id}: at most {options.max_probes} probes of at most {bound_ms / 1000:g} s "
                 f"of measurement each (at most {total_s / 60:.1f} min, plus load and checks per probe)")
    best = None
    best_qps = None
    while (qps := search.next_probe()) is not None:
        index = len(search.probes)
        probe = Probe(search=cell.cell_id, index=index, target_qps=qps, phase=search.phase(),
                      lower_qps=search.lower, upper_qps=search.upper)
        rec = run_one(cell.model_copy(update={
            "cell_id": f"{cell.cell_id}__peak{index:02d}-q{format_number(qps)}",
            "scenario": cell.scenario.model_copy(update={"target_qps": qps, "max_duration_ms": bound_ms}),
            "probe": probe,
        }))
        valid = rec.validity.valid
        search.observe(qps, valid)
        if valid and (best_qps is None or qps >= best_qps):
            best, best_qps = rec, qps
        idle = None if search.lower is not None else light_load_failure(rec, qps, options)
        if idle is not None:
            return PeakResult(cell.cell_id, None, None, list(search.probes), False, idle[0], idle[1])
    return PeakResult(cell.cell_id, search.lower, best, list(search.probes), search.converged)
