"""The one timing boundary, the stop rule, and the closed loop that SingleStream, MultiStream and Offline share."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any

import numpy as np

Clock = Callable[[], int]


@dataclass(frozen=True)
class StopRule:
    """LoadGen's stop rule: run until BOTH minimums are met; stop early when EITHER maximum is reached."""

    min_duration_ns: int
    min_query_count: int
    max_duration_ns: int | None = None
    max_query_count: int | None = None

    @classmethod
    def of(cls, scenario: Any) -> StopRule:
        """The rule of a resolved scenario (``benchkit.spec`` scenario after ``effective()``), counts in queries."""
        ms = 1_000_000
        return cls(
            min_duration_ns=scenario.min_duration_ms * ms,
            min_query_count=scenario.min_query_count,
            max_duration_ns=None if scenario.max_duration_ms is None else scenario.max_duration_ms * ms,
            max_query_count=scenario.max_query_count,
        )

    def in_calls(self, samples_per_call: int) -> StopRule:
        """The same rule with query counts given in samples, converted to calls of ``samples_per_call``.

        LoadGen's Offline scenario counts ``min_query_count`` in samples (its one
        query holds them all); benchkit issues Offline work in calls of
        ``batch_size`` samples, so the counts are divided, rounding up.
        """
        per = max(1, int(samples_per_call))
        return StopRule(
            min_duration_ns=self.min_duration_ns,
            min_query_count=-(-self.min_query_count // per),
            max_duration_ns=self.max_duration_ns,
            max_query_count=None if self.max_query_count is None else -(-self.max_query_count // per),
        )

    def reason(self, elapsed_ns: int, count: int) -> str | None:
        """Why the run should stop now, or None to go on."""
        if self.max_query_count is not None and count >= self.max_query_count:
            return "max_query_count"
        if self.max_duration_ns is not None and elapsed_ns >= self.max_duration_ns:
            return "max_duration"
        if elapsed_ns >= self.min_duration_ns and count >= self.min_query_count:
            return "min_duration_and_query_count"
        return None


@dataclass
class Measurement:
    """Raw outcome of a timed run, before statistics."""

    samples_ns: np.ndarray  # one latency per query, int64, in issue order
    start_ns: int
    end_ns: int
    query_count: int
    samples_per_query: int
    stop_reason: str
    extra: dict[str, Any] = field(default_factory=dict)  # scenario figures for metrics.extra, nothing else
    samples_total: int | None = None  # set when not every query held samples_per_query samples (LoadGen Offline)
    engine: str = "benchkit"  # what drove the loop: benchkit | mlperf (benchkit.measure.ENGINES)
    engine_reasons: list[str] = field(default_factory=list)  # the engine's own INVALID verdict (LoadGen's)
    engine_latency_met: bool | None = None  # the engine's latency verdict where it gives one on the same samples
    headline_value: float | None = None  # the engine's own headline figure, where it computes one (LoadGen)
    issue_lateness_ns: Any = None  # Server: stats.LatencyStats of issue time - scheduled time
    final_scheduled_ns: int | None = None  # Server: offset of the last scheduled query (min duration's measure)
    captured: dict[int, list[np.ndarray]] = field(default_factory=dict)  # query index -> its fetched outputs
    fetch_ns: list[int] = field(default_factory=list)  # the captured queries' fetch() times (untimed phase)

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def sample_count(self) -> int:
        if self.samples_total is not None:
            return self.samples_total
        return self.query_count * self.samples_per_query


def timed_call(backend: Any, staged: Any, clock: Clock = perf_counter_ns) -> int:
    """One call through the timing boundary; returns its latency in ns."""
    t0 = clock()
    backend.run(staged)
    # synchronize() is inside the timed region: run() may return before the device finishes.
    backend.synchronize()
    return clock() - t0


def warmup(backend: Any, staged: Sequence[Any], min_ms: int, min_queries: int, clock: Clock = perf_counter_ns) -> int:
    """Untimed run-in until both `min_ms` and `min_queries` are met. Returns the number of calls."""
    start = clock()
    n = 0
    deadline = min_ms * 1_000_000
    k = len(staged)
    while n < min_queries or clock() - start < deadline:
        backend.run(staged[n % k])
        backend.synchronize()
        n += 1
    return n


def closed_loop(
    backend: Any,
    staged: Sequence[Any],
    rule: StopRule,
    samples_per_query: int,
    clock: Clock = perf_counter_ns,
    capture: Collection[int] = (),
) -> Measurement:
    """Issue queries back to back, each when the previous completed, until `rule` says stop.

    The loop body outside the timed region is kept to an append and a stop
    check: the harness overhead bound (<= 10% over a bare session.run loop on
    a 5 µs model) leaves no room for more.

    ``capture``: query indices whose outputs are fetched, after their timed
    region and before the next query (MLPerf TEST01's sampled accuracy log):
    what the measured loop itself computed, checked later against the
    reference (``checks.audits.loop_outputs``). Their fetch is timed too
    (``Measurement.fetch_ns``): the untimed phases are measured, not trusted.
    """
    if capture:
        return _capturing_loop(backend, staged, rule, samples_per_query, clock, frozenset(capture))
    run = backend.run
    sync = backend.synchronize
    k = len(staged)
    samples: list[int] = []
    append = samples.append
    reason = rule.reason
    n = 0
    start = clock()
    t1 = start
    while True:
        s = staged[n % k]
        t0 = clock()
        run(s)
        sync()
        t1 = clock()
        append(t1 - t0)
        n += 1
        why = reason(t1 - start, n)
        if why is not None:
            break
    return Measurement(
        samples_ns=np.asarray(samples, dtype=np.int64),
        start_ns=start,
        end_ns=t1,
        query_count=n,
        samples_per_query=samples_per_query,
        stop_reason=why,
    )


def _capturing_loop(backend: Any, staged: Sequence[Any], rule: StopRule, samples_per_query: int, clock: Clock,
                    capture: frozenset[int]) -> Measurement:
    """:func:`closed_loop` that also fetches the outputs of the ``capture`` queries (a set lookup per query)."""
    run, sync, fetch = backend.run, backend.synchronize, backend.fetch
    k = len(staged)
    samples: list[int] = []
    append = samples.append
    reason = rule.reason
    captured: dict[int, list[np.ndarray]] = {}
    fetch_ns: list[int] = []
    n = 0
    start = clock()
    t1 = start
    while True:
        s = staged[n % k]
        t0 = clock()
        r = run(s)
        sync()
        t1 = clock()
        append(t1 - t0)
        if n in capture:
            # Outside the timed region; the copies keep the outputs whatever the adapter does with its buffers.
            outs = [np.array(a, copy=True) for a in fetch(r)]
            fetch_ns.append(clock() - t1)
            captured[n] = outs
        n += 1
        why = reason(t1 - start, n)
        if why is not None:
            break
    return Measurement(
        samples_ns=np.asarray(samples, dtype=np.int64),
        start_ns=start,
        end_ns=t1,
        query_count=n,
        samples_per_query=samples_per_query,
        stop_reason=why,
        captured=captured,
        fetch_ns=fetch_ns,
    )


def in_flight_loop(
    backend: Any,
    staged: Sequence[Any],
    rule: StopRule,
    samples_per_query: int,
    depth: int,
    clock: Clock = perf_counter_ns,
    capture: Collection[int] = (),
) -> Measurement:
    """Offline on an adapter that runs several calls at once: keep ``depth`` queries in flight through ``submit``.

    LoadGen's Offline hands the system every sample at once and lets it work
    on as many as it can; a closed loop of one call at a time leaves all but
    one of a throughput-mode device's streams idle (OpenVINO compiles for N
    streams and N infer requests). Here a new query is submitted the moment
    one completes, never more than ``depth`` outstanding. Each query's latency
    runs from just before its ``submit`` to its ``done`` callback, which the
    adapter calls when its outputs are ready (the run + synchronize semantics
    of the one timing boundary); throughput is samples over first submit to
    last completion. The stop rule is applied to completed queries; queries
    in flight when it says stop are waited for and counted.

    ``capture`` queries are run alone (the window drained first) through
    ``run``/``synchronize``/``fetch``, so their outputs can be read back.
    Before the clock starts, ``2 * depth`` untimed queries warm every request.
    """
    submit, run, sync, fetch = backend.submit, backend.run, backend.synchronize, backend.fetch
    k = len(staged)
    depth = max(1, int(depth))
    slots = threading.Semaphore(depth)
    errors: list[tuple[int, BaseException]] = []
    size = 1 << 16
    started = np.zeros(size, dtype=np.int64)
    finished = np.zeros(size, dtype=np.int64)
    box = [started, finished]  # the callback reads the current arrays: they are replaced when they grow

    def done(tag: int, error: BaseException | None) -> None:
        if tag >= 0:
            box[1][tag] = clock()
        if error is not None:
            errors.append((tag, error))
        slots.release()

    def drain() -> None:
        for _ in range(depth):
            slots.acquire()
        for _ in range(depth):
            slots.release()

    for j in range(2 * depth):  # untimed: every infer request runs once before measuring
        slots.acquire()
        submit(staged[j % k], done, -1)
    drain()
    if errors:
        _raise_first(errors, 2 * depth)
    # One call alone, through the synchronous boundary (untimed here): a query in flight among others cannot
    # finish sooner than that, which checks.measurement.in_flight holds the measurement to.
    alone_ns = min(timed_call(backend, staged[j % k], clock) for j in range(3))
    captured: dict[int, list[np.ndarray]] = {}
    fetch_ns: list[int] = []
    reason = rule.reason
    n = 0
    start = clock()
    why = None
    while why is None:
        slots.acquire()
        now = clock()
        # At most depth - 1 queries are still in flight now: the rest of those issued have completed (the
        # minimums are judged on that lower bound); the maximum counts what was issued, so it is never passed.
        completed_before = max(0, n - depth + 1)
        if rule.max_query_count is not None and n >= rule.max_query_count:
            why = "max_query_count"
        else:
            why = reason(now - start, completed_before)
        if why is not None:
            slots.release()
            break
        if n == size:
            slots.release()
            drain()  # no callback may write into the arrays being replaced
            slots.acquire()
            size *= 2
            started = np.concatenate([started, np.zeros(size - started.size, dtype=np.int64)])
            finished = np.concatenate([finished, np.zeros(size - finished.size, dtype=np.int64)])
            box[0], box[1] = started, finished
        if n in capture:
            slots.release()
            drain()
            t0 = clock()
            r = run(staged[n % k])
            sync()
            t1 = clock()
            started[n], finished[n] = t0, t1
            captured[n] = [np.array(a, copy=True) for a in fetch(r)]
            fetch_ns.append(clock() - t1)
        else:
            started[n] = clock()
            submit(staged[n % k], done, n)
        n += 1
    drain()
    if errors:
        _raise_first(errors, n)
    started, finished = box[0][:n], box[1][:n]
    return Measurement(
        samples_ns=finished - started,
        start_ns=start,
        end_ns=int(finished.max()) if n else start,
        query_count=n,
        samples_per_query=samples_per_query,
        stop_reason=why,
        extra={"issue_mode": "in_flight", "in_flight_max": depth, "alone_call_ns": int(alone_ns)},
        captured=captured,
        fetch_ns=fetch_ns,
    )


def _raise_first(errors: list[tuple[int, BaseException]], n: int) -> None:
    from benchkit.errors import BackendError

    tag, first = errors[0]
    raise BackendError(f"{len(errors)} of {n} offline queries failed; first (query {tag}): "
                       f"{type(first).__name__}: {first}") from first


def grouped_loop(
    backend: Any,
    staged: Sequence[Any],
    rule: StopRule,
    samples_per_call: int,
    calls_per_query: int,
    clock: Clock = perf_counter_ns,
    capture: Collection[int] = (),
) -> Measurement:
    """:func:`closed_loop` for queries that take ``calls_per_query`` calls: a MultiStream query of
    ``samples_per_query`` samples on a model whose batch dimension is fixed below it.

    A query's latency runs from its first ``run`` to its last ``synchronize``; each call is synchronised before
    the next (the protocol allows one outstanding call), and the calls walk the pool in order, so call ``i``
    of the run uses pool input ``i % len(staged)``. ``capture`` holds *call* indices (the last call of a
    captured query is fetched after the query's timed region), so the loop-output audit maps each captured
    call to its pool input as for one call per query.
    """
    run, sync, fetch = backend.run, backend.synchronize, backend.fetch
    k = len(staged)
    c = int(calls_per_query)
    samples: list[int] = []
    append = samples.append
    reason = rule.reason
    captured: dict[int, list[np.ndarray]] = {}
    fetch_ns: list[int] = []
    n = 0
    call = 0
    start = clock()
    t1 = start
    while True:
        t0 = clock()
        for _ in range(c):
            r = run(staged[call % k])
            sync()
            call += 1
        t1 = clock()
        append(t1 - t0)
        if call - 1 in capture:
            outs = [np.array(a, copy=True) for a in fetch(r)]
            fetch_ns.append(clock() - t1)
            captured[call - 1] = outs
        n += 1
        why = reason(t1 - start, n)
        if why is not None:
            break
    return Measurement(
        samples_ns=np.asarray(samples, dtype=np.int64),
        start_ns=start,
        end_ns=t1,
        query_count=n,
        samples_per_query=samples_per_call * c,
        stop_reason=why,
        extra={"calls_per_query": c, "samples_per_call": samples_per_call},
        captured=captured,
        fetch_ns=fetch_ns,
    )
