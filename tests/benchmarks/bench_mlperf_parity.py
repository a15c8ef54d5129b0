"""Parity with MLPerf LoadGen: the same cell measured by benchkit's loops and by LoadGen, alternately.

Targets (issue 4): on the same model and machine, benchkit's SingleStream p90 and LoadGen's agree
within 5%, and so do their Offline samples/s. Each round runs benchkit then LoadGen (A B A B ...) on
the real cell path (``runner.execute_cell``: resolve, load, stage, warmup, measure, record), so drift
of the machine falls on both; the medians over rounds are compared.

    python tests/benchmarks/bench_mlperf_parity.py [--workload conv2d] [--rounds 3] [--duration-ms 2000]

Pick a model whose call takes well over 100 µs: LoadGen's Python system under test adds a few µs
per query (the IssueQuery callback and QuerySamplesComplete) that benchkit's loop does not have.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", default="conv2d")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration-ms", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=8, help="Offline batch size")
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime intra_op_num_threads (0: runtime default)")
    args = ap.parse_args(argv)

    from benchkit.runner.plan import SuiteContext, expand
    from benchkit.runner.cell import execute_cell
    from benchkit.spec import parse_spec

    loaded = parse_spec(f"""
name: parity
seed: 1
workloads: [{{name: {args.workload}}}]
backends: [{{name: onnxruntime, options: {{intra_op_num_threads: {args.threads}}}}}]
scenarios:
  - {{kind: single_stream, min_duration_ms: {args.duration_ms}, min_query_count: 64}}
  - {{kind: offline, batch_size: {args.batch}, min_duration_ms: {args.duration_ms}, min_query_count: 64}}
run: {{profile: quick}}
""", "parity", Path.cwd())
    cells = {c.kind: c for c in expand(loaded)}
    figures: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        print(f"parity on {args.workload}: {args.rounds} rounds of benchkit, LoadGen alternately; "
              f"{args.duration_ms} ms per run")
        print(f"{'round':>5s} {'scenario':14s} {'engine':9s} {'figure':>16s} {'queries':>8s} valid")
        for rnd in range(args.rounds):
            for kind in ("single_stream", "offline"):
                for engine in ("benchkit", "mlperf"):
                    ctx = SuiteContext(run_id=f"r{rnd}", spec_name="parity", spec_sha256=loaded.sha256,
                                       base_dir=str(loaded.base_dir), keep_samples=False, engine=engine,
                                       run_dir=tmp)
                    rec = execute_cell(cells[kind], ctx)
                    if rec.metrics is None:
                        print(f"{rnd:>5d} {kind:14s} {engine:9s} FAILED: {rec.validity.reasons}")
                        return 1
                    value = rec.metrics.headline.value
                    figures.setdefault((kind, engine), []).append(value)
                    shown = f"{value / 1e3:,.1f} µs p90" if kind == "single_stream" else f"{value:,.1f} /s"
                    print(f"{rnd:>5d} {kind:14s} {engine:9s} {shown:>16s} {rec.metrics.count:>8d} "
                          f"{rec.validity.valid}")
    print()
    ok = True
    for kind, what in (("single_stream", "SingleStream p90"), ("offline", "Offline samples/s")):
        bk = statistics.median(figures[(kind, "benchkit")])
        lg = statistics.median(figures[(kind, "mlperf")])
        ratio = bk / lg
        within = abs(ratio - 1) <= 0.05
        ok &= within
        unit = "ns" if kind == "single_stream" else "samples/s"
        print(f"{what:18s} benchkit {bk:,.1f} {unit}, LoadGen {lg:,.1f} {unit}: ratio {ratio:.3f} "
              f"({'within' if within else 'OUTSIDE'} 5%)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main())
