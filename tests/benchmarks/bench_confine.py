"""What holding a worker costs: the memory monitor's tick, and ending a tree, per mechanism, side by side.

For each mechanism this machine offers (a cgroup v2 where writable, and the subreaper tree that is the fallback,
``BENCHKIT_CGROUP=0``), a stand-in worker (a Python process that made itself a subreaper or joined its cgroup,
with ``--children`` sleeping descendants, half of them detached with ``setsid``) is held by a
:class:`benchkit.runner.confine.Confinement`, and the script prints:

  tick      CPU time of one monitor period's work in benchkit (members listed, each one's statm read; for the
            tree, its re-reading once a second spread over the periods), median of ``--ticks``, and that as a share
            of one core at the monitor's period (MONITOR_INTERVAL_S)
  tree      CPU time of reading the worker's tree from /proc (what the fallback does once a second)
  kill      wall time from kill_all() until every process of the tree is gone

    python tests/benchmarks/bench_confine.py [--children 8] [--ticks 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

WORKER = """
import subprocess, sys, time
from benchkit.runner import limits
limits.confine_self(sys.argv[1] or None)
n = int(sys.argv[2])
for i in range(n):
    cmd = "sleep 600" if i % 2 else "setsid sleep 600 >/dev/null 2>&1 &"
    subprocess.Popen(["sh", "-c", cmd])
print("ready", flush=True)
time.sleep(600)
"""


def one(mechanism: str, children: int, ticks: int) -> dict[str, float]:
    from benchkit.runner import confine

    os.environ[confine.ENV_SWITCH] = "1" if mechanism == "cgroup" else "0"
    confine._setup.clear()
    box = confine.Confinement()
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(box.cgroup or ""), str(children)],
                            stdout=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    box.started(proc.pid)
    proc.stdout.readline()
    time.sleep(0.3)  # the detached ones have started
    page = os.sysconf("SC_PAGE_SIZE")
    tick, tree = [], []
    members = confine.tree(proc.pid)
    for _ in range(ticks):
        t0 = time.thread_time_ns()
        # as the monitor does: a cgroup lists its members at each period; a tree is re-read every
        # TREE_REREAD_TICKS periods (its cost spread over them below)
        sum(confine._statm_resident(p, page) for p in (box.members() if box.cgroup is not None else members))
        tick.append(time.thread_time_ns() - t0)
        t0 = time.thread_time_ns()
        members = confine.tree(proc.pid)
        tree.append(time.thread_time_ns() - t0)
    if box.cgroup is None:
        tick = [t + statistics.median(tree) / confine.TREE_REREAD_TICKS for t in tick]
    held = len(members)
    t0 = time.perf_counter()
    box.kill_all()
    proc.wait()
    while any(Path(f"/proc/{p}").exists() and Path(f"/proc/{p}/stat").read_text().split(") ")[1][0] != "Z"
              for p in members if Path(f"/proc/{p}/stat").exists()):
        time.sleep(0.001)
    kill = time.perf_counter() - t0
    box.close()
    return {"held": held, "tick_us": statistics.median(tick) / 1e3, "tree_us": statistics.median(tree) / 1e3,
            "kill_ms": kill * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--children", type=int, default=8)
    ap.add_argument("--ticks", type=int, default=50)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from benchkit.runner import confine

    print(f"this machine: {confine.mechanism()}")
    period_us = confine.MONITOR_INTERVAL_S * 1e6
    for mechanism in ("cgroup", "tree"):
        os.environ[confine.ENV_SWITCH] = "1" if mechanism == "cgroup" else "0"
        confine._setup.clear()
        if mechanism == "cgroup" and confine._prepare()[0] is None:
            print("cgroup: not available here")
            continue
        r = one(mechanism, args.children, args.ticks)
        print(f"{mechanism:7s} processes held {r['held']:3d}   tick {r['tick_us']:8.0f} us "
              f"({r['tick_us'] / period_us:.2%} of a core)   tree read {r['tree_us']:8.0f} us   "
              f"kill {r['kill_ms']:6.1f} ms")


if __name__ == "__main__":
    main()
