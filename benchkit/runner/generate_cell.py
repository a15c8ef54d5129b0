"""One generative cell, in this process: resolve the graphs, load the generator, warm up, measure by token, check
token agreement, and the record. Every failure becomes an error record, as for every other cell."""

from __future__ import annotations

import time
import traceback
from pathlib import Path

import numpy as np

from benchkit import stats
from benchkit.checks import generation as gen_checks
from benchkit.checks import measurement, provenance
from benchkit.checks.verdict import verdict
from benchkit.errors import BenchkitError, SpecError
from benchkit.measure import generate
from benchkit.results import records
from benchkit.results.records import ResultRecord
from benchkit.runner import assemble
from benchkit.runner.plan import Cell, Progress, SuiteContext

# Seeds of the warmup's requests and of the token-agreement picks, apart from the measured requests' seed.
_WARMUP_SEED_OFFSET = 0x3A
_PICK_SEED_OFFSET = 0xA6


def execute_generative(cell: Cell, ctx: SuiteContext, progress: Progress | None = None) -> ResultRecord:
    """Run one generative cell and return its record (an error record if anything failed)."""
    from benchkit.backends.generative import load_generator_class
    from benchkit.workloads import generation

    started = records.utcnow()
    phase = "resolve"
    gen = info = None
    scenario = cell.scenario

    def step(name: str) -> None:
        nonlocal phase
        phase = name
        if progress:
            progress(cell.cell_id, name)

    try:
        if ctx.engine != "benchkit":
            raise SpecError(f"{cell.origin}: generative scenarios run on benchkit's own engine; MLPerf LoadGen's "
                            "(--engine mlperf) has no token-level scenario here")
        name = cell.workload.catalog_name
        if not generation.is_generation_model(name):
            raise SpecError(f"{cell.origin}: a generative scenario needs a generation workload ("
                            f"{', '.join(sorted(generation.MODELS))}), not {name or cell.workload.model}")
        graphs = generation.materialize(name, Path(ctx.cache_dir) if ctx.cache_dir else None)
        base_dir = Path(ctx.base_dir)

        step("load")
        cls = load_generator_class(cell.backend.name)
        gen = cls(cell.backend.options)
        t0 = time.perf_counter_ns()
        gen.load(graphs)
        load_ns = time.perf_counter_ns() - t0
        info = gen.info()

        step("warmup")
        w = max(int(scenario.warmup_queries), int(scenario.max_batch_size))
        w_in, w_out = generate.draw_lengths(scenario, w, cell.seed + _WARMUP_SEED_OFFSET, base_dir, cell.origin)
        _check_context(w_in, w_out, graphs.n_ctx, cell)
        w_prompts = generation.prompts(graphs.vocab, w_in, cell.seed + _WARMUP_SEED_OFFSET)
        first_ns = None
        t_warm = time.perf_counter_ns()
        n_warm = 0
        rate = 0.0
        while n_warm < scenario.warmup_queries or time.perf_counter_ns() - t_warm < scenario.warmup_ms * 1_000_000 \
                or n_warm == 0:
            wm = generate.measure_generation(gen, scenario.model_copy(update={"mode": "offline"}), w_prompts, w_out,
                                             cell.seed, {}, None, "warmup")
            # the cold start: the first warmup request's first token (a prefill right after load)
            first_ns = first_ns if first_ns is not None else int(wm.first_token_ns.min())
            rate = stats.throughput_per_s(wm.count, wm.duration_ns)
            n_warm += wm.count

        step("measure")
        # Offline is sized from an expected rate, as LoadGen sizes its one query; the warmup's few requests
        # underestimate a batching system's rate, so a run shorter than min_duration_ms is re-sized from its own
        # rate and run again (the short run served as more warmup), at most twice.
        for _ in range(3):
            if scenario.mode == "server":
                offsets, stop_reason = generate.server_schedule(scenario, cell.seed)
                n = int(offsets.size)
            else:
                offsets, stop_reason = None, "min_duration_and_query_count"
                n = generate.request_count(scenario, rate)
                if scenario.max_query_count is not None and n == scenario.max_query_count:
                    stop_reason = "max_query_count"
            in_lens, out_lens = generate.draw_lengths(scenario, n, cell.seed, base_dir, cell.origin)
            _check_context(in_lens, out_lens, graphs.n_ctx, cell)
            prompts = generation.prompts(graphs.vocab, in_lens, cell.seed)
            picks = np.random.default_rng([cell.seed, _PICK_SEED_OFFSET]).choice(
                n, size=min(n, int(scenario.agreement_requests)), replace=False)
            capture = {int(i): min(int(scenario.agreement_tokens), int(out_lens[i])) for i in picks}
            m = generate.measure_generation(gen, scenario, prompts, out_lens, cell.seed, capture, offsets,
                                            stop_reason)
            if scenario.mode == "server" or stop_reason != "min_duration_and_query_count" or \
                    m.duration_ns >= scenario.min_duration_ms * 1_000_000:
                break
            rate = max(2 * rate, stats.throughput_per_s(m.count, m.duration_ns))

        step("accuracy")
        computes = getattr(cls, "computes_tokens", True)
        reference = {i: generation.reference_greedy(graphs, prompts[i], k) for i, k in capture.items()}
        agreement = gen_checks.token_agreement(m.captured, reference, int(scenario.agreement_tokens),
                                               float(scenario.min_token_agreement),
                                               _reference_name())
        record = _record(cell, ctx, started, graphs, info, cls, m, agreement, computes, load_ns=load_ns,
                         first_ns=first_ns or 0, n_warm=n_warm)
    except BaseException as e:  # noqa: BLE001 - every failure becomes a record; KeyboardInterrupt re-raised
        if isinstance(e, KeyboardInterrupt):
            raise
        detail = "" if isinstance(e, BenchkitError) else traceback.format_exc(limit=8)
        record = assemble.error_record(cell, ctx, started, f"{type(e).__name__}: {e}", type(e).__name__, phase,
                                       detail, info=info)
    finally:
        close_error = None
        if gen is not None:
            try:
                gen.close()
            except Exception as e:  # noqa: BLE001 - reported on the record, never hiding the measurement
                close_error = (e, traceback.format_exc(limit=8))
    if close_error is not None:
        record = assemble.close_failed(record, *close_error)
    return record


