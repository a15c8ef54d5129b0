"""NVML power path on a real NVIDIA GPU: idle baseline vs a bf16 GEMM load, side by side, through benchkit's own
meter, sampler, stability probe and system description; and whether the worker memory limit (RLIMIT_DATA)
lets a CUDA runtime start where RLIMIT_AS does not.

Needs an NVIDIA GPU, nvidia-ml-py and torch with CUDA; run by hand on such a machine:

    python tests/benchmarks/bench_nvml_power.py

Seen on an H200 (driver 580.159.04): idle 79.5 W; 694 W (limit 700 W) at 667 TFLOP/s, 0.96 TFLOP/s per watt,
1.14 J per 8192x8192x8192 GEMM; the SM clock fell 1980 -> 1455 MHz under the power cap (a stability flag).
RLIMIT_DATA 8 GiB: a 40 GiB device allocation ran, a 16 GiB host allocation failed; RLIMIT_AS 8 GiB: CUDA
could not start.
"""

from __future__ import annotations

import json
import subprocess
import sys

LOAD = r"""
import time, torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16); b = torch.randn_like(a)
for _ in range(20): a @ b
torch.cuda.synchronize(); print("go", flush=True)
t0 = time.perf_counter(); n = 0
while time.perf_counter() - t0 < 6:
    for _ in range(50): a @ b
    n += 50
    torch.cuda.synchronize()
print("done", n, time.perf_counter() - t0, flush=True)
"""

LIMIT = r"""
import resource, sys
which = getattr(resource, sys.argv[1]); resource.setrlimit(which, (8 << 30, resource.getrlimit(which)[1]))
res = {}
try:
    import torch
    x = torch.empty(40 << 30, dtype=torch.uint8, device="cuda"); x.fill_(1)
    res["device_40GiB"] = "ok"
except Exception as e:
    res["device_40GiB"] = f"{type(e).__name__}: {str(e)[:160]}"
try:
    import numpy as np
    keep = [np.ones(1 << 30, np.uint8) for _ in range(16)]
    res["host_16GiB"] = "allocated: limit not enforced"
except MemoryError as e:
    res["host_16GiB"] = f"MemoryError: {str(e)[:60]}"
print(res)
"""


def main() -> int:
    from benchkit.machine import description as sysdesc
    from benchkit.errors import BenchkitError
    from benchkit.power.nvml import NvmlMeter
    from benchkit.power.sampler import PowerSampler
    from benchkit.machine.stability import StabilityProbe, compare

    out: dict = {}
    out["accelerators"], why = sysdesc.nvml_accelerators()
    meter = NvmlMeter({})
    try:
        meter.open()
    except BenchkitError as e:
        print(f"no NVML here: {e}; why: {why}")
        return 0
    sampler = PowerSampler([meter], 0.1)
    sampler.start()
    probe = StabilityProbe()
    try:
        idle = sampler.measure_idle(3.0)
        load = subprocess.Popen([sys.executable, "-c", LOAD], stdout=subprocess.PIPE, text=True)
        if load.stdout.readline().strip() != "go":
            print("the GEMM load did not start (torch with CUDA needed)")
            return 1
        before, _ = probe.read()
        sampler.begin()
        done = load.stdout.readline().split()
        window = sampler.end()
        after, _ = probe.read()
        load.wait()
    finally:
        sampler.close()
        probe.close()
    n, seconds = int(done[1]), float(done[2])
    tflops = 2 * 8192**3 * n / seconds / 1e12
    watts = window.avg_power_w
    out.update(read_as=meter.read_as, idle_w=idle.avg_power_w, load_w=watts, tflop_per_s=tflops,
               tflop_per_s_per_w=tflops / watts, j_per_gemm=watts * seconds / n,
               stability_flags=compare(before, after))
    for which in ("RLIMIT_DATA", "RLIMIT_AS"):
        r = subprocess.run([sys.executable, "-c", LIMIT, which], capture_output=True, text=True, timeout=300)
        out[f"{which}_8GiB"] = r.stdout.strip() or r.stderr.strip()[-300:]
    print(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
