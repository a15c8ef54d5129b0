"""Benchmark: `compare` of 1,000 record pairs with 10,000 samples each (target: under 5 s).

Run from the repository root:  PYTHONPATH=$PWD python tests/benchmarks/bench_compare.py [--pairs 1000] [--samples 10000]

Writes 2 x PAIRS synthetic records (real ResultRecord JSON files, as `benchkit
run` writes them) to a temporary directory, then times in one run:
  * compare_paths end to end (find + load + match + bootstrap), as `benchkit compare` does;
  * compare() on records already in memory (the statistics, plus list -> array);
Wall and CPU time are both printed: on a shared machine the wall time
includes waiting for a core.
  * a naive bootstrap that resamples a (B, n) index matrix per metric, on a few
    pairs, extrapolated: the ratio shows what the order-statistic shortcut buys.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ for record_factory

from record_factory import lognormal_ns, make_record  # noqa: E402

from benchkit.results import records  # noqa: E402
from benchkit.results.compare import CompareSettings, compare, compare_paths  # noqa: E402


def naive_pair_s(b: np.ndarray, c: np.ndarray, resamples: int, rng: np.random.Generator) -> float:
    """Seconds for a textbook bootstrap of p50, p99 and the mean on one pair, in chunks of a (B, n) matrix."""
    t = time.perf_counter()
    for x in (b, c):
        n = x.size
        for start in range(0, resamples, 100):
            idx = rng.integers(0, n, size=(min(100, resamples - start), n))
            res = x[idx]
            np.percentile(res, [50, 99], axis=1)
            res.mean(axis=1)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=10_000)
    args = ap.parse_args()
    settings = CompareSettings()
    with tempfile.TemporaryDirectory(prefix="benchkit-bench-compare-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        for i in range(args.pairs):
            for side, shift in (("base", 1.0), ("cand", 1.02)):
                x = np.round(lognormal_ns(args.samples, seed=2 * i + (side == "cand")) * shift).astype(np.int64)
                rec = make_record(x, workload=f"w{i:04d}", kind="offline" if i % 2 else "single_stream",
                                  batch=8 if i % 2 else 1)
                records.save(rec, root / side / f"w{i:04d}.json")
        print(f"wrote {2 * args.pairs} records of {args.samples:,} samples in {time.perf_counter() - t:.1f} s")

        t, cpu = time.perf_counter(), time.process_time()
        c = compare_paths([root / "base"], [root / "cand"], settings)
        end_to_end, end_to_end_cpu = time.perf_counter() - t, time.process_time() - cpu
        assert len(c.pairs) == args.pairs, len(c.pairs)

        base = [records.load(p) for p in records.find([root / "base"])]
        cand = [records.load(p) for p in records.find([root / "cand"])]
        t, cpu = time.perf_counter(), time.process_time()
        compare(base, cand, settings)
        stats_only, stats_only_cpu = time.perf_counter() - t, time.process_time() - cpu

    rng = np.random.default_rng(0)
    few = 3
    naive = sum(naive_pair_s(lognormal_ns(args.samples, seed=i), lognormal_ns(args.samples, seed=i + 99),
                             settings.resamples, rng) for i in range(few)) / few
    print(f"compare {args.pairs:,} pairs x {args.samples:,} samples, {settings.resamples:,} resamples:")
    print(f"  end to end (load + bootstrap):   {end_to_end:6.2f} s wall, {end_to_end_cpu:5.2f} s CPU   (target < 5 s)")
    print(f"  statistics only (in memory):     {stats_only:6.2f} s wall, {stats_only_cpu:5.2f} s CPU   "
          f"({stats_only / args.pairs * 1e3:.2f} ms/pair)")
    print(f"  naive (B, n) resampling, est.:   {naive * args.pairs:6.1f} s   ({naive * 1e3:.1f} ms/pair, "
          f"{naive * args.pairs / stats_only:.0f}x the statistics above)")
    return 0 if end_to_end < 5.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
