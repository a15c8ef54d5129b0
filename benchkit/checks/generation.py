"""Checks of a generative run: its length, the Server form's TTFT and TPOT bounds with early stopping, and token
agreement with the reference runtime. Each returns findings; :mod:`benchkit.checks.verdict` writes the verdict."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from benchkit import stats
from benchkit.checks.latency import CONFIDENCE, LATENESS_WARN_FRACTION
from benchkit.checks.verdict import Finding, reason, warning
from benchkit.results.records import EarlyStopping, TokenAgreement


def run_length(scenario: Any, m: Any) -> list[Finding]:
    """LoadGen's stop rule in requests: both minimums met, unless a maximum stopped the run first (then INVALID)."""
    short = []
    spanned = m.final_scheduled_ns if m.final_scheduled_ns is not None else m.duration_ns
    if spanned < scenario.min_duration_ms * 1_000_000:
        more = " (raise min_query_count: Offline sizes its requests from the warmup's rate)" \
            if scenario.mode == "offline" else ""
        short.append(f"duration {spanned / 1e6:.0f} ms < min_duration_ms {scenario.min_duration_ms}{more}")
    if m.count < scenario.min_query_count:
        short.append(f"{m.count} requests < min_query_count {scenario.min_query_count}")
    if not short:
        return []
    return [reason("stop_rule", f"stopped at {m.stop_reason} before the minimums were met: " + "; ".join(short))]


def _bound(name: str, values: np.ndarray, bound: int, pct: float) -> tuple[list[Finding], EarlyStopping]:
    a = np.sort(values)
    found: list[Finding] = []
    plain = stats.percentile_ns(a, pct)
    if plain > bound:
        found.append(reason("latency", f"p{pct:g} {name} {plain:,} ns exceeds target_{name.lower()}_ns {bound:,} "
                                       "(lower target_qps)"))
    es = stats.early_stopping_server(a, bound, pct, CONFIDENCE)
    if not es.passed:
        found.append(reason("latency", f"early stopping on {name} not satisfied: {es.reason}"))
    block = EarlyStopping(percentile=pct, confidence=CONFIDENCE, count=es.count, queries_needed=es.queries_needed,
                          passed=es.passed, target_latency_ns=bound, overlatency_count=es.overlatency_count,
                          reason=es.reason)
    return found, block


def bounds(scenario: Any, m: Any) -> tuple[list[Finding], EarlyStopping | None, EarlyStopping | None]:
    """Server: the p99 TTFT and p99 TPOT within their bounds, each with LoadGen's early-stopping check (MLPerf's
    LLM rules); issue lateness warned as for the Server scenario. Offline: nothing bounded."""
    if scenario.mode != "server":
        return [], None, None
    pct = float(scenario.target_latency_percentile)
    found, es_ttft = _bound("TTFT", m.ttft_ns, int(scenario.target_ttft_ns), pct)
    tpot = m.tpot_ns
    es_tpot = None
    if tpot.size:
        more, es_tpot = _bound("TPOT", tpot, int(scenario.target_tpot_ns), pct)
        found += more
    late = getattr(m.issue_lateness_ns, "p99", None)
    if late is not None and late > LATENESS_WARN_FRACTION * int(scenario.target_ttft_ns):
        found.append(warning("latency", f"issue lateness p99 {late:,} ns is over {LATENESS_WARN_FRACTION:.0%} of "
                                        "target_ttft_ns: the harness fell behind its arrival schedule (counted in "
                                        "TTFT, as LoadGen does)"))
    return found, es_ttft, es_tpot


def token_agreement(captured: Mapping[int, Sequence[int]], reference: Mapping[int, Sequence[int]],
                    tokens: int, min_agreement: float, reference_name: str) -> TokenAgreement:
    """Each request scores its agreeing prefix: after one wrong token the context differs, so what follows cannot
    be compared; the mean over the requests must reach ``min_agreement``."""
    scores = []
    exact = 0
    for i in sorted(captured):
        got, ref = list(captured[i]), list(reference[i])
        n = len(ref)
        agree = 0
        while agree < n and agree < len(got) and got[agree] == ref[agree]:
            agree += 1
        scores.append(agree / n if n else 1.0)
        exact += agree == n
    mean = float(np.mean(scores)) if scores else 0.0
    return TokenAgreement(passed=bool(scores) and mean >= min_agreement, reference=reference_name,
                          requests=len(scores), tokens=tokens, mean_agreement=mean, min_agreement=min_agreement,
                          exact_requests=exact, positions=sorted(int(i) for i in captured))


