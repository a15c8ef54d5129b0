"""One suite driver: the same spec through ``benchkit run``, ``benchkit.run()`` and ``pytest --benchkit`` gives
the same verdicts, divisions, audits, accuracy settings and record set."""

from __future__ import annotations

from pathlib import Path

import benchkit
from benchkit.cli import main
from benchkit.results import records
from test_pytest_plugin import run_pytest

# A model outside the catalog with run.division: closed (INVALID: it cannot be closed), the audits on, two
# accuracy samples, samples kept: each of these spec fields must have the same effect through every driver.
SPEC = """\
name: one-driver
seed: 11
workloads:
  - name: tiny
    model: models/tiny.onnx
  - name: tiny-add
backends:
  - name: onnxruntime
    options: {providers: [CPUExecutionProvider]}
scenarios:
  - kind: single_stream
    min_duration_ms: 100
    min_query_count: 64
run:
  profile: quick
  isolation: inline
  division: closed
  audit: true
  accuracy_samples: 2  # ignored under audit: the audited gate covers the whole pool
  keep_samples: true
"""


def _records(out: Path) -> dict[str, records.ResultRecord]:
    got = {}
    for path in records.find([out]):
        rec = records.load(path)
        got[rec.cell_id] = rec
    return got


def _summary(rec: records.ResultRecord) -> dict:
    """What must agree between drivers (figures measured differ from run to run; rules must not)."""
    return {
        # the rules whose outcome does not depend on the machine's noise (an audit's may)
        "reason_checks": sorted({f.check for f in rec.validity.findings if f.severity == "reason"}
                                & {"division", "precision", "accuracy", "outputs", "error", "stop_rule"}),
        "division_reasons": [f.message for f in rec.validity.findings if f.check == "division"],
        "division": (rec.division.name, rec.division.requested) if rec.division else None,
        "audits": sorted(k for k, v in rec.audits.model_dump().items() if v is not None) if rec.audits else None,
        "accuracy": (rec.accuracy.reference.split(" ")[0], len(rec.accuracy.outputs) > 0) if rec.accuracy else None,
        "samples_kept": rec.samples_ns is not None,
        "spec": rec.spec,
        "scenario": rec.scenario.settings,
        "power": rec.power is not None,
        "stability": rec.stability is not None,
    }


def test_one_spec_three_drivers_same_verdicts(tmp_path, tiny_model):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)

    assert main(["run", str(spec), "--out", str(tmp_path / "cli")]) == 1  # the closed request fails
    api = benchkit.run(str(spec), str(tmp_path / "api"))
    assert not api.all_valid
    r = run_pytest(tmp_path, "--benchkit", "spec.yaml", "--benchkit-out", "plugin", "-q")
    assert r.returncode == 1, r.stdout + r.stderr

    by_driver = {name: _records(tmp_path / name) for name in ("cli", "api", "plugin")}
    assert by_driver["cli"].keys() == by_driver["api"].keys() == by_driver["plugin"].keys() == {
        "tiny__onnxruntime__single_stream", "tiny-add__onnxruntime__single_stream"}
    cli = {cid: _summary(rec) for cid, rec in by_driver["cli"].items()}
    assert cli["tiny__onnxruntime__single_stream"]["division"] == ("open", "closed")
    assert "division" in cli["tiny__onnxruntime__single_stream"]["reason_checks"]
    assert cli["tiny__onnxruntime__single_stream"]["audits"] == [
        "alternate_seed", "boundary", "repeated_input", "timed_outputs"]
    for name in ("api", "plugin"):
        got = {cid: _summary(rec) for cid, rec in by_driver[name].items()}
        differ = {(cid, k): (cli[cid][k], got[cid][k]) for cid in cli for k in cli[cid] if cli[cid][k] != got[cid][k]}
        assert not differ, f"{name} differs from the CLI: {differ}"
