"""Record assembly: the blocks of a cell's record, written from the typed cell, workload, adapter info and
measurement. The verdict comes from :mod:`benchkit.checks.verdict`; nothing here decides validity."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchkit import stats
from benchkit._version import __version__
from benchkit.checks.verdict import Finding, amend, reason, verdict
from benchkit.errors import BenchkitError
from benchkit.machine import host
from benchkit.measure import HEADLINE
from benchkit.measure.loops import Measurement
from benchkit.results import records
from benchkit.results.records import ResultRecord
from benchkit.runner.plan import Cell, SuiteContext
from benchkit.spec import BackendSpec, load_device_file


def workload_cost(wl: Any, effective_batch: int) -> tuple[Any, str | None]:
    """FLOPs and bytes per call at the cell's dims (untimed), and a warning when the graph cannot be counted.
    Never fails the cell: a graph the counter cannot analyse gets no roofline figures."""
    from benchkit.workloads.flops import analyze

    try:
        return analyze(wl.path, {**wl.dims, **_leading_dims(wl, effective_batch)}), None
    except BenchkitError as e:
        return None, f"no FLOP count: {e}"


def _leading_dims(wl: Any, batch: int) -> dict[str, int]:
    """Values for the symbolic leading (batch) dims of the graph's inputs."""
    return {i.shape[0]: batch for i in wl.inputs if i.shape and isinstance(i.shape[0], str)
            and i.shape[0] not in wl.dims}


def workload_block(wl: Any, effective_batch: int | None, cost: Any = None) -> records.WorkloadRecord:
    shapes, _ = wl.call_shapes(effective_batch or 1)
    roofline = {}
    if cost is not None:
        # `cost` is per inference call: weights are read once per call, so intensity is a property of the
        # call (batch included) and the per-sample figures divide the call's totals by its batch.
        b = effective_batch or 1
        nbytes = cost.weight_bytes + cost.activation_bytes
        roofline = dict(flops=round(cost.flops / b), macs=round(cost.macs / b), param_count=cost.params,
                        bytes_per_sample=round(nbytes / b), arithmetic_intensity=cost.arithmetic_intensity,
                        unknown_ops=list(cost.unknown_ops))
    return records.WorkloadRecord(
        name=wl.name,
        source=wl.source,
        catalog=wl.catalog,
        variant=wl.variant,
        params=dict(wl.params),
        model_sha256=wl.sha256,
        model_file=wl.path.name,
        graph_precision=wl.graph_precision,
        dims=dict(wl.dims),
        inputs=[records.InputInfo(name=i.name, dtype=i.dtype.name, shape=list(shapes[i.name]),
                                  data_source=i.data.source if i.data is not None else None,
                                  data_sha256=i.data.sha256 if i.data is not None else None) for i in wl.inputs],
        effective_batch_size=effective_batch,
        **roofline,
    )


def headline(scenario: Any, m: Measurement, lat_sorted_ns: np.ndarray | None = None) -> records.Headline:
    """The scenario's headline figure; the engine's own figure where it computes one (LoadGen)."""
    kind = scenario.kind
    name, unit, hib = HEADLINE[kind]
    if m.headline_value is not None:
        value = float(m.headline_value)
        if unit == "ns":
            name = f"latency_p{scenario.latency_percentile:g}_ns".replace(".", "")
    elif unit == "ns":
        pct = float(scenario.latency_percentile)
        sorted_ns = np.sort(m.samples_ns) if lat_sorted_ns is None else lat_sorted_ns
        value = float(stats.percentile_ns(sorted_ns, pct))
        name = f"latency_p{pct:g}_ns".replace(".", "")
    else:
        value = stats.throughput_per_s(m.sample_count, m.duration_ns)
    return records.Headline(name=name, value=value, unit=unit, higher_is_better=hib)


def device_peak(bspec: BackendSpec, info: Any, precision: str) -> tuple[float | None, float | None, str | None]:
    """(peak FLOP/s, memory bandwidth, source): the adapter's own figure first, else the device file, else for a
    CPU device the peak benchkit derives from this machine (``machine.cpu_peak``: an upper bound)."""
    if info.peak_flops_per_s:
        return info.peak_flops_per_s, None, "adapter"
    if bspec.device_file is None:
        if _on_cpu(info.device):
            from benchkit.machine.cpu_peak import cpu_peak_flops_per_s

            est = cpu_peak_flops_per_s(precision)
            return est.peak_flops_per_s, None, est.source
        return None, None, None
    dev = load_device_file(Path(bspec.device_file), "device_file")
    # the file name, not its path: records travel between machines
    return dev.peak_flops_per_s.get(precision), dev.memory_bandwidth_bytes_per_s, \
        f"device file {Path(bspec.device_file).name} ({dev.name})"


