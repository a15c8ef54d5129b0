"""Generative workloads judged by tokens: the spec, lengths, the token loop on the tiny catalog model with ONNX
Runtime, the checks, and whole cells (inline) with their records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchkit.backends.ort_generate import OrtGenerator
from benchkit.checks import generation as gen_checks
from benchkit.errors import SpecError
from benchkit.measure import generate
from benchkit.results import records
from benchkit.spec import parse_spec
from benchkit.workloads import generation

TINY = "gpt2-tiny-generate"


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    return generation.materialize(TINY, tmp_path_factory.mktemp("gencache"))


@pytest.fixture(scope="module")
def ort_gen(graphs):
    g = OrtGenerator({"intra_op_num_threads": 1})
    g.load(graphs)
    yield g
    g.close()


def _spec(scenario: str, tmp_path: Path, workload: str = f"{{name: tiny, catalog: {TINY}}}",
          backend: str = "{name: onnxruntime, options: {intra_op_num_threads: 1}}") -> str:
    text = (f"name: gen\nseed: 5\nworkloads: [{workload}]\nbackends: [{backend}]\nscenarios:\n  - {scenario}\n"
            "run: {isolation: inline, power: {meters: []}}\n")
    (tmp_path / "gen.yaml").write_text(text)
    return text


# -- spec and lengths --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("scenario, message", [
    ("{kind: generative, mode: server, target_qps: 10}", "mode server needs target_ttft_ns, target_tpot_ns"),
    ("{kind: generative, target_qps: 10}", "target_qps apply to mode server only"),
    ("{kind: generative, input_tokens: [9, 3]}", "scenarios[0] (generative).input_tokens"),
    ("{kind: generative, output_tokens: 0}", "scenarios[0] (generative).output_tokens"),
    ("{kind: generative, lengths_file: l.csv, input_tokens: 4}", "either lengths_file or input_tokens"),
    ("{kind: generative, min_token_agreement: 1.5}", "min_token_agreement"),
    ("{kind: generative, moed: server}", "moed: unknown key"),
])
def test_bad_generative_scenarios_name_the_field(scenario, message, tmp_path):
    with pytest.raises(SpecError) as e:
        parse_spec(_spec(scenario, tmp_path), "gen.yaml", tmp_path)
    assert message in str(e.value) and str(e.value).startswith("gen.yaml")


def test_profile_fills_the_form_it_takes(tmp_path):
    loaded = parse_spec(_spec("{kind: generative, mode: server, target_qps: 5, target_ttft_ns: 1000000000, "
                              "target_tpot_ns: 100000000}", tmp_path), "gen.yaml", tmp_path)
    s = loaded.spec.scenarios[0].effective("quick")
    # Server's floor is early stopping's at p99; lengths get their defaults
    assert (s.min_query_count, s.input_tokens, s.output_tokens) == (662, 32, 16)


def test_lengths_are_seeded_and_within_their_distributions(tmp_path):
    loaded = parse_spec(_spec("{kind: generative, input_tokens: [4, 9], output_tokens: 7}", tmp_path), "g", tmp_path)
    s = loaded.spec.scenarios[0].effective("quick")
    a_in, a_out = generate.draw_lengths(s, 500, 1, tmp_path, "g")
    b_in, _ = generate.draw_lengths(s, 500, 1, tmp_path, "g")
    assert np.array_equal(a_in, b_in) and set(a_in.tolist()) == set(range(4, 10)) and set(a_out.tolist()) == {7}


def test_lengths_file_pairs_and_a_bad_line(tmp_path):
    (tmp_path / "l.csv").write_text("input_tokens,output_tokens\n# a comment\n5,2\n11, 3\n")
    loaded = parse_spec(_spec("{kind: generative, lengths_file: l.csv}", tmp_path), "g", tmp_path)
    s = loaded.spec.scenarios[0].effective("quick")
    i, o = generate.draw_lengths(s, 200, 0, tmp_path, "g: scenarios[0]")
    assert set(zip(i.tolist(), o.tolist())) == {(5, 2), (11, 3)}
    (tmp_path / "l.csv").write_text("5,2\n7;x\n")
    with pytest.raises(SpecError, match=r"g: scenarios\[0\].lengths_file: l.csv line 2: expected"):
        generate.draw_lengths(s, 10, 0, tmp_path, "g: scenarios[0]")


def test_generation_and_other_workloads_do_not_mix(tmp_path):
    from benchkit.runner.plan import expand

    loaded = parse_spec(_spec("{kind: offline}", tmp_path), "gen.yaml", tmp_path)
    with pytest.raises(SpecError, match=r"workloads\[0\] \(tiny\) is a generation workload"):
        expand(loaded)
    loaded = parse_spec(_spec("{kind: generative}", tmp_path, workload="{name: tiny-add}"), "gen.yaml", tmp_path)
    with pytest.raises(SpecError, match=r"scenarios\[0\] \(generative\) needs generation workloads"):
        expand(loaded)


# -- the graphs and the ONNX Runtime generator -------------------------------------------------------------------

def test_builds_are_deterministic_and_tokens_depend_on_the_context(graphs):
    assert generation.build(TINY, "decode") == graphs.decode.read_bytes()
    prompts = generation.prompts(graphs.vocab, np.array([12, 12]), 0)
    a, b = (generation.reference_greedy(graphs, p, 12) for p in prompts)
    # not one token repeated, nor an echo of the prompt: a backend cannot produce these without the model
    assert a != b and len(set(a)) > 3 and a[0] != int(prompts[0][-1])


def test_batched_generation_with_a_bound_cache_matches_the_reference(graphs, ort_gen):
    prompts = generation.prompts(graphs.vocab, np.array([10, 10, 10]), 7)
    tokens, state = ort_gen.prefill(prompts)
    got = [tokens]
    for _ in range(9):
        got.append(ort_gen.decode(state, got[-1]))
    ort_gen.release(state)
    got = np.stack(got, axis=1)
    for row, p in zip(got, prompts):
        assert row.tolist() == generation.reference_greedy(graphs, p, 10)


def test_token_loop_gives_every_request_exactly_its_length(graphs, ort_gen):
    in_lens = np.array([5, 9, 5, 5, 9, 3, 5])
    out_lens = np.array([1, 4, 6, 2, 3, 5, 6])
    prompts = generation.prompts(graphs.vocab, in_lens, 1)
    capture = {i: int(out_lens[i]) for i in range(len(prompts))}
    issued, first, done, itl, kept, duration = generate.run_steps(ort_gen, prompts, out_lens, 3, capture=capture)
    assert [len(kept[i]) for i in range(7)] == out_lens.tolist()
    assert itl.size == int((out_lens - 1).sum()) and (first <= done).all() and duration == done.max()
    for i, p in enumerate(prompts):  # batching, grouping and release change nothing in what is generated
        assert kept[i] == generation.reference_greedy(graphs, p, int(out_lens[i]))


def test_a_stream_that_ends_short_fails_the_run(graphs):
    from benchkit.backends.generative import StreamGenerator
    from benchkit.errors import BackendError

    class ShortStreamFault(StreamGenerator):  # fault injection: one token fewer than asked for
        name, concurrency = "short-stream-fault", 2

        def load(self, graphs):
            pass

        def info(self):
            raise NotImplementedError

        def stream(self, prompt, max_tokens):
            yield from range(max_tokens - 1)

    prompts = generation.prompts(graphs.vocab, np.array([4, 4]), 0)
    with pytest.raises(BackendError, match="request [01] streamed 2 tokens, 3 were asked for"):
        generate.run_streams(ShortStreamFault({}), prompts, np.array([3, 3]))


# -- checks --------------------------------------------------------------------------------------------------------

def _measurement(n: int, ttft_ns: int, tpot_ns: int, out: int = 5) -> generate.GenerationMeasurement:
    sched = np.arange(n, dtype=np.int64) * 1_000_000
    first = sched + ttft_ns
    return generate.GenerationMeasurement(
        input_tokens=np.full(n, 8), output_tokens=np.full(n, out), scheduled_ns=sched, issued_ns=sched,
        first_token_ns=first, done_ns=first + (out - 1) * tpot_ns, itl_ns=np.full(n * (out - 1), tpot_ns),
        duration_ns=int(sched[-1] + ttft_ns + out * tpot_ns), stop_reason="min_duration_and_query_count",
        mode="server", final_scheduled_ns=int(sched[-1]))


@pytest.mark.parametrize("n, ttft, tpot, reasons", [
    (700, 1_000, 1_000, []),
    (700, 3_000, 1_000, ["p99 TTFT 3,000 ns exceeds target_ttft_ns 2,000", "early stopping on TTFT"]),
    (700, 1_000, 9_000, ["p99 TPOT 9,000 ns exceeds target_tpot_ns 2,000", "early stopping on TPOT"]),
    (100, 1_000, 1_000, ["early stopping on TTFT", "early stopping on TPOT"]),
])
def test_server_bounds_on_p99_ttft_and_tpot_with_early_stopping(tmp_path, n, ttft, tpot, reasons):
    loaded = parse_spec(_spec("{kind: generative, mode: server, target_qps: 5, target_ttft_ns: 2000, "
                              "target_tpot_ns: 2000}", tmp_path), "g", tmp_path)
    s = loaded.spec.scenarios[0].effective("quick")
    found, es_ttft, es_tpot = gen_checks.bounds(s, _measurement(n, ttft, tpot))
    messages = [f.message for f in found if f.severity == "reason"]
    assert len(messages) == len(reasons) and all(r in m for r, m in zip(reasons, messages))
    assert es_ttft.count == es_tpot.count == n


def test_token_agreement_scores_the_agreeing_prefix():
    ref = {0: [1, 2, 3, 4], 1: [5, 6, 7, 8]}
    a = gen_checks.token_agreement({0: [1, 2, 3, 4], 1: [5, 6, 0, 8]}, ref, 4, 0.9, "ref")
    assert (a.mean_agreement, a.exact_requests, a.passed) == (0.75, 1, False)


# -- whole cells ---------------------------------------------------------------------------------------------------

OFFLINE = ("{kind: generative, input_tokens: [6, 10], output_tokens: [3, 6], min_duration_ms: 150, "
           "min_query_count: 24, warmup_queries: 4, warmup_ms: 0, agreement_requests: 8}")


SERVER = ("{kind: generative, mode: server, target_qps: 400, target_ttft_ns: 5000000000, target_tpot_ns: 1000000000, "
          "input_tokens: 8, output_tokens: 4, min_duration_ms: 100, min_query_count: 60, warmup_queries: 4, "
          "warmup_ms: 0, agreement_requests: 4}")


def _run(tmp_path: Path, scenario: str, **kw) -> records.ResultRecord:
    import benchkit

    _spec(scenario, tmp_path, **kw)
    result = benchkit.run(str(tmp_path / "gen.yaml"), str(tmp_path / "out"), cache_dir=tmp_path / "cache")
    (path,) = result.paths
    return records.load(path)  # what a reader gets back from the file


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> dict[str, tuple[Path, records.ResultRecord]]:
    """One offline and one server record of the tiny model on ONNX Runtime, as files."""
    out = {}
    for name, scenario in (("offline", OFFLINE), ("server", SERVER)):
        d = tmp_path_factory.mktemp(name)
        r = _run(d, scenario)
        out[name] = (next((d / "out").rglob(f"{r.cell_id}.json")), r)
    return out


def test_offline_cell_is_valid_and_judged_by_tokens(measured):
    _, r = measured["offline"]
    assert r.validity.valid, r.validity.reasons
    t = r.metrics.tokens
    assert r.scenario.kind == "generative" and r.metrics.headline.name == "output_tokens_per_s"
    assert t.requests == r.metrics.count >= 24 and t.output_tokens == sum(t.output_lengths) == r.metrics.sample_count
    assert set(t.input_lengths) <= set(range(6, 11)) and set(t.output_lengths) <= set(range(3, 7))
    assert len(t.ttft_samples_ns) == t.requests == len(r.samples_ns) and t.itl_ns.count == t.output_tokens - t.requests
    assert r.metrics.headline.value == pytest.approx(t.output_tokens / (r.metrics.duration_ns / 1e9))
    agreement = r.accuracy.token_agreement
    assert agreement.passed and agreement.mean_agreement == 1.0 and agreement.requests == 8
    assert r.metrics.duration_ns >= 150_000_000


def test_server_cell_reports_ttft_tpot_lateness_and_early_stopping(measured):
    _, r = measured["server"]
    t = r.metrics.tokens
    assert t.mode == "server" and t.requests == 60 and r.metrics.issue_lateness_ns.count == 60
    assert t.early_stopping_ttft.queries_needed > 60 and t.target_tpot_ns == 1_000_000_000
    # within both bounds, but 60 requests are too few for early stopping at p99: only that is wrong
    assert [f.check for f in r.validity.findings if f.severity == "reason"] == ["latency", "latency"]
    assert all("early stopping" in m for m in r.validity.reasons)


def test_show_compare_and_report_read_token_metrics(measured, tmp_path, capsys):
    from benchkit.cli import main
    from benchkit.results.compare import compare_paths
    from benchkit.results.report import write_report

    path, _ = measured["server"]
    assert main(["show", str(path)]) == 0
    shown = capsys.readouterr().out
    assert "TTFT p50/p90/p99/max" in shown and "early stopping TPOT" in shown and "token agreement 1.000" in shown
    c = compare_paths([path], [path])
    names = [m.metric for m in c.pairs[0].metrics]
    assert {"ttft_p99", "tpot_p99", "throughput"} <= set(names)
    assert all(m.ratio == pytest.approx(1.0) for m in c.pairs[0].metrics)
    html = write_report([p for p, _ in measured.values()], tmp_path / "r.html").read_text()
    for kind in ("generative-table", "tokens-load", "token-latency-load"):
        assert f'data-kind="{kind}"' in html


def test_check_bundle_recomputes_a_generative_records_figures(measured):
    from pydantic import TypeAdapter

    from benchkit.checks.generation import figures_problems
    from benchkit.spec import Scenario

    for _, r in measured.values():
        scenario = TypeAdapter(Scenario).validate_python(r.scenario.settings)
        assert figures_problems(r, scenario) == []
        t = r.metrics.tokens
        inflated = t.model_copy(update={"output_tokens_per_s": t.output_tokens_per_s * 1.2})
        bad = r.model_copy(update={"metrics": r.metrics.model_copy(update={"tokens": inflated})})
        assert any(p.startswith("output_tokens_per_s") for p in figures_problems(bad, scenario))


def test_a_backend_that_emits_tokens_without_computing_them_is_invalid(tmp_path, fakes_on_path):
    # a short run: the cheat is fast, and Offline sizes its requests to fill min_duration_ms
    r = _run(tmp_path, OFFLINE.replace("min_duration_ms: 150", "min_duration_ms: 20"), backend="{name: cheat-tokens}")
    assert not r.validity.valid and r.accuracy.token_agreement.mean_agreement < 0.2
    assert any(f.check == "accuracy" and "token agreement" in f.message for f in r.validity.findings)


def test_a_request_longer_than_the_context_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(SpecError, match=r"scenarios\[0\] \(generative\).input_tokens \+ output_tokens: a request "
                                        "of up to 260 tokens .* context of 256"):
        _run(tmp_path, "{kind: generative, input_tokens: 250, output_tokens: 10}")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.json"))


# -- the OpenAI-compatible streaming client, against a real server on 127.0.0.1 ---------------------------------

def test_openai_client_measures_a_streaming_server_by_the_same_rules(tmp_path, graphs):
    from generation_server import serving

    with serving(graphs) as url:
        r = _run(tmp_path, OFFLINE, backend=f"{{name: openai, options: {{url: '{url}', concurrency: 4, "
                                            "precision: fp32}}")
    assert r.validity.valid, r.validity.reasons
    assert r.backend.name == "openai" and r.backend.device == f"remote: {url}"
    assert r.backend.options["model"] == TINY and r.accuracy.token_agreement.mean_agreement == 1.0
    t = r.metrics.tokens
    assert t.output_tokens == sum(t.output_lengths) and t.ttft_ns.count == t.requests >= 24


def test_openai_client_errors_name_the_server(tmp_path, graphs):
    from generation_server import serving

    with serving(graphs) as url:
        r = _run(tmp_path, OFFLINE, backend=f"{{name: openai, options: {{url: '{url}', model: llama}}}}")
    assert r.error is not None and "'llama' is not served at" in r.error.message and r.error.phase == "load"
    r = _run(tmp_path, OFFLINE, backend=f"{{name: openai, options: {{url: '{url}'}}}}")  # stopped by now
    assert r.error is not None and f"cannot reach {url}/models" in r.error.message


@pytest.mark.parametrize("scenario, message", [
    ("{kind: generative, lengths_file: none.csv}", "gen.yaml: scenarios[0] (generative).lengths_file: cannot read"),
    ("{kind: generative, input_tokens: [8, 250], output_tokens: 16}",
     "gen.yaml: scenarios[0] (generative).input_tokens + output_tokens: a request of up to 266 tokens"),
])
def test_validate_refuses_lengths_that_cannot_run(scenario, message, tmp_path, capsys):
    from benchkit.cli import main

    _spec(scenario, tmp_path)
    assert main(["validate", str(tmp_path / "gen.yaml")]) == 2
    err = capsys.readouterr().err
    assert message.replace("gen.yaml", str(tmp_path / "gen.yaml")) in err and "Traceback" not in err


def test_openai_client_on_a_poisson_schedule(graphs):
    from benchkit.backends.openai_stream import OpenAIStream
    from generation_server import serving

    prompts = generation.prompts(graphs.vocab, np.full(12, 6), 3)
    outs = np.full(12, 3, dtype=np.int64)
    offsets = np.cumsum(np.random.default_rng(0).exponential(2e6, 12)).astype(np.int64)  # 500 QPS
    with serving(graphs) as url:
        client = OpenAIStream({"url": url, "concurrency": 4})
        client.load(graphs)
        try:
            issued, first, done, itl, kept, _ = generate.run_streams(client, prompts, outs, offsets=offsets,
                                                                     capture={i: 3 for i in range(12)})
        finally:
            client.close()
    assert (issued >= offsets).all() and (first > offsets).all() and (done >= first).all() and itl.size == 24
    assert all(kept[i] == generation.reference_greedy(graphs, prompts[i], 3) for i in range(12))
