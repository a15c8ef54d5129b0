"""Offline's in-flight loop: the window is kept full, never overfilled, the stop rule holds, failures surface."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from benchkit.checks import measurement
from benchkit.errors import BackendError
from benchkit.measure.loops import StopRule, in_flight_loop


class ThreadedAdapter:
    """An adapter whose submit() completes on another thread after `delay_s` (a stand-in for a request pool)."""

    def __init__(self, delay_s: float = 0.002, fail_at: int | None = None) -> None:
        self.delay_s, self.fail_at = delay_s, fail_at
        self.lock = threading.Lock()
        self.outstanding = 0
        self.most = 0

    def submit(self, staged, done, tag):
        with self.lock:
            self.outstanding += 1
            self.most = max(self.most, self.outstanding)

        def finish():
            time.sleep(self.delay_s)
            with self.lock:
                self.outstanding -= 1
            done(tag, RuntimeError("device lost") if tag == self.fail_at else None)

        threading.Thread(target=finish, daemon=True).start()

    def run(self, staged):
        time.sleep(self.delay_s)
        return staged

    def synchronize(self):
        pass

    def fetch(self, result):
        return [np.asarray(result)]


def test_window_full_and_rule_kept():
    b = ThreadedAdapter()
    rule = StopRule(min_duration_ns=20_000_000, min_query_count=40, max_query_count=60)
    m = in_flight_loop(b, [np.zeros(1), np.ones(1)], rule, 1, depth=4, capture={5})
    assert b.most == 4  # every slot used, none beyond
    assert 40 <= m.query_count <= 60 and m.samples_ns.size == m.query_count
    assert (m.samples_ns >= 2_000_000).all()  # each latency covers its call's whole completion time
    assert set(m.captured) == {5} and m.extra["issue_mode"] == "in_flight" and m.extra["in_flight_max"] == 4
    assert m.extra["alone_call_ns"] >= 2_000_000 and measurement.in_flight(m) == []


def test_failed_query_is_an_error():
    with pytest.raises(BackendError, match="offline queries failed; first .query 7.: RuntimeError: device lost"):
        in_flight_loop(ThreadedAdapter(0.0005, fail_at=7), [np.zeros(1)], StopRule(0, 20), 1, depth=3)


class EarlyDone(ThreadedAdapter):
    """Fault injection: a dishonest adapter whose submit() reports completion at once, before any work."""

    def submit(self, staged, done, tag):
        done(tag, None)


def test_completions_before_the_work_make_the_record_invalid():
    m = in_flight_loop(EarlyDone(0.002), [np.zeros(1)], StopRule(10_000_000, 50), 1, depth=4)
    (f,) = measurement.in_flight(m)
    assert f.severity == "reason" and f.check == "boundary" and "completions before the work is done" in f.message
