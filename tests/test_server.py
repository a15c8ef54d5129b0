"""The Server scenario: the Poisson schedule's statistics and length rules, and the open loop's logic
(latency from the scheduled time, lateness, async and worker-pool issue, failures).

Timing assertions are logical or generously bounded: this suite runs on a loaded 2-core machine.
Figures (headroom, lateness at 10k QPS) are in tests/benchmarks/bench_server_headroom.py.
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

from benchkit.backends.null import NullBackend
from benchkit.errors import BackendError, SpecError
from benchkit.measure import server
from benchkit.measure.loops import StopRule
from scenario_factory import scenario
from benchkit.measure.dispatch import measure
from benchkit.measure.server import poisson_schedule_ns, run_server

MS = 1_000_000
S = 1_000_000_000


# --------------------------------------------------------------------------- the schedule


@pytest.mark.parametrize("qps, seed", [(100.0, 0), (2_500.0, 1), (50_000.0, 2)])
def test_poisson_gaps_have_exponential_mean_and_dispersion(qps, seed):
    offsets, _ = poisson_schedule_ns(qps, StopRule(min_duration_ns=1, min_query_count=200_000), seed)
    gaps = np.diff(np.concatenate(([0], offsets))).astype(np.float64)
    n = gaps.size
    mean = 1e9 / qps
    # mean inter-arrival time: within 5 standard errors (an exponential's sd equals its mean)
    assert abs(gaps.mean() - mean) < 5 * mean / math.sqrt(n)
    # dispersion: coefficient of variation 1 for an exponential (sd of the CV estimate ~ 1/sqrt(n))
    assert abs(gaps.std() / gaps.mean() - 1) < 5 / math.sqrt(n)
    # memorylessness shows in the tail: P(gap > mean) = 1/e
    assert abs(np.mean(gaps > mean) - math.exp(-1)) < 5 * math.sqrt(math.exp(-1) * (1 - math.exp(-1)) / n)
    # counts in windows of one mean gap are Poisson(1): variance equals mean (index of dispersion 1)
    counts = np.bincount((offsets // int(mean)).astype(np.int64))
    assert abs(counts.var() / counts.mean() - 1) < 0.05


def test_schedule_is_seeded_and_sorted():
    rule = StopRule(min_duration_ns=100 * MS, min_query_count=10)
    a, _ = poisson_schedule_ns(1000.0, rule, 7)
    b, _ = poisson_schedule_ns(1000.0, rule, 7)
    c, _ = poisson_schedule_ns(1000.0, rule, 8)
    assert a.dtype == np.int64 and np.array_equal(a, b) and not np.array_equal(a[: len(c)], c[: len(a)])
    assert np.all(np.diff(a) >= 0) and a[0] > 0


def test_schedule_meets_both_minimums_and_stops_at_the_first_query_that_does():
    rule = StopRule(min_duration_ns=500 * MS, min_query_count=100)
    off, why = poisson_schedule_ns(1000.0, rule, 3)  # ~500 queries for the duration: duration governs
    assert why == "min_duration_and_query_count"
    assert off[-1] >= 500 * MS and off[-2] < 500 * MS and off.size >= 100
    off2, _ = poisson_schedule_ns(10.0, StopRule(min_duration_ns=1 * MS, min_query_count=300), 3)
    assert off2.size == 300 and off2[-1] >= 1 * MS  # count governs


def test_schedule_maxima_cut_it_short():
    off, why = poisson_schedule_ns(1000.0, StopRule(10 * S, 100, max_query_count=50), 0)
    assert (off.size, why) == (50, "max_query_count")
    off, why = poisson_schedule_ns(1000.0, StopRule(10 * S, 100, max_duration_ns=200 * MS), 0)
    assert why == "max_duration" and off[-1] < 200 * MS and off.size > 100


def test_schedule_rejects_impossible_rates():
    with pytest.raises(SpecError, match="target_qps"):
        poisson_schedule_ns(float("nan"), StopRule(1, 1), 0)
    with pytest.raises(SpecError, match="more than one run can hold"):
        poisson_schedule_ns(1e9, StopRule(10_000 * S, 1), 0)


# --------------------------------------------------------------------------- the open loop

SETTINGS = {"target_qps": 2000.0, "target_latency_ns": 100 * MS, "workers": 2}


def test_null_backend_runs_async_and_records_every_query():
    rule = StopRule(min_duration_ns=200 * MS, min_query_count=300)
    m = run_server(NullBackend({}), [object()] * 3, scenario("server", **SETTINGS), rule, 1, seed=5)
    sched, _ = poisson_schedule_ns(2000.0, rule, 5)
    assert m.query_count == sched.size == m.samples_ns.size and m.sample_count == m.query_count
    assert m.stop_reason == "min_duration_and_query_count"
    assert m.extra["issue_mode"] == "async" and "workers" not in m.extra
    lat = m.issue_lateness_ns
    assert lat.count == m.query_count and lat.min >= 0
    # inline completion: every latency is at least its query's lateness (both counted from the schedule)
    assert m.samples_ns.min() >= 0 and lat.max <= m.samples_ns.max()
    assert m.extra["final_scheduled_ns"] == int(sched[-1]) and m.duration_ns >= sched[-1]
    assert m.extra["scheduled_samples_per_s"] == pytest.approx((sched.size - 1) * 1e9 / sched[-1])
    assert 0 < m.extra["completed_samples_per_s"] <= m.extra["scheduled_samples_per_s"] * 1.001


class SleepyBackend:
    """No async API: run() takes `work_s` (releasing the GIL), so the worker pool is used."""

    def __init__(self, work_s: float, fail_at: int | None = None) -> None:
        self.work_s, self.fail_at, self.calls = work_s, fail_at, 0
        self.lock = threading.Lock()
        self.active = self.peak_active = 0

    def run(self, staged):
        with self.lock:
            self.calls += 1
            n = self.calls
            self.active += 1
            self.peak_active = max(self.peak_active, self.active)
        try:
            if self.fail_at is not None and n == self.fail_at:
                raise RuntimeError("injected failure")
            time.sleep(self.work_s)
        finally:
            with self.lock:
                self.active -= 1

    def synchronize(self):
        pass


def test_worker_pool_when_the_adapter_has_no_async_api():
    be = SleepyBackend(0.002)
    rule = StopRule(min_duration_ns=100 * MS, min_query_count=100)
    m = run_server(be, [0], scenario("server", **{**SETTINGS, "target_qps": 300.0, "workers": 3}), rule, 1, seed=1)
    assert m.extra["issue_mode"] == "workers" and m.extra["workers"] == 3
    assert be.calls == m.query_count
    assert 1 <= be.peak_active <= 3  # never more in flight than workers
    assert m.samples_ns.min() >= 2 * MS  # each query took at least its 2 ms of work
    assert m.extra["worker_wait_p99_ns"] >= m.extra["worker_wait_p50_ns"] >= 0


def test_latency_runs_from_the_scheduled_time_not_the_issue():
    # One worker, 5 ms per query, 1000 queries/s offered: the system falls further behind with every
    # query. Latency measured from the issue would stay ~5 ms; from the schedule it grows without bound.
    be = SleepyBackend(0.005)
    rule = StopRule(min_duration_ns=1, min_query_count=60)
    m = run_server(be, [0], scenario("server", **{**SETTINGS, "target_qps": 1000.0, "workers": 1}), rule, 1, seed=2)
    assert np.median(m.samples_ns) > 20 * MS
    assert m.samples_ns[-10:].mean() > m.samples_ns[:10].mean() + 100 * MS
    # the scheduler itself kept up (the queue absorbed the backlog): lateness stays far below latency
    assert m.issue_lateness_ns.p50 < np.median(m.samples_ns)


def test_a_failing_query_fails_the_run_in_both_modes():
    rule = StopRule(min_duration_ns=1, min_query_count=40)
    with pytest.raises(BackendError, match="1 of 40 server queries failed.*injected failure"):
        run_server(SleepyBackend(0.0, fail_at=7), [0], scenario("server", **{**SETTINGS, "target_qps": 500.0}), rule, 1,
                   seed=0)

    class FailingAsync(NullBackend):
        def submit(self, staged, done, tag):
            done(tag, RuntimeError("device lost") if tag == 3 else None)

    with pytest.raises(BackendError, match="query 3.*device lost"):
        run_server(FailingAsync({}), [0], scenario("server", **{**SETTINGS, "target_qps": 500.0}), rule, 1, seed=0)


def test_queries_that_never_complete_are_reported(monkeypatch):
    monkeypatch.setattr(server, "_DRAIN_MIN_S", 0.2)

    class Forgetful(NullBackend):
        def submit(self, staged, done, tag):
            if tag % 2:
                done(tag, None)

    rule = StopRule(min_duration_ns=1, min_query_count=20)
    with pytest.raises(BackendError, match="10 of 20 server queries did not complete"):
        run_server(Forgetful({}), [0], scenario("server", **{**SETTINGS, "target_qps": 1000.0, "target_latency_ns": 1}), rule, 1, seed=0)


def test_async_completion_from_another_thread():
    class ThreadedAsync(NullBackend):
        """Completes each query 1 ms later on a timer thread, as a runtime's callback thread would."""

        def submit(self, staged, done, tag):
            threading.Timer(0.001, done, (tag, None)).start()

    rule = StopRule(min_duration_ns=50 * MS, min_query_count=50)
    m = run_server(ThreadedAsync({}), [0], scenario("server", **{**SETTINGS, "target_qps": 500.0}), rule, 1, seed=4)
    assert m.extra["issue_mode"] == "async"
    assert m.samples_ns.min() >= 1 * MS


