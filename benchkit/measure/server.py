"""Server: Poisson arrivals at ``target_qps``, open loop, latency from each query's *scheduled* time.

MLPerf LoadGen's Server rules, followed here:

* Arrival times are drawn up front: seeded exponential inter-arrival times with
  mean ``1 / target_qps``, summed into an int64 schedule. The schedule is long
  enough that the last query is scheduled at or after ``min_duration_ms`` and
  holds at least ``min_query_count`` queries (both), cut short by
  ``max_query_count`` or ``max_duration_ms`` (either).
* Each query is issued at its scheduled time whether or not earlier ones have
  completed (open loop), and every issued query is waited for.
* A query's latency runs from its scheduled time to its completion: a system,
  or a harness, that falls behind pays for it in latency.

Issue lateness (actual issue time minus scheduled time) is measured for every
query and reported, so a scheduler that cannot keep up is visible rather than
hidden in the latency figures.

Two ways to issue:

``async``   the adapter's :meth:`~benchkit.backends.base.Backend.submit` starts
            a call and reports completion through a callback (ONNX Runtime's
            ``run_async``; ``null`` completes inline).
``workers`` otherwise: ``workers`` threads each take the next issued query from
            a queue and run ``run(); synchronize()``; a query waiting for a free
            worker is waiting in the system, so that wait is latency, not lateness.
            Each worker uses its own share of the staged inputs (none is shared
            between concurrent calls when there are at least ``workers`` of them).

The issuing loop is kept to a clock read, a store into a preallocated array
and one call per query: at 50,000 queries/s it has 20 µs per query on
average, on the same cores as the system under test. Waits longer than
``_SPIN_NS`` sleep (releasing the GIL); the rest is a busy-wait on the clock,
because ``time.sleep`` wakes 50-100 µs late on a stock Linux kernel.
"""

from __future__ import annotations

import ctypes
import gc
import itertools
import math
import queue
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import contextmanager
from time import perf_counter_ns
from typing import Any

import numpy as np

from benchkit.errors import BackendError, SpecError
from benchkit.stats import summarize
from benchkit.measure.loops import Clock, Measurement, StopRule

# Busy-wait this long before a scheduled issue; sleep before that.
_SPIN_NS = 200_000
# While the issuing thread spins, worker threads and completion callbacks wait
# for the GIL; CPython hands it over only after this switch interval (default
# 5 ms, which would show up as latency). Restored after the run.
_SWITCH_INTERVAL_S = 50e-6
# A schedule longer than this would not fit in memory as three int64 arrays anyway.
_MAX_QUERIES = 400_000_000
# How long to wait for outstanding queries after the last issue, beyond the latency bound.
_DRAIN_MIN_S = 60.0


