"""Dispatch overhead per cell: Ray executor vs local executor, side by side, over a suite of 50 tiny cells.

Target (fleet issue): under 1 s per cell on the local cluster, from submission
to the worker process starting the cell.

A cell is *ready* when it has been submitted and the slot that runs it (a
node's accelerator for Ray; the single loop locally) has finished the cell
before it. Dispatch overhead is then ``record.started_at - ready``: the
executor's scheduling, shipping and pinning, plus the fresh worker process
starting and importing the runtime, up to the moment the cell begins. Locally
that is the worker process start alone, so the ratio shows what Ray adds.

The cluster is the tests' loopback-only one (a head and two worker nodes
advertising ``accelerator:fake-a`` and ``accelerator:fake-b``, one core each);
needs root, iproute2 and the ``ray`` extra.

    python tests/benchmarks/bench_ray_dispatch.py [--cells 50]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))

from ray_cluster import ROOT, LoopbackCluster, unavailable_reason  # noqa: E402

FLEET = """
backends:
  acc-a: {resources: {"accelerator:fake-a": 1}}
  acc-b: {resources: {"accelerator:fake-b": 1}}
"""


def spec_text(n_cells: int) -> str:
    per_backend = n_cells // 2
    workloads = "\n".join(f"  - {{name: t{i:02d}, catalog: tiny-add}}" for i in range(per_backend))
    return f"""
name: dispatch
workloads:
{workloads}
backends:
  - {{name: onnxruntime, label: acc-a, options: {{providers: [CPUExecutionProvider]}}}}
  - {{name: onnxruntime, label: acc-b, options: {{providers: [CPUExecutionProvider]}}}}
scenarios:
  - {{kind: single_stream, min_duration_ms: 20, min_query_count: 10, warmup_ms: 0, warmup_queries: 1}}
run: {{keep_samples: false}}
"""


def _t(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def overheads(out: Path) -> dict[str, list[float]]:
    """Per-cell intervals in seconds, the first cell of each slot (a cold Ray worker) apart.

    ``total``: ready -> the worker process starts the cell; ``ray``: ready -> the executor's task runs on the
    node; ``start``: the executor hands the cell over -> the worker process starts it (process start, imports).
    """
    recs = [json.loads(p.read_text()) for p in out.rglob("*.json")]
    slots: dict[str, list[dict]] = defaultdict(list)
    for r in recs:
        slots[r["placement"]["node_id"] or "local"].append(r)
    got: dict[str, list[float]] = defaultdict(list)
    for items in slots.values():
        items.sort(key=lambda r: r["started_at"])
        prev_end = None
        for r in items:
            p = r["placement"]
            ready = _t(p["submitted_at"]) if prev_end is None else max(_t(p["submitted_at"]), prev_end)
            if prev_end is None:
                got["first"].append(_t(r["started_at"]) - ready)
            else:
                got["total"].append(_t(r["started_at"]) - ready)
                got["ray"].append(_t(p["dispatched_at"]) - ready)
                got["start"].append(_t(r["started_at"]) - _t(p["dispatched_at"]))
            prev_end = _t(r["finished_at"])
    return got


def summary(xs: list[float]) -> str:
    if not xs:
        return "-"
    xs = sorted(xs)
    p90 = xs[min(len(xs) - 1, int(0.9 * len(xs)))]
    return f"{statistics.median(xs) * 1e3:7.0f} {p90 * 1e3:7.0f} {xs[-1] * 1e3:7.0f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=50)
    args = ap.parse_args(argv)
    why = unavailable_reason()
    if why:
        print(f"skipped: {why}")
        return 0
    work = Path(tempfile.mkdtemp(prefix="bk-dispatch-"))
    (work / "spec.yaml").write_text(spec_text(args.cells))
    (work / "fleet.yaml").write_text(FLEET)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with LoopbackCluster({"a": {"accelerator:fake-a": 1}, "b": {"accelerator:fake-b": 1}}) as cluster:
        t0 = time.monotonic()
        proc = cluster.benchkit("run", "spec.yaml", "--executor", "ray", "--address", cluster.address, "--fleet",
                                "fleet.yaml", "--out", "out-ray", cwd=work, timeout=900)
        ray_wall = time.monotonic() - t0
        if proc.returncode not in (0, 1):
            print(proc.stderr[-3000:])
            return 1
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "benchkit", "run", "spec.yaml", "--out", "out-local"], cwd=work,
                          env=env, capture_output=True, text=True, timeout=900)
    local_wall = time.monotonic() - t0
    if proc.returncode not in (0, 1):
        print(proc.stderr[-3000:])
        return 1
    ray, local = overheads(work / "out-ray"), overheads(work / "out-local")
    n = len(ray["total"]) + len(ray["first"])
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"dispatch overhead per cell, {n} tiny cells; ready = submitted and its slot free (load average {load}, "
          f"{os.cpu_count()} CPUs)")
    print(f"{'':58s} {'median':>7s} {'p90':>7s} {'max':>7s}  (ms)")
    print(f"{'ray:   ready -> worker process starts the cell':58s} {summary(ray['total'])}")
    print(f"{'local: ready -> worker process starts the cell':58s} {summary(local['total'])}")
    print(f"{'ray:   ready -> task running on its node (Ray itself)':58s} {summary(ray['ray'])}")
    print(f"{'ray:   task running -> worker starts the cell':58s} {summary(ray['start'])}")
    print(f"{'local: handed over -> worker starts the cell':58s} {summary(local['start'])}")
    med = statistics.median
    print(f"ratio ray/local (median, ready -> worker starts the cell): {med(ray['total']) / med(local['total']):.2f}; "
          f"suites: ray {ray_wall:.1f} s on 2 nodes, local {local_wall:.1f} s")
    print(f"first cell per node (cold Ray worker process): {', '.join(f'{x:.2f} s' for x in ray['first'])}; "
          f"local first cell {local['first'][0]:.2f} s")
    print(f"target < 1 s per cell (median, ready -> worker starts the cell): "
          f"{'PASS' if med(ray['total']) < 1.0 else 'FAIL'} ({med(ray['total']):.2f} s); Ray's own share "
          f"{med(ray['ray']):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
