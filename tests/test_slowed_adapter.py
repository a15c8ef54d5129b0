"""The slowed-ort test adapter (tests/fakes) that tests/benchmarks/bench_ci_gate.py uses to inject a slowdown."""

from __future__ import annotations

import time

import numpy as np
import pytest

from benchkit.backends.base import WorkloadInfo
from benchkit.errors import BackendError


def test_slowdown_adds_that_fraction_of_each_calls_cpu_time(fakes_on_path, tiny_model):
    """slowdown 1.0 doubles the CPU work of a call. Measured in thread CPU time, calls of the two adapters
    interleaved, so a busy machine's preemptions (which stretch wall time, not CPU time) cannot move it."""
    from benchkit_test_fakes import SlowedBackend

    wl = WorkloadInfo("tiny", {"x": (4096, 16)}, {"x": np.dtype(np.float32)}, ["y"], 4096)
    feeds = {"x": np.ones((4096, 16), np.float32)}
    backends = {}
    for slowdown in (0.0, 1.0):
        b = SlowedBackend({"providers": ["CPUExecutionProvider"], "intra_op_num_threads": 1, "slowdown": slowdown})
        b.load(tiny_model, wl)
        assert b.info().options["slowdown"] == slowdown and b.info().name == "slowed-ort"
        backends[slowdown] = (b, b.stage(feeds))
    cpu: dict[float, list[int]] = {0.0: [], 1.0: []}
    for i in range(400):
        slowdown = (0.0, 1.0)[i % 2]
        b, staged = backends[slowdown]
        c0 = time.thread_time_ns()
        b.run(staged)
        cpu[slowdown].append(time.thread_time_ns() - c0)
    for b, _ in backends.values():
        b.close()
    ratio = float(np.median(cpu[1.0]) / np.median(cpu[0.0]))
    assert 1.7 < ratio < 2.6, ratio
    with pytest.raises(BackendError, match="slowdown"):
        SlowedBackend({"slowdown": -1})
