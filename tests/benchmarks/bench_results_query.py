"""Benchmark: `results query` over 10,000 records once indexed (target: under 200 ms).

Run from the repository root:  PYTHONPATH=$PWD python tests/benchmarks/bench_results_query.py [--records 10000]

Writes RECORDS synthetic records (real ResultRecord JSON files with 200 raw
samples each; 8 workloads x 4 backends x 4 scenarios x 3 precisions, spread
over a year of runs) and times, in one run:
  * the first index build (reads every file);
  * a query as `benchkit results query` runs it: incremental refresh (a stat
    of every file, nothing re-read) + the SQL query (best of 5; wall and CPU
    time, since on a shared machine wall time includes waiting for a core);
  * the SQL query alone;
  * the same query by a full scan that loads every record (what it costs without the index);
  * the CLI end to end in a fresh process (`python -m benchkit results query ...`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ for record_factory

from record_factory import T0, lognormal_ns, make_record  # noqa: E402

from benchkit.results import records  # noqa: E402
from benchkit.results.store import ResultsStore, parse_when  # noqa: E402

WORKLOADS = ["resnet50-v1.5", "mobilenet-v2", "bert-base", "bert-large", "gpt2-prefill", "dlrm", "ds-cnn", "mlp"]
BACKENDS = ["onnxruntime", "openvino", "tensorrt", "torch"]
SCENARIOS = ["single_stream", "multi_stream", "server", "offline"]
PRECISIONS = ["fp32", "fp16", "int8"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=10_000)
    args = ap.parse_args()
    query = dict(workload="resnet50-v1.5", scenario="server", precision="int8", backend="openvino",
                 since=parse_when("2026-06-01", "--since"))
    with tempfile.TemporaryDirectory(prefix="benchkit-bench-results-") as tmp:
        root = Path(tmp) / "results"
        t = time.perf_counter()
        samples = lognormal_ns(200, seed=1)
        for i in range(args.records):
            wl, be = WORKLOADS[i % 8], BACKENDS[(i // 8) % 4]
            kind, prec = SCENARIOS[(i // 32) % 4], PRECISIONS[(i // 128) % 3]
            run = f"run{i // 64:04d}"
            rec = make_record(samples, workload=wl, backend=be, kind=kind, precision=prec, run_id=run,
                              started_at=T0 + timedelta(hours=i), target_qps=100.0 + (i % 5) * 50,
                              valid=i % 7 != 0, batch=8 if kind in ("offline", "multi_stream") else 1)
            path = root / "suite" / run / f"{rec.cell_id}-{i}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(rec.to_json() + "\n")  # the bytes records.save writes, without its fsync per file
        print(f"wrote {args.records:,} records in {time.perf_counter() - t:.1f} s")

        t = time.perf_counter()
        with ResultsStore(root) as store:
            st = store.refresh()
        build = time.perf_counter() - t
        assert st.added == args.records, st

        warm, warm_cpu = [], []
        for _ in range(5):
            t, cpu = time.perf_counter(), time.process_time()
            with ResultsStore(root) as store:
                store.refresh()
                hits = store.query(**query)
            warm.append(time.perf_counter() - t)
            warm_cpu.append(time.process_time() - cpu)
        warm, warm_cpu = min(warm), min(warm_cpu)

        with ResultsStore(root) as store:
            t = time.perf_counter()
            for _ in range(20):
                store.query(**query)
            sql_only = (time.perf_counter() - t) / 20

        t = time.perf_counter()
        scan = []
        for p in records.find([root]):
            r = records.load(p)
            if (r.workload and r.workload.name == query["workload"] and r.scenario.kind == query["scenario"]
                    and r.backend and r.backend.precision == query["precision"] and r.backend.id == query["backend"]
                    and r.started_at >= query["since"]):
                scan.append(p)
        full_scan = time.perf_counter() - t
        assert sorted(scan) == sorted(Path(h.path) for h in hits), (len(scan), len(hits))

        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        cmd = [sys.executable, "-m", "benchkit", "results", "query", str(root), "--workload", "resnet50-v1.5",
               "--scenario", "server", "--precision", "int8", "--backend", "openvino", "--since", "2026-06-01",
               "--format", "json"]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        cli = time.perf_counter() - t
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import benchkit.cli"], check=True, env=env)
        startup = time.perf_counter() - t

    print(f"results query over {args.records:,} records ({len(hits)} hits):")
    print(f"  first index build:                 {build * 1e3:8.0f} ms")
    print(f"  query incl. incremental refresh:   {warm * 1e3:8.0f} ms wall, {warm_cpu * 1e3:.0f} ms CPU, best of 5   "
          "(target < 200 ms)")
    print(f"  SQL query alone:                   {sql_only * 1e3:8.1f} ms")
    print(f"  full scan without the index:       {full_scan * 1e3:8.0f} ms   ({full_scan / warm:.0f}x the indexed query)")
    print(f"  CLI end to end (fresh process):    {cli * 1e3:8.0f} ms   (of which Python start + import: "
          f"{startup * 1e3:.0f} ms)")
    return 0 if warm < 0.2 else 1


if __name__ == "__main__":
    raise SystemExit(main())
