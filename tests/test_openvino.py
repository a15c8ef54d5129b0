"""OpenVINO adapter on a real OpenVINO runtime: precision pinned from the claim and read back, async, options."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

ov = pytest.importorskip("openvino", reason="openvino is not installed: the openvino extra")

from benchkit.backends.base import WorkloadInfo  # noqa: E402
from benchkit.backends.openvino import OpenVinoBackend, _effective  # noqa: E402
from benchkit.errors import BackendError, BackendUnavailable  # noqa: E402
from benchkit.workloads import catalog  # noqa: E402

from test_accuracy_gate import GEMM, run_inline  # noqa: E402


def cpu_default_precision() -> str:
    """What the CPU plugin computes an fp32 model in when nobody asks (bf16 on AMX/AVX512_BF16 CPUs, else f32)."""
    t = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").to_string()
    return {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}[t]


def cpu_can_bf16() -> bool:
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def test_pinned_fp32_is_valid_and_recorded(tmp_path):
    (rec,) = run_inline(tmp_path, GEMM, "{name: openvino}")
    b = rec.backend
    assert b.precision == "fp32" and b.claimed_precision == "fp32"
    assert b.options["inference_precision"] == "f32" and b.options["inference_precision_requested"] == "f32"
    assert b.options["performance_hint"] == "LATENCY" and b.options["execution_devices"] == ["CPU"]
    assert rec.validity.valid, rec.validity.reasons
    assert rec.accuracy.passed and rec.accuracy.max_rel_error < 1e-5


def test_runtime_default_precision_is_reported_truthfully(tmp_path):
    """`inference_precision: default` leaves the hint unset: on a bf16-capable CPU an fp32 claim is then INVALID."""
    (rec,) = run_inline(tmp_path, GEMM, "{name: openvino, options: {inference_precision: default}}")
    expected = cpu_default_precision()
    assert rec.backend.options["inference_precision_requested"] == "default"
    assert rec.backend.precision == expected
    assert rec.validity.valid is (expected == "fp32")
    if expected != "fp32":
        assert f"effective precision {expected} differs from the claimed fp32" in " ".join(rec.validity.reasons)


def test_claimed_bf16_shows_what_the_hardware_did(tmp_path):
    (rec,) = run_inline(tmp_path, GEMM, "{name: openvino, precision: bf16}")
    assert rec.backend.options["inference_precision_requested"] == "bf16"
    if cpu_can_bf16():
        assert rec.backend.precision == "bf16" and rec.validity.valid
    else:  # the hint is a request; this CPU computes f32 and the record says so
        assert rec.backend.precision == "fp32" and rec.backend.options["inference_precision"] == "f32"
        assert not rec.validity.valid
        assert "effective precision fp32 differs from the claimed bf16" in rec.validity.reasons[0]


def test_allowed_mismatch_is_a_warning(tmp_path):
    (rec,) = run_inline(tmp_path, GEMM, "{name: openvino, precision: bf16, allow_precision_mismatch: true}")
    if rec.backend.precision == "bf16":
        pytest.skip("this CPU computes bf16: no mismatch to allow")
    assert rec.validity.valid and any("allowed by allow_precision_mismatch" in w for w in rec.validity.warnings)
    assert rec.accuracy.precision == "bf16"  # the looser of claimed and effective tolerances


def test_offline_splits_a_call_over_async_requests(tmp_path):
    wl = "{name: mlp, params: {in_features: 64, hidden: [64], out_features: 10}}"
    (rec,) = run_inline(tmp_path, wl, "{name: openvino, options: {num_requests: 2}}",
                        scenario="{kind: offline, batch_size: 8, min_duration_ms: 50, min_query_count: 20}")
    b = rec.backend.options
    assert b["offline_split_requests"] == 2 and b["performance_hint"] == "THROUGHPUT"
    assert rec.accuracy.passed and rec.workload.effective_batch_size == 8, rec.validity.reasons


def test_offline_keeps_every_request_in_flight(tmp_path):
    """One sample per call: Offline submits through the AsyncInferQueue, num_requests at a time, outputs audited."""
    # The measured loop's outputs are audited on every cell (audits.timed_outputs); the statistical audits of
    # --audit are left out: their run-to-run comparison is noise on a loaded machine, not this test's subject.
    (rec,) = run_inline(tmp_path, GEMM, "{name: openvino, options: {num_requests: 3}}",
                        scenario="{kind: offline, min_duration_ms: 100, min_query_count: 50}")
    assert rec.metrics.extra["issue_mode"] == "in_flight" and rec.metrics.extra["in_flight_max"] == 3
    assert rec.backend.options["async_requests"] == 3 and rec.backend.options["offline_split_requests"] == 1
    assert rec.validity.valid and rec.accuracy.passed, rec.validity.reasons
    assert rec.audits.timed_outputs.passed, rec.audits.timed_outputs.summary
    assert rec.metrics.count >= 50 and rec.metrics.latency_ns.min > 0


def _loaded(options=None, claimed="fp32", scenario="server"):
    path = catalog.materialize("gemm", {"m": 8, "n": 32, "k": 32})
    b = OpenVinoBackend(options or {})
    b.load(path, WorkloadInfo("gemm", {"input": (1, 8, 32)}, {"input": np.dtype(np.float32)}, ("output",), 1,
                              {"graph_precision": "fp32", "claimed_precision": claimed, "scenario": scenario}))
    return b


def test_submit_completes_every_query_through_the_async_queue():
    b = _loaded({"num_requests": 2})
    try:
        assert b.supports_async()
        rng = np.random.default_rng(0)
        staged = [b.stage({"input": rng.standard_normal((1, 8, 32), dtype=np.float32)}) for _ in range(4)]
        done: dict[int, object] = {}
        finished = threading.Event()

        def cb(tag, err):
            done[tag] = err
            if len(done) == 40:
                finished.set()

        for i in range(40):
            b.submit(staged[i % 4], cb, i)
        assert finished.wait(30)
        assert sorted(done) == list(range(40)) and all(e is None for e in done.values())
        assert b.info().options["async_requests"] == 2
    finally:
        b.close()


@pytest.mark.parametrize("options, message", [
    ({"devise": "CPU"}, "devise: unknown option"),
    ({"device": "TPU"}, "expected CPU, GPU[.N]"),
    ({"inference_precision": "fp32"}, "inference_precision"),
    ({"config": {"INFERENCE_PRECISION_HINT": "f32"}}, "set `inference_precision` instead"),
    ({"num_streams": 0}, "positive integer or AUTO"),
])
def test_bad_options_name_the_option(options, message):
    with pytest.raises(BackendError, match=message.replace("[", r"\[").replace(".", r"\.")):
        OpenVinoBackend(options)


def test_absent_device_lists_the_available_ones():
    with pytest.raises(BackendUnavailable, match=r"device: 'NPU' is not available .* \(available: CPU"):
        OpenVinoBackend({"device": "NPU"}) if "NPU" not in ov.Core().available_devices else pytest.skip("has an NPU")


def test_missing_openvino_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    with pytest.raises(BackendUnavailable, match=r"pip install -e '.*\[openvino\]'"):
        OpenVinoBackend({})


@pytest.mark.parametrize("graph, compute, effective", [
    ("fp32", "fp32", "fp32"), ("fp32", "bf16", "bf16"), ("fp16", "fp32", "fp16"), ("int8", "fp32", "int8"),
    ("int8", "bf16", "mixed"), ("fp16", "bf16", "mixed"),
])
def test_effective_precision_is_the_narrower(graph, compute, effective):
    assert _effective(graph, compute) == effective


def test_outputs_are_read_by_index_whatever_openvino_names_them(tmp_path):
    """Two outputs of one tensor: OpenVINO merges their names (port 1 becomes {'out2', 'a'}); order is kept."""
    import onnx
    from onnx import TensorProto, helper

    vi = helper.make_tensor_value_info
    nodes = [helper.make_node("Add", ["x", "x"], ["a"]), helper.make_node("Identity", ["a"], ["out"]),
             helper.make_node("Neg", ["a"], ["out2"])]
    g = helper.make_graph(nodes, "g", [vi("x", TensorProto.FLOAT, [1, 4])],
                          [vi("out", TensorProto.FLOAT, [1, 4]), vi("out2", TensorProto.FLOAT, [1, 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, tmp_path / "m.onnx")
    b = OpenVinoBackend({})
    b.load(tmp_path / "m.onnx", WorkloadInfo("m", {"x": (1, 4)}, {"x": np.dtype("float32")}, ["out", "out2"], 1,
                                             {"scenario": "offline"}))
    out, out2 = b.fetch(b.run(b.stage({"x": np.ones((1, 4), np.float32)})))
    assert (out == 2).all() and (out2 == -2).all()
    b.close()
