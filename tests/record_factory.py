"""Synthetic result records for tests of the tools that read records (compare, store, report, export, trust).

Records are built through the real ``ResultRecord`` model and
``benchkit.stats.summarize``, so they validate exactly like records written
by ``benchkit run``; only the samples are synthetic.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from benchkit.results import records
from benchkit import stats
from benchkit.results.records import ResultRecord

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)

SYSTEM = {
    "hostname": "bench-01",
    "cpu_model": "AMD EPYC 9654 96-Core Processor",
    "cpu_count": 2,
    "cpu_affinity": 2,
    "cpu_flags": ["avx2", "fma"],
    "memory_bytes": 25_276_510_208,
    "os": "Linux 6.8.0",
    "machine": "x86_64",
    "python": "3.11.7",
    "packages": {"benchkit": "0.1.0", "numpy": "2.4.6", "onnx": "1.23.2", "onnxruntime": "1.32.0"},
}


def lognormal_ns(n: int, median_ns: float = 200_000, sigma: float = 0.25, seed: int = 0) -> np.ndarray:
    """Positive, right-skewed latencies like a real run's, as int64 nanoseconds."""
    rng = np.random.default_rng(seed)
    return np.maximum(1, np.round(median_ns * np.exp(sigma * rng.standard_normal(n)))).astype(np.int64)


def make_record(
    samples_ns: Any = None,
    *,
    workload: str = "mlp",
    backend: str = "onnxruntime",
    backend_label: str | None = None,
    kind: str = "single_stream",
    precision: str = "fp32",
    batch: int = 1,
    run_id: str = "20260301T120000Z-aaaaaa",
    started_at: datetime = T0,
    valid: bool = True,
    reasons: list[str] | None = None,
    keep_samples: bool = True,
    system: dict[str, Any] | None = None,
    backend_version: str = "1.32.0",
    device: str = "cpu: AMD EPYC 9654 96-Core Processor",
    target_qps: float | None = None,
    model_sha256: str = "ab" * 32,
    spec_name: str = "synthetic",
    flops: int | None = None,
    bytes_per_sample: int | None = None,
    peak_flops_per_s: float | None = None,
    memory_bandwidth_bytes_per_s: float | None = None,
    seed: int = 0,
    failed: bool = False,
    concurrency: int = 1,
) -> ResultRecord:
    """A VALID (unless told otherwise) record whose metrics are computed from ``samples_ns``."""
    label = backend_label or backend
    settings: dict[str, Any] = {"min_duration_ms": 500, "min_query_count": 50, "max_duration_ms": None,
                                "max_query_count": None, "warmup_ms": 50, "warmup_queries": 5, "kind": kind}
    if kind == "offline":
        settings["batch_size"] = batch
        if concurrency != 1:
            settings["concurrency"] = concurrency
    if kind == "single_stream":
        settings["target_latency_percentile"] = 90.0
    if kind == "multi_stream":
        settings.update(samples_per_query=batch, target_latency_percentile=99.0)
    if kind == "server":
        settings.update(target_qps=target_qps or 100.0, target_latency_ns=10_000_000,
                        target_latency_percentile=99.0, workers=2)
    cell_id = f"{workload}__{label}__{kind}"
    wl = {
        "name": workload, "source": "catalog", "catalog": workload, "variant": precision, "params": {},
        "model_sha256": model_sha256, "model_file": f"{workload}-{precision}.onnx", "graph_precision": precision,
        "dims": {}, "inputs": [{"name": "input", "dtype": "float32", "shape": [batch, 16]}],
        "effective_batch_size": batch, "flops": flops, "bytes_per_sample": bytes_per_sample,
        "arithmetic_intensity": flops / bytes_per_sample if flops and bytes_per_sample else None,
    }
    be = {
        "name": backend, "version": backend_version, "device": device, "precision": precision,
        "options": {}, "adapter": f"benchkit.backends.{backend}", "adapter_version": "0.1.0",
        "peak_flops_per_s": peak_flops_per_s, "id": label, "claimed_precision": precision,
        "memory_bandwidth_bytes_per_s": memory_bandwidth_bytes_per_s,
    }
    spec_block = {"seed": 0, "profile": "quick", "workload": {"name": workload},
                  "backend": {"name": backend, "label": backend_label, "precision": precision},
                  "scenario": {**settings}}
    common = dict(
        schema_version=records.SCHEMA_VERSION, benchkit_version="0.1.0", run_id=run_id, cell_id=cell_id,
        started_at=started_at, finished_at=started_at + timedelta(seconds=2), spec_name=spec_name,
        spec_sha256="cd" * 32, spec=spec_block, system=system or SYSTEM,
        scenario={"kind": kind, "settings": settings},
    )
    if failed:
        return ResultRecord.model_validate(dict(
            common, workload=None, backend=None, metrics=None, samples_ns=None,
            validity={"valid": False, "reasons": reasons or ["load failed: boom"]},
            error={"type": "RuntimeError", "message": "boom", "phase": "load"},
        ))
    if samples_ns is None:
        samples_ns = lognormal_ns(1000, seed=seed)
    x = np.asarray(samples_ns, dtype=np.int64)
    lat = stats.summarize(x)
    spq = batch if kind in ("offline", "multi_stream") else 1
    duration = int(x.sum()) if kind != "server" else int(x.size / (target_qps or 100.0) * 1e9)
    thr = x.size * spq * 1e9 / duration
    pct = settings.get("target_latency_percentile", 90.0)
    if kind in ("single_stream", "multi_stream"):
        head = {"name": f"latency_p{pct:g}_ns".replace(".", ""), "value": float(stats.percentile_ns(np.sort(x), pct)),
                "unit": "ns", "higher_is_better": False}
    else:
        head = {"name": "throughput_per_s", "value": thr, "unit": "samples/s", "higher_is_better": True}
    metrics = {
        "latency_ns": lat.model_dump(), "count": int(x.size), "sample_count": int(x.size) * spq,
        "duration_ns": duration, "throughput_per_s": thr, "queries_per_s": x.size * 1e9 / duration,
        "first_inference_ns": int(x[0]) * 3, "load_ns": 30_000_000, "warmup_queries": 5,
        "stop_reason": "min_duration_and_query_count", "headline": head,
        "achieved_flops_per_s": (thr * flops) if flops else None,
        "fraction_of_peak": (thr * flops / peak_flops_per_s) if flops and peak_flops_per_s else None, "extra": {},
    }
    return ResultRecord.model_validate(dict(
        common, workload=wl, backend=be, metrics=metrics, samples_ns=x.tolist() if keep_samples else None,
        validity={"valid": valid, "reasons": reasons or ([] if valid else ["synthetic reason"]), "warnings": []},
    ))
