"""The end-to-end boundary audit: synthetic figures, then the honest adapter and the cheats measured."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchkit.checks.boundary import (
    FRESH_MAX_RATIO,
    HOST_ALLOWANCE,
    TransferAllowance,
    allowance_for,
    audit_boundary,
    time_end_to_end,
)

US = 1_000
# One float32 image of 3x64x64 in, 1000 logits out: 49,152 + 4,000 bytes, 2 tensors.
IMAGE = {"input_bytes": 49_152, "output_bytes": 4_000, "tensors": 2}


def _const(value_ns: int, n: int = 32) -> list[int]:
    return [value_ns] * n


def test_allowance_formula_and_defaults():
    a = TransferAllowance()
    assert a.ns(1_000_000, 0, 2) == 50 * US + 2 * 20 * US + 1_000 * US  # 1 MB at 1 GB/s is 1 ms
    assert HOST_ALLOWANCE.ns(1_000_000, 0, 2) == 50 * US + 2 * 5 * US + 100 * US  # at 10 GB/s
    assert allowance_for("cpu: AMD EPYC") is HOST_ALLOWANCE
    assert allowance_for("CPU: Intel(R) Xeon(R); GPU.0: Intel(R) Arc(TM)") == TransferAllowance()
    assert allowance_for("cuda:0 NVIDIA H200") == TransferAllowance()
    assert allowance_for("cuda:0", 25e9).bandwidth_bytes_per_s == 25e9
    assert allowance_for("cpu", 2e9).bandwidth_bytes_per_s == 2e9  # a declaration wins


def test_honest_figures_pass():
    # ONNX Runtime on the CPU: a millisecond of work, a microsecond each to stage and fetch.
    a = audit_boundary(_const(1000 * US), _const(1 * US), _const(2 * US), _const(1010 * US),
                       allowance=HOST_ALLOWANCE, **IMAGE)
    assert a.passed and a.findings == ()
    assert a.untimed_share == pytest.approx(3 / 1010) and a.untimed_share < a.plausible_share
    assert a.fresh_ratio == pytest.approx(1.01)
    figures = a.figures()
    assert figures["allowance_ns"] == HOST_ALLOWANCE.ns(**IMAGE) and figures["untimed_p50_ns"] == 3 * US


def test_work_in_stage_fails_the_untimed_share():
    a = audit_boundary(_const(100), _const(1000 * US), _const(2 * US), _const(1002 * US),
                       allowance=HOST_ALLOWANCE, **IMAGE)
    checks = [f.check for f in a.findings]
    assert checks == ["boundary.untimed_share", "boundary.fresh_latency"] and not a.passed
    msg = a.findings[0].message
    assert msg.startswith("untimed phases carry 100% of fresh queries' end-to-end time")
    assert "more than the transfer-plausible" in msg and f"{a.plausible_share:.0%}" in msg


def test_stage_work_behind_a_plausible_spin_fails_only_the_share():
    # cheat-stage-spin: run spins 1 ms, so the timed latency looks like work; stage computes 1 ms.
    a = audit_boundary(_const(1000 * US), _const(1000 * US), _const(2 * US), _const(2002 * US),
                       allowance=HOST_ALLOWANCE, **IMAGE)
    assert [f.check for f in a.findings] == ["boundary.untimed_share"]
    assert a.untimed_share == pytest.approx(0.5, abs=0.01)


def test_asynchronous_work_fails_the_fresh_latency():
    # cheat-async: run + synchronize return in 3 µs; fetch waits for the 1 ms of work. With fetch timed apart,
    # the untimed share fails too; the fresh-latency rule alone catches it where fetch is not timed apart.
    a = audit_boundary(_const(3 * US), _const(1 * US), _const(2 * US), _const(1006 * US),
                       allowance=HOST_ALLOWANCE, **IMAGE)
    [f] = a.findings
    assert f.check == "boundary.fresh_latency" and f.message.startswith("fresh queries' end-to-end p50 (1006.0 µs) is 335x")


def test_cached_measured_loop_fails_the_fresh_latency():
    a = audit_boundary(_const(300), _const(1 * US), _const(1 * US), _const(900 * US), allowance=HOST_ALLOWANCE, **IMAGE)
    assert [f.check for f in a.findings] == ["boundary.fresh_latency"]


def test_limits_are_inclusive_and_scale_with_bytes():
    limit = HOST_ALLOWANCE.ns(**IMAGE)
    at = audit_boundary(_const(100 * US), _const(limit), _const(0), _const(int(FRESH_MAX_RATIO * 100 * US) + limit),
                        allowance=HOST_ALLOWANCE, **IMAGE)
    assert at.passed
    over = audit_boundary(_const(100 * US), _const(limit + 1), _const(0), _const(int(FRESH_MAX_RATIO * 100 * US) + limit + 1),
                          allowance=HOST_ALLOWANCE, **IMAGE)
    assert [f.check for f in over.findings] == ["boundary.untimed_share", "boundary.fresh_latency"]
    # A device moving 100 MB per query may take 0.1 s at the default 1 GB/s.
    big = audit_boundary(_const(1000 * US), _const(80_000 * US), _const(1 * US), _const(81_000 * US),
                         input_bytes=100_000_000, output_bytes=0, tensors=1)
    assert big.passed


def test_the_copy_control_is_added_to_the_allowance():
    # OpenVINO on the 2-core runner, mobilenet-v2 at 224 px in Offline: stage and fetch about 55 µs each right after
    # 8 ms calls, against a static allowance of 121 µs; benchkit's own copy of the 602 KB input there took 87 µs.
    io = {"input_bytes": 602_112, "output_bytes": 4_000, "tensors": 2}
    static = HOST_ALLOWANCE.ns(**io)
    without = audit_boundary(_const(8000 * US), _const(60 * US), _const(65 * US), _const(8125 * US),
                             allowance=HOST_ALLOWANCE, **io)
    assert [f.check for f in without.findings] == ["boundary.untimed_share"] and without.allowance_ns == static
    with_control = audit_boundary(_const(8000 * US), _const(60 * US), _const(65 * US), _const(8125 * US),
                                  allowance=HOST_ALLOWANCE, control_ns=[80 * US, 87 * US, 95 * US], **io)
    assert with_control.passed and with_control.allowance_ns == static + 87 * US
    assert with_control.figures()["control_p50_ns"] == 87 * US
    # The control raises the limit by what one copy of the bytes took, not more: a millisecond moved to stage
    # behind a plausible spin still fails.
    moved = audit_boundary(_const(1000 * US), _const(1000 * US), _const(2 * US), _const(2002 * US),
                           allowance=HOST_ALLOWANCE, control_ns=_const(87 * US), **io)
    assert [f.check for f in moved.findings] == ["boundary.untimed_share"]
    assert "87.0 µs of benchkit's own copy of the query's arrays" in moved.findings[0].message
    # A control slowed by work still running after synchronize() counts up to the allowance again, no more.
    slowed = audit_boundary(_const(1000 * US), _const(1000 * US), _const(2 * US), _const(2002 * US),
                            allowance=HOST_ALLOWANCE, control_ns=_const(5000 * US), **io)
    assert slowed.allowance_ns == 2 * static and not slowed.passed


def test_unpaired_and_missing_samples():
    a = audit_boundary(_const(1000 * US), _const(1 * US, 5), _const(2 * US, 7), _const(1003 * US, 3), **IMAGE)
    assert a.untimed_p50_ns == 3 * US and a.passed
    [f] = audit_boundary([], [], [], [], **IMAGE).findings
    assert f.severity == "warning"


# --------------------------------------------------------------------------- measured


MOBILENET = ("mobilenet-v2", {"image_size": 64})  # about a millisecond per call on one core


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    from benchkit.spec import WorkloadSpec
    from benchkit.workloads import resolve

    name, params = MOBILENET
    return resolve(WorkloadSpec(name=name, params=params), Path("."), "test", tmp_path_factory.mktemp("wl"))


def _measure(name, wl):
    from benchkit.backends.base import WorkloadInfo
    from benchkit.backends.registry import load_backend_class

    shapes, batch = wl.call_shapes(1)
    backend = load_backend_class(name)({})
    backend.load(wl.path, WorkloadInfo(
        name=wl.name, inputs=shapes, input_dtypes={i.name: i.dtype for i in wl.inputs},
        output_names=wl.output_names, batch_size=batch,
        extra={"graph_precision": "fp32", "claimed_precision": "fp32", "scenario": "single_stream"}))
    try:
        pool_feeds, _ = wl.make_feeds(1, 16, 5)
        fresh, _ = wl.make_feeds(1, 24, 5 + 0x7E5704)
        pool = [backend.stage(f) for f in pool_feeds]
        for s in pool:  # the measured loop has run over the whole pool before the audit
            backend.run(s)
            backend.synchronize()
        e = time_end_to_end(backend, fresh, pool)
        out = backend.fetch(backend.run(pool[0]))
        device = backend.info().device
    finally:
        backend.close()
    assert len(e.timed_ns) == len(e.end_to_end_ns) == len(e.control_ns) == 24
    assert all(s + r + f <= t for s, r, f, t in zip(e.stage_ns, e.run_ns, e.fetch_ns, e.end_to_end_ns))
    assert all(c > 0 for c in e.control_ns)
    return audit_boundary(e.timed_ns, e.stage_ns, e.fetch_ns, e.end_to_end_ns, allowance=allowance_for(device),
                          input_bytes=sum(a.nbytes for a in pool_feeds[0].values()),
                          output_bytes=sum(np.asarray(a).nbytes for a in out),
                          tensors=len(pool_feeds[0]) + len(out), control_ns=e.control_ns)


# Measured on a 2-core EPYC (µs, p50): honest timed 370-1900, stage 1-3, fetch 2-9, fresh/timed 0.9-1.2;
# cheat-stage stage 250-6300 against an allowance of 62-72; cheat-async and the caches fresh/timed 27-30,000.
@pytest.mark.parametrize("name, checks", [
    ("onnxruntime", []),
    ("openvino", []),
    ("spin-honest", []),
    ("cheat-stage", ["boundary.untimed_share", "boundary.fresh_latency"]),
    ("cheat-stage-spin", ["boundary.untimed_share"]),
    ("cheat-fetch", ["boundary.untimed_share", "boundary.fresh_latency"]),
    # the work lands in fetch(); on a busy runner its timed call (a thread started, not waited for) also slows, so
    # fresh_latency's 3x ratio is not reached every time (seen at 1.7x): untimed_share is what refuses it
    ("cheat-async", ["boundary.untimed_share"]),
    ("cheat-cache", ["boundary.fresh_latency"]),
    ("cheat-repeat-bypass", ["boundary.fresh_latency"]),
])
def test_measured(name, checks, workload, fakes_on_path):
    if name == "openvino":
        pytest.importorskip("openvino")
    a = _measure(name, workload)
    if not checks and a.findings:
        a = _measure(name, workload)  # a failure counts when a second pass confirms it, as in a cell
    found = [f.check for f in a.findings]
    if checks:
        assert set(checks) <= set(found), (found, a.figures())
    else:
        assert found == [], (a.findings, a.figures())
