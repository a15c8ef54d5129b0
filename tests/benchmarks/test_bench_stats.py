"""Statistics speed (pytest-benchmark; in the default test run each body executes once as a check).

Measure: ``pytest tests/benchmarks/test_bench_stats.py --benchmark-enable``
"""

from __future__ import annotations

import numpy as np
import pytest

from benchkit.stats import early_stopping_percentile_ns, summarize


@pytest.mark.slow  # ten million samples
def test_summarize_ten_million_samples(benchmark):
    samples = np.random.default_rng(7).integers(1, 10**9, 10_000_000, dtype=np.int64)
    s = benchmark.pedantic(summarize, args=(samples,), rounds=3, iterations=1)
    assert s.count == 10_000_000


def test_early_stopping_one_million(benchmark):
    ordered = np.arange(1_000_000, dtype=np.int64)
    r = benchmark.pedantic(early_stopping_percentile_ns, args=(ordered, 90), rounds=3, iterations=1)
    assert r.estimate_ns is not None
