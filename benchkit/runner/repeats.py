"""Repetitions: the same cell measured in several fresh processes, and the spread between those sessions.

A single run's CV says how noisy the samples of that run were (within-run
spread). It says nothing about how much the next run will differ: process
start-up, memory layout, thread placement, clocks and caches change from one
session to the next. ``run.repeats: N`` measures each cell N times, each in a
new worker process, in rounds over the whole suite (so slow drift of the
machine shows up between sessions instead of inside one cell's sessions), and
each record carries the headline of every session beside each session's own
CV.
"""

from __future__ import annotations

import math

from benchkit.results.records import RepeatInfo, ResultRecord, SessionSpread


def spread(sessions: list[ResultRecord | None]) -> SessionSpread:
    """The between-session spread of the headline over ``sessions`` (None or error records: failed sessions)."""
    ok = [r for r in sessions if r is not None and r.metrics is not None]
    metric = ok[0].metrics.headline.name if ok else "headline"
    unit = ok[0].metrics.headline.unit if ok else ""
    values = [r.metrics.headline.value if r is not None and r.metrics is not None else None for r in sessions]
    within = [r.metrics.latency_ns.cv if r is not None and r.metrics is not None else None for r in sessions]
    got = [v for v in values if v is not None]
    mean = sum(got) / len(got) if got else None
    stdev = cv = None
    if len(got) >= 2 and mean is not None:
        stdev = math.sqrt(sum((v - mean) ** 2 for v in got) / (len(got) - 1))  # sample stdev: few sessions
        cv = stdev / mean if mean else None
    return SessionSpread(metric=metric, unit=unit, values=values, mean=mean, stdev=stdev, cv=cv,
                         min=min(got) if got else None, max=max(got) if got else None, within_run_cv=within)


def with_repeat(record: ResultRecord, index: int, count: int, between: SessionSpread | None = None) -> ResultRecord:
    return record.model_copy(update={"repeat": RepeatInfo(index=index, count=count, between=between)})
