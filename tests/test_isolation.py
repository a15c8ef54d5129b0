"""Worker-process isolation: a crash, a hang or an exception in an adapter costs one cell, never the suite.

The faulty adapters are test fakes (tests/fakes/benchkit_test_fakes.py) registered through a real entry
point, and the cells run in real worker processes.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from benchkit.results import records

SPEC = """
name: faults
seed: 3
workloads:
  - name: tiny
    model: {model}
backends:
  - name: onnxruntime
  - {{name: fault-inject, label: segfault, options: {{fault: segfault, after: 2}}}}
  - {{name: fault-inject, label: hang, options: {{fault: hang, after: 2}}}}
  - {{name: fault-inject, label: raise-load, options: {{fault: raise_load}}}}
  - {{name: fault-inject, label: exit, options: {{fault: exit}}}}
  - {{name: fault-inject, label: nan, options: {{fault: nan}}}}
  - {{name: fault-inject, label: fine, options: {{fault: none}}}}
scenarios:
  - kind: single_stream
    min_duration_ms: 100
    min_query_count: 10
run:
  cell_timeout_s: 8
"""


@pytest.fixture
def fault_records(tmp_path, tiny_model, fakes_on_path):
    spec = tmp_path / "faults.yaml"
    spec.write_text(SPEC.format(model=tiny_model))
    proc = subprocess.run([sys.executable, "-m", "benchkit", "run", str(spec), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=240)
    recs = {p.stem.split("__")[1]: records.load(p) for p in (tmp_path / "out").rglob("*.json")}
    return proc, recs


def test_every_fault_yields_an_error_record_and_the_suite_completes(fault_records):
    proc, recs = fault_records
    assert proc.returncode == 1, proc.stderr  # finished, some cells invalid
    assert "Traceback" not in proc.stderr
    assert set(recs) == {"onnxruntime", "segfault", "hang", "raise-load", "exit", "nan", "fine"}
    assert recs["onnxruntime"].validity.valid and recs["fine"].validity.valid

    seg = recs["segfault"]
    assert not seg.validity.valid and seg.error.type == "WorkerCrash" and "SIGSEGV" in seg.error.message
    hang = recs["hang"]
    assert hang.error.type == "Timeout" and "cell_timeout_s=8" in hang.error.message
    rl = recs["raise-load"]
    assert rl.error.phase == "load" and "injected failure in load()" in rl.error.message
    assert "Traceback" in rl.error.detail  # a non-benchkit exception keeps its traceback for the vendor
    ex = recs["exit"]
    assert ex.error.type == "WorkerCrash" and "status 3" in ex.error.message
    nan = recs["nan"]
    assert not nan.validity.valid and nan.metrics is not None
    assert any("NaN" in r for r in nan.validity.reasons)
    for name in ("segfault", "hang", "raise-load", "exit"):
        assert recs[name].metrics is None and recs[name].scenario.kind == "single_stream"
        assert recs[name].workload is None or recs[name].workload.name == "tiny"


def test_inline_mode_turns_exceptions_into_records(tmp_path, tiny_model, fakes_on_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(f"""
name: inline
workloads: [{{name: tiny, model: {tiny_model}}}]
backends: [{{name: fault-inject, options: {{fault: raise_run, after: 3}}}}]
scenarios: [{{kind: single_stream, min_duration_ms: 10, min_query_count: 5}}]
""")
    proc = subprocess.run([sys.executable, "-m", "benchkit", "run", str(spec), "--inline", "--out",
                           str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    rec = records.load(next((tmp_path / "o").rglob("*.json")))
    assert rec.error.phase in ("warmup", "stage") and "injected failure in run()" in rec.error.message
    assert rec.backend is not None and rec.backend.name == "fault-inject"


def test_a_broken_plugin_does_not_break_the_others(fakes_on_path):
    p = subprocess.run([sys.executable, "-m", "benchkit", "backends"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0
    assert "broken-import" in p.stdout and "failed" in p.stdout
    assert "onnxruntime" in p.stdout and "fault-inject" in p.stdout
