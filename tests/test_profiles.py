"""Run profiles per scenario: `mlperf` carries MLPerf Inference's numbers as LoadGen 6.0 applies them."""

from __future__ import annotations

import pytest

from benchkit.spec import MultiStream, Offline, Server, SingleStream, profile_defaults
from benchkit.stats import min_passing_queries

SCENARIOS = {
    "single_stream": SingleStream(kind="single_stream"),
    "multi_stream": MultiStream(kind="multi_stream"),
    "server": Server(kind="server", target_qps=100, target_latency_ns=10_000_000),
    "offline": Offline(kind="offline"),
}


@pytest.mark.parametrize("kind, count", [("single_stream", 100), ("multi_stream", 662), ("server", 100),
                                         ("offline", 24_576)])
def test_mlperf_profile_follows_loadgen(kind, count):
    eff = SCENARIOS[kind].effective("mlperf")
    # mlperf.conf: *.<Scenario>.min_duration = 600000 for all four; min_query_count as LoadGen sets it
    assert eff.min_duration_ms == 600_000
    assert eff.min_query_count == count


@pytest.mark.parametrize("profile", ["quick", "standard"])
def test_short_profiles_leave_early_stopping_room(profile):
    # LoadGen needs h(1) + 1 queries for any SingleStream/MultiStream estimate; Server at p99 with one
    # query over the bound needs h(1) + 1 too. A profile default below that would be INVALID by length.
    assert SCENARIOS["single_stream"].effective(profile).min_query_count >= min_passing_queries(1, 90) + 1
    assert SCENARIOS["multi_stream"].effective(profile).min_query_count >= min_passing_queries(1, 99) + 1
    assert SCENARIOS["server"].effective(profile).min_query_count >= min_passing_queries(1, 99) + 1


def test_explicit_values_win_over_every_profile_default():
    s = Server(kind="server", target_qps=[10, 20], target_latency_ns=1, min_query_count=7, min_duration_ms=3)
    for profile in ("quick", "standard", "mlperf"):
        eff = s.effective(profile)
        assert (eff.min_query_count, eff.min_duration_ms) == (7, 3)
        assert eff.target_qps == (10.0, 20.0)  # the sweep stays a list here; each cell gets one value
    assert profile_defaults("quick", "offline")["min_query_count"] == 50
