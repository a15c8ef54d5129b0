"""One cell, in this process: resolve, load, stage, warm up, measure, check, audit, and its record.

This is what a worker process runs (:mod:`benchkit.runner.child`), and what
``--inline`` runs in the benchkit process. Every failure becomes an error
record, never an exception (``KeyboardInterrupt`` aside). Each check hands
back typed findings; the verdict is written once, by
:func:`benchkit.checks.verdict.verdict`.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path

import numpy as np

from benchkit import stats
from benchkit.backends import WorkloadInfo, load_backend_class
from benchkit.checks import accuracy, audits, boundary, divisions, measurement, outputs, provenance
from benchkit.checks.verdict import Finding, verdict, warning
from benchkit.errors import BenchkitError
from benchkit.machine import memory
from benchkit.measure import measure, run_engine, timed_call, warmup
from benchkit.results import records
from benchkit.results.records import ResultRecord
from benchkit.runner import assemble
from benchkit.runner.plan import Cell, Progress, SuiteContext
from benchkit.spec import AUDITED_PROFILES

# Distinct input sets cycled through during a run: enough that a runtime
# cannot serve repeated identical inputs from a cache, bounded in memory.
MAX_DISTINCT_INPUTS = 16
INPUT_POOL_BYTES = 256 << 20


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

    if cell.kind == "generative":
        from benchkit.runner.generate_cell import execute_generative

        return execute_generative(cell, ctx, progress)
    started = records.utcnow()
    mem_start = memory.start()
    phase = _Phase(cell.cell_id, progress)
    wl = backend = info = m = None
    effective_batch = None
    calls_per_query = 1
    kept: dict = {}  # what the record of a measurement needs, as the phases produce it
    scenario, bspec = cell.scenario, cell.backend
    try:
        wl = resolve(cell.workload, Path(ctx.base_dir), cell.origin, Path(ctx.cache_dir) if ctx.cache_dir else None)
        asked = scenario.samples_per_call
        shapes, effective_batch = wl.call_shapes(asked)
        calls_per_query = measurement.calls_per_query(scenario, effective_batch)
        per_call = max(1, wl.bytes_per_call(asked))
        n_inputs = int(max(1, min(MAX_DISTINCT_INPUTS, INPUT_POOL_BYTES // per_call)))
        feeds, _ = wl.make_feeds(asked, n_inputs, cell.seed)
        cost, cost_warning = assemble.workload_cost(wl, effective_batch)

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
        staged, stage_ns = _staged(backend, feeds)
        phase("first_inference")  # the first run() is its own phase: a runtime failing there did not fail stage()
        first_ns = timed_call(backend, staged[0])

        phase("warmup")
        t_warm = time.perf_counter_ns()
        n_warm = warmup(backend, staged, scenario.warmup_ms, scenario.warmup_queries)
        call_ns = (time.perf_counter_ns() - t_warm) // max(1, n_warm)
        if ctx.engine == "mlperf":
            # LoadGen sizes its run from an expected call time: a stall during warmup must not inflate it.
            call_ns = min(call_ns, int(np.median([timed_call(backend, staged[i % len(staged)]) for i in range(16)])))

        phase("measure")
        log_dir = Path(ctx.run_dir) / f"{cell.cell_id}.mlperf" if ctx.run_dir else None
        computes = getattr(cls, "computes_outputs", True)
        capture = audits.capture_positions(scenario.min_duration_ms * 1_000_000 // max(1, call_ns * calls_per_query),
                                           cell.seed) if computes else ()
        if calls_per_query > 1:  # the grouped loop captures by call: the last call of each chosen query
            capture = frozenset(q * calls_per_query + calls_per_query - 1 for q in capture)
        m = run_engine(ctx.engine, scenario, backend, staged, effective_batch, cell.seed, call_ns, log_dir, capture,
                       calls_per_query)
        kept = dict(cost=cost, cost_warning=cost_warning, cls=cls, load_ns=load_ns, first_ns=first_ns, n_warm=n_warm,
                    stage_ns=stage_ns, fetch_ns=list(m.fetch_ns))

        phase("check")
        r = backend.run(staged[0])
        backend.synchronize()
        t_fetch = time.perf_counter_ns()
        outs = backend.fetch(r)
        fetch_ns = [*m.fetch_ns, time.perf_counter_ns() - t_fetch]
        output_findings = outputs.findings(outs, wl, effective_batch, expect_all=computes)

        phase("accuracy")
        cache = Path(ctx.cache_dir) if ctx.cache_dir else None
        audited = ctx.audit or cell.profile in AUDITED_PROFILES
        picks = _accuracy_picks(len(staged), None if audited else ctx.accuracy_samples, cell.seed)
        acc, _ = accuracy.check(
            backend, [staged[i] for i in picks], [feeds[i] for i in picks], wl, claimed=bspec.precision,
            effective=info.precision,
            allow_mismatch=bspec.allow_precision_mismatch, reference=ctx.accuracy_reference, seed=cell.seed,
            batch=effective_batch, cache_dir=cache, positions=picks)

        # Every cell: the measured loop's own outputs against the reference, and the timing boundary.
        phase("audit")
        integrity = _integrity(cell, ctx, backend, wl, info, feeds, staged, m, outs, asked, effective_batch, call_ns,
                               acc)
        stage_ns += integrity.stage_ns
        fetch_ns += integrity.fetch_ns
        audit_block = records.Audits(timed_outputs=integrity.loop, boundary=integrity.boundary)
        if audited:
            audit_block = _audit(cell, backend, wl, staged, m, asked, n_inputs, effective_batch, audit_block)

        phase("record")
        record = _record(cell, ctx, started, wl, info, effective_batch, m, cost, cost_warning, acc, audit_block,
                         audited, output_findings, cls, load_ns=load_ns, first_ns=first_ns, n_warm=n_warm,
                         stage_ns=stage_ns, fetch_ns=fetch_ns)
    except BaseException as e:  # noqa: BLE001 - every failure becomes a record; KeyboardInterrupt re-raised below
        if isinstance(e, KeyboardInterrupt):
            raise
        detail = "" if isinstance(e, BenchkitError) else traceback.format_exc(limit=8)
        message = f"{type(e).__name__}: {e}"
        record = _kept_measurement(cell, ctx, started, wl, info, effective_batch, m, kept, phase.name, message,
                                   type(e).__name__, detail) if m is not None else None
        if record is None:
            record = assemble.error_record(cell, ctx, started, message, type(e).__name__, phase.name,
                                           detail, wl=wl, info=info, effective_batch=effective_batch)
    finally:
        close_error = None
        device_peak = memory.device_peak(backend)  # before close(): the adapter's counters go with it
        if backend is not None:
            try:
                backend.close()
            except Exception as e:  # noqa: BLE001 - a close failure must not hide the measurement, nor go unseen
                close_error = (e, traceback.format_exc(limit=8))
    if close_error is not None:
        record = assemble.close_failed(record, *close_error)
    return record.model_copy(update={"memory": memory.block(mem_start, device_peak)})


def _record(cell: Cell, ctx: SuiteContext, started, wl, info, effective_batch: int, m, cost, cost_warning,
            acc, audit_block, audited: bool, output_findings: list[Finding], cls: type, *, load_ns: int,
            first_ns: int, n_warm: int, stage_ns: list[int], fetch_ns: list[int],
            decide_division: bool = True) -> ResultRecord:
    """The measured record: every check's findings, in the order a reader expects them, then one verdict."""
    bspec, scenario = cell.backend, cell.scenario
    sorted_ns = np.sort(m.samples_ns)
    lat = stats.summarize(m.samples_ns)
    latency_findings, lat_verdict = measurement.latency(scenario, m, sorted_ns)
    peak, bandwidth, peak_source = assemble.device_peak(bspec, info, info.precision)
    head = assemble.headline(scenario, m, sorted_ns)
    metrics = assemble.metrics_block(cell, m, lat, head, load_ns=load_ns, first_ns=first_ns, n_warm=n_warm,
                                     cost=cost, peak=peak, early_stopping=lat_verdict.early_stopping,
                                     stage_ns=stage_ns, fetch_ns=fetch_ns)
    prov = provenance.adapter_provenance(cls)
    found: list[Finding] = [
        *measurement.run_length(scenario, m),
        *measurement.in_flight(m),
        *measurement.query_size(scenario, effective_batch, m.samples_per_query),
        *measurement.precision_claim(bspec.precision, info.precision, bspec.allow_precision_mismatch),
        *output_findings,
        *accuracy.findings(acc, required=audited),
        *audits.findings(audit_block),
        *latency_findings,
        *measurement.spread(lat, cell.profile),
        *measurement.headline_stability(m.samples_ns, head, scenario, cell.profile),
        *measurement.drift(m.samples_ns, cell.profile),
        *([warning("cost", cost_warning)] if cost_warning else []),
        # physically possible: no more FLOP/s than the device can do (a peak is required under certify)
        *measurement.check_achieved_flops(metrics.achieved_flops_per_s, peak, peak_source,
                                          require_peak=cell.profile in AUDITED_PROFILES),
        # what ran is what the adapter says ran
        *provenance.provenance_findings(prov),
        *_claims(info, prov, cls),
    ]
    binfo = info.model_dump()
    binfo["peak_flops_per_s"] = peak
    record = ResultRecord(
        **assemble.provenance(cell, ctx, started, m.engine),
        workload=assemble.workload_block(wl, effective_batch, cost),
        backend=records.BackendRecord(**binfo, id=bspec.id, claimed_precision=bspec.precision,
                                      memory_bandwidth_bytes_per_s=bandwidth, peak_source=peak_source,
                                      provenance=prov),
        metrics=metrics,
        samples_ns=m.samples_ns.tolist() if ctx.keep_samples else None,
        validity=verdict(found),
        accuracy=acc,
        audits=audit_block,
    )
    if not decide_division:
        return record
    division = divisions.decide(record, divisions.standard_build(wl, ctx.cache_dir), ctx.division)
    return assemble.with_findings(record, divisions.findings(division), division=division)