def _on_cpu(device: str) -> bool:
    parts = [p.strip().lower() for p in str(device).split(";") if p.strip()]
    return bool(parts) and all(p.startswith("cpu") for p in parts)


def metrics_block(cell: Cell, m: Measurement, lat: stats.LatencyStats, head: records.Headline, *, load_ns: int,
                  first_ns: int, n_warm: int, cost: Any, peak: float | None, early_stopping: Any,
                  stage_ns: list[int] = (), fetch_ns: list[int] = ()) -> records.Metrics:
    thr = stats.throughput_per_s(m.sample_count, m.duration_ns)
    # `cost` is per inference call; a MultiStream query may take several calls (measure.grouped_loop)
    per_call = m.samples_per_query // int(m.extra.get("calls_per_query", 1))
    achieved = cost.flops / per_call * thr if cost is not None and cost.flops else None
    extra = dict(m.extra)
    return records.Metrics(
        latency_ns=lat,
        count=m.query_count,
        sample_count=m.sample_count,
        duration_ns=m.duration_ns,
        throughput_per_s=thr,
        queries_per_s=stats.throughput_per_s(m.query_count, m.duration_ns),
        first_inference_ns=first_ns,
        load_ns=load_ns,
        warmup_queries=n_warm,
        stop_reason=m.stop_reason,
        headline=head,
        achieved_flops_per_s=achieved,
        fraction_of_peak=achieved / peak if achieved is not None and peak else None,
        extra=extra,
        early_stopping=early_stopping,
        issue_lateness_ns=m.issue_lateness_ns,
        stage_ns=stats.summarize(np.asarray(stage_ns, dtype=np.int64)) if len(stage_ns) else None,
        fetch_ns=stats.summarize(np.asarray(fetch_ns, dtype=np.int64)) if len(fetch_ns) else None,
        in_flight=records.InFlight(concurrency=extra["concurrency"], achieved_mean=extra["achieved_concurrency"],
                                   issue_mode=extra["issue_mode"]) if "achieved_concurrency" in extra else None,
    )


def provenance(cell: Cell, ctx: SuiteContext, started: datetime, engine: str) -> dict[str, Any]:
    """The fields every record of a cell carries, measured or failed."""
    return dict(
        schema_version=records.SCHEMA_VERSION,
        benchkit_version=__version__,
        engine=engine,
        run_id=ctx.run_id,
        cell_id=cell.cell_id,
        started_at=started,
        finished_at=records.utcnow(),
        spec_name=ctx.spec_name,
        spec_sha256=ctx.spec_sha256,
        spec=cell.spec_block(),
        probe=cell.probe,
        system=records.SystemRecord(**host.describe()),
        scenario=records.ScenarioRecord(kind=cell.kind, settings=cell.scenario.settings()),
    )


def error_record(cell: Cell, ctx: SuiteContext, started: datetime, message: str, etype: str, phase: str,
                 detail: str = "", wl: Any = None, info: Any = None, effective_batch: int | None = None) -> ResultRecord:
    """The record of a cell that produced no measurement: it still exists, INVALID, with the cause."""
    backend = workload = None
    try:  # what is known of the cell; an error here must not cost the error record itself
        workload = workload_block(wl, effective_batch) if wl is not None else None
    except Exception:  # noqa: BLE001
        workload = None
    if info is not None:
        backend = records.BackendRecord(**info.model_dump(), id=cell.backend.id,
                                        claimed_precision=cell.backend.precision)
    return ResultRecord(
        **provenance(cell, ctx, started, ctx.engine),
        workload=workload,
        backend=backend,
        metrics=None,
        samples_ns=None,
        validity=verdict([reason("error", f"{phase} failed: {message}")]),
        error=records.ErrorInfo(type=etype, message=message, phase=phase, detail=detail[-4000:]),
    )


def with_findings(record: ResultRecord, more: list[Finding], **updates: Any) -> ResultRecord:
    """``record`` with later findings added to its verdict (and other blocks replaced by ``updates``)."""
    return record.model_copy(update={**updates, "validity": amend(record.validity, more)})


def close_failed(record: ResultRecord, e: Exception, detail: str) -> ResultRecord:
    """A record whose adapter failed to release its resources: the measurement is kept, marked INVALID."""
    from benchkit.checks.verdict import warning

    message = f"{type(e).__name__}: {e}"
    if record.error is not None:  # the first failure stays the cause; the close failure is noted
        return with_findings(record, [warning("close", f"close() also failed: {message}")])
    return with_findings(record, [reason("close", f"close failed: {message}")],
                         error=records.ErrorInfo(type=type(e).__name__, message=message, phase="close",
                                                 detail="" if isinstance(e, BenchkitError) else detail[-4000:]))


__all__ = ["workload_cost", "workload_block", "headline", "device_peak", "metrics_block", "provenance",
           "error_record", "with_findings", "close_failed"]
