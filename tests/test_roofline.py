"""Roofline coordinates in records: FLOPs per sample from the counter, achieved FLOP/s, fraction of peak."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchkit.errors import SpecError
from benchkit.runner.plan import SuiteContext, expand
from benchkit.runner.preflight import preflight
from benchkit.runner.cell import execute_cell
from benchkit.spec import parse_spec
from benchkit.workloads import catalog
from benchkit.workloads.flops import analyze

DEVICE = """
name: Test Device
peak_flops_per_s: {fp32: 1.0e13, int8: 4.0e13}
memory_bandwidth_bytes_per_s: 5.0e10
"""


def _run(tmp_path: Path, device: str | None):
    if device is not None:
        (tmp_path / "dev.yaml").write_text(device)
    loaded = parse_spec(
        f"""
name: roof
workloads: [{{name: mlp}}]
backends: [{{name: onnxruntime{', device_file: dev.yaml' if device is not None else ''}}}]
scenarios: [{{kind: offline, batch_size: 4, min_duration_ms: 50, min_query_count: 5}}]
""",
        "roof.yaml",
        tmp_path,
    )
    cells = expand(loaded)
    preflight(loaded, cells)
    return execute_cell(cells[0], SuiteContext("t", "roof", loaded.sha256, str(tmp_path), keep_samples=False))


def test_roofline_fields(tmp_path):
    rec = _run(tmp_path, DEVICE)
    assert rec.validity.valid, rec.validity.reasons
    call = analyze(catalog.materialize("mlp"), {"batch": 4})
    w, m = rec.workload, rec.metrics
    assert w.flops == round(call.flops / 4) and w.flops > 0
    assert w.arithmetic_intensity == pytest.approx(call.flops / (call.weight_bytes + call.activation_bytes))
    assert m.achieved_flops_per_s == pytest.approx(call.flops / 4 * m.throughput_per_s)
    assert rec.backend.peak_flops_per_s == 1.0e13  # far above this CPU: an honest run is VALID
    assert m.fraction_of_peak == pytest.approx(m.achieved_flops_per_s / 1.0e13)
    assert rec.backend.memory_bandwidth_bytes_per_s == 5.0e10
    assert "dev.yaml" in rec.backend.peak_source and "/" not in rec.backend.peak_source.split()[2]


def test_a_cpu_without_a_device_file_gets_the_derived_peak(tmp_path):
    rec = _run(tmp_path, None)
    assert rec.metrics.achieved_flops_per_s > 0
    assert rec.backend.peak_source.startswith("derived CPU peak") and rec.backend.peak_flops_per_s > 0
    assert 0 < rec.metrics.fraction_of_peak < 1  # an honest run is below the upper bound
    assert not [f for f in rec.validity.findings if f.check == "plausibility.peak"]


def test_bad_device_file_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match=r"(?s)invalid device file .*dev\.yaml: peak_flops_per_s\.fp33"):
        _run(tmp_path, "name: x\npeak_flops_per_s: {fp33: 1}\n")
