"""Stop rules and the closed loop, driven by a fake clock so every branch is exact."""

from __future__ import annotations

import numpy as np
import pytest

from benchkit.measure import StopRule, closed_loop, timed_call, warmup
from benchkit.measure.dispatch import measure
from scenario_factory import scenario


class FakeClock:
    """Advances by `step` ns per reading; a backend call adds `work` ns."""

    def __init__(self, step: int = 10, work: int = 1000) -> None:
        self.now, self.step, self.work = 0, step, work

    def __call__(self) -> int:
        self.now += self.step
        return self.now


class CountingBackend:
    """Minimal adapter stand-in: run() advances the fake clock; records which staged inputs it saw."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock, self.seen, self.syncs = clock, [], 0

    def run(self, staged):
        self.clock.now += self.clock.work
        self.seen.append(staged)

    def synchronize(self):
        self.syncs += 1


MS = 1_000_000


@pytest.mark.parametrize(
    "rule, elapsed, count, expected",
    [
        (StopRule(10 * MS, 100), 9 * MS, 1000, None),  # duration not met
        (StopRule(10 * MS, 100), 11 * MS, 99, None),  # count not met
        (StopRule(10 * MS, 100), 10 * MS, 100, "min_duration_and_query_count"),  # both met, boundary inclusive
        (StopRule(10 * MS, 100, max_query_count=50), 1, 50, "max_query_count"),  # either max stops early
        (StopRule(10 * MS, 100, max_duration_ns=5 * MS), 5 * MS, 3, "max_duration"),
        (StopRule(10 * MS, 100, max_duration_ns=50 * MS, max_query_count=10**6), 20 * MS, 100,
         "min_duration_and_query_count"),
    ],
)
def test_stop_rule(rule, elapsed, count, expected):
    assert rule.reason(elapsed, count) == expected


def test_closed_loop_runs_until_both_minimums():
    clock = FakeClock(step=10, work=1000)
    be = CountingBackend(clock)
    # 1 µs per query: 100 queries take ~0.1 ms, so the 1 ms minimum duration governs.
    m = closed_loop(be, ["a", "b", "c"], StopRule(1 * MS, 100), samples_per_query=1, clock=clock)
    assert m.stop_reason == "min_duration_and_query_count"
    assert m.duration_ns >= 1 * MS
    assert m.query_count == len(m.samples_ns) == be.syncs
    # each sample is exactly the work plus one clock step (t1 is read after run+sync)
    assert set(m.samples_ns.tolist()) == {1010}
    # distinct staged inputs are cycled in order
    assert be.seen[:4] == ["a", "b", "c", "a"]
    # the run stopped on the first query that satisfied both minimums
    assert (m.query_count - 1) * 1020 < 1 * MS


def test_closed_loop_count_governs_when_queries_are_slow_enough():
    clock = FakeClock(step=1, work=10)
    be = CountingBackend(clock)
    m = closed_loop(be, [0], StopRule(100, 500), samples_per_query=4, clock=clock)
    assert m.query_count == 500
    assert m.sample_count == 2000


def test_closed_loop_max_query_count_stops_early():
    clock = FakeClock()
    m = closed_loop(CountingBackend(clock), [0], StopRule(10**12, 10**9, max_query_count=7), 1, clock=clock)
    assert (m.query_count, m.stop_reason) == (7, "max_query_count")


def test_closed_loop_max_duration_stops_early():
    clock = FakeClock(step=10, work=10_000)
    m = closed_loop(CountingBackend(clock), [0], StopRule(10**12, 10**9, max_duration_ns=1 * MS), 1, clock=clock)
    assert m.stop_reason == "max_duration"
    assert 1 * MS <= m.duration_ns < 1 * MS + 10_100


def test_timed_call_includes_synchronize():
    clock = FakeClock(step=0, work=0)

    class SlowSync(CountingBackend):
        def synchronize(self):
            self.clock.now += 777  # device work only visible at sync

    assert timed_call(SlowSync(clock), None, clock) == 777


def test_warmup_meets_both_minimums():
    clock = FakeClock(step=10, work=1000)
    be = CountingBackend(clock)
    n = warmup(be, [0, 1], min_ms=1, min_queries=3, clock=clock)
    assert n >= 3 and clock.now >= 1 * MS
    clock2 = FakeClock(step=10, work=1000)
    assert warmup(CountingBackend(clock2), [0], min_ms=0, min_queries=5, clock=clock2) == 5


def test_samples_per_call():
    assert scenario("offline", batch_size=8).samples_per_call == 8
    assert scenario("multi_stream", samples_per_query=4).samples_per_call == 4
    assert scenario("single_stream").samples_per_call == 1
    assert scenario("server").samples_per_call == 1


def test_measure_dispatches_closed_loop_kinds():
    clock = FakeClock()
    for kind in ("single_stream", "multi_stream", "offline"):
        m = measure(scenario(kind, min_duration_ms=1, min_query_count=10), CountingBackend(clock), [0], 2, seed=0,
                    clock=clock)
        assert m.query_count >= 10 and m.samples_ns.dtype == np.int64