def test_harness_settings_are_restored():
    import gc
    import sys

    interval, gc_on = sys.getswitchinterval(), gc.isenabled()
    run_server(NullBackend({}), [0], scenario("server", **SETTINGS), StopRule(1, 10), 1, seed=0)
    assert sys.getswitchinterval() == interval and gc.isenabled() == gc_on


def test_measure_dispatches_server_and_offline_counts_samples():
    m = measure(scenario("server", **SETTINGS, min_duration_ms=1, min_query_count=20), NullBackend({}), [0], 1,
                seed=0)
    assert m.query_count == 20

    class Counter:
        calls = 0

        def run(self, staged):
            Counter.calls += 1

        def synchronize(self):
            pass

    # Offline: min_query_count is in samples (as in LoadGen): 100 samples in calls of 8 is 13 calls
    m = measure(scenario("offline", min_duration_ms=1, min_query_count=100, max_query_count=100), Counter(), [0], 8,
                seed=0)
    assert m.query_count == 13 and m.sample_count == 104


def test_workers_never_share_a_staged_input_between_concurrent_calls():
    class Exclusive(SleepyBackend):
        """Fails if a staged input (think: an IOBinding) is run while another call still holds it."""

        def __init__(self) -> None:
            super().__init__(0.001)
            self.busy: set[int] = set()
            self.clash = False

        def run(self, staged):
            with self.lock:
                self.clash |= staged in self.busy
                self.busy.add(staged)
            try:
                super().run(staged)
            finally:
                with self.lock:
                    self.busy.discard(staged)

    be = Exclusive()
    rule = StopRule(min_duration_ns=1, min_query_count=200)
    # a 3x overload keeps all 4 workers busy with a backlog: the worst case for sharing
    run_server(be, list(range(6)), scenario("server", **{**SETTINGS, "target_qps": 12_000.0, "workers": 4}), rule, 1, seed=9)
    assert be.peak_active >= 2 and not be.clash
