"""Benchmark: does the CI gate of docs/ci-guide.md hold on this machine? False-fail and detection rates.

Run from the repository root (a few minutes on 2 cores with the defaults):

    PYTHONPATH=$PWD python tests/benchmarks/bench_ci_gate.py
    PYTHONPATH=$PWD python tests/benchmarks/bench_ci_gate.py --runs 6 --slowed 4 --keep /tmp/gate
    PYTHONPATH=$PWD python tests/benchmarks/bench_ci_gate.py --from /tmp/gate --fail-on "p50:10%" "headline:10%"

What it does, as a CI job following the guide would:

* writes the guide's gate spec (specs/ci-gate.yaml) twice, on the ``slowed-ort``
  test adapter (tests/fakes: ONNX Runtime that adds ``slowdown`` x each call's
  own CPU time of busy work after it): a *base* with slowdown 0 and a *slowed*
  candidate;
* starts background CPU load, a busy loop pinned to core 0 (``--no-load``: none);
* runs ``benchkit run`` ``--runs`` times on the base and ``--slowed`` times on the
  candidate, interleaved (B, B, S, B, S ...) so slow drifts of the machine hit
  both alike; every invocation measures each cell ``run.repeats`` times;
* compares every pair of base invocations (A/A: no change, so any gate failure
  is a false fail) and every base with every slowed invocation (A/B: a failure
  is a detection), for each ``--fail-on`` gate, and prints both rates with
  Wilson 95 % intervals, the measured slowdown, and the between-session
  spread of each metric (``--measure-cv``: the figures behind
  benchkit.results.compare.DEFAULT_BETWEEN_RUN_CV).

The pairs share invocations (N invocations give N(N-1)/2 A/A pairs), so the
rates are estimated from more pairs than there are independent experiments:
read the intervals as rough. Not a timed test: it runs real measurements.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]
FAKES = ROOT / "tests" / "fakes"
GATE_SPEC = ROOT / "specs" / "ci-gate.yaml"

from benchkit.results import records  # noqa: E402
from benchkit.results.compare import CompareSettings, compare_paths, parse_fail_on  # noqa: E402


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def write_spec(path: Path, slowdown: float, repeats: int | None, min_duration_ms: int | None) -> None:
    """The guide's gate spec on the slowed-ort adapter (same options otherwise)."""
    spec = yaml.safe_load(GATE_SPEC.read_text())
    for b in spec["backends"]:
        b["label"] = b.get("label") or b["name"]
        b["name"] = "slowed-ort"
        b.setdefault("options", {})["slowdown"] = slowdown
    if repeats is not None:
        spec["run"]["repeats"] = repeats
    if min_duration_ms is not None:
        for s in spec["scenarios"]:
            s["min_duration_ms"] = min_duration_ms
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


def start_load() -> subprocess.Popen:
    # One busy core: what a neighbouring job on a shared runner looks like.
    code = "import os\ntry: os.sched_setaffinity(0, {0})\nexcept (AttributeError, OSError): pass\nwhile True: pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


