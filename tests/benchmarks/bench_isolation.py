"""What process isolation costs per cell: inline, forked from the zygote, and a fresh interpreter, side by side.

Target (issue 12, part 7): a process-isolated cell costs at most 0.3 s more than the same cell inline.

Each round runs the same suite (N cells of ``tiny-add`` on onnxruntime's CPU
provider, SingleStream for ``--duration-ms``) through the real suite driver
(:func:`benchkit.runner.suite.run_suite`) once per way of running a cell, in an
order rotated from round to round so that machine drift cancels:

  inline      the cells run in this process (``RunOptions(isolation="inline")``)
  fork        a process per cell, forked from the zygote that an earlier suite of this process started
  fork-cold   the same, the zygote stopped first: this suite pays for starting it (a new ``benchkit run``)
  fresh       a process per cell, a fresh interpreter each (``BENCHKIT_FORKSERVER=0``: the old path)

The overhead per cell of a way is ``(its suite's wall time - the inline suite's) / N`` in the same round;
the medians over rounds are printed. The built model is cached (``--cache-dir``) so no side builds it.

    python tests/benchmarks/bench_isolation.py [--cells 4] [--duration-ms 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

MODES = ("inline", "fork", "fork-cold", "fresh")
TARGET_S = 0.3


def spec_text(n_cells: int, duration_ms: int) -> str:
    backends = "\n".join(f"  - {{name: onnxruntime, label: c{i}, options: {{providers: [CPUExecutionProvider]}}}}"
                         for i in range(n_cells))
    return f"""
name: isolation
workloads: [{{name: tiny-add}}]
backends:
{backends}
scenarios: [{{kind: single_stream, min_duration_ms: {duration_ms}, min_query_count: 10}}]
run: {{keep_samples: false}}
"""


def run_once(mode: str, loaded, cells, out: Path, cache: Path) -> float:
    from benchkit.runner import forkserver
    from benchkit.runner.suite import RunOptions, run_suite

    if mode == "fork-cold":
        forkserver.shutdown()
    if mode == "fresh":
        os.environ[forkserver.ENV_SWITCH] = "0"
    try:
        options = RunOptions(out_dir=out, isolation="inline" if mode == "inline" else "process", cache_dir=cache)
        t0 = time.perf_counter()
        result = run_suite(loaded, cells, options)
        wall_s = time.perf_counter() - t0
    finally:
        os.environ.pop(forkserver.ENV_SWITCH, None)
    bad = [r.cell_id for r in result.records if not r.validity.valid and r.error is not None]
    if bad:
        raise SystemExit(f"{mode}: cells failed: {bad}: {result.records[0].error}")
    return wall_s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=4)
    ap.add_argument("--duration-ms", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)

    from benchkit.runner import forkserver
    from benchkit.runner.plan import expand
    from benchkit.spec import parse_spec

    loaded = parse_spec(spec_text(args.cells, args.duration_ms), "isolation", Path("."))
    cells = expand(loaded)
    walls: dict[str, list[float]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory(prefix="bench-isolation-") as tmp:
        cache = Path(tmp) / "cache"
        run_once("inline", loaded, cells[:1], Path(tmp) / "warm", cache)  # builds the model once, for every side
        run_once("fork", loaded, cells[:1], Path(tmp) / "warm", cache)  # starts the zygote for the `fork` side
        for r in range(args.rounds):
            order = MODES[r % len(MODES):] + MODES[:r % len(MODES)]
            for mode in order:
                walls[mode].append(run_once(mode, loaded, cells, Path(tmp) / f"{mode}{r}", cache))
            print(f"round {r + 1}: " + "   ".join(f"{m} {walls[m][-1]:.2f} s" for m in MODES), flush=True)
    forkserver.shutdown()

    n = args.cells
    print(f"\n{n} cells of tiny-add, SingleStream {args.duration_ms} ms each, {args.rounds} rounds, "
          f"{len(os.sched_getaffinity(0))} CPUs usable, load average {os.getloadavg()[0]:.1f}; "
          "median suite wall time and overhead per cell over inline")
    code = 0
    for mode in MODES:
        over = [(w - i) / n for w, i in zip(walls[mode], walls["inline"])]
        line = f"  {mode:<10} {statistics.median(walls[mode]):6.2f} s"
        if mode != "inline":
            med = statistics.median(over)
            line += f"   {med:+.3f} s per cell (min {min(over):+.3f}, max {max(over):+.3f})"
            if mode == "fork":
                line += f"   target <= {TARGET_S} s: {'met' if med <= TARGET_S else 'NOT met'}"
                code = 0 if med <= TARGET_S else 1
        print(line)
    return code


if __name__ == "__main__":
    sys.exit(main())
