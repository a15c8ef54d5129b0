"""Catalog build times: the whole standard suite (fp32) from a cold cache, then ready from a warm one.

Targets (workload-suite issue): cold build < 3 min on 2 cores; a cached suite ready in < 1 s.
Each phase runs in a fresh process, as a user's `benchkit run` would.

    python tests/benchmarks/bench_catalog_build.py [--variant fp32]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

CHILD = """
import sys, time
t0 = time.perf_counter()
from benchkit.workloads import catalog
names = sorted(catalog.entries())
for n in names:
    if sys.argv[1] in catalog.get(n).variants:
        catalog.materialize(n, variant=sys.argv[1])
print(f"{len(names)} {time.perf_counter() - t0:.3f}")
"""


def phase(cache: str, variant: str) -> tuple[int, float, float]:
    env = {**os.environ, "BENCHKIT_CACHE_DIR": cache}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, variant], env=env, check=True, capture_output=True,
                         text=True).stdout.split()
    return int(out[0]), float(out[1]), time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="fp32")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="benchkit-cache-") as cache:
        n, cold_in, cold_wall = phase(cache, args.variant)
        _, warm_in, warm_wall = phase(cache, args.variant)
    print(f"{n} workloads ({args.variant}); cold build: {cold_in:.1f} s in-process, {cold_wall:.1f} s with start-up"
          f" (target < 180 s)")
    print(f"warm (cached) suite ready: {warm_in:.3f} s in-process, {warm_wall:.3f} s with start-up (target < 1 s);"
          f" cold/warm ratio {cold_in / warm_in:,.0f}x")
    return 0 if cold_wall < 180 and warm_in < 1 else 1


if __name__ == "__main__":
    sys.exit(main())
