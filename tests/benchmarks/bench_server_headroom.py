"""Server scheduler headroom on the ``null`` backend, benchkit's loop and MLPerf LoadGen's side by side.

Targets (issue 4): on 2 cores, benchkit's Server stays VALID under a 10 ms p99 bound at 50,000 QPS or
more, and its p99 issue lateness stays under 100 µs at 10,000 QPS. The reference is LoadGen's C++
scheduler driving a Python system under test (the same ``null`` adapter behind benchkit's LoadGen
engine: IssueQuery -> submit -> QuerySamplesComplete).

Both engines run alternately (A B A B ...) at each rate in one process, so machine drift hits both.

    python tests/benchmarks/bench_server_headroom.py [--duration-s 2] [--rates 20000,50000,...]
    taskset -c 0,1 python tests/benchmarks/bench_server_headroom.py   # the issue's 2-core setting
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

MS = 1_000_000


def settings(qps: float, duration_s: float):
    from benchkit.spec import Server

    return Server(kind="server", target_qps=qps, target_latency_ns=10 * MS, target_latency_percentile=99.0,
                  workers=2, min_duration_ms=int(duration_s * 1000), min_query_count=662).effective("quick")


def run_benchkit(qps: float, duration_s: float, seed: int) -> dict:
    from benchkit.backends.null import NullBackend
    from benchkit.measure.loops import StopRule
    from benchkit.measure.server import run_server
    from benchkit.checks.latency import latency_verdict

    s = settings(qps, duration_s)
    m = run_server(NullBackend({}), [None] * 16, s, StopRule.of(s), 1, seed)
    v = latency_verdict(s, np.sort(m.samples_ns), m.issue_lateness_ns)
    late = m.issue_lateness_ns
    return {"valid": not v.reasons, "p99_ns": int(np.sort(m.samples_ns)[int(0.99 * m.query_count)]),
            "late_p50_ns": late.p50, "late_p99_ns": late.p99, "late_max_ns": late.max,
            "completed_per_s": m.extra["completed_samples_per_s"], "queries": m.query_count}


def run_loadgen(qps: float, duration_s: float, seed: int, trace: bool) -> dict:
    from benchkit.backends.null import NullBackend
    from benchkit.measure import loadgen as mlperf

    s = settings(qps, duration_s)
    saved = mlperf.TRACE_MAX_SAMPLES
    mlperf.TRACE_MAX_SAMPLES = saved if trace else 0  # the trace costs ~1 KB per sample; only for lateness
    try:
        with tempfile.TemporaryDirectory() as tmp:
            m = mlperf.measure_with_loadgen(s, NullBackend({}), [None] * 16, 1, seed, 1000, Path(tmp))
    finally:
        mlperf.TRACE_MAX_SAMPLES = saved
    lg = m.extra["mlperf"]
    late = m.issue_lateness_ns
    return {"valid": not m.engine_reasons, "p99_ns": int(lg["result_99.00_percentile_latency_ns"]),
            "late_p50_ns": late.p50 if late else None, "late_p99_ns": late.p99 if late else None,
            "late_max_ns": late.max if late else None,
            "completed_per_s": float(lg["result_completed_samples_per_sec"]), "queries": int(lg["result_query_count"])}


def fmt_us(ns) -> str:
    return "-" if ns is None else f"{ns / 1e3:,.1f} µs"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration-s", type=float, default=2.0, help="min duration of each run (default 2)")
    ap.add_argument("--lateness-qps", type=float, default=10_000.0)
    ap.add_argument("--rates", default="20000,30000,40000,50000,60000,80000,100000,150000,200000")
    ap.add_argument("--no-loadgen", action="store_true", help="benchkit only (LoadGen not installed)")
    args = ap.parse_args(argv)
    try:
        import mlperf_loadgen  # noqa: F401
    except ImportError:
        args.no_loadgen = True
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"server headroom, null backend, {cpus} CPUs usable, {args.duration_s:g} s per run, 10 ms p99 bound")

    print(f"\n1) issue lateness at {args.lateness_qps:,.0f} QPS (target: benchkit p99 < 100 µs)")
    print(f"{'engine':10s} {'late p50':>12s} {'late p99':>12s} {'late max':>12s} {'lat p99':>12s} {'valid':>6s}")
    rows = {"benchkit": [], "loadgen": []}
    for rnd in range(2):
        for engine in ("benchkit", "loadgen"):
            if engine == "loadgen" and args.no_loadgen:
                continue
            r = (run_benchkit(args.lateness_qps, args.duration_s, rnd) if engine == "benchkit"
                 else run_loadgen(args.lateness_qps, args.duration_s, rnd, trace=True))
            rows[engine].append(r)
            print(f"{engine:10s} {fmt_us(r['late_p50_ns']):>12s} {fmt_us(r['late_p99_ns']):>12s} "
                  f"{fmt_us(r['late_max_ns']):>12s} {fmt_us(r['p99_ns']):>12s} {str(r['valid']):>6s}")
    bk99 = min(r["late_p99_ns"] for r in rows["benchkit"])
    print(f"benchkit best p99 lateness: {fmt_us(bk99)} ({'meets' if bk99 < 100_000 else 'MISSES'} the 100 µs target)")
    if rows["loadgen"]:
        lg99 = min(r["late_p99_ns"] for r in rows["loadgen"])
        print(f"LoadGen best p99 lateness:  {fmt_us(lg99)}; ratio benchkit/LoadGen = {bk99 / max(lg99, 1):.2f}")

    print("\n2) highest VALID rate under a 10 ms p99 bound (target: benchkit >= 50,000 QPS)")
    print(f"{'target QPS':>10s} {'engine':10s} {'completed/s':>12s} {'lat p99':>12s} {'late p99':>12s} {'valid':>6s}")
    best = {"benchkit": 0.0, "loadgen": 0.0}
    for qps in [float(x) for x in args.rates.split(",")]:
        for engine in ("benchkit", "loadgen"):
            if engine == "loadgen" and args.no_loadgen:
                continue
            r = (run_benchkit(qps, args.duration_s, 1) if engine == "benchkit"
                 else run_loadgen(qps, args.duration_s, 1, trace=False))
            if r["valid"]:
                best[engine] = max(best[engine], qps)
            print(f"{qps:>10,.0f} {engine:10s} {r['completed_per_s']:>12,.0f} {fmt_us(r['p99_ns']):>12s} "
                  f"{fmt_us(r['late_p99_ns']):>12s} {str(r['valid']):>6s}")
    print(f"\nhighest VALID rate: benchkit {best['benchkit']:,.0f} QPS "
          f"({'meets' if best['benchkit'] >= 50_000 else 'MISSES'} the 50,000 target)", end="")
    if not args.no_loadgen:
        ratio = best["benchkit"] / best["loadgen"] if best["loadgen"] else float("inf")
        print(f"; LoadGen + Python SUT {best['loadgen']:,.0f} QPS; ratio benchkit/LoadGen = {ratio:.2f}")
    else:
        print()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main())
