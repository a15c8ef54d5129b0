"""End to end through the `benchkit` command: the CI smoke suite, the read-only commands, bad input.

Commands run in this process (``run_cli``: ``benchkit.cli.main``, exit code and output as the console script gives
them); the tests whose subject is the process itself (the console script's exit code, start-up imports) start one.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from benchkit.results import records

from conftest import ROOT, CliResult, run_cli


def bk(*args: str, cwd: Path = ROOT) -> CliResult:
    return run_cli(*args, cwd=cwd)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    # inline: the subject is the smoke suite's cells and records; worker isolation is tested in test_isolation
    out = tmp_path_factory.mktemp("smoke")
    proc = bk("run", "specs/ci-smoke.yaml", "--inline", "--out", str(out))
    return proc, out


def test_ci_smoke_runs_every_cell(smoke):
    proc, out = smoke
    assert proc.returncode == 0, proc.stderr
    files = sorted(out.rglob("*.json"))
    cells = {f.stem for f in files}
    assert cells == {f"{w}__onnxruntime__{s}" for w in ("tiny-add", "mlp") for s in ("single_stream", "offline")}
    schema = records.record_json_schema()
    for f in files:
        data = json.loads(f.read_text())
        jsonschema.validate(data, schema)
        rec = records.parse(data, str(f))
        assert rec.validity.valid, rec.validity.reasons
        assert rec.metrics.count == len(rec.samples_ns) >= 100
        assert rec.metrics.duration_ns >= 1_000_000_000
        assert rec.workload.model_sha256 and rec.backend.version
    assert "benchkit results" in proc.stdout and "VALID" in proc.stdout


def test_offline_batch_is_effective_batch(smoke):
    _, out = smoke
    rec = records.load(next(out.rglob("mlp__onnxruntime__offline.json")))
    assert rec.workload.effective_batch_size == 8
    assert rec.metrics.sample_count == 8 * rec.metrics.count
    assert rec.workload.inputs[0].shape[0] == 8


def test_show_and_compare(smoke):
    _, out = smoke
    rec = next(out.rglob("tiny-add__onnxruntime__single_stream.json"))
    shown = bk("show", str(rec))
    assert shown.returncode == 0, shown.stderr
    assert "tiny-add__onnxruntime__single_stream" in shown.stdout and "p99" in shown.stdout
    cmp = bk("compare", str(out), str(out))
    assert cmp.returncode == 0, cmp.stderr
    assert "1.000" in cmp.stdout and "throughput" in cmp.stdout


def test_fixed_batch_model_runs_at_its_own_batch(tmp_path):
    """The issue's example: a [1,16] model under offline batch 8 runs 1 sample per call, and says so."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])
    c = numpy_helper.from_array(np.ones((1, 16), np.float32), "c")
    # older exporters list weights as graph inputs too: `c` must not be fed
    g = helper.make_graph([helper.make_node("Add", ["x", "c"], ["y"])], "g", [x, helper.make_tensor_value_info(
        "c", TensorProto.FLOAT, [1, 16])], [y], [c])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    (tmp_path / "models").mkdir()
    onnx.save(m, str(tmp_path / "models" / "tiny_add.onnx"))
    (tmp_path / "example.yaml").write_text("""
name: example
seed: 42
workloads:
  - name: tiny-add
    model: models/tiny_add.onnx
    sha256: null
backends:
  - name: onnxruntime
    options: {providers: [CPUExecutionProvider]}
scenarios:
  - kind: offline
    batch_size: 8
    min_duration_ms: 200
    min_query_count: 20
""")
    proc = bk("run", "example.yaml", "--inline", "--out", "res", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rec = records.load(next((tmp_path / "res").rglob("*.json")))
    assert rec.workload.effective_batch_size == 1
    assert [i.name for i in rec.workload.inputs] == ["x"]
    assert rec.metrics.sample_count == rec.metrics.count


def test_help_and_schemas():
    h = bk("--help")
    assert h.returncode == 0 and "run" in h.stdout and "compare" in h.stdout
    for which in ("spec", "result"):
        s = bk("schema", which)
        assert s.returncode == 0
        jsonschema.Draft202012Validator.check_schema(json.loads(s.stdout))


def test_backends_lists_installed():
    b = bk("backends")
    assert b.returncode == 0
    assert "onnxruntime" in b.stdout and "CPUExecutionProvider" in b.stdout and "null" in b.stdout


def test_bad_input_keeps_existing_records(smoke):
    _, out = smoke
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*.json")}
    bad = bk("run", "tests/data/bad_specs/sha_mismatch.yaml", "--out", str(out))
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr and "sha256" in bad.stderr
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*.json")}
    assert before == after


@pytest.mark.parametrize(
    "args, needle",
    [
        (["run", "specs/ci-smoke.yaml", "--backend", "tensorrt"], "--backend: tensorrt not in"),
        (["run", "specs/ci-smoke.yaml", "--workload", "bert"], "--workload: bert not in"),
        (["run", "no/such/spec.yaml"], "spec file not found"),
        (["show", "no-such-record.json"], "no such record file"),
    ],
)
def test_bad_arguments_exit_2(args, needle):
    p = bk(*args)
    assert p.returncode == 2
    assert needle in p.stderr and "Traceback" not in p.stderr


def test_workloads_export_matches_the_shipped_example_model(tmp_path):
    out = tmp_path / "t.onnx"
    p = bk("workloads", "export", "tiny-add", "--batch", "1", "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == (ROOT / "specs" / "models" / "tiny_add.onnx").read_bytes()
    dyn = tmp_path / "d.onnx"
    assert bk("workloads", "export", "tiny-add", "-o", str(dyn)).returncode == 0
    from benchkit.workloads import catalog

    assert dyn.read_bytes() == catalog.materialize("tiny-add").read_bytes()  # unchanged graph: closed-division bytes
    bad = bk("workloads", "export", "tiny-add", "--dim", "seq=3", "-o", str(tmp_path / "x.onnx"))
    assert bad.returncode == 2 and "seq is not a dynamic dimension" in bad.stderr


def test_the_console_script_exits_2_on_bad_input_without_a_traceback():
    """`python -m benchkit` from a checkout, no install: the process's own exit code and stderr."""
    p = subprocess.run([sys.executable, "-m", "benchkit", "show", "no-such-record.json"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.startswith("benchkit: error: ") and "no such record file" in p.stderr
    assert "Traceback" not in p.stderr
    usage = subprocess.run([sys.executable, "-m", "benchkit", "run"], cwd=ROOT, capture_output=True, text=True,
                           timeout=60)
    assert usage.returncode == 2 and "usage: benchkit run" in usage.stderr


def test_startup_imports_no_runtime():
    """`benchkit --help` stays instant because nothing heavy is imported at start-up (figures: README)."""
    code = ("import sys, benchkit.cli\n"
            "heavy = [m for m in ('numpy', 'onnx', 'onnxruntime', 'openvino', 'torch', 'pydantic', 'rich', 'yaml')"
            " if m in sys.modules]\n"
            "print(','.join(heavy))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == "", p.stdout
