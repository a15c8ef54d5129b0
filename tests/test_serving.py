"""The `oip` adapter against real servers: KServe's ModelServer serving ONNX Runtime on 127.0.0.1, REST and gRPC.

One server process per module serves the good model and its broken copies (``tests/oip_server.py``); a second
one exits mid-run. Cells run inline (the subject is the adapter and its records, not worker isolation)."""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint

import numpy as np
import pytest

from benchkit.backends import registry
from benchkit.backends.base import WorkloadInfo
from benchkit.errors import BackendError
from benchkit.results import records

import oip_server
from conftest import run_cli

needs_serving = pytest.mark.skipif(oip_server.unavailable_reason() is not None,
                                   reason=str(oip_server.unavailable_reason()))


@pytest.fixture(autouse=True)
def _oip_registered(monkeypatch):
    """The adapter through its entry point; an install made before the entry point existed gets it added here."""
    eps = registry._entry_points()
    if "oip" not in eps:
        ep = EntryPoint("oip", "benchkit.backends.oip:OipBackend", registry.GROUP)
        monkeypatch.setattr(registry, "_entry_points", lambda: {**eps, "oip": ep})


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from benchkit.workloads import catalog

    cache = tmp_path_factory.mktemp("cache")
    return catalog.materialize("tiny-add", None, "fp32", cache_dir=cache), cache


@pytest.fixture(scope="module")
def servers(model):
    path, _ = model
    good = oip_server.OipServer(path, faults=oip_server.FAULTS, after=40)
    dying = oip_server.OipServer(path, die_after=60)
    try:
        good.launch(), dying.launch()  # side by side: each takes seconds to import kserve
        yield good.wait_ready(), dying.wait_ready()
    finally:
        good.stop()
        dying.stop()


def _spec(tmp, backends: str, scenarios: str) -> None:
    (tmp / "s.yaml").write_text(f"""
name: served
seed: 5
workloads: [{{name: tiny-add}}]
backends:
{backends}
scenarios:
{scenarios}
run: {{profile: quick}}
""")


def _run(tmp, cache):
    proc = run_cli("run", "s.yaml", "--inline", "--out", "out", "--cache-dir", cache, cwd=tmp)
    return proc, {p.stem: records.load(p) for p in (tmp / "out").rglob("*.json")}


SHORT = "min_duration_ms: 120, min_query_count: 20, warmup_ms: 10, warmup_queries: 2"


@needs_serving
def test_binds_loopback_only(servers):
    for srv in servers:
        if srv.proc.poll() is not None:
            continue  # the dying server, after the fault test ended it
        addrs = srv.listening()
        assert {a.rsplit(":", 1)[1] for a in addrs} == {str(srv.http_port), str(srv.grpc_port)}, addrs
        assert all(a.rsplit(":", 1)[0] in ("127.0.0.1", "::ffff:127.0.0.1") for a in addrs), addrs


