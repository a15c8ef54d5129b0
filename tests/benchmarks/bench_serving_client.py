"""Client headroom: requests/s benchkit's `oip` client sustains against a served trivial model, beside a plain loop.

The harness must not be the bottleneck of a served measurement. One KServe ModelServer (``tests/oip_server.py``,
127.0.0.1 only) serves ``tiny-add`` (16 floats); against it, in one process and alternately (A B A B), run

* benchkit: the ``oip`` adapter driven by benchkit's own loops (the closed loop at concurrency 1,
  ``offline.concurrency`` above it: threads for REST, gRPC futures for gRPC);
* plain: tritonclient's own ``InferenceServerClient.infer`` in a loop (one thread per request in flight, each
  with its own client, as tritonclient's documentation asks for the HTTP client).

For each it prints the requests/s achieved and the client's own CPU time per request (this process's CPU time
over the requests it made): what a client costs, whatever the server does. ``2 cores / CPU per request`` is the
ceiling the client alone could sustain on a 2-core machine. On a 2-core machine server and client share the
cores, so the achieved rates are the server's; the CPU per request is the client's headroom.

perf_analyzer is not run: the package index has no installable build of its binary (``perf-analyzer`` there is
a 0.1.0 placeholder, and tritonclient's wheels do not ship it).

    python tests/benchmarks/bench_serving_client.py [--duration-s 2] [--concurrency 1,4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from oip_server import OipServer  # noqa: E402


def _winfo():
    from benchkit.backends.base import WorkloadInfo

    return WorkloadInfo(name="tiny-add", inputs={"input": (1, 16)}, input_dtypes={"input": np.dtype("float32")},
                        output_names=["output"], batch_size=1, extra={"graph_precision": "fp32"})


def _feeds(n: int = 16) -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"input": rng.standard_normal((1, 16)).astype(np.float32)} for _ in range(n)]


def run_benchkit(model: Path, url: str, protocol: str, concurrency: int, duration_s: float) -> tuple[int, float, float]:
    from benchkit.backends.oip import OipBackend
    from benchkit.measure.concurrency import run_concurrent
    from benchkit.measure.loops import StopRule, closed_loop

    b = OipBackend({"url": url, "protocol": protocol, "model": "m"})
    b.load(model, _winfo())
    staged = [b.stage(f) for f in _feeds()]
    rule = StopRule(min_duration_ns=int(duration_s * 1e9), min_query_count=1)
    c0, t0 = time.process_time(), time.perf_counter()
    if concurrency == 1:
        m = closed_loop(b, staged, rule, 1)
    else:
        m = run_concurrent(b, staged, rule, 1, concurrency)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    b.close()
    return m.query_count, wall, cpu


def run_plain(url: str, protocol: str, concurrency: int, duration_s: float) -> tuple[int, float, float]:
    if protocol == "grpc":
        import tritonclient.grpc as tc
    else:
        import tritonclient.http as tc
    target = url.removeprefix("http://")
    feeds = _feeds()
    counts = [0] * concurrency
    deadline = [0.0]

    def loop(j: int) -> None:
        client = tc.InferenceServerClient(target)
        inputs = []
        for f in feeds:
            i = tc.InferInput("input", [1, 16], "FP32")
            i.set_data_from_numpy(f["input"])
            inputs.append(i)
        n = 0
        while time.perf_counter() < deadline[0]:
            client.infer("m", [inputs[n % len(inputs)]]).as_numpy("output")
            n += 1
        counts[j] = n
        client.close()

    c0, t0 = time.process_time(), time.perf_counter()
    deadline[0] = t0 + duration_s
    threads = [threading.Thread(target=loop, args=(j,)) for j in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts), time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration-s", type=float, default=2.0)
    p.add_argument("--concurrency", default="1,4")
    p.add_argument("--rounds", type=int, default=2, help="A B rounds per configuration (figures are medians)")
    a = p.parse_args()
    from benchkit.workloads import catalog

    with tempfile.TemporaryDirectory() as tmp:
        model = catalog.materialize("tiny-add", None, "fp32", cache_dir=Path(tmp))
        with OipServer(model, threads=1) as srv:
            print(f"KServe ModelServer on 127.0.0.1 (REST :{srv.http_port}, gRPC :{srv.grpc_port}), tiny-add; "
                  f"{a.duration_s:g} s per run, {a.rounds} round(s), medians")
            print(f"{'protocol':8} {'conc':>4} | {'benchkit req/s':>14} {'CPU µs/req':>10} {'2-core ceiling':>14} | "
                  f"{'plain req/s':>11} {'CPU µs/req':>10} {'2-core ceiling':>14} | {'CPU ratio':>9}")
            for protocol, url in (("rest", srv.rest_url), ("grpc", srv.grpc_url)):
                for conc in (int(c) for c in a.concurrency.split(",")):
                    bk, pl = [], []
                    for _ in range(a.rounds):
                        bk.append(run_benchkit(model, url, protocol, conc, a.duration_s))
                        pl.append(run_plain(url, protocol, conc, a.duration_s))

                    def figures(runs):
                        rate = float(np.median([n / w for n, w, _ in runs]))
                        cpu_us = float(np.median([c / n * 1e6 for n, _, c in runs]))
                        return rate, cpu_us, 2e6 / cpu_us

                    (br, bc, bceil), (pr, pc, pceil) = figures(bk), figures(pl)
                    print(f"{protocol:8} {conc:4d} | {br:14,.0f} {bc:10,.0f} {bceil:14,.0f} | {pr:11,.0f} {pc:10,.0f} "
                          f"{pceil:14,.0f} | {bc / pc:9.2f}")


if __name__ == "__main__":
    main()
