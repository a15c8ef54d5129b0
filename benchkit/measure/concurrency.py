"""Closed loop with N calls in flight: Offline's ``concurrency`` (perf_analyzer's ``--concurrency-range``).

Each completion issues the next call, so exactly ``concurrency`` calls are
outstanding until the stop rule is met; then no more are issued and the ones
in flight are waited for (their latencies count, as perf_analyzer's do).

Two ways to keep N in flight, as in the Server scenario:

``async``    the adapter offers :meth:`~benchkit.backends.base.Backend.submit`:
             one issuing thread starts N calls, then starts the next each time a
             completion arrives. Latency runs from ``submit`` to ``done``.
``threads``  otherwise N threads each run the one timing boundary
             (``run(); synchronize()``) back to back, so ``run`` must be safe to
             call from several threads at once (what the Server scenario's
             worker pool asks of it too).

The record keeps per-call latencies in completion order; throughput is
completed samples over the span from the first issue to the last completion.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Sequence
from time import perf_counter_ns
from typing import Any

import numpy as np

from benchkit.errors import BackendError
from benchkit.measure.loops import Clock, Measurement, StopRule

# After the stop, calls still in flight must finish within this (a hung server must not hang the cell).
_DRAIN_S = 60.0


def run_concurrent(backend: Any, staged: Sequence[Any], rule: StopRule, samples_per_query: int, concurrency: int,
                   clock: Clock = perf_counter_ns) -> Measurement:
    """Measure with ``concurrency`` calls outstanding until ``rule`` (in calls) says stop.

    Raises :class:`BackendError` when a call fails or in-flight calls never complete.
    """
    use_async = bool(backend.supports_async()) if hasattr(backend, "supports_async") else False
    if use_async:
        samples, ends, start, reason, errors = _async_loop(backend, staged, rule, concurrency, clock)
    else:
        samples, ends, start, reason, errors = _thread_loop(backend, staged, rule, concurrency, clock)
    if errors:
        first = errors[0]
        raise BackendError(f"{len(errors)} call(s) failed at concurrency {concurrency}; first: "
                           f"{type(first).__name__}: {first}") from first
    n = len(samples)
    lat = np.asarray(samples, dtype=np.int64)
    end_ns = max(ends) if ends else start
    return Measurement(
        samples_ns=lat,
        start_ns=start,
        end_ns=end_ns,
        query_count=n,
        samples_per_query=samples_per_query,
        stop_reason=reason,
        extra={
            "concurrency": concurrency,
            "issue_mode": "async" if use_async else "threads",
            # Little's law: the mean number of calls actually in flight over the run (below `concurrency`
            # when the harness cannot keep up, which is the first thing to check in a client-bound run)
            "achieved_concurrency": float(lat.sum()) / (end_ns - start) if end_ns > start else 0.0,
        },
    )


def _async_loop(backend: Any, staged: Sequence[Any], rule: StopRule, concurrency: int, clock: Clock):
    k = len(staged)
    completions: queue.SimpleQueue[tuple[int, int, BaseException | None]] = queue.SimpleQueue()

    def done(tag: int, error: BaseException | None) -> None:
        completions.put((tag, clock(), error))

    submit = backend.submit
    issued_at: list[int] = []
    samples: list[int] = []
    ends: list[int] = []
    errors: list[BaseException] = []
    reason = None
    start = clock()
    for i in range(concurrency):
        issued_at.append(clock())
        submit(staged[i % k], done, i)
    outstanding = concurrency
    get = completions.get
    while outstanding:
        try:
            tag, t_end, error = get(timeout=_DRAIN_S)
        except queue.Empty:
            raise BackendError(f"{outstanding} call(s) in flight did not complete within {_DRAIN_S:.0f} s") from None
        outstanding -= 1
        if error is not None:
            errors.append(error)
            reason = reason or "error"
            continue
        samples.append(t_end - issued_at[tag])
        ends.append(t_end)
        if reason is None:
            reason = rule.reason(t_end - start, len(samples))
        if reason is None:
            i = len(issued_at)
            issued_at.append(clock())
            submit(staged[i % k], done, i)
            outstanding += 1
    return samples, ends, start, reason or "min_duration_and_query_count", errors


def _thread_loop(backend: Any, staged: Sequence[Any], rule: StopRule, concurrency: int, clock: Clock):
    run, sync = backend.run, backend.synchronize
    samples: list[int] = []
    ends: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    why: list[str] = []
    completed = itertools.count(1)  # next() on a count is atomic under the GIL
    lock = threading.Lock()
    start = clock()

    def worker(j: int) -> None:
        # Each thread cycles through its own share of the staged inputs: no staged input is used twice at once.
        mine = list(staged[j::concurrency]) or list(staged)
        m = len(mine)
        c = 0
        while not stop.is_set():
            s = mine[c % m]
            c += 1
            t0 = clock()
            try:
                run(s)
                sync()
            except BaseException as e:  # noqa: BLE001 - reported after the run as a BackendError
                errors.append(e)
                stop.set()
                return
            t1 = clock()
            with lock:
                samples.append(t1 - t0)
                ends.append(t1)
            r = rule.reason(t1 - start, next(completed))
            if r is not None:
                why.append(r)
                stop.set()

    threads = [threading.Thread(target=worker, args=(j,), name=f"benchkit-concurrency-{j}", daemon=True)
               for j in range(concurrency)]
    for t in threads:
        t.start()
    # The stop rule sets `stop` once enough calls completed (or one failed); a call that never returns is
    # the adapter's to time out (the OIP adapter's `timeout_s`), and past that the cell's own timeout.
    stop.wait()
    for t in threads:
        t.join(timeout=_DRAIN_S)
    if any(t.is_alive() for t in threads):
        raise BackendError(f"{sum(t.is_alive() for t in threads)} call(s) in flight did not complete within "
                           f"{_DRAIN_S:.0f} s of the stop")
    return samples, ends, start, (why[0] if why else "error"), errors


__all__ = ["run_concurrent"]