def agreement_findings(agreement: TokenAgreement | None, computes_tokens: bool) -> list[Finding]:
    if not computes_tokens:
        return [reason("accuracy", "the backend declares that it emits tokens without computing them")]
    if agreement is None:
        return [reason("accuracy", "no token agreement could be computed")]
    if not agreement.passed:
        return [reason("accuracy", f"token agreement {agreement.mean_agreement:.3f} < min_token_agreement "
                                   f"{agreement.min_agreement:g} over {agreement.requests} requests' first "
                                   f"{agreement.tokens} tokens ({agreement.exact_requests} exact)")]
    return []




def figures_problems(r: Any, scenario: Any) -> list[str]:
    """Every figure of a generative record that its raw token samples, lengths and seeded schedule contradict (for
    ``benchkit check-bundle``): counts, tokens/s, the token statistics, the duration, the Server bounds' verdict."""
    m, t = r.metrics, r.metrics.tokens
    if t is None or not t.ttft_samples_ns or not t.output_lengths or r.samples_ns is None:
        return ["a generative record without its raw token samples and lengths"]
    e2e = np.asarray(r.samples_ns, dtype=np.int64)
    ttft = np.asarray(t.ttft_samples_ns, dtype=np.int64)
    outs = np.asarray(t.output_lengths, dtype=np.int64)
    out = []
    if not (m.count == t.requests == e2e.size == ttft.size == outs.size == len(t.input_lengths or [])):
        out.append(f"request counts disagree: count {m.count}, requests {t.requests}, {e2e.size} latencies, "
                   f"{ttft.size} TTFTs, {outs.size} output lengths")
        return out
    if m.sample_count != t.output_tokens or t.output_tokens != int(outs.sum()):
        out.append(f"output tokens {t.output_tokens} (sample_count {m.sample_count}) but the lengths sum to "
                   f"{int(outs.sum())}")
    rate = stats.throughput_per_s(int(outs.sum()), m.duration_ns)
    for name, value in (("throughput_per_s", m.throughput_per_s), ("output_tokens_per_s", t.output_tokens_per_s),
                        ("headline", m.headline.value)):
        if abs(value - rate) > 1e-6 * max(1.0, rate):
            out.append(f"{name} {value:.6g} but output tokens / duration gives {rate:.6g}")
    if stats.summarize(ttft) != t.ttft_ns:
        out.append("ttft_ns differs from what the TTFT samples give")
    if stats.summarize(e2e) != m.latency_ns:
        out.append("latency_ns differs from what the request latencies give")
    tpot = np.asarray(t.tpot_samples_ns or [], dtype=np.int64)
    if tpot.size != int((outs > 1).sum()) or (tpot.size and stats.summarize(tpot) != t.tpot_ns):
        out.append("tpot_ns differs from what the TPOT samples give")
    if scenario.mode == "server":
        from benchkit.measure.generate import server_schedule

        offsets, _ = server_schedule(scenario, int(r.spec["seed"]))
        if offsets.size != e2e.size:
            out.append(f"{e2e.size} requests, the seeded schedule has {offsets.size}")
        elif m.duration_ns != (end := int((offsets + e2e).max())):
            out.append(f"duration_ns {m.duration_ns} but the schedule and latencies end at {end}")
        # bounds() reads these three of a measurement; lateness only warns, and it is not re-derivable
        from types import SimpleNamespace

        found, es_ttft, es_tpot = bounds(scenario, SimpleNamespace(ttft_ns=ttft, tpot_ns=tpot, issue_lateness_ns=None))
        if (es_ttft, es_tpot) != (t.early_stopping_ttft, t.early_stopping_tpot):
            out.append("early stopping on TTFT or TPOT differs from what the samples give")
        if r.validity.valid and any(f.severity == "reason" for f in found):
            out.append(f"VALID, yet the samples say: {next(f.message for f in found if f.severity == 'reason')}")
    elif m.duration_ns != int(e2e.max()):
        out.append(f"duration_ns {m.duration_ns} but the last request ends at {int(e2e.max())} (Offline issues all "
                   "at the start)")
    return out


__all__ = ["run_length", "bounds", "token_agreement", "agreement_findings", "figures_problems"]