def run_invocations(out: Path, runs: int, slowed: int, slowdown: float, repeats: int | None,
                    min_duration_ms: int | None, load: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    base_spec, slow_spec = out / "base.yaml", out / "slowed.yaml"
    write_spec(base_spec, 0.0, repeats, min_duration_ms)
    write_spec(slow_spec, slowdown, repeats, min_duration_ms)
    # Interleave: B S B S ... with the surplus of base runs first.
    order = ["base"] * max(0, runs - slowed) + [x for pair in zip(["base"] * slowed, ["slowed"] * slowed)
                                                 for x in pair]
    if slowed > runs:
        order += ["slowed"] * (slowed - runs)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), str(FAKES),
                                                                      os.environ.get("PYTHONPATH")]))}
    busy = start_load() if load else None
    counts = {"base": 0, "slowed": 0}
    try:
        for i, kind in enumerate(order):
            counts[kind] += 1
            dest = out / f"{kind}{counts[kind]:02d}"
            t0 = time.perf_counter()
            spec = base_spec if kind == "base" else slow_spec
            p = subprocess.run([sys.executable, "-m", "benchkit", "run", str(spec), "--out", str(dest)],
                               env=env, capture_output=True, text=True)
            print(f"[{i + 1}/{len(order)}] {kind:6s} -> {dest.name}: exit {p.returncode} in "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
            if p.returncode not in (0, 1):
                sys.exit(f"benchkit run failed:\n{p.stderr[-2000:]}")
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()


def between_session_spread(dirs: list[Path]) -> None:
    """sd of log(value) between sessions of each cell (all base sessions pooled), per metric."""
    values: dict[str, dict[str, list[float]]] = {}
    for d in dirs:
        for f in records.find([d]):
            r = records.load(f)
            if r.metrics is None:
                continue
            lat = r.metrics.latency_ns
            row = values.setdefault(r.cell_id, {})
            for name, v in (("p50", lat.p50), ("p90", lat.p90), ("p99", lat.p99),
                            ("throughput", r.metrics.throughput_per_s)):
                row.setdefault(name, []).append(float(v))
    print("\nbetween-session spread, sd of log(value) over every base session:")
    for cell, row in sorted(values.items()):
        figures = ", ".join(f"{k} {np.std(np.log(v), ddof=1):.3f}" for k, v in row.items() if len(v) > 1)
        print(f"  {cell:40s} ({len(next(iter(row.values())))} sessions) {figures}")


def evaluate(out: Path, gates: list[str], resamples: int) -> None:
    base = sorted(p for p in out.iterdir() if p.is_dir() and p.name.startswith("base"))
    slow = sorted(p for p in out.iterdir() if p.is_dir() and p.name.startswith("slowed"))
    aa = list(combinations(base, 2))
    ab = [(b, s) for b in base for s in slow]
    # The slowdown the candidate really had, from the median latency of every session.
    med = {}
    for name, dirs in (("base", base), ("slowed", slow)):
        vals: dict[str, list[float]] = {}
        for d in dirs:
            for f in records.find([d]):
                r = records.load(f)
                if r.metrics is not None:
                    vals.setdefault(f"{r.workload.name}/{r.scenario.kind}", []).append(r.metrics.latency_ns.p50)
        med[name] = {k: float(np.median(v)) for k, v in vals.items()}
    print(f"\n{len(base)} base and {len(slow)} slowed invocations: {len(aa)} A/A pairs, {len(ab)} A/B pairs")
    for cell in sorted(med["base"]):
        if cell in med.get("slowed", {}):
            print(f"  measured slowdown {cell}: median p50 x{med['slowed'][cell] / med['base'][cell]:.3f}")
    print(f"\n{'gate':36s} {'false fails (A/A)':>28s} {'detections (A/B)':>28s}")
    for gate in gates:
        settings = CompareSettings(fail_on=parse_fail_on(gate), resamples=resamples)
        ff = sum(bool(compare_paths([a], [b], settings).failures()) for a, b in aa)
        det = sum(bool(compare_paths([a], [s], settings).failures()) for a, s in ab)
        lo_f, hi_f = wilson(ff, len(aa))
        lo_d, hi_d = wilson(det, len(ab))
        print(f"{gate:36s} {ff:3d}/{len(aa):<3d} {ff / max(1, len(aa)):6.1%} [{lo_f:.0%}-{hi_f:.0%}]   "
              f"{det:3d}/{len(ab):<3d} {det / max(1, len(ab)):6.1%} [{lo_d:.0%}-{hi_d:.0%}]", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="base (no-change) invocations (default: %(default)s)")
    ap.add_argument("--slowed", type=int, default=3, help="slowed invocations (default: %(default)s)")
    ap.add_argument("--slowdown", type=float, default=0.18,
                    help="extra busy work per call, as a fraction of the CPU time the call took (default: "
                         "%(default)s: with the harness's own overhead and the adapter's clock reads, a median about "
                         "20%% slower on the shared 2-core runner; the measured slowdown is printed)")
    ap.add_argument("--repeats", type=int, default=None, help="override the spec's run.repeats")
    ap.add_argument("--min-duration-ms", type=int, default=None, help="override every scenario's min_duration_ms")
    ap.add_argument("--fail-on", nargs="+", default=["p50:10%,p90:10%", "p50:5%,p90:10%", "p99:10%,throughput:10%"],
                    help="gates to evaluate on the same records (default: the guide's, a tighter one, the old one)")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--no-load", dest="load", action="store_false", help="no background busy loop")
    ap.add_argument("--keep", type=Path, help="keep the records here (default: a temporary directory)")
    ap.add_argument("--from", dest="source", type=Path, help="evaluate records of an earlier --keep; run nothing")
    ap.add_argument("--measure-cv", action="store_true", help="print the between-session spread of each metric")
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.source is not None:
        out = args.source
    else:
        out = args.keep or Path(tempfile.mkdtemp(prefix="bench-ci-gate-"))
        print(f"records in {out}; background load: {'one busy core' if args.load else 'none'}")
        run_invocations(out, args.runs, args.slowed, args.slowdown, args.repeats, args.min_duration_ms, args.load)
    if args.measure_cv:
        between_session_spread(sorted(p for p in out.iterdir() if p.is_dir() and p.name.startswith("base")))
    evaluate(out, args.fail_on, args.resamples)
    print(f"\n{time.perf_counter() - t0:.0f} s in all")


if __name__ == "__main__":
    main()
