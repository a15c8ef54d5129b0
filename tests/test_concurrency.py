"""Offline's `concurrency`: N calls in flight, closed loop; the spec field, its sweep, both issue modes, failures."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from benchkit.errors import BackendError, SpecError
from benchkit.measure.concurrency import run_concurrent
from benchkit.measure.dispatch import measure
from benchkit.measure.loops import StopRule
from benchkit.spec import Offline, parse_spec

from scenario_factory import scenario

MS = 1_000_000


class SleepyBackend:
    """Each call takes `call_s` of wall time without holding the GIL (as a request to a server does), and counts how
    many calls were in flight at once. With `use_async`, submit() completes each call on a timer thread."""

    def __init__(self, call_s: float = 0.002, use_async: bool = False, fail_at: int | None = None) -> None:
        self.call_s, self.use_async, self.fail_at = call_s, use_async, fail_at
        self.lock = threading.Lock()
        self.inflight = self.peak = self.calls = 0

    def _enter(self) -> int:
        with self.lock:
            self.inflight += 1
            self.calls += 1
            self.peak = max(self.peak, self.inflight)
            return self.calls

    def _leave(self) -> None:
        with self.lock:
            self.inflight -= 1

    def run(self, staged):
        n = self._enter()
        time.sleep(self.call_s)
        self._leave()
        if self.fail_at is not None and n >= self.fail_at:
            raise BackendError("injected failure")

    def synchronize(self):
        pass

    def supports_async(self):
        return self.use_async

    def submit(self, staged, done, tag):
        n = self._enter()

        def finish():
            self._leave()
            done(tag, BackendError("injected failure") if self.fail_at is not None and n >= self.fail_at else None)

        threading.Timer(self.call_s, finish).start()


@pytest.mark.parametrize("use_async", [False, True], ids=["threads", "async"])
def test_n_calls_stay_in_flight(use_async):
    # 20 ms calls: long enough that the fourth is issued before the first completes, however busy the machine
    b = SleepyBackend(call_s=0.02, use_async=use_async)
    m = run_concurrent(b, [None] * 5, StopRule(min_duration_ns=80 * MS, min_query_count=40), 2, 4)
    assert b.peak == 4 and b.inflight == 0  # never more than N, and every call finished before the return
    assert m.query_count == len(m.samples_ns) >= 40 and m.samples_per_query == 2
    assert m.duration_ns >= 80 * MS and m.stop_reason == "min_duration_and_query_count"
    assert m.extra["concurrency"] == 4 and m.extra["issue_mode"] == ("async" if use_async else "threads")
    # four calls of ~20 ms in flight: the calls overlapped (Little's law; a loaded machine's timers lag, so the
    # mean stays below 4), and each latency holds at least its sleep
    assert 1.5 < m.extra["achieved_concurrency"] <= 4.0
    assert (m.samples_ns >= 20 * MS).all()


@pytest.mark.parametrize("use_async", [False, True], ids=["threads", "async"])
def test_a_failed_call_fails_the_measurement(use_async):
    b = SleepyBackend(call_s=0.001, use_async=use_async, fail_at=10)
    with pytest.raises(BackendError, match="call\\(s\\) failed at concurrency 3; first: BackendError: injected"):
        run_concurrent(b, [None] * 4, StopRule(min_duration_ns=5_000 * MS, min_query_count=10_000), 1, 3)


def test_dispatch_uses_it_only_above_one():
    b = SleepyBackend(call_s=0.0005)
    one = measure(scenario("offline", batch_size=2, min_duration_ms=20, min_query_count=4), b, [None], 2, 0)
    assert "concurrency" not in one.extra and b.peak == 1
    three = measure(scenario("offline", batch_size=2, concurrency=3, min_duration_ms=20, min_query_count=4),
                    b, [None], 2, 0)
    assert three.extra["concurrency"] == 3 and b.peak == 3
    # Offline counts its minimum in samples: 4 samples at 2 per call is 2 calls at least
    assert three.query_count >= 2


def test_spec_field_and_sweep():
    o = Offline(kind="offline", batch_size=[1, 8], concurrency=[1, 4])
    assert [s for s, _ in o.sweep()] == ["-b1-c1", "-b1-c4", "-b8-c1", "-b8-c4"]
    points = dict(o.points("quick"))
    assert points["-b8-c4"].batch_size == 8 and points["-b8-c4"].concurrency == 4
    assert [s for s, _ in Offline(kind="offline", concurrency=[2, 16]).sweep()] == ["-c2", "-c16"]
    assert Offline(kind="offline").concurrency == 1 and Offline(kind="offline").sweep() == [("", {})]


@pytest.mark.parametrize("value, message", [
    ("0", "concurrency must be a positive integer (at most 1024) or a list of them (a sweep), got 0"),
    ("2000", "concurrency must be a positive integer (at most 1024) or a list of them (a sweep), got 2000"),
    ("[2, 2]", "concurrency sweep values must be distinct, repeated: 2"),
    ("[1, 2.5]", "each concurrency in the sweep must be a positive integer (at most 1024), got 2.5"),
])
def test_bad_concurrency_is_named(tmp_path, value, message):
    text = f"name: c\nworkloads: [{{name: tiny-add}}]\nbackends: [{{name: onnxruntime}}]\n" \
           f"scenarios: [{{kind: offline, concurrency: {value}}}]\n"
    with pytest.raises(SpecError) as e:
        parse_spec(text, "c.yaml", tmp_path)
    assert str(e.value).startswith("c.yaml: ") and f"scenarios[0] (offline).concurrency: {message}" in str(e.value)


def test_loadgen_engine_refuses_concurrency():
    from benchkit.measure.loadgen import measure_with_loadgen

    s = scenario("offline", concurrency=2)
    with pytest.raises(BackendError, match="offline.concurrency 2 is run by benchkit's engine only"):
        measure_with_loadgen(s, SleepyBackend(), [None], 1, 0, 1000, None)


def test_real_onnxruntime_cells_inline(tmp_path):
    """A concurrency sweep through the whole pipeline on ONNX Runtime in-process: records, sweep ids, figures."""
    from benchkit.results import records

    from conftest import run_cli

    (tmp_path / "s.yaml").write_text("""
