"""Which loop and which batch each scenario uses, and its headline metric."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from time import perf_counter_ns
from typing import Any, Literal

from benchkit.measure.loops import Clock, Measurement, StopRule, closed_loop, grouped_loop, in_flight_loop

Engine = Literal["benchkit", "mlperf"]
ENGINES: tuple[str, ...] = ("benchkit", "mlperf")  # benchkit's own loops; MLPerf LoadGen (the mlperf extra)

# (metric name, unit, higher is better) of each scenario's headline figure.
HEADLINE: dict[str, tuple[str, str, bool]] = {
    "single_stream": ("latency_p90_ns", "ns", False),
    "multi_stream": ("latency_p99_ns", "ns", False),
    "server": ("throughput_per_s", "samples/s", True),
    "offline": ("throughput_per_s", "samples/s", True),
    "generative": ("output_tokens_per_s", "tokens/s", True),
}


def measure(
    scenario: Any,
    backend: Any,
    staged: Sequence[Any],
    samples_per_query: int,
    seed: int,
    clock: Clock = perf_counter_ns,
    capture: Collection[int] = (),
    calls_per_query: int = 1,
) -> Measurement:
    """Run the timed part of one resolved scenario (``benchkit.spec``, after ``effective()``) on staged inputs.

    ``capture``: query indices whose outputs the closed loops fetch after timing them (see ``closed_loop``);
    the Server scenario captures none (its queries complete on other threads). ``calls_per_query`` > 1: each
    MultiStream query is that many calls of ``samples_per_query`` samples (a batch fixed below the query size;
    see ``grouped_loop``)."""
    kind = scenario.kind
    rule = StopRule.of(scenario)
    if kind == "offline":
        # Offline's min/max_query_count count samples, as in LoadGen.
        rule = rule.in_calls(samples_per_query)
        concurrency = getattr(scenario, "concurrency", 1)
        if concurrency > 1:  # the spec asks for N calls in flight: exactly N, whatever the adapter could take
            from benchkit.measure.concurrency import run_concurrent

            return run_concurrent(backend, staged, rule, samples_per_query, concurrency, clock)
        depth = _in_flight(backend)
        if depth > 1:  # concurrency 1 on an adapter that runs several calls at once: as many as it runs
            return in_flight_loop(backend, staged, rule, samples_per_query, depth, clock, capture)
    if kind == "multi_stream" and calls_per_query > 1:
        return grouped_loop(backend, staged, rule, samples_per_query, calls_per_query, clock, capture)
    if kind in ("single_stream", "multi_stream", "offline"):
        return closed_loop(backend, staged, rule, samples_per_query, clock, capture)
    if kind == "server":
        from benchkit.measure.server import run_server

        return run_server(backend, staged, scenario, rule, samples_per_query, seed, clock)
    raise ValueError(f"unknown scenario kind {kind!r}")


def _in_flight(backend: Any) -> int:
    """Queries Offline keeps in flight on ``backend``: its ``max_in_flight()`` where it submits asynchronously."""
    if not (hasattr(backend, "supports_async") and backend.supports_async()):
        return 1
    return int(backend.max_in_flight()) if hasattr(backend, "max_in_flight") else 1


def run_engine(engine: Engine, scenario: Any, backend: Any, staged: Sequence[Any], samples_per_query: int, seed: int,
               call_ns: int, log_dir: Path | None, capture: Collection[int] = (),
               calls_per_query: int = 1) -> Measurement:
    """The timed part of one cell, driven by ``engine``. ``call_ns`` (a warmup call's time) sizes LoadGen's
    run; ``log_dir`` receives LoadGen's logs; ``capture`` (benchkit's engine) as for :func:`measure`."""
    if engine == "mlperf":
        if calls_per_query > 1:
            from benchkit.errors import BenchkitError

            raise BenchkitError(f"the mlperf engine issues one call per MultiStream query; this model's fixed batch "
                                f"needs {calls_per_query} calls per query: use --engine benchkit")
        from benchkit.measure.loadgen import measure_with_loadgen

        return measure_with_loadgen(scenario, backend, staged, samples_per_query, seed, call_ns, log_dir)
    if engine != "benchkit":
        raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    return measure(scenario, backend, staged, samples_per_query, seed, capture=capture, calls_per_query=calls_per_query)
