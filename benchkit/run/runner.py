"""From a validated spec to result records: cells, preflight, isolation, record assembly.

Data flows one way: ``LoadedSpec`` -> cells -> (worker) workload + adapter +
scenario -> ``Measurement`` -> ``ResultRecord`` -> file. Nothing here reaches
back into the spec once cells are built.

Each cell runs in a fresh worker process by default (``python -m
benchkit.run.child``): a crash, a hang past ``cell_timeout_s`` or an
out-of-memory kill inside a vendor runtime ends that cell with an error
record, and the suite goes on.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchkit.checks import accuracy, audits, divisions
from benchkit.results import records
from benchkit import stats
from benchkit.machine import host as system
from benchkit._version import __version__
from benchkit.backends import WorkloadInfo, load_backend_class
from benchkit.errors import BackendError, BenchkitError, SpecError
from benchkit.checks.outputs import output_shape_problems
from benchkit.run.peak import PeakOptions, PeakSearch
from benchkit.results.records import ResultRecord
from benchkit.measure import HEADLINE, measure, timed_call, warmup
from benchkit.measure.dispatch import requested_batch
from benchkit.spec import AUDITED_PROFILES, BackendSpec, LoadedSpec, WorkloadSpec, format_number, load_device_file

Progress = Callable[[str, str], None]  # (cell_id, phase)

# Distinct input sets cycled through during a run: enough that a runtime
# cannot serve repeated identical inputs from a cache, bounded in memory.
_MAX_DISTINCT_INPUTS = 16
_INPUT_POOL_BYTES = 256 << 20


@dataclass(frozen=True)
class Cell:
    """One workload x backend x scenario combination, fully resolved and JSON-serialisable."""

    cell_id: str
    workload: dict[str, Any]  # WorkloadSpec as JSON
    backend: dict[str, Any]  # BackendSpec as JSON
    kind: str
    settings: dict[str, Any]  # effective scenario settings
    seed: int
    profile: str
    origin: str  # "spec.yaml: workloads[0] (name)" for error messages
    probe: dict[str, Any] | None = None  # records.Probe as JSON, for the steps of a --find-peak search

    @property
    def workload_name(self) -> str:
        return self.workload["name"]

    @property
    def backend_id(self) -> str:
        return self.backend.get("label") or self.backend["name"]


@dataclass(frozen=True)
class SuiteContext:
    """What every cell of one suite run shares."""

    run_id: str
    spec_name: str
    spec_sha256: str
    base_dir: str
    keep_samples: bool
    cache_dir: str | None = None
    audit: bool = False  # run the compliance audits (--audit; always under the certify profile)
    accuracy_reference: str = "onnxruntime"  # backend computing the accuracy gate's reference outputs
    accuracy_samples: int = 4  # calls the accuracy gate compares
    engine: str = "benchkit"  # benchkit | mlperf (MLPerf LoadGen drives the measurement)
    run_dir: str | None = None  # where records go; the mlperf engine keeps LoadGen's logs beside them
    max_memory_bytes: int | None = None  # applied by each worker to itself (benchkit.run.limits), before any runtime loads
    division: str = "auto"  # run.division: the division requested for every cell


def new_run_id() -> str:
    return records.utcnow().strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def expand(
    loaded: LoadedSpec,
    backends: Iterable[str] = (),
    workloads: Iterable[str] = (),
    profile: str | None = None,
    device_file: Path | None = None,
    find_peak: bool = False,
) -> list[Cell]:
    """The suite's cells, in spec order, optionally filtered by backend ids and workload names.

    ``device_file`` (the CLI's ``--device-file``) replaces every backend's descriptor.
    A sweep (``offline.batch_size`` or ``server.target_qps`` given as a list)
    becomes one cell per value, its id suffixed ``-b8`` / ``-q1000``. With
    ``find_peak``, only Server scenarios are kept, one cell each, at the lowest
    listed rate: the starting point of a peak search (:func:`run_peak_search`).
    """
    spec = loaded.spec
    src = str(loaded.path) if loaded.path else spec.name
    want_b, want_w = set(backends), set(workloads)
    known_b = {b.id for b in spec.backends}
    known_w = {w.name for w in spec.workloads}
    if want_b - known_b:
        raise SpecError(f"--backend: {', '.join(sorted(want_b - known_b))} not in {src}; backends there: {', '.join(sorted(known_b))}")
    if want_w - known_w:
        raise SpecError(f"--workload: {', '.join(sorted(want_w - known_w))} not in {src}; workloads there: {', '.join(sorted(known_w))}")
    prof = profile or spec.run.profile
    kinds = [s.kind for s in spec.scenarios]
    cells = []
    for wi, w in enumerate(spec.workloads):
        if want_w and w.name not in want_w:
            continue
        for b in spec.backends:
            if want_b and b.id not in want_b:
                continue
            bdata = b.model_dump(mode="json")
            dev = device_file or (loaded.base_dir / b.device_file if b.device_file else None)
            bdata["device_file"] = str(Path(dev).resolve()) if dev else None
            for si, s in enumerate(spec.scenarios):
                if find_peak and s.kind != "server":
                    continue
                suffix = f"-{si}" if kinds.count(s.kind) > 1 else ""
                base = s.effective(prof)
                points = s.sweep()
                if find_peak:
                    qps = base["target_qps"]
                    points = [("", {"target_qps": min(qps) if isinstance(qps, tuple) else qps})]
                for point, override in points:
                    cells.append(
                        Cell(
                            cell_id=f"{w.name}__{b.id}__{s.kind}{suffix}{point}",
                            workload=w.model_dump(mode="json"),
                            backend=bdata,
                            kind=s.kind,
                            settings={**base, **override},
                            seed=spec.seed,
                            profile=prof,
                            origin=f"{src}: workloads[{wi}] ({w.name})",
                        )
                    )
    if find_peak and not cells:
        raise SpecError(f"--find-peak: {src} has no server scenario (for the selected workloads and backends) "
                        "to search; add one with kind: server, target_qps (a starting rate) and target_latency_ns")
    return cells


def preflight(loaded: LoadedSpec, cells: list[Cell], cache_dir: Path | None = None) -> None:
    """Fail fast, before anything is measured: every workload resolves, every backend imports and accepts its options."""
    from benchkit.workloads import resolve

    src = str(loaded.path) if loaded.path else loaded.spec.name
    seen_w: set[str] = set()
    seen_b: set[str] = set()
    for c in cells:
        if c.workload_name not in seen_w:
            seen_w.add(c.workload_name)
            resolve(WorkloadSpec.model_validate(c.workload), loaded.base_dir, c.origin, cache_dir)
        if c.backend_id not in seen_b:
            seen_b.add(c.backend_id)
            b = BackendSpec.model_validate(c.backend)
            index = [x.id for x in loaded.spec.backends].index(b.id)
            where = f"{src}: backends[{index}] ({b.id})"
            try:
                cls = load_backend_class(b.name)
            except BenchkitError as e:
                raise SpecError(f"{where}.name: {e}") from None
            try:
                probe = cls(b.options)
            except BenchkitError as e:
                raise SpecError(f"{where}.options: {e}") from None
            except Exception as e:  # an adapter bug, reported without a benchkit traceback
                raise SpecError(f"{where}: adapter {b.name!r} failed to start: {type(e).__name__}: {e}") from None
            try:
                probe.close()
            except Exception:  # noqa: BLE001 - only the options are checked here; a cell's own close() is reported
                pass
            if b.device_file is not None:
                load_device_file(Path(b.device_file), f"{where}.device_file")
    _check_power_meters(loaded, src)


def _check_power_meters(loaded: LoadedSpec, src: str) -> None:
    from benchkit import power

    try:
        power.check(loaded.spec.run.power.meters)
    except BenchkitError as e:
        raise SpecError(f"{src}: run.power.meters: {e}") from None


# --------------------------------------------------------------------------- one cell


class _Phase:
    """Tracks the current phase so an error record can say where a cell failed."""

    def __init__(self, cell_id: str, progress: Progress | None) -> None:
        self.name = "resolve"
        self._cell_id, self._progress = cell_id, progress

    def __call__(self, name: str) -> None:
        self.name = name
        if self._progress:
            self._progress(self._cell_id, name)


def execute_cell(cell: Cell, ctx: SuiteContext, progress: Progress | None = None) -> ResultRecord:
    """Run one cell in this process and return its record (an error record if anything failed)."""
    from benchkit.workloads import resolve

    started = records.utcnow()
    phase = _Phase(cell.cell_id, progress)
    wl = backend = info = None
    effective_batch = None
    try:
        wspec = WorkloadSpec.model_validate(cell.workload)
        bspec = BackendSpec.model_validate(cell.backend)
        wl = resolve(wspec, Path(ctx.base_dir), cell.origin, Path(ctx.cache_dir) if ctx.cache_dir else None)
        asked = requested_batch(cell.kind, cell.settings)
        shapes, effective_batch = wl.call_shapes(asked)
        per_call = max(1, wl.bytes_per_call(asked))
        n_inputs = int(max(1, min(_MAX_DISTINCT_INPUTS, _INPUT_POOL_BYTES // per_call)))
        feeds, _ = wl.make_feeds(asked, n_inputs, cell.seed)
        cost, cost_warning = _workload_cost(wl, effective_batch)

        phase("load")
        cls = load_backend_class(bspec.name)
        backend = cls(bspec.options)
        winfo = WorkloadInfo(
            name=wl.name,
            inputs=shapes,
            input_dtypes={i.name: i.dtype for i in wl.inputs},
            output_names=wl.output_names,
            batch_size=effective_batch,
            extra={"graph_precision": wl.graph_precision, "source": wl.source, "catalog": wl.catalog,
                   # what the result claims and how it will be driven, so an adapter can set its runtime's
                   # precision and performance hints to match (and report what it got)
                   "claimed_precision": bspec.precision, "scenario": cell.kind},
        )
        t0 = time.perf_counter_ns()
        backend.load(wl.path, winfo)
        load_ns = time.perf_counter_ns() - t0
        info = backend.info()

        phase("stage")
        staged = [backend.stage(f) for f in feeds]
        first_ns = timed_call(backend, staged[0])

        phase("warmup")
        t_warm = time.perf_counter_ns()
        n_warm = warmup(backend, staged, cell.settings["warmup_ms"], cell.settings["warmup_queries"])
        call_ns = (time.perf_counter_ns() - t_warm) // max(1, n_warm)

        phase("measure")
        if ctx.engine == "mlperf":
            from benchkit.measure.loadgen import measure_with_loadgen

            # LoadGen sizes its run from an expected call time: a stall during warmup must not inflate it.
            call_ns = min(call_ns, int(np.median([timed_call(backend, staged[i % len(staged)]) for i in range(16)])))
            log_dir = Path(ctx.run_dir) / f"{cell.cell_id}.mlperf" if ctx.run_dir else None
            m = measure_with_loadgen(cell.kind, backend, staged, cell.settings, effective_batch, cell.seed,
                                     call_ns, log_dir)
        else:
            m = measure(cell.kind, backend, staged, cell.settings, effective_batch, cell.seed)

        phase("check")
        outputs = backend.fetch(backend.run(staged[0]))
        backend.synchronize()
        # An adapter that computes nothing (null) returns no outputs; that is its contract, not a fault.
        output_problems = _check_outputs(outputs, wl.output_names, expect_all=getattr(cls, "computes_outputs", True))
        output_problems += output_shape_problems(wl, effective_batch, outputs)

        phase("accuracy")
        cache = Path(ctx.cache_dir) if ctx.cache_dir else None
        n_acc = min(ctx.accuracy_samples, len(staged))
        acc, acc_outputs = accuracy.check(
            backend, staged[:n_acc], feeds[:n_acc], wl, claimed=bspec.precision, effective=info.precision,
            allow_mismatch=bspec.allow_precision_mismatch, reference=ctx.accuracy_reference, seed=cell.seed,
            batch=effective_batch, cache_dir=cache)

        audited = ctx.audit or cell.profile in AUDITED_PROFILES
        audit_block = None
        if audited:
            phase("audit")
            audit_block = _audit(cell, backend, wl, bspec, info, staged, acc, acc_outputs, m, asked, n_inputs,
                                 effective_batch)

        record = _assemble(cell, ctx, started, wl, bspec, info, effective_batch, m, load_ns, first_ns, n_warm,
                           output_problems, cost, cost_warning, acc, audit_block, audited)
    except BaseException as e:  # noqa: BLE001 - every failure becomes a record; KeyboardInterrupt re-raised below
        if isinstance(e, KeyboardInterrupt):
            raise
        detail = "" if isinstance(e, BenchkitError) else traceback.format_exc(limit=8)
        record = error_record(cell, ctx, started, f"{type(e).__name__}: {e}", type(e).__name__, phase.name, detail,
                              wl=wl, info=info, effective_batch=effective_batch)
    finally:
        close_error = None
        if backend is not None:
            try:
                backend.close()
            except Exception as e:  # noqa: BLE001 - a close failure must not hide the measurement, nor go unseen
                close_error = (e, traceback.format_exc(limit=8))
    if close_error is not None:
        record = _close_failed(record, *close_error)
    return record


def _close_failed(record: ResultRecord, e: Exception, detail: str) -> ResultRecord:
    """A record whose adapter failed to release its resources: the measurement is kept, marked INVALID."""
    message = f"{type(e).__name__}: {e}"
    if record.error is not None:  # the first failure stays the cause; the close failure is noted
        return record.model_copy(update={"validity": record.validity.model_copy(
            update={"warnings": [*record.validity.warnings, f"close() also failed: {message}"]})})
    return record.model_copy(update={
        "validity": records.Validity(valid=False, reasons=[*record.validity.reasons, f"close failed: {message}"],
                                     warnings=record.validity.warnings),
        "error": records.ErrorInfo(type=type(e).__name__, message=message, phase="close",
                                   detail="" if isinstance(e, BenchkitError) else detail[-4000:]),
    })


def _workload_cost(wl, effective_batch: int):
    """FLOPs and bytes per sample at the cell's dims (untimed). Never fails the cell: a graph the
    counter cannot analyse gets no roofline figures and a warning instead."""
    from benchkit.workloads.flops import analyze

    try:
        return analyze(wl.path, {**wl.dims, **_leading_dims(wl, effective_batch)}), None
    except BenchkitError as e:
        return None, f"no FLOP count: {e}"


def _leading_dims(wl, batch: int) -> dict[str, int]:
    """Values for the symbolic leading (batch) dims of the graph's inputs."""
    return {i.shape[0]: batch for i in wl.inputs if i.shape and isinstance(i.shape[0], str)
            and i.shape[0] not in wl.dims}


def _audit(cell: Cell, backend, wl, bspec: BackendSpec, info, staged: list, acc, acc_outputs, m, asked: int,
           n_inputs: int, effective_batch: int) -> records.Audits:
    """The three compliance audits, after the measurement and outside its timed region."""
    prec, tol = accuracy.tolerance_for(bspec.precision, info.precision, bspec.allow_precision_mismatch)

    def compare(outs, refs):
        return accuracy.compare_outputs(outs, refs, wl.output_names, tol, accuracy.is_classifier(wl))

    measured_p50 = int(np.median(m.samples_ns)) if len(m.samples_ns) else None
    timed = audits.timed_outputs(backend, staged, acc_outputs, compare, cell.seed, measured_p50)
    # Enough never-seen inputs for stable medians, within the input pool's memory bound.
    n_fresh = int(max(8, min(128, _INPUT_POOL_BYTES // max(1, wl.bytes_per_call(asked)))))
    fresh = [backend.stage(f) for f in audits.fresh_inputs(wl, asked, n_fresh, cell.seed)]
    repeated = audits.repeated_input(backend, staged[0], fresh)
    del fresh
    alt_seed = cell.seed + audits.ALTERNATE_SEED_OFFSET
    alt_feeds, _ = wl.make_feeds(asked, n_inputs, alt_seed)
    alt_staged = [backend.stage(f) for f in alt_feeds]
    warmup(backend, alt_staged, cell.settings["warmup_ms"], cell.settings["warmup_queries"])
    m_alt = measure(cell.kind, backend, alt_staged, cell.settings, effective_batch, alt_seed)
    h = _headline_of(cell, m)
    h_alt = _headline_of(cell, m_alt)
    alternate = audits.alternate_seed(h.value, h_alt.value, h.higher_is_better, h.name, alt_seed)
    return records.Audits(timed_outputs=timed, repeated_input=repeated, alternate_seed=alternate)


def _headline_of(cell: Cell, m) -> records.Headline:
    lat = stats.summarize(m.samples_ns)
    return _headline(cell.kind, cell.settings, lat, np.sort(m.samples_ns),
                     stats.throughput_per_s(m.sample_count, m.duration_ns))


def _check_outputs(outputs: list[np.ndarray], names: tuple[str, ...], expect_all: bool = True) -> list[str]:
    problems = []
    if expect_all and names and len(outputs) != len(names):
        problems.append(f"adapter returned {len(outputs)} outputs, the graph has {len(names)}")
    for name, arr in zip(names, outputs):
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            problems.append(f"output {name!r} contains NaN or Inf")
    return problems


def _workload_block(wl, effective_batch: int | None, cost=None) -> records.WorkloadRecord:
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
        inputs=[records.InputInfo(name=i.name, dtype=i.dtype.name, shape=list(shapes[i.name])) for i in wl.inputs],
        effective_batch_size=effective_batch,
        **roofline,
    )


def _spec_block(cell: Cell) -> dict[str, Any]:
    return {"seed": cell.seed, "profile": cell.profile, "workload": cell.workload, "backend": cell.backend,
            "scenario": {"kind": cell.kind, **cell.settings}}


def _headline(kind: str, settings: dict[str, Any], lat: stats.LatencyStats, sorted_ns: np.ndarray,
              throughput: float, reported: float | None = None) -> records.Headline:
    """The scenario's headline figure; `reported` is the engine's own figure where it computes one (LoadGen)."""
    name, unit, hib = HEADLINE[kind]
    if unit == "ns":
        pct = float(settings.get("target_latency_percentile", 90.0 if kind == "single_stream" else 99.0))
        value = float(stats.percentile_ns(sorted_ns, pct))
        name = f"latency_p{pct:g}_ns".replace(".", "")
    else:
        value = throughput
    if reported is not None:
        value = float(reported)
    return records.Headline(name=name, value=value, unit=unit, higher_is_better=hib)


# Measurement.extra keys that become typed record fields (or validity) rather than metrics.extra entries.
_TYPED_EXTRA = ("invalid_reasons", "issue_lateness_ns", "engine", "headline_value")


def _peak(bspec: BackendSpec, info, precision: str) -> tuple[float | None, float | None, str | None]:
    """(peak FLOP/s, memory bandwidth, source): the adapter's own figure first, else the device file."""
    if info.peak_flops_per_s:
        return info.peak_flops_per_s, None, "adapter"
    if bspec.device_file is None:
        return None, None, None
    dev = load_device_file(Path(bspec.device_file), "device_file")
    # the file name, not its path: records travel between machines
    return dev.peak_flops_per_s.get(precision), dev.memory_bandwidth_bytes_per_s, \
        f"device file {Path(bspec.device_file).name} ({dev.name})"


def _assemble(cell, ctx, started, wl, bspec: BackendSpec, info, effective_batch, m, load_ns, first_ns, n_warm,
              output_problems, cost=None, cost_warning=None, acc=None, audit_block=None,
              audited=False) -> ResultRecord:
    from benchkit.checks.latency import latency_verdict

    lat = stats.summarize(m.samples_ns)
    sorted_ns = np.sort(m.samples_ns)
    thr = stats.throughput_per_s(m.sample_count, m.duration_ns)
    qps = stats.throughput_per_s(m.query_count, m.duration_ns)
    reasons: list[str] = []
    warnings: list[str] = []
    s = cell.settings
    engine = m.extra.get("engine", "benchkit")
    if m.stop_reason != "min_duration_and_query_count" and engine == "benchkit":
        short = []
        # Server: the minimum duration is met by the last *scheduled* query (LoadGen's rule).
        spanned = m.extra.get("final_scheduled_ns", m.duration_ns)
        if spanned < s["min_duration_ms"] * 1_000_000:
            short.append(f"duration {spanned / 1e6:.0f} ms < min_duration_ms {s['min_duration_ms']}")
        if cell.kind == "offline" and m.sample_count < s["min_query_count"]:
            short.append(f"{m.sample_count} samples < min_query_count {s['min_query_count']} (Offline counts samples)")
        elif cell.kind != "offline" and m.query_count < s["min_query_count"]:
            short.append(f"{m.query_count} queries < min_query_count {s['min_query_count']}")
        if short:
            reasons.append(f"stopped at {m.stop_reason} before the minimums were met: " + "; ".join(short))
    if info.precision != bspec.precision:
        msg = f"effective precision {info.precision} differs from the claimed {bspec.precision}"
        (warnings if bspec.allow_precision_mismatch else reasons).append(
            msg + (" (allowed by allow_precision_mismatch)" if bspec.allow_precision_mismatch else "")
        )
    reasons.extend(output_problems)
    reasons.extend(m.extra.get("invalid_reasons", []))
    if acc is not None and acc.passed is False:
        reasons.append(accuracy.summary(acc))
    elif acc is not None and acc.passed is None:
        # Nothing compared: not a failure, but nothing a certified result can rest on either.
        msg = f"accuracy not checked: {acc.skipped}"
        (reasons if audited else warnings).append(msg + (" (required under --audit / the certify profile)"
                                                         if audited else ""))
    if audit_block is not None:
        reasons.extend(audits.reasons(audit_block))
    verdict = latency_verdict(cell.kind, s, sorted_ns, m.extra)
    if engine == "benchkit":
        reasons.extend(verdict.reasons)
    else:
        # LoadGen's verdict stands for its own runs; a disagreement with benchkit's latency rules on the
        # same samples is worth a look.
        lg_met = m.extra.get("mlperf", {}).get("latency_constraints_met")
        if lg_met is not None and lg_met != (not verdict.reasons):
            warnings.append("benchkit's latency rules disagree with LoadGen's on these samples: "
                            + ("; ".join(verdict.reasons) or "benchkit finds the latency constraints met"))
    warnings.extend(verdict.warnings)
    warn = stats.stability_warning(lat)
    if warn:
        warnings.append(warn)
    if cost_warning:
        warnings.append(cost_warning)
    peak, bandwidth, peak_source = _peak(bspec, info, info.precision)
    achieved = cost.flops / m.samples_per_query * thr if cost is not None and cost.flops else None
    metrics = records.Metrics(
        latency_ns=lat,
        count=m.query_count,
        sample_count=m.sample_count,
        duration_ns=m.duration_ns,
        throughput_per_s=thr,
        queries_per_s=qps,
        first_inference_ns=first_ns,
        load_ns=load_ns,
        warmup_queries=n_warm,
        stop_reason=m.stop_reason,
        headline=_headline(cell.kind, s, lat, sorted_ns, thr, m.extra.get("headline_value")),
        achieved_flops_per_s=achieved,
        fraction_of_peak=achieved / peak if achieved is not None and peak else None,
        extra={k: v for k, v in m.extra.items() if k not in _TYPED_EXTRA},
        early_stopping=verdict.early_stopping,
        issue_lateness_ns=m.extra.get("issue_lateness_ns"),
    )
    binfo = info.model_dump()
    binfo["peak_flops_per_s"] = peak
    record = ResultRecord(
        **_provenance(cell, ctx, started, engine),
        workload=_workload_block(wl, effective_batch, cost),
        backend=records.BackendRecord(**binfo, id=bspec.id, claimed_precision=bspec.precision,
                                      memory_bandwidth_bytes_per_s=bandwidth, peak_source=peak_source),
        metrics=metrics,
        samples_ns=m.samples_ns.tolist() if ctx.keep_samples else None,
        validity=records.Validity(valid=not reasons, reasons=reasons, warnings=warnings),
        accuracy=acc,
        audits=audit_block,
    )
    return divisions.apply(record, divisions.standard_build(wl, ctx.cache_dir), ctx.division)


def _provenance(cell: Cell, ctx: SuiteContext, started, engine: str) -> dict[str, Any]:
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
        spec=_spec_block(cell),
        probe=cell.probe,
        system=records.SystemRecord(**system.describe()),
        scenario=records.ScenarioRecord(kind=cell.kind, settings=cell.settings),
    )


def error_record(cell: Cell, ctx: SuiteContext, started, message: str, etype: str, phase: str, detail: str = "",
                 wl=None, info=None, effective_batch=None) -> ResultRecord:
    """The record of a cell that produced no measurement: it still exists, INVALID, with the cause."""
    bspec = BackendSpec.model_validate(cell.backend)
    backend = workload = None
    try:  # what is known of the cell; an error here must not cost the error record itself
        workload = _workload_block(wl, effective_batch) if wl is not None else None
    except Exception:  # noqa: BLE001
        workload = None
    if info is not None:
        backend = records.BackendRecord(**info.model_dump(), id=bspec.id, claimed_precision=bspec.precision)
    return ResultRecord(
        **_provenance(cell, ctx, started, ctx.engine),
        workload=workload,
        backend=backend,
        metrics=None,
        samples_ns=None,
        validity=records.Validity(valid=False, reasons=[f"{phase} failed: {message}"]),
        error=records.ErrorInfo(type=etype, message=message, phase=phase, detail=detail[-4000:]),
    )


# --------------------------------------------------------------------------- isolation


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def run_in_worker(cell: Cell, ctx: SuiteContext, timeout_s: float, progress: Progress | None = None) -> ResultRecord:
    """Run one cell in a fresh Python process; turn a crash, hang or kill into an error record."""
    started = records.utcnow()
    with tempfile.TemporaryDirectory(prefix="benchkit-cell-") as tmp:
        payload = Path(tmp) / "cell.json"
        result = Path(tmp) / "record.json"
        errlog = Path(tmp) / "stderr.txt"
        payload.write_text(json.dumps({"cell": cell.__dict__, "ctx": ctx.__dict__, "parent_pid": os.getpid()}))
        with open(errlog, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "benchkit.run.child", str(payload), str(result)],
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: a timeout kills the runtime's threads and children too
            )
            reader = threading.Thread(target=_relay_progress, args=(proc, cell.cell_id, progress), daemon=True)
            reader.start()
            try:
                rc = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                reader.join(5)
                return error_record(cell, ctx, started, f"cell exceeded cell_timeout_s={timeout_s:g} and was killed",
                                    "Timeout", "worker", _tail(errlog))
            except BaseException:
                _kill_group(proc)
                raise
            reader.join(5)
        if rc == 0 and result.exists():
            return records.parse(json.loads(result.read_text()), f"worker result of {cell.cell_id}")
        if rc < 0:
            why = f"worker process killed by {_signal_name(rc)}"
            if rc == -signal.SIGKILL:
                why += " (out of memory, or killed from outside)"
        else:
            why = f"worker process exited with status {rc} without a record"
        return error_record(cell, ctx, started, why, "WorkerCrash", "worker", _tail(errlog))


def _relay_progress(proc: subprocess.Popen, cell_id: str, progress: Progress | None) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        text = line.decode(errors="replace").strip()
        if text.startswith("phase ") and progress:
            progress(cell_id, text[6:])


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        data = path.read_bytes()[-limit:]
    except OSError:
        return ""
    return data.decode(errors="replace")


# --------------------------------------------------------------------------- suite


@dataclass
class SuiteResult:
    run_id: str
    out_dir: Path
    paths: list[Path]
    records: list[ResultRecord]
    peaks: list[PeakResult] = field(default_factory=list)

    @property
    def all_valid(self) -> bool:
        return all(r.validity.valid for r in self.records)


def run_suite(
    loaded: LoadedSpec,
    out_dir: Path,
    cells: list[Cell],
    isolation: str | None = None,
    progress: Progress | None = None,
    on_record: Callable[[ResultRecord, Path], None] | None = None,
    cache_dir: Path | None = None,
    audit: bool | None = None,
    engine: str = "benchkit",
    peak: PeakOptions | None = None,
    *,
    resume: bool | str | Path = False,
    system_file: Path | None = None,
    on_start: Callable[[Path, int], None] | None = None,
    executor=None,
) -> SuiteResult:
    """Run `cells` (``run.repeats`` times each) and write one record per cell under ``out_dir/<spec name>/<run id>/``.

    Each record is written atomically as soon as its cell finishes, so an
    interruption keeps everything measured before it. ``audit`` (the CLI's
    ``--audit``) overrides the spec's ``run.audit``. ``engine="mlperf"`` runs
    each cell through MLPerf LoadGen (``pip install 'benchkit[mlperf]'``). With
    ``peak``, every cell must be a Server cell (``expand(..., find_peak=True)``)
    and is searched for its highest VALID rate; each probe writes its own
    record, and ``SuiteResult.peaks`` holds one :class:`PeakResult` per cell.
    ``resume`` (True: the newest run of this spec under ``out_dir``; or a run
    directory) completes an earlier run: only cells without a readable record
    run; ``on_start(run_dir, cells to run)`` is called once the run directory
    is known. The result lists every record of the run, resumed ones
    included. Power, stability, the system description and repetitions are
    handled by :class:`benchkit.run.session.SuiteSession`. `executor`
    (``benchkit.run.executors``) decides where cells run; default: this machine,
    one after another.
    """
    from benchkit.run.executors import Job, LocalExecutor
    from benchkit.run.session import SuiteSession

    if engine not in ("benchkit", "mlperf"):
        raise SpecError(f"--engine must be benchkit or mlperf, got {engine!r}")
    if engine == "mlperf":
        from benchkit.measure.loadgen import require_loadgen

        require_loadgen()
    spec = loaded.spec
    if peak is not None and (resume or spec.run.repeats > 1):
        # Each probe's rate depends on the verdicts before it: a search is neither resumable nor repeatable.
        raise SpecError("--find-peak runs each probe once, in a new run: it cannot be combined with --resume or "
                        f"run.repeats > 1 (the spec has repeats: {spec.run.repeats})")
    session = SuiteSession.open(loaded, out_dir, cells, resume=resume, system_file=system_file,
                                new_run_id=new_run_id)
    run_dir = session.run_dir
    ctx = SuiteContext(
        run_id=session.run_id,
        spec_name=spec.name,
        spec_sha256=loaded.sha256,
        base_dir=str(loaded.base_dir),
        keep_samples=spec.run.keep_samples,
        cache_dir=str(cache_dir) if cache_dir else None,
        audit=spec.run.audit if audit is None else audit,
        accuracy_reference=spec.run.accuracy_reference,
        accuracy_samples=spec.run.accuracy_samples,
        engine=engine,
        run_dir=str(run_dir),
        max_memory_bytes=session.max_memory_bytes,
        division=spec.run.division,
    )
    mode = isolation or spec.run.isolation
    result = SuiteResult(ctx.run_id, run_dir, [], [])
    executor = executor or LocalExecutor()
    watches: dict[str, Any] = {}  # job key -> its CellWatch

    def progress_for(job: Job) -> Progress:
        # An executor running cells elsewhere gets a watch that meters nothing on this machine.
        watch = watches[job.key] = session.watch(job.cell, job.repeat, progress, local=executor.local)
        return watch.progress

    def emit(job: Job, rec: ResultRecord) -> None:
        watch = watches.pop(job.key, None) or session.watch(job.cell, job.repeat, progress, local=executor.local)
        rec, path = session.save(watch.finish(rec), job.cell, job.repeat)
        if on_record:
            on_record(rec, path)

    run = dict(isolation=mode, timeout_s=spec.run.cell_timeout_s, progress_for=progress_for)

    def run_one(cell: Cell, repeat: int = 1) -> ResultRecord:
        # one cell, to the end: a peak search picks its next probe from this one's record
        got: list[ResultRecord] = []
        executor.run([Job(cell, repeat)], ctx, **run, emit=lambda job, rec: (emit(job, rec), got.append(rec)))
        return got[0]

    with session:
        if on_start:
            on_start(run_dir, len(session.pending))
        session.measure_idle()
        if peak is None:
            executor.run([Job(cell, repeat) for cell, repeat in session.pending], ctx, **run, emit=emit)
            session.finish()
        else:
            for cell in cells:
                result.peaks.append(run_peak_search(cell, peak, run_one))
    result.paths[:], result.records[:] = session.all_results()
    return result


@dataclass(frozen=True)
class PeakResult:
    """Outcome of one --find-peak search."""

    cell_id: str
    peak_qps: float | None  # highest VALID target_qps; None if no probe was VALID
    peak_record: ResultRecord | None
    probes: list[tuple[float, bool]]  # (target_qps, valid) in probe order
    converged: bool  # the bracket closed to the tolerance within max_probes


def run_peak_search(cell: Cell, options: PeakOptions, run_one: Callable[[Cell], ResultRecord]) -> PeakResult:
    """Search `cell` (a Server cell) for its highest VALID target_qps; every probe is run by `run_one`."""
    if cell.kind != "server":
        raise SpecError(f"--find-peak searches Server cells only; {cell.cell_id} is {cell.kind}")
    search = PeakSearch(float(cell.settings["target_qps"]), options)
    best: ResultRecord | None = None
    while (qps := search.next_probe()) is not None:
        index = len(search.probes)
        probe = records.Probe(search=cell.cell_id, index=index, target_qps=qps, phase=search.phase(),
                              lower_qps=search.lower, upper_qps=search.upper)
        rec = run_one(replace(
            cell,
            cell_id=f"{cell.cell_id}__peak{index:02d}-q{format_number(qps)}",
            settings={**cell.settings, "target_qps": qps},
            probe=probe.model_dump(mode="json"),
        ))
        valid = rec.validity.valid
        search.observe(qps, valid)
        if valid and (best is None or qps >= float(best.scenario.settings["target_qps"])):
            best = rec
    return PeakResult(cell.cell_id, search.lower, best, list(search.probes), search.converged)


__all__ = ["Cell", "SuiteContext", "SuiteResult", "PeakResult", "expand", "preflight", "execute_cell",
           "run_in_worker", "run_suite", "run_peak_search", "error_record", "BackendError"]