def poisson_schedule_ns(target_qps: float, rule: StopRule, seed: int) -> tuple[np.ndarray, str]:
    """Scheduled issue times (ns from the start of the run) of a Poisson process at ``target_qps``.

    Returns ``(offsets, stop_reason)``: a non-decreasing int64 array whose first
    element is one inter-arrival time after 0, and why it ends where it does
    (``min_duration_and_query_count``, ``max_query_count`` or ``max_duration``).
    The same seed, rate and rule always give the same schedule.
    """
    if not (target_qps > 0 and math.isfinite(target_qps)):
        raise SpecError(f"server: target_qps must be a positive number, got {target_qps!r}")
    rng = np.random.default_rng(seed)
    mean_gap_ns = 1e9 / target_qps
    expected = max(rule.min_query_count, math.ceil(rule.min_duration_ns / mean_gap_ns))
    if rule.max_query_count is not None:
        expected = min(expected, rule.max_query_count)
    if expected > _MAX_QUERIES:
        raise SpecError(
            f"server: {expected:,} queries at target_qps {target_qps:g} over min_duration_ms "
            f"{rule.min_duration_ns // 1_000_000} is more than one run can hold ({_MAX_QUERIES:,}); "
            "lower min_duration_ms or set max_query_count"
        )
    chunks: list[np.ndarray] = []
    total = 0
    last = 0.0
    chunk = int(expected * 1.05) + 64
    while True:
        offs = np.cumsum(rng.exponential(mean_gap_ns, chunk)) + last
        chunks.append(offs)
        total += chunk
        last = float(offs[-1])
        enough_time = last >= rule.min_duration_ns
        if (enough_time and total >= rule.min_query_count) or (
            rule.max_query_count is not None and total >= rule.max_query_count
        ) or (rule.max_duration_ns is not None and last >= rule.max_duration_ns):
            break
        chunk = max(64, chunk // 4)
    offsets = np.rint(np.concatenate(chunks)).astype(np.int64)
    # Fewest queries meeting both minimums: the last one scheduled at or after
    # min_duration (LoadGen's "final query scheduled time"), and the count.
    first_late = int(np.searchsorted(offsets, rule.min_duration_ns, side="left"))
    n = max(rule.min_query_count, first_late + 1)
    reason = "min_duration_and_query_count"
    if rule.max_query_count is not None and n > rule.max_query_count:
        n, reason = rule.max_query_count, "max_query_count"
    if rule.max_duration_ns is not None:
        cap = int(np.searchsorted(offsets, rule.max_duration_ns, side="left"))
        if cap < n:
            n, reason = max(1, cap), "max_duration"
    return offsets[:n], reason


@contextmanager
def _harness_quiet():
    """Timer slack 1 ns, a short GIL switch interval, and no cyclic GC, for the duration of a run."""
    slack = None
    libc = None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        slack = libc.prctl(30, 0, 0, 0, 0)  # PR_GET_TIMERSLACK
        # PR_SET_TIMERSLACK: sleeps end within ~1 µs of the request instead of 50 µs late.
        libc.prctl(29, 1, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the spin window absorbs the coarser sleep
        libc = None
    interval = sys.getswitchinterval()
    sys.setswitchinterval(_SWITCH_INTERVAL_S)
    gc_was_on = gc.isenabled()
    gc.disable()  # a collection pause in the issuing loop would be charged to the system as latency
    try:
        yield
    finally:
        if gc_was_on:
            gc.enable()
        sys.setswitchinterval(interval)
        if libc is not None and slack is not None and slack > 0:
            libc.prctl(29, slack, 0, 0, 0)


def run_server(
    backend: Any,
    staged: Sequence[Any],
    scenario: Any,
    rule: StopRule,
    samples_per_query: int,
    seed: int,
    clock: Clock = perf_counter_ns,
) -> Measurement:
    """Issue a Poisson schedule of single-sample queries and time each from its scheduled time.

    ``scenario`` is the resolved Server scenario (``target_qps``,
    ``workers``, ...). ``samples_ns`` of the result are per-query latencies in
    issue order; ``issue_lateness_ns`` is a LatencyStats; ``extra`` holds the
    issue mode and the scheduled and completed rates (LoadGen's formulas).
    Raises :class:`BackendError` if a query fails or never completes.
    """
    target_qps = float(scenario.target_qps)
    offsets_np, stop_reason = poisson_schedule_ns(target_qps, rule, seed)
    n = int(offsets_np.size)
    k = len(staged)
    use_async = bool(backend.supports_async()) if hasattr(backend, "supports_async") else False
    workers = int(scenario.workers or 1)

    # Preallocated: the loop stores into these by query index and allocates nothing per query
    # beyond Python ints. memoryview item stores are as cheap as list stores and need no conversion.
    issued_np = np.zeros(n, dtype=np.int64)
    finished_np = np.zeros(n, dtype=np.int64)
    started_np = np.zeros(n if not use_async else 0, dtype=np.int64)
    # A list reads a little faster than a memoryview but costs ~36 bytes per query instead of 8.
    offsets = offsets_np.tolist() if n <= 1_000_000 else memoryview(offsets_np)
    issued = memoryview(issued_np)
    finished = memoryview(finished_np)
    started = memoryview(started_np)
    errors: list[tuple[int, BaseException]] = []
    completed = itertools.count(1)
    all_done = threading.Event()

    def done(tag: int, error: BaseException | None) -> None:
        finished[tag] = clock()
        if error is not None:
            errors.append((tag, error))
        if next(completed) == n:
            all_done.set()

    threads: list[threading.Thread] = []
    work: queue.SimpleQueue[int] = queue.SimpleQueue()
    if not use_async:
        run = backend.run
        sync = backend.synchronize

        def worker(j: int) -> None:
            # Each worker cycles through its own share of the staged inputs, so no staged input (an
            # IOBinding, say) is ever in use by two calls at once.
            mine = list(staged[j::workers]) or list(staged)
            m = len(mine)
            get = work.get
            c = 0
            while True:
                i = get()
                if i < 0:
                    return
                started[i] = clock()
                try:
                    run(mine[c % m])
                    c += 1
                    sync()
                except BaseException as e:  # noqa: BLE001 - reported after the run as a BackendError
                    done(i, e)
                    continue
                done(i, None)

        threads = [threading.Thread(target=worker, args=(j,), name=f"benchkit-server-{j}", daemon=True)
                   for j in range(workers)]
        for t in threads:
            t.start()

    submit = backend.submit if use_async else None
    put = work.put
    sleep = time.sleep
    spin = _SPIN_NS
    issued_count = 0
    with _harness_quiet():
        # Start a little in the future so the first query is not late by the set-up above.
        t0 = clock() + 1_000_000
        try:
            for i in range(n):
                target = t0 + offsets[i]
                now = clock()
                if now < target:
                    if target - now > spin:
                        sleep((target - now - spin) * 1e-9)
                    now = clock()
                    while now < target:
                        now = clock()
                issued[i] = now
                if submit is not None:
                    submit(staged[i % k], done, i)
                else:
                    put(i)
                issued_count = i + 1
        finally:
            for _ in threads:
                put(-1)
        last_issue = clock()
        drain_s = max(_DRAIN_MIN_S, 10 * scenario.target_latency_ns / 1e9)
        drained = all_done.wait(drain_s) if issued_count == n else False
    for t in threads:
        t.join(timeout=1.0 if not drained else None)

    if errors:
        tag, first = errors[0]
        raise BackendError(f"{len(errors)} of {n} server queries failed; first (query {tag}): "
                           f"{type(first).__name__}: {first}") from first
    if not drained:
        missing = int(np.count_nonzero(finished_np[:issued_count] == 0)) + (n - issued_count)
        raise BackendError(f"{missing} of {n} server queries did not complete within {drain_s:.0f} s "
                           "of the last issue (the adapter never reported them done)")

    scheduled_np = offsets_np + t0
    samples_ns = finished_np - scheduled_np
    lateness = issued_np - scheduled_np
    end_ns = int(finished_np.max())
    span_ns = int(offsets_np[-1])
    extra: dict[str, Any] = {
        "issue_mode": "async" if use_async else "workers",
        "target_qps": target_qps,
        # LoadGen's rates: (n - 1) samples over the time to the last scheduled / last completed query.
        "scheduled_samples_per_s": (n - 1) * 1e9 / span_ns if n > 1 and span_ns > 0 else 0.0,
        "completed_samples_per_s": (n - 1) * 1e9 / (end_ns - t0) if n > 1 else 0.0,
        "final_scheduled_ns": span_ns,
        "issue_loop_ns": last_issue - t0,
    }
    if not use_async:
        extra["workers"] = workers
        wait = np.sort(started_np - issued_np)
        extra["worker_wait_p50_ns"] = int(wait[int(0.5 * n)])
        extra["worker_wait_p99_ns"] = int(wait[min(n - 1, int(0.99 * n))])
    return Measurement(
        samples_ns=samples_ns,
        start_ns=t0,
        end_ns=end_ns,
        query_count=n,
        samples_per_query=samples_per_query,
        stop_reason=stop_reason,
        extra=extra,
        issue_lateness_ns=summarize(lateness),
        final_scheduled_ns=span_ns,
    )
