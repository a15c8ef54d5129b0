"""pytest --benchkit SPEC: cells as test items, real worker processes, INVALID cells fail; no-op otherwise.

pytest itself runs in this process (conftest.run_pytest_inprocess: a fresh Config that loads the pytest11 entry
points, as a new pytest process would); the test of what importing the plugin pulls in keeps a process of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from conftest import CliResult, run_pytest_inprocess
from real_records import ROOT, env

SPEC = """\
name: plugin-demo
seed: 3
workloads:
  - name: tiny-add
backends:
  - name: onnxruntime
    label: ort
    options: {providers: [CPUExecutionProvider]}
  - name: onnxruntime
    label: ort-claims-fp16   # ONNX Runtime CPU runs this graph in fp32: the record is INVALID
    precision: fp16
    options: {providers: [CPUExecutionProvider]}
scenarios:
  - kind: single_stream
    min_duration_ms: 100
    min_query_count: 20
run:
  profile: quick
"""


def plugin_args() -> list[str]:
    """Load the plugin explicitly unless the installed metadata already registers it (pytest11)."""
    if any(ep.name == "benchkit" for ep in metadata.entry_points(group="pytest11")):
        return []
    return ["-p", "benchkit.conformance.pytest_plugin"]


def run_pytest(cwd: Path, *args: str) -> CliResult:
    return run_pytest_inprocess(cwd, "-p", "no:cacheprovider", *plugin_args(), *args)


def test_entry_point_declared():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["pytest11"] == {"benchkit": "benchkit.conformance.pytest_plugin"}


def test_spec_cells_run_as_items(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC)
    (tmp_path / "test_plain.py").write_text("def test_plain():\n    assert True\n")
    r = run_pytest(tmp_path, "--benchkit", "spec.yaml", "--benchkit-out", "out", "-rA",
                   "--junitxml", "junit.xml")
    out = r.stdout
    assert r.returncode == 1, out + r.stderr  # one cell INVALID
    assert "1 failed, 2 passed" in out
    assert "PASSED spec.yaml::tiny-add__ort__single_stream" in out
    assert "FAILED spec.yaml::tiny-add__ort-claims-fp16__single_stream" in out
    assert "INVALID" in out and "effective precision fp32 differs from the claimed fp16" in out
    written = sorted((tmp_path / "out" / "plugin-demo").glob("*/*.json"))
    assert [p.name for p in written] == ["tiny-add__ort-claims-fp16__single_stream.json",
                                         "tiny-add__ort__single_stream.json"]
    rec = json.loads(written[1].read_text())
    assert rec["validity"]["valid"] and rec["metrics"]["count"] >= 20 and rec["samples_ns"]
    assert "2 record(s) in out/plugin-demo/" in out and "1 VALID, 1 INVALID" in out
    junit = (tmp_path / "junit.xml").read_text()
    assert 'name="benchkit_record"' in junit and "tiny-add__ort__single_stream.json" in junit


def test_selection_and_collection(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC)
    r = run_pytest(tmp_path, "--benchkit", "spec.yaml", "--benchkit", "ci-smoke", "--collect-only", "-q")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "spec.yaml::tiny-add__ort__single_stream" in r.stdout
    assert "spec.yaml::tiny-add__ort-claims-fp16__single_stream" in r.stdout
    assert "ci-smoke::mlp__onnxruntime__offline" in r.stdout  # a standard spec by name
    assert "6 tests collected" in r.stdout
    r = run_pytest(tmp_path, "--benchkit", "spec.yaml", "-k", "not fp16", "-m", "benchkit",
                   "--benchkit-isolation", "inline", "--benchkit-out", "out")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed, 1 deselected" in r.stdout


def test_bad_spec_is_a_usage_error(tmp_path):
    (tmp_path / "bad.yaml").write_text("name: bad\nworkloads: []\nbackends: []\nscenarios: []\n")
    r = run_pytest(tmp_path, "--benchkit", "bad.yaml")
    assert r.returncode == 4, r.stdout + r.stderr
    assert "--benchkit bad.yaml" in r.stderr and "workloads" in r.stderr
    # A spec that loads but names a workload that does not exist: each cell errors, with the message alone.
    (tmp_path / "unknown.yaml").write_text(
        "name: unknown\nworkloads: [{name: no-such-workload}]\nbackends: [{name: onnxruntime}]\n"
        "scenarios: [{kind: offline}]\n")
    r = run_pytest(tmp_path, "--benchkit", "unknown.yaml")
    assert r.returncode == 1 and "1 error" in r.stdout, r.stdout + r.stderr
    assert "WorkloadError: unknown.yaml: workloads[0] (no-such-workload).name: unknown workload" in r.stdout
    assert "Traceback" not in r.stdout and "During handling" not in r.stdout


def test_noop_without_the_option(tmp_path):
    """Ordinary runs: no items added, and importing the plugin pulls in nothing heavy (in a fresh process)."""
    (tmp_path / "test_plain.py").write_text("def test_plain():\n    assert True\n")
    r = run_pytest(tmp_path, "-q")
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout + r.stderr
    probe = ("import sys, benchkit.conformance.pytest_plugin; "
             "print(sorted(m for m in ('numpy', 'pydantic', 'onnx', 'onnxruntime', 'rich', 'yaml') "
             "if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env(), timeout=60)
    assert r.stdout.strip() == "[]", r.stdout + r.stderr


GATE_SPEC = """\
name: gate-demo
seed: 4
workloads:
  - {name: gemm, params: {m: 32, n: 128, k: 128}}
backends:
  - {name: slowed-ort, label: ort, options: {slowdown: SLOWDOWN, intra_op_num_threads: 1}}
scenarios:
  - {kind: single_stream, min_duration_ms: 300, min_query_count: 200}
run: {profile: quick, isolation: inline}
"""


def test_compare_gate_against_a_baseline(tmp_path, fakes_on_path):
    """--benchkit-compare runs `benchkit compare`'s logic as one more item: a 10x slowdown fails it; the same
    adapter again does not. The gate is a generous 90%, on one thread: the subject is the wiring, the rates are
    in bench_ci_gate.py; a 15 µs call on two threads, measured beside another test file, was once 2.6x slower
    than alone (a thread that waits on a busy core holds up the whole call)."""
    from benchkit.cli import main

    (tmp_path / "base.yaml").write_text(GATE_SPEC.replace("SLOWDOWN", "0"))
    assert main(["run", str(tmp_path / "base.yaml"), "--out", str(tmp_path / "baseline")]) in (0, 1)
    (tmp_path / "same.yaml").write_text(GATE_SPEC.replace("SLOWDOWN", "0"))
    (tmp_path / "slow.yaml").write_text(GATE_SPEC.replace("SLOWDOWN", "9.0"))
    gate = ["--benchkit-compare", str(tmp_path / "baseline"), "--benchkit-compare-fail", "headline:90%", "-rA"]
    same = run_pytest(tmp_path, "--benchkit", "same.yaml", "--benchkit-out", "o1", *gate)
    assert "gate-demo" in same.stdout and "benchkit-compare" in same.stdout
    assert "PASSED same.yaml::benchkit-compare" in same.stdout, same.stdout
    slow = run_pytest(tmp_path, "--benchkit", "slow.yaml", "--benchkit-out", "o2", *gate)
    assert slow.returncode == 1, slow.stdout
    assert "FAILED slow.yaml::benchkit-compare" in slow.stdout and "regression against" in slow.stdout, slow.stdout