name: conc
seed: 3
workloads: [{name: tiny-add}]
backends: [{name: onnxruntime, options: {intra_op_num_threads: 2}}]
scenarios: [{kind: offline, batch_size: 4, concurrency: [1, 3], min_duration_ms: 100, min_query_count: 40}]
run: {profile: quick}
""")
    proc = run_cli("run", "s.yaml", "--inline", "--out", "out", cwd=tmp_path)
    recs = {p.stem: records.load(p) for p in (tmp_path / "out").rglob("*.json")}
    assert proc.returncode in (0, 1), proc.stderr
    assert set(recs) == {"tiny-add__onnxruntime__offline-c1", "tiny-add__onnxruntime__offline-c3"}
    r = recs["tiny-add__onnxruntime__offline-c3"]
    assert r.error is None and r.accuracy.passed and r.scenario.settings["concurrency"] == 3
    assert r.metrics.extra["issue_mode"] == "async"  # ORT's run_async with an intra-op pool
    assert r.metrics.sample_count == 4 * r.metrics.count and r.metrics.count >= 10
    f = r.metrics.in_flight
    assert f.concurrency == 3 and f.issue_mode == "async" and 0 < f.achieved_mean <= 3.05
    assert f.achieved_mean == r.metrics.extra["achieved_concurrency"] and np.isfinite(f.achieved_mean)
    assert recs["tiny-add__onnxruntime__offline-c1"].metrics.in_flight is None
    # the record reads back as written (the typed block round-trips through JSON)
    assert records.parse(json.loads(r.model_dump_json()), "r").metrics.in_flight == f