def _kept_measurement(cell: Cell, ctx: SuiteContext, started, wl, info, effective_batch: int, m, kept: dict,
                      phase: str, message: str, etype: str, detail: str) -> ResultRecord | None:
    """The record of a cell whose measurement finished but a later step (output check, accuracy gate, audit,
    record assembly) raised: the metrics are kept and the record is INVALID, naming the step. None when even this
    record cannot be written (the caller then writes an error record)."""
    from benchkit.checks.verdict import reason

    try:
        record = _record(cell, ctx, started, wl, info, effective_batch, m, kept["cost"], kept["cost_warning"], None,
                         records.Audits(), False,
                         [reason(phase, f"{phase} failed after the measurement (the metrics are kept): {message}")],
                         kept["cls"], load_ns=kept["load_ns"], first_ns=kept["first_ns"], n_warm=kept["n_warm"],
                         stage_ns=kept["stage_ns"], fetch_ns=kept["fetch_ns"], decide_division=False)
    except Exception:  # noqa: BLE001 - the error record below still says what failed first
        return None
    return record.model_copy(update={"error": records.ErrorInfo(type=etype, message=message, phase=phase,
                                                                 detail=detail[-4000:])})


def _claims(info, prov, cls: type) -> list[Finding]:
    """The runtime version and device the adapter reports, against this machine; a remote server's cannot be."""
    if info.endpoint is not None:  # which also makes the result open unless the server vouches for the model
        return [warning("provenance.remote", f"runtime {info.version!r} and device {info.device!r} are what the "
                        "server reports: benchkit cannot inspect a remote machine")]
    return [*provenance.check_runtime_claims(info, prov.distribution, cls),
            *provenance.check_device_claims(info, provenance.probe_accelerators())]


