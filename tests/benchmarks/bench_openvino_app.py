"""OpenVINO through benchkit vs OpenVINO's own ``benchmark_app``, on the same model file and settings, side by side.

Targets (issue: OpenVINO at its own tool's speed): benchkit's Offline throughput
>= 0.95 x ``benchmark_app -hint throughput`` and benchkit's SingleStream p50
<= 1.05 x ``benchmark_app -hint latency``'s median, on a model whose batch
dimension is fixed (exported with ``--batch 1``, as third-party CNN exports
are). Both sides use the CPU device, f32 inference precision and the same
measuring time; rounds alternate the two tools (A B A B) so machine drift
cancels, and each ratio is printed per round and as the median over rounds.

benchkit runs as a user runs it: ``benchkit run SPEC`` in a fresh process (the
real cell path: worker process, adapter, warmup, timed loop), the figures read
from the record it writes. benchmark_app is the one shipped in the openvino
wheel (``benchmark_app``, else ``openvino.tools.benchmark.main``).

    python tests/benchmarks/bench_openvino_app.py [--model mobilenet-v2] [--seconds 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

_BAPP_PY = "import sys; from openvino.tools.benchmark.main import main; sys.argv[0] = 'benchmark_app'; main()"


def benchmark_app(model: Path, hint: str, seconds: int) -> dict[str, float]:
    exe = shutil.which("benchmark_app")
    cmd = [exe] if exe else [sys.executable, "-c", _BAPP_PY]
    cmd += ["-m", str(model), "-d", "CPU", "-hint", hint, "-t", str(seconds), "-infer_precision", "f32"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    tput = re.search(r"Throughput:\s+([\d.]+) FPS", out)
    median = re.search(r"Median:\s+([\d.]+) ms", out)
    streams = re.search(r"NUM_STREAMS: (\d+)", out)
    nireq = re.search(r"(\d+) inference requests", out)
    if not (tput and median):
        raise SystemExit(f"could not read benchmark_app's figures:\n{out[-3000:]}")
    return {"throughput_per_s": float(tput.group(1)), "p50_ms": float(median.group(1)),
            "streams": float(streams.group(1)) if streams else float("nan"),
            "requests": float(nireq.group(1)) if nireq else float("nan")}


def benchkit_run(model: Path, scenario: str, seconds: int, work: Path) -> dict[str, float]:
    spec = work / f"ov-{scenario}.yaml"
    spec.write_text(f"""name: ov-{scenario}
workloads: [{{name: model, model: {model}}}]
backends: [{{name: openvino, options: {{device: CPU, inference_precision: f32}}}}]
scenarios: [{{kind: {scenario}, min_duration_ms: {seconds * 1000}, min_query_count: 1}}]
run: {{profile: quick}}
""")
    out = work / "out"
    subprocess.run([sys.executable, "-m", "benchkit", "run", str(spec), "--out", str(out)],
                   check=True, capture_output=True, text=True)
    rec_path = max((out / f"ov-{scenario}").rglob("*.json"), key=lambda p: p.stat().st_mtime)
    rec = _record(rec_path)
    m = rec.metrics
    return {"throughput_per_s": m.throughput_per_s, "p50_ms": m.latency_ns.p50 / 1e6,
            "valid": rec.validity.valid, "requests": float(m.extra.get("in_flight_max", 1)),
            "streams": float(rec.backend.options.get("num_streams") or 0)}


def _record(path: Path):
    from benchkit.results.recordio import load_split

    return load_split(path)[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mobilenet-v2", help="catalog workload exported with a fixed batch of 1")
    ap.add_argument("--onnx", type=Path, help="an ONNX file of your own instead (its batch dimension fixed)")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-ov-") as tmp:
        work = Path(tmp)
        model = a.onnx
        if model is None:
            model = work / f"{a.model}-b1.onnx"
            subprocess.run([sys.executable, "-m", "benchkit", "workloads", "export", a.model, "--batch", "1",
                            "-o", str(model)], check=True, capture_output=True)
        tput, lat = [], []
        for r in range(a.rounds):
            app_t = benchmark_app(model, "throughput", a.seconds)
            bk_t = benchkit_run(model, "offline", a.seconds, work)
            app_l = benchmark_app(model, "latency", a.seconds)
            bk_l = benchkit_run(model, "single_stream", a.seconds, work)
            tput.append(bk_t["throughput_per_s"] / app_t["throughput_per_s"])
            lat.append(bk_l["p50_ms"] / app_l["p50_ms"])
            print(f"round {r + 1}: throughput benchkit offline {bk_t['throughput_per_s']:.1f}/s "
                  f"({bk_t['requests']:.0f} requests in flight, {bk_t['streams']:.0f} streams, "
                  f"{'VALID' if bk_t['valid'] else 'INVALID'}) vs benchmark_app {app_t['throughput_per_s']:.1f}/s "
                  f"({app_t['requests']:.0f} requests, {app_t['streams']:.0f} streams): {tput[-1]:.3f}x")
            print(f"round {r + 1}: latency p50 benchkit single_stream {bk_l['p50_ms']:.3f} ms vs benchmark_app "
                  f"-hint latency median {app_l['p50_ms']:.3f} ms: {lat[-1]:.3f}x")
        t, lt = statistics.median(tput), statistics.median(lat)
        print(f"{model.name}: throughput {t:.3f}x benchmark_app (target >= 0.95), "
              f"latency {lt:.3f}x (target <= 1.05)")
        return 0 if t >= 0.95 and lt <= 1.05 else 1


if __name__ == "__main__":
    sys.exit(main())
