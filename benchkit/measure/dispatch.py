"""Which loop and which batch each scenario uses, and its headline metric."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from time import perf_counter_ns

from benchkit.measure.loops import Clock, Measurement, StopRule, closed_loop

# (metric name, unit, higher is better) of each scenario's headline figure.
HEADLINE: dict[str, tuple[str, str, bool]] = {
    "single_stream": ("latency_p90_ns", "ns", False),
    "multi_stream": ("latency_p99_ns", "ns", False),
    "server": ("throughput_per_s", "samples/s", True),
    "offline": ("throughput_per_s", "samples/s", True),
}


def requested_batch(kind: str, settings: dict[str, Any]) -> int:
    """Samples per inference call the scenario asks for (the model may fix another)."""
    if kind == "offline":
        return int(settings["batch_size"])
    if kind == "multi_stream":
        return int(settings["samples_per_query"])
    return 1


def measure(
    kind: str,
    backend: Any,
    staged: Sequence[Any],
    settings: dict[str, Any],
    samples_per_query: int,
    seed: int,
    clock: Clock = perf_counter_ns,
) -> Measurement:
    """Run the timed part of one scenario on already staged inputs."""
    rule = StopRule.from_settings(settings)
    if kind == "offline":
        # Offline's min/max_query_count count samples, as in LoadGen.
        rule = rule.in_calls(samples_per_query)
    if kind in ("single_stream", "multi_stream", "offline"):
        return closed_loop(backend, staged, rule, samples_per_query, clock)
    if kind == "server":
        from benchkit.measure.server import run_server

        return run_server(backend, staged, settings, rule, samples_per_query, seed, clock)
    raise ValueError(f"unknown scenario kind {kind!r}")
