"""The search behind ``benchkit run --find-peak``: the highest Server arrival rate that stays VALID.

Each probe is a full Server run at one ``target_qps`` with its own record.
The search keeps the highest VALID rate seen (``lower``) and the lowest
INVALID one (``upper``):

1. From the starting rate, double while runs are VALID (``grow``), or halve
   while they are INVALID (``shrink``), until one of each is known.
2. Bisect between them (``bisect``) until ``upper / lower - 1 <= tolerance``.

The number of probes is bounded by ``max_probes``; a search that runs out
reports the best VALID rate it found and says it did not converge. This is
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

    def __post_init__(self) -> None:
        if not 0 < self.tolerance < 1:
            raise SpecError(f"--peak-tolerance must be in (0, 1), got {self.tolerance!r}")
        if self.max_probes < 2:
            raise SpecError(f"--max-probes must be at least 2, got {self.max_probes!r}")
        if not self.growth > 1:
            raise SpecError(f"peak search growth factor must be > 1, got {self.growth!r}")


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


def run_peak_search(cell: Any, options: PeakOptions, run_one: Callable[[Any], Any]) -> PeakResult:
    """Search ``cell`` (a Server :class:`~benchkit.runner.plan.Cell`) for its highest VALID target_qps; every
    probe is a cell of its own, run by ``run_one(cell) -> record``."""
    from benchkit.results.records import Probe
    from benchkit.spec import format_number

    if cell.kind != "server":
        raise SpecError(f"--find-peak searches Server cells only; {cell.cell_id} is {cell.kind}")
    search = PeakSearch(float(cell.scenario.target_qps), options)
    best = None
    best_qps = None
    while (qps := search.next_probe()) is not None:
        index = len(search.probes)
        probe = Probe(search=cell.cell_id, index=index, target_qps=qps, phase=search.phase(),
                      lower_qps=search.lower, upper_qps=search.upper)
        rec = run_one(cell.model_copy(update={
            "cell_id": f"{cell.cell_id}__peak{index:02d}-q{format_number(qps)}",
            "scenario": cell.scenario.model_copy(update={"target_qps": qps}),
            "probe": probe,
        }))
        valid = rec.validity.valid
        search.observe(qps, valid)
        if valid and (best_qps is None or qps >= best_qps):
            best, best_qps = rec, qps
    return PeakResult(cell.cell_id, search.lower, best, list(search.probes), search.converged)
