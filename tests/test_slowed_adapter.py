"""The slowed-ort test adapter (tests/fakes) that tests/benchmarks/bench_ci_gate.py uses to inject a slowdown."""

from __future__ import annotations

import time

import numpy as np
import pytest

from benchkit.backends.base import WorkloadInfo
from benchkit.errors import BackendError


def _median_call_ns(backend, feeds, n: int = 300) -> float:
    staged = backend.stage(feeds)
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        backend.run(staged)
        out.append(time.perf_counter_ns() - t0)
    return float(np.median(out))


def test_slowdown_spins_that_fraction_of_each_call(fakes_on_path, tiny_model):
    from benchkit_test_fakes import SlowedBackend

    wl = WorkloadInfo("tiny", {"x": (64, 16)}, {"x": np.dtype(np.float32)}, ["y"], 64)
    feeds = {"x": np.ones((64, 16), np.float32)}
    times = {}
    for slowdown in (0.0, 1.0):
        b = SlowedBackend({"providers": ["CPUExecutionProvider"], "intra_op_num_threads": 1, "slowdown": slowdown})
        b.load(tiny_model, wl)
        times[slowdown] = _median_call_ns(b, feeds)
        assert b.info().options["slowdown"] == slowdown and b.info().name == "slowed-ort"
        b.close()
    assert 1.5 < times[1.0] / times[0.0] < 2.6, times
    with pytest.raises(BackendError, match="slowdown"):
        SlowedBackend({"slowdown": -1})