def _check_context(in_lens: np.ndarray, out_lens: np.ndarray, n_ctx: int, cell: Cell) -> None:
    longest = int((in_lens + out_lens).max())
    if longest > n_ctx:
        raise SpecError(f"{cell.origin}: a request of {longest} tokens (input_tokens + output_tokens) is longer than "
                        f"the model's context of {n_ctx}; lower scenarios' input_tokens or output_tokens")


def _pair_sha256(graphs) -> str:
    """One digest for the workload: SHA-256 over the prefill graph's digest, then the decode graph's."""
    import hashlib

    return hashlib.sha256(f"{graphs.prefill_sha256}{graphs.decode_sha256}".encode()).hexdigest()


def _reference_name() -> str:
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__} CPUExecutionProvider fp32, greedy, one request at a time"


def token_metrics(scenario, m, keep_samples: bool) -> records.TokenMetrics:
    """The record's ``metrics.tokens`` block of a measurement."""
    out_total = int(m.output_tokens.sum())
    tpot = m.tpot_ns
    return records.TokenMetrics(
        mode=scenario.mode, requests=m.count, input_tokens=int(m.input_tokens.sum()), output_tokens=out_total,
        output_tokens_per_s=stats.throughput_per_s(out_total, m.duration_ns),
        requests_per_s=stats.throughput_per_s(m.count, m.duration_ns),
        ttft_ns=stats.summarize(m.ttft_ns), tpot_ns=stats.summarize(tpot) if tpot.size else None,
        itl_ns=stats.summarize(m.itl_ns) if m.itl_ns.size else None,
        ttft_samples_ns=m.ttft_ns.tolist() if keep_samples else None,
        tpot_samples_ns=tpot.tolist() if keep_samples else None,
        input_lengths=m.input_tokens.tolist() if keep_samples else None,
        output_lengths=m.output_tokens.tolist() if keep_samples else None,
        target_ttft_ns=scenario.target_ttft_ns, target_tpot_ns=scenario.target_tpot_ns)


def _record(cell: Cell, ctx: SuiteContext, started, graphs, info, cls, m, agreement, computes: bool, *,
            load_ns: int, first_ns: int, n_warm: int) -> ResultRecord:
    scenario = cell.scenario
    e2e = m.e2e_ns
    bound_findings, es_ttft, es_tpot = gen_checks.bounds(scenario, m)
    tokens = token_metrics(scenario, m, ctx.keep_samples).model_copy(
        update={"early_stopping_ttft": es_ttft, "early_stopping_tpot": es_tpot})
    head = records.Headline(name="output_tokens_per_s", value=tokens.output_tokens_per_s, unit="tokens/s",
                            higher_is_better=True)
    metrics = records.Metrics(
        # a generative run's samples are its output tokens: throughput_per_s is the headline, tokens/s
        latency_ns=stats.summarize(e2e), count=m.count, sample_count=tokens.output_tokens, duration_ns=m.duration_ns,
        throughput_per_s=tokens.output_tokens_per_s, queries_per_s=tokens.requests_per_s, first_inference_ns=first_ns,
        load_ns=load_ns, warmup_queries=n_warm, stop_reason=m.stop_reason, headline=head,
        extra={"max_batch_size": scenario.max_batch_size, "prefill_sha256": graphs.prefill_sha256,
               "decode_sha256": graphs.decode_sha256}, issue_lateness_ns=m.issue_lateness_ns, tokens=tokens)
    prov = provenance.adapter_provenance(cls)
    found = [
        *gen_checks.run_length(scenario, m),
        *measurement.precision_claim(cell.backend.precision, info.precision, cell.backend.allow_precision_mismatch),
        *gen_checks.agreement_findings(agreement, computes),
        *bound_findings,
        *provenance.provenance_findings(prov),
    ]
    acc = records.Accuracy(
        passed=agreement.passed and computes, reference=agreement.reference, precision=info.precision,
        tolerance={"min_token_agreement": agreement.min_agreement}, tolerance_source="constant: the scenario's "
        "min_token_agreement", samples=agreement.requests, seed=cell.seed, pool_positions=agreement.positions,
        token_agreement=agreement)
    binfo = info.model_dump()
    workload = records.WorkloadRecord(
        name=cell.workload.name, source="catalog", catalog=graphs.name, variant="fp32", params=dict(graphs.params),
        model_sha256=_pair_sha256(graphs), model_file=f"{graphs.prefill.name} + {graphs.decode.name}",
        graph_precision="fp32", dims={"n_ctx": graphs.n_ctx})
    return ResultRecord(
        **assemble.provenance(cell, ctx, started, "benchkit"),
        workload=workload,
        backend=records.BackendRecord(**binfo, id=cell.backend.id, claimed_precision=cell.backend.precision,
                                      provenance=prov),
        metrics=metrics,
        samples_ns=e2e.tolist() if ctx.keep_samples else None,
        validity=verdict(found),
        accuracy=acc,
    )


__all__ = ["execute_generative", "token_metrics"]