@needs_serving
def test_served_rest_and_grpc_records(servers, model, tmp_path):
    good, _ = servers
    _, cache = model
    _spec(tmp_path, f"""
  - {{name: oip, label: rest, options: {{url: "{good.rest_url}", protocol: rest, model: m}}}}
  - {{name: oip, label: grpc, options: {{url: "{good.grpc_url}", protocol: grpc, model: m}}}}
  - {{name: onnxruntime, label: ort, options: {{intra_op_num_threads: 1}}}}""", f"""
  - {{kind: offline, batch_size: 2, concurrency: [1, 3], {SHORT}}}
  - {{kind: server, target_qps: 150, target_latency_ns: 2000000000, {SHORT}}}""")
    proc, recs = _run(tmp_path, cache)
    assert proc.returncode in (0, 1), proc.stderr + proc.stdout
    kinds = ("offline-c1", "offline-c3", "server")
    assert set(recs) == {f"tiny-add__{b}__{k}" for b in ("rest", "grpc", "ort") for k in kinds}
    for cid, r in recs.items():
        assert r.error is None, (cid, r.error)
        assert r.accuracy.passed, (cid, r.accuracy)
        # the protocol's codec (serialization, parsing) is what the untimed phases hold, within the served budget
        assert r.audits.boundary.passed, (cid, r.audits.boundary.summary)
        assert r.audits.timed_outputs.passed is not False, (cid, r.audits.timed_outputs)
        assert r.audits.boundary is not None and r.metrics.stage_ns is not None and r.metrics.fetch_ns is not None
        if "__ort__" in cid:
            assert r.backend.endpoint is None
            continue
        ep = r.backend.endpoint
        proto = cid.split("__")[1]
        assert ep.protocol == f"oip-{proto}" and ep.model == "m" and ep.server.startswith("kserve")
        assert [(t.name, t.datatype, t.shape) for t in ep.inputs] == [("input", "FP32", [-1, 16])]
        assert [(t.name, t.datatype, t.shape) for t in ep.outputs] == [("output", "FP32", [-1, 16])]
        assert r.backend.device.startswith("remote: kserve") and r.backend.version == ep.server.split()[-1]
        # the server cannot say which graph it loaded: open, with that reason, and no local provenance claims
        assert r.division.name == "open" and any("does not report the SHA-256" in x for x in r.division.reasons)
        assert any(f.check == "provenance.remote" for f in r.validity.findings)
        assert not any(f.check in ("provenance.device", "provenance.runtime_version") for f in r.validity.findings)
    for b in ("rest", "grpc", "ort"):
        c1, c3 = recs[f"tiny-add__{b}__offline-c1"], recs[f"tiny-add__{b}__offline-c3"]
        assert c3.scenario.settings["concurrency"] == 3 and c1.scenario.settings["concurrency"] == 1
        assert c3.metrics.extra["concurrency"] == 3 and 0 < c3.metrics.extra["achieved_concurrency"] <= 3.05
        assert c3.metrics.extra["issue_mode"] == ("async" if b == "grpc" else "threads")  # ORT: 1 thread, no pool
        assert "concurrency" not in c1.metrics.extra and c1.metrics.in_flight is None  # the plain closed loop
        assert c3.metrics.in_flight.concurrency == 3 and c3.metrics.in_flight.issue_mode == c3.metrics.extra["issue_mode"]
    assert recs["tiny-add__grpc__server"].metrics.extra["issue_mode"] == "async"
    assert recs["tiny-add__rest__server"].metrics.extra["issue_mode"] == "workers"

    shown = run_cli("show", next((tmp_path / "out").rglob("*__grpc__offline-c3.json")))
    assert shown.returncode == 0 and "endpoint  oip-grpc grpc://127.0.0.1:" in shown.stdout, shown.stdout
    assert "model sha256 not reported" in shown.stdout and "calls in flight (asked / achieved)" in shown.stdout

    # compare: served vs in-process on the same workload, the concurrency points kept apart
    files = {side: sorted(str(p) for p in (tmp_path / "out").rglob(f"*__{side}__*.json")) for side in ("ort", "grpc")}
    out = run_cli("compare", *files["ort"], "vs", *files["grpc"], "--format", "markdown", cwd=tmp_path)
    assert out.returncode in (0, 1), out.stderr
    assert "offline @ concurrency 3" in out.stdout and "ort → grpc" in out.stdout, out.stdout


@needs_serving
def test_faults_give_error_records_and_the_suite_goes_on(servers, model, tmp_path):
    good, dying = servers
    _, cache = model
    _spec(tmp_path, f"""
  - {{name: oip, label: error, options: {{url: "{good.rest_url}", model: m-error}}}}
  - {{name: oip, label: shape, options: {{url: "{good.grpc_url}", protocol: grpc, model: m-wrong-shape}}}}
  - {{name: oip, label: hang, options: {{url: "{good.grpc_url}", protocol: grpc, model: m-hang, timeout_s: 0.5}}}}
  - {{name: oip, label: dies, options: {{url: "{dying.rest_url}", model: m}}}}
  - {{name: oip, label: gone, options: {{url: "{dying.grpc_url}", protocol: grpc, model: m}}}}
  - {{name: oip, label: values, options: {{url: "{good.rest_url}", model: m-wrong-values}}}}
  - {{name: oip, label: absent, options: {{url: "{good.rest_url}", model: nosuch}}}}
  - {{name: oip, label: ok, options: {{url: "{good.rest_url}", model: m}}}}""", """
  - {kind: single_stream, min_duration_ms: 400, min_query_count: 80, warmup_ms: 10, warmup_queries: 2}""")
    proc, recs = _run(tmp_path, cache)
    assert proc.returncode == 1, proc.stderr + proc.stdout
    r = {cid.split("__")[1]: rec for cid, rec in recs.items()}
    assert set(r) == {"error", "shape", "hang", "dies", "gone", "values", "absent", "ok"}
    assert "HTTP 500" in r["error"].error.message and "injected failure" in r["error"].error.message
    assert "has shape" in r["shape"].error.message
    assert "DEADLINE_EXCEEDED" in r["hang"].error.message and r["hang"].error.phase in ("warmup", "measure")
    assert r["dies"].error is not None and r["dies"].error.phase in ("warmup", "measure", "check")
    assert "Connection refused" in r["gone"].error.message and r["gone"].error.phase == "load"
    assert "not ready" in r["absent"].error.message or "nosuch" in r["absent"].error.message
    # a server that answers wrongly is measured, and the accuracy gate and the loop's audit say so
    assert r["values"].error is None and r["values"].accuracy.passed is False and not r["values"].validity.valid
    # after every failure, the next cell still ran
    assert r["ok"].error is None and r["ok"].accuracy.passed