def _accuracy_picks(pool: int, samples: int | None, seed: int) -> list[int]:
    """Which pool inputs the accuracy gate compares: all of them, or ``samples`` seeded positions across the pool
    (never simply the first ones: an adapter honest on the first inputs only must not pass)."""
    if samples is None or samples >= pool:
        return list(range(pool))
    return sorted(int(i) for i in np.random.default_rng(seed).choice(pool, size=samples, replace=False))


def _staged(backend, feeds: list) -> tuple[list, list[int]]:
    """The pool staged, each stage() timed: the untimed phases are measured, not trusted."""
    staged, took = [], []
    for f in feeds:
        t0 = time.perf_counter_ns()
        staged.append(backend.stage(f))
        took.append(time.perf_counter_ns() - t0)
    return staged, took


class _Integrity:
    """What every cell checks of its own measurement: the loop's outputs and the timing boundary."""

    def __init__(self, loop: records.Audit, boundary: records.Audit | None, stage_ns: list[int],
                 fetch_ns: list[int]) -> None:
        self.loop, self.boundary, self.stage_ns, self.fetch_ns = loop, boundary, stage_ns, fetch_ns


# Never-seen queries timed end to end: enough for a stable median, about half a second of calls at most.
_BOUNDARY_QUERIES = (8, 32)
_BOUNDARY_BUDGET_NS = 500_000_000
_BOUNDARY_SEED_OFFSET = 0xB0DA


