"""The conformance kit: every built-in adapter passes it; sloppy and leaky adapters fail the matching checks."""

from __future__ import annotations

import json
import textwrap

import pytest

from benchkit.checks.provenance import probe_accelerators
from benchkit.errors import BackendError, BackendUnavailable
from benchkit.conformance.kit import (LONG_RUN_CALLS, LONG_RUN_FETCHES, LONG_RUN_POOL, MICRO_WORKLOADS, check_adapter,
                                      check_names, long_run_plan)

from conftest import ROOT, run_cli, run_pytest_inprocess


def _available(name: str) -> str | None:
    from benchkit.backends.registry import load_backend_class

    try:
        load_backend_class(name)({}).close()
    except BackendUnavailable as e:
        return str(e)
    return None


# null: exempt from output, precision and unsupported-operator checks (computes_outputs = False), see testing.py
@pytest.mark.parametrize("name", ["onnxruntime", "onnx-reference", "openvino", "torch", "null"])
def test_builtin_adapter_passes(name):
    why = _available(name)
    if why:
        pytest.skip(why)
    report = check_adapter(name, cycles=6)
    assert report.passed, report.summary()
    by = {r.name: r for r in report.results}
    assert [r.name for r in report.results] == check_names()
    if name == "null":
        assert all(by[c].status == "skipped" for c in ("batch", "long-run", "boundary", "unsupported-operator"))
    else:
        assert all(r.status == "passed" for r in report.results), report.summary()
        assert by["workload[gemm]"].figures["max_rel_error"] < 1e-4
        assert "BackendError" in by["unsupported-operator"].detail


def test_onnxruntime_is_judged_against_onnx_reference():
    report = check_adapter("onnxruntime", only=["workload[softmax]"])
    (r,) = report.results
    assert r.status == "passed" and r.figures["reference"].startswith("onnx-reference")


def test_leak_is_caught(fakes_on_path):
    report = check_adapter("leaky", cycles=6, rss_growth_limit_mib=32, only=["load-close"])
    (r,) = report.results
    assert r.status == "failed" and r.figures["growth_mib"] > 32, r
    assert "close() does not release the model" in r.detail


def test_sloppy_adapter_fails_options_and_unsupported_operator(fakes_on_path):
    report = check_adapter("sloppy", only=["options", "unsupported-operator", "workload[gemm]"])
    by = {r.name: r for r in report.results}
    assert by["options"].status == "failed" and "accepted silently" in by["options"].detail
    assert by["unsupported-operator"].status == "failed"
    assert "raised RuntimeError" in by["unsupported-operator"].detail
    assert by["workload[gemm]"].status == "passed"  # its numbers are right; its errors are not
    assert not report.passed


def test_precision_cheat_fails_the_workload_checks(fakes_on_path):
    report = check_adapter("cheat-precision", only=["workload[gemm]"])
    (r,) = report.results
    assert r.status == "failed" and "outputs differ" in r.detail and r.figures["max_rel_error"] > 1e-3


def test_zeros_cheat_fails_the_unfetched_calls_check(fakes_on_path):
    (r,) = check_adapter("cheat-zeros", only=["workload[mlp]"]).results
    assert r.status == "failed" and "not fetched" in r.detail


# Each issue-13 cheat (tests/fakes/benchkit_cheating_adapters.py) and the kit check that must catch it.
CHEATS = [
    ("cheat-stage", {}, "boundary"),
    ("cheat-stage-spin", {}, "boundary"),
    ("cheat-fetch", {}, "boundary"),
    ("cheat-async", {}, "boundary"),
    ("cheat-cache", {}, "boundary"),
    ("cheat-repeat-bypass", {}, "boundary"),
    ("cheat-first-inputs", {}, "long-run"),
    ("cheat-stale", {}, "long-run"),
    ("cheat-stale", {"stale_after": 250}, "long-run"),  # honest far past every warm-up and audit window
    ("cheat-zeros", {}, "long-run"),
    ("cheat-partial-batch", {}, "batch"),
    ("cheat-precision", {}, "workload[gemm]"),
    ("cheat-pruned-int8", {}, "workload[mlp]"),
    ("cheat-false-info", {}, "claims"),
]


@pytest.mark.parametrize("name,options,check", CHEATS, ids=[f"{n}{o or ''}-{c}" for n, o, c in CHEATS])
def test_cheat_fails_its_check(fakes_on_path, name, options, check):
    report = check_adapter(name, options, only=[check])
    (r,) = report.results
    assert r.status == "failed", r
    assert r.figures and not report.passed, r
    f = r.figures
    if check == "boundary":  # every attempt failed, on the audit's own figures
        assert f["attempts"] == 3 and (f["untimed_p50_ns"] > f["allowance_ns"] or f["fresh_ratio"] > 3), f
    elif check == "long-run":
        assert f["calls"] == LONG_RUN_CALLS and f["wrong_calls"], f
        stale_after = options.get("stale_after", 64) if name == "cheat-stale" else None
        if stale_after:  # right until it goes stale, wrong after
            assert all(c >= stale_after for c in f["wrong_calls"]) and max(f["fetched_calls"]) in f["wrong_calls"]
    elif check == "batch":
        assert f["wrong_samples"] and all(0 not in s for s in f["wrong_samples"].values()), f  # the first is right
    elif check == "claims":
        assert "reports onnxruntime 9.9.0 but" in r.detail, r.detail
        if not any(a.vendor == "NVIDIA" for a in probe_accelerators()):  # on an NVIDIA machine, only the model differs
            assert "no NVIDIA device is present" in r.detail, r.detail