def _winfo(**changes):
    base = dict(name="tiny-add", inputs={"input": (1, 16)}, input_dtypes={"input": np.dtype("float32")},
                output_names=["output"], batch_size=1, extra={"graph_precision": "fp32"})
    return WorkloadInfo(**{**base, **changes})


@needs_serving
@pytest.mark.parametrize("change, message", [
    ({"input_dtypes": {"input": np.dtype("float16")}}, "input 'input' is FP32 on the server, the workload feeds FP16"),
    ({"inputs": {"input": (1, 8)}}, "input 'input' has shape [-1, 16] on the server, the workload feeds [1, 8]"),
    ({"inputs": {"x": (1, 16)}, "input_dtypes": {"x": np.dtype("float32")}},
     "the workload's input 'x' is not among the server's inputs (input)"),
    ({"output_names": ["logits"]}, "the workload's output(s) logits are not among the server's outputs (output)"),
], ids=["dtype", "shape", "input-name", "output-name"])
@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_metadata_must_match_the_workload(servers, model, protocol, change, message):
    from benchkit.backends.oip import OipBackend

    good, _ = servers
    b = OipBackend({"url": good.rest_url if protocol == "rest" else good.grpc_url, "protocol": protocol, "model": "m"})
    with pytest.raises(BackendError) as e:
        b.load(model[0], _winfo(**change))
    b.close()
    assert message in str(e.value) and "model 'm' on" in str(e.value)


@needs_serving
@pytest.mark.parametrize("options, message", [
    ({"url": "127.0.0.1:1", "model": "m", "protocl": "rest"}, "protocl: unknown option; expected one of url, "),
    ({"url": "127.0.0.1", "model": "m"}, "url: '127.0.0.1' is not host:port"),
    ({"url": "127.0.0.1:1", "model": "m", "protocol": "soap"}, "protocol: Input should be 'rest' or 'grpc'"),
    ({"url": "https://127.0.0.1:1", "model": "m"}, "url: scheme 'https' is not supported"),
])
def test_bad_options_are_named(options, message):
    from benchkit.backends.oip import OipBackend

    with pytest.raises(BackendError, match=None) as e:
        OipBackend(options)
    assert message in str(e.value)


@needs_serving
def test_json_tensors_and_binary_give_the_same_answers(servers, model):
    """REST with and without the binary tensor extension, and gRPC: the same outputs as ONNX Runtime in-process."""
    import onnxruntime as ort

    from benchkit.backends.oip import OipBackend

    good, _ = servers
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    want = ort.InferenceSession(str(model[0])).run(None, {"input": x})[0]
    for opts in ({"url": good.rest_url, "binary_data": False}, {"url": good.rest_url},
                 {"url": good.grpc_url, "protocol": "grpc"}):
        b = OipBackend({**opts, "model": "m"})
        b.load(model[0], _winfo(inputs={"input": (3, 16)}, batch_size=3))
        got = b.fetch(b.run(b.stage({"input": x})))
        b.close()
        np.testing.assert_allclose(got[0], want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("missing", ["tritonclient.http", "tritonclient.grpc"])
def test_without_the_client_the_error_names_the_extra(monkeypatch, missing):
    from benchkit.backends.oip import OipBackend
    from benchkit.errors import BackendUnavailable

    monkeypatch.setitem(sys.modules, missing, None)  # what an environment without tritonclient imports
    with pytest.raises(BackendUnavailable, match=r"the oip backend needs tritonclient .*pip install -e '.*\[serving\]'"):
        OipBackend({"url": "127.0.0.1:1", "model": "m", "protocol": missing.rsplit(".", 1)[1].replace("http", "rest")})
