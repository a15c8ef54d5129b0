"""Refusals and acceptances, measured: every dishonest adapter of ``tests/fakes`` and the honest ones, through the
real run path, N times each, under one profile. Prints, per adapter, how often it was VALID and which checks
refused it. A standard is only as good as both columns: every cheat refused, every honest run accepted.

    python tests/benchmarks/bench_verdicts.py --profile certify --rounds 5
    python tests/benchmarks/bench_verdicts.py --workload "{name: gemm, params: {m: 64, n: 256, k: 256}}" \\
        --scenario offline --adapters onnxruntime,cheat-stage --load 1

``--load N`` runs N busy-loop processes beside the measurement (a shared CI runner's neighbours).
Short runs (``--min-duration-ms``) keep the script quick; the verdict rules are those of the profile.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FAKES = ROOT / "tests" / "fakes"

HONEST = ("onnxruntime", "spin-honest", "openvino")
CHEATS = ("cheat-stage", "cheat-stage-spin", "cheat-fetch", "cheat-async", "cheat-cache", "cheat-repeat-bypass",
          "cheat-first-inputs", "cheat-stale", "cheat-zeros", "cheat-partial-batch", "cheat-precision",
          "cheat-false-info")
# Honest adapters on a machine that misbehaves: must be refused too (the throttled clock by the drift rule).
FAULTS = ("throttled",)
# Cheats whose subject needs a particular cell: the partial batch needs batch > 1 (Offline), the pruned
# graph needs a graph with a residual block (mobilenet-v2).
SPECIAL = {"cheat-pruned-int8": "{name: cheat-pruned-int8, precision: int8}"}


def _burn(stop: mp.Event) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def spec_text(workload: str, adapters: list[str], scenario: str, min_duration_ms: int, profile: str) -> str:
    backends = "\n".join(f"  - {SPECIAL.get(a, '{name: ' + a + '}')}" for a in adapters)
    extra = "    batch_size: 4\n" if scenario == "offline" else ""
    return (f"name: verdicts\nseed: 5\nworkloads:\n  - {workload}\nbackends:\n{backends}\nscenarios:\n"
            f"  - kind: {scenario}\n    min_duration_ms: {min_duration_ms}\n{extra}"
            f"run: {{profile: {profile}, isolation: inline, keep_samples: false}}\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="certify")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workload", default="{name: mobilenet-v2, params: {image_size: 96}}")
    ap.add_argument("--scenario", default="single_stream", choices=["single_stream", "offline", "multi_stream"])
    ap.add_argument("--min-duration-ms", type=int, default=1000)
    ap.add_argument("--adapters", default=",".join(HONEST + CHEATS + FAULTS))
    ap.add_argument("--load", type=int, default=0, help="busy-loop processes beside the measurement")
    args = ap.parse_args()

    sys.path.insert(0, str(FAKES))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FAKES), os.environ.get("PYTHONPATH")]))
    from benchkit.runner.suite import RunOptions, plan_cells, run_suite
    from benchkit.spec import parse_spec

    adapters = args.adapters.split(",")
    stop = mp.Event()
    burners = [mp.Process(target=_burn, args=(stop,), daemon=True) for _ in range(args.load)]
    for b in burners:
        b.start()
    valid: collections.Counter[str] = collections.Counter()
    why: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    rate: dict[str, list[float]] = collections.defaultdict(list)
    t0 = time.monotonic()
    load0 = os.getloadavg()[0]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            loaded = parse_spec(spec_text(args.workload, adapters, args.scenario, args.min_duration_ms, args.profile),
                                "verdicts.yaml", Path(tmp))
            for r in range(args.rounds):
                opts = RunOptions(out_dir=Path(tmp) / f"r{r}", cache_dir=Path(tmp) / "cache")
                for rec in run_suite(loaded, plan_cells(loaded, opts), opts).records:
                    a = rec.backend.id if rec.backend else rec.cell_id.split("__")[1]
                    valid[a] += rec.validity.valid
                    for f in rec.validity.findings:
                        if f.severity == "reason":
                            why[a][f.check] += 1
                    if rec.metrics is not None:
                        rate[a].append(rec.metrics.throughput_per_s)
    finally:
        stop.set()
        for b in burners:
            b.join(2)
    # The machine's own load matters as much as the busy neighbours added here: a shared runner's other jobs.
    print(f"{args.workload} {args.scenario}, profile {args.profile}, {args.min_duration_ms} ms runs, "
          f"{args.rounds} round(s), {args.load} busy neighbour(s), load average at start {load0:.1f}, at the end "
          f"{os.getloadavg()[0]:.1f}, {time.monotonic() - t0:.0f} s")
    print(f"{'adapter':<22} {'VALID':>7} {'samples/s (median)':>19}  refused by (check: times)")
    for a in adapters:
        rates = sorted(rate[a])
        med = f"{rates[len(rates) // 2]:,.1f}" if rates else "-"
        checks = ", ".join(f"{c}: {n}" for c, n in why[a].most_common()) or "-"
        print(f"{a:<22} {valid[a]:>3}/{args.rounds:<3} {med:>19}  {checks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
