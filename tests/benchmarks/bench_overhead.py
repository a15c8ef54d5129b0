"""Harness overhead: SingleStream p50 through benchkit vs a bare ``session.run`` loop, side by side.

Target (core issue): benchkit's p50 <= 1.10 x the bare loop's p50 on a tiny model
(one Add on a [1,16] float tensor), same session options, measured in one run.

Both sides alternate A B A B ... in the same process so machine drift cancels;
the benchkit side is the real cell path (``runner.execute_cell``: adapter,
staged inputs, warmup, ``closed_loop``), not a re-implementation.

    python tests/benchmarks/bench_overhead.py [--rounds 5] [--queries 20000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from time import perf_counter_ns

import numpy as np


def bare_loop(model_path: str, feed: dict, n: int) -> int:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model_path, sess_options=so, providers=["CPUExecutionProvider"])
    for _ in range(200):
        sess.run(None, feed)
    samples = np.empty(n, dtype=np.int64)
    for i in range(n):
        t0 = perf_counter_ns()
        sess.run(None, feed)
        samples[i] = perf_counter_ns() - t0
    return int(np.median(samples))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--queries", type=int, default=20_000)
    args = ap.parse_args(argv)

    from benchkit.runner.plan import expand, SuiteContext
    from benchkit.runner.cell import execute_cell
    from benchkit.spec import parse_spec
    from benchkit.workloads import catalog
    from pathlib import Path

    model = catalog.materialize("tiny-add")
    feed = {"input": np.random.default_rng(0).standard_normal((1, 16), dtype=np.float32)}
    loaded = parse_spec(
        f"""
name: overhead
workloads: [{{name: tiny-add}}]
backends: [{{name: onnxruntime, options: {{providers: [CPUExecutionProvider]}}}}]
scenarios: [{{kind: single_stream, min_duration_ms: 1, min_query_count: {args.queries},
             max_query_count: {args.queries}, warmup_queries: 200, warmup_ms: 0}}]
""",
        "overhead",
        Path("."),
    )
    cell = expand(loaded)[0]
    ctx = SuiteContext("bench", "overhead", loaded.sha256, ".", keep_samples=False)

    bare, bk = [], []
    for r in range(args.rounds):
        bare.append(bare_loop(str(model), feed, args.queries))
        rec = execute_cell(cell, ctx)
        assert rec.validity.valid, rec.validity.reasons
        bk.append(rec.metrics.latency_ns.p50)
        print(f"round {r + 1}: bare p50 {bare[-1]:>7,} ns   benchkit p50 {bk[-1]:>7,} ns   ratio {bk[-1] / bare[-1]:.3f}")
    ratios = [b / a for a, b in zip(bare, bk)]
    print(f"median bare p50 {statistics.median(bare):,.0f} ns, benchkit p50 {statistics.median(bk):,.0f} ns")
    print(f"benchkit/bare p50 ratio: median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f});"
          f" target <= 1.10")
    return 0 if statistics.median(ratios) <= 1.10 else 1


if __name__ == "__main__":
    sys.exit(main())