@pytest.mark.parametrize("name", ["onnxruntime", "spin-honest"])
def test_honest_controls_pass_every_check(fakes_on_path, name):
    report = check_adapter(name, cycles=4)
    assert [r.name for r in report.results] == check_names()
    assert all(r.status == "passed" for r in report.results), report.summary()
    by = {r.name: r for r in report.results}
    assert by["long-run"].figures["fetched_calls"][-1] == LONG_RUN_CALLS - 1
    assert by["boundary"].figures["ladder"][-1]["resolution"] >= 2
    assert len(by["batch"].figures["ran"]) == 2 * len(MICRO_WORKLOADS)


def test_boundary_is_inconclusive_where_the_work_cannot_show(monkeypatch):
    # One tiny gemm: its work never exceeds the transfer allowance, so the audit cannot see work moved out.
    monkeypatch.setattr("benchkit.conformance.kit.BOUNDARY_LADDER", ({"m": 1, "n": 16, "k": 16},))
    (r,) = check_adapter("onnxruntime", only=["boundary"]).results
    assert r.status == "skipped" and r.detail.startswith("inconclusive"), r
    assert len(r.figures["ladder"]) == 2 and all(s["resolution"] == 0 for s in r.figures["ladder"])  # climbed twice


@pytest.mark.parametrize("seed", [0, 1, 20240601])
def test_long_run_plan(seed):
    plan = long_run_plan(LONG_RUN_CALLS, LONG_RUN_POOL, LONG_RUN_FETCHES, seed)
    order, fetched = plan.inputs, sorted(plan.fetched)
    assert len(order) == LONG_RUN_CALLS and all(a != b for a, b in zip(order, order[1:]))  # never back to back
    assert len(fetched) == LONG_RUN_FETCHES and 0 not in plan.fetched and fetched[-1] == LONG_RUN_CALLS - 1
    assert all(b - a >= 2 for a, b in zip(fetched, fetched[1:]))  # each fetched call follows an un-fetched one
    never_seen = [i for i in order if i >= LONG_RUN_POOL]
    assert sorted(never_seen) == list(range(LONG_RUN_POOL, LONG_RUN_POOL + plan.never_seen))  # each runs once
    assert all(order[c] >= LONG_RUN_POOL for c in fetched[1::2])
    assert len({order[c] for c in fetched[::2]} - set(range(4))) >= 2  # pool inputs past the first four are looked at


def test_extra_precision_check_reports_what_ran():
    if _available("openvino"):
        pytest.skip("openvino not installed")
    (r,) = check_adapter("openvino", precisions=["bf16"], only=["precision[bf16]"]).results
    import openvino as ov

    if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        assert r.status == "passed"
    else:
        assert r.status == "failed" and "precision not honoured: claimed bf16, the adapter reports fp32" in r.detail


def test_bad_arguments_are_benchkit_errors():
    with pytest.raises(BackendError, match="no backend 'nope' is registered"):
        check_adapter("nope")
    with pytest.raises(BackendError, match="workloads: resnet not among"):
        check_adapter("null", workloads=["resnet"])
    assert set(MICRO_WORKLOADS) == {"tiny-add", "gemm", "mlp", "conv2d", "attention", "layernorm", "softmax"}


def _cli(*args):
    return run_cli(*args, cwd=ROOT)  # in this process: the subject is the command's verdict and exit code


def test_cli_exit_codes(fakes_on_path):
    ok = _cli("check-adapter", "null", "--cycles", "2", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["passed"] is True
    bad = _cli("check-adapter", "sloppy", "--workload", "tiny-add", "--cycles", "2")
    assert bad.returncode == 1 and "FAILED" in bad.stdout and "options" in bad.stderr
    for args, msg in ((["nope"], "no backend 'nope'"), (["null", "--options", "[1]"], "expected a JSON object"),
                      (["onnxruntime", "--options", '{"providers": ["NoSuchExecutionProvider"]}'],
                       "'NoSuchExecutionProvider' is not in this onnxruntime build"),
                      (["null", "--options", "{x"], "--options: not valid JSON")):
        r = _cli("check-adapter", *args)
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_pytest_plugin_and_factory(tmp_path):
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["benchkit.conformance.kit"]\n')
    (tmp_path / "test_vendor.py").write_text(textwrap.dedent("""
        from benchkit.conformance.kit import conformance_tests

        test_null = conformance_tests("null", cycles=2, workloads=["tiny-add"])

        def test_fixture(benchkit_conformance):
            assert benchkit_conformance("onnxruntime", only=["registry"]).passed
    """))
    r = run_pytest_inprocess(tmp_path, "-q", "-p", "no:cacheprovider", str(tmp_path))  # pytest in this process
    assert r.returncode == 0, r.stdout + r.stderr
    # registry, options, workload[tiny-add], coverage, claims, load-close pass; batch, long-run, boundary and
    # unsupported-operator skip (null computes nothing); + fixture
    assert "7 passed, 4 skipped" in r.stdout, r.stdout


@pytest.mark.parametrize("provider", ["CUDAExecutionProvider", "TensorrtExecutionProvider", "OpenVINOExecutionProvider",
                                      "DmlExecutionProvider", "CoreMLExecutionProvider"])
def test_onnxruntime_provider_missing_from_the_build_is_a_clear_error(provider):
    import onnxruntime as ort

    from benchkit.backends.onnxruntime import OnnxRuntimeBackend

    if provider in ort.get_available_providers():
        pytest.skip(f"this onnxruntime build has {provider}")
    with pytest.raises(BackendUnavailable, match=f"providers: '{provider}' is not in this onnxruntime build "
                                                  r"\(available: .*CPUExecutionProvider"):
        OnnxRuntimeBackend({"providers": [provider, "CPUExecutionProvider"]})