def _integrity(cell: Cell, ctx: SuiteContext, backend, wl, info, feeds: list, staged: list, m, outs: list,
               asked: int, effective_batch: int, call_ns: int, acc) -> _Integrity:
    bspec = cell.backend
    # the loop's outputs are held to the tolerance the gate applied (derived from the standard's own build below fp32)
    tol = accuracy.Tolerance(**acc.tolerance) if acc is not None and acc.tolerance else \
        accuracy.tolerance_for(bspec.precision, info.precision, bspec.allow_precision_mismatch)[1]

    def compare(got, refs):
        return accuracy.compare_outputs(got, refs, wl.output_names, tol, accuracy.is_classifier(wl))

    refs, why_not = None, None
    if not getattr(type(backend), "computes_outputs", True):
        why_not = f"the {backend.name} backend computes no outputs"
    elif m.captured:
        try:
            refs, _, _ = accuracy.reference_outputs(wl, feeds, ctx.accuracy_reference, cell.seed,
                                                    Path(ctx.cache_dir) if ctx.cache_dir else None)
        except BenchkitError as e:
            why_not = f"the reference backend failed: {e}"
    loop = audits.loop_outputs(m.captured, len(staged), refs, compare, why_not)

    lo, hi = _BOUNDARY_QUERIES
    n = int(min(hi, max(lo, _BOUNDARY_BUDGET_NS // max(1, 4 * call_ns))))  # timed call, query, wait, settling call
    out_bytes = sum(int(np.asarray(a).nbytes) for a in outs)
    stage_ns: list[int] = []
    fetch_ns: list[int] = []
    # A failed pass is confirmed by a second one on other never-seen inputs before it counts: a burst of load on a
    # shared machine can upset one pass's medians; work outside the timed region fails every pass.
    for attempt in range(2):
        fresh = audits.fresh_inputs(wl, asked, n, cell.seed + _BOUNDARY_SEED_OFFSET + attempt)
        e2e = boundary.time_end_to_end(backend, fresh, staged)
        del fresh
        stage_ns += e2e.stage_ns
        fetch_ns += e2e.fetch_ns
        audit = boundary.audit_boundary(
            e2e.timed_ns, e2e.stage_ns, e2e.fetch_ns, e2e.end_to_end_ns, input_bytes=wl.bytes_per_call(asked),
            output_bytes=out_bytes, tensors=len(wl.inputs) + len(outs),
            allowance=boundary.allowance_for(info.device, served=info.endpoint is not None), control_ns=e2e.control_ns)
        if audit.passed:
            break
    figures = {**audit.figures(), "passes": attempt + 1}
    block = records.Audit(passed=audit.passed, figures=figures,
                          summary="; ".join(f.message for f in audit.findings) + " (confirmed on a second pass)" if
                          not audit.passed else
                          f"untimed phases {audit.untimed_share:.1%} of fresh queries' end-to-end time (plausible: "
                          f"{audit.plausible_share:.1%}); fresh end-to-end p50 {audit.fresh_ratio:.2f}x the timed p50")
    return _Integrity(loop, block, stage_ns, fetch_ns)


def _audit(cell: Cell, backend, wl, staged: list, m, asked: int, n_inputs: int, effective_batch: int,
           block: records.Audits) -> records.Audits:
    """The compliance audits of --audit and the certify profile, after the measurement, outside its timed region."""
    # Enough never-seen inputs for stable medians, within the input pool's memory bound.
    n_fresh = int(max(8, min(128, INPUT_POOL_BYTES // max(1, wl.bytes_per_call(asked)))))
    fresh = [backend.stage(f) for f in audits.fresh_inputs(wl, asked, n_fresh, cell.seed)]
    repeated = audits.repeated_input(backend, staged[0], fresh)
    del fresh
    alt_seed = cell.seed + audits.ALTERNATE_SEED_OFFSET
    alt_feeds, _ = wl.make_feeds(asked, n_inputs, alt_seed)
    alt_staged = [backend.stage(f) for f in alt_feeds]
    warmup(backend, alt_staged, cell.scenario.warmup_ms, cell.scenario.warmup_queries)
    m_alt = measure(cell.scenario, backend, alt_staged, effective_batch, alt_seed)
    del alt_staged
    # The standard seed again, right after the alternate pass and a quarter as long: a load that changed between the
    # measured run and the alternate pass moves this one too, and is not held against the inputs.
    sc = cell.scenario
    short = sc.model_copy(update={"min_duration_ms": max(1, sc.min_duration_ms // audits.RECHECK_FRACTION),
                                  "min_query_count": max(1, sc.min_query_count // audits.RECHECK_FRACTION)})
    m_re = measure(short, backend, staged, effective_batch, cell.seed)
    h = assemble.headline(cell.scenario, m)
    h_alt = assemble.headline(cell.scenario, m_alt)
    alternate = audits.alternate_seed(m.samples_ns, m_alt.samples_ns, audits.ALTERNATE_SEED_PERCENTILE, h.name,
                                      h.value, h_alt.value, alt_seed, recheck_ns=m_re.samples_ns)
    return block.model_copy(update={"repeated_input": repeated, "alternate_seed": alternate})


__all__ = ["execute_cell", "Progress", "MAX_DISTINCT_INPUTS", "INPUT_POOL_BYTES"]
