"""The evaluation spec: examples validate, bad input gets a golden message and exit code 2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchkit.cli import main
from benchkit.errors import SpecError
from benchkit.spec import Offline, SingleStream, Spec, load_spec, parse_spec

from conftest import ROOT, SPECS

BAD = ROOT / "tests" / "data" / "bad_specs"
GOLDEN = BAD / "expected_errors.txt"


def _golden() -> dict[str, str]:
    out, name, lines = {}, None, []
    for line in GOLDEN.read_text().splitlines():
        if line.startswith("### "):
            if name:
                out[name] = "\n".join(lines).strip()
            name, lines = line[4:].strip(), []
        else:
            lines.append(line)
    if name:
        out[name] = "\n".join(lines).strip()
    return out


def test_issue_example_validates(tiny_model, tmp_path):
    text = f"""
name: example
seed: 42
workloads:
  - name: tiny-add
    model: models/{tiny_model.name}        # any ONNX file, relative to this spec
    sha256: null                        # optional pin; a mismatch is an error
backends:
  - name: onnxruntime
    options: {{providers: [CPUExecutionProvider]}}
scenarios:
  - kind: single_stream
    min_duration_ms: 1000
    min_query_count: 100
  - kind: offline
    batch_size: 8
    min_duration_ms: 1000
"""
    loaded = parse_spec(text, "example.yaml", tiny_model.parent.parent)
    assert isinstance(loaded.spec.scenarios[0], SingleStream)
    assert isinstance(loaded.spec.scenarios[1], Offline)
    assert loaded.resolve_model(loaded.spec.workloads[0]) == tiny_model.resolve()
    assert len(loaded.sha256) == 64


@pytest.mark.parametrize("spec", sorted(SPECS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_specs_validate(spec, capsys):
    assert main(["validate", str(spec)]) == 0
    assert "valid" in capsys.readouterr().out


@pytest.mark.parametrize("case", sorted(p.stem for p in BAD.glob("*.yaml")))
def test_bad_spec_golden_message(case, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # messages show paths as the user typed them
    rc = main(["validate", f"tests/data/bad_specs/{case}.yaml"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert "Traceback" not in err
    assert err.startswith(f"benchkit: error: tests/data/bad_specs/{case}.yaml")
    if os.environ.get("BENCHKIT_UPDATE_GOLDEN"):
        golden = _golden()
        golden[case] = err
        GOLDEN.write_text("".join(f"### {k}\n{v}\n\n" for k, v in sorted(golden.items())))
    assert err == _golden()[case]


def test_profile_fills_unset_fields_only():
    s = SingleStream(kind="single_stream", min_duration_ms=1234)
    quick = s.effective("quick")
    assert quick.min_duration_ms == 1234
    # quick keeps SingleStream at the 64 queries LoadGen's p90 early stopping needs
    assert quick.min_query_count == 64 and quick.warmup_ms == 50
    std = s.effective("standard")
    assert std.min_query_count == 1024
    assert s.effective("mlperf").min_query_count == 100  # LoadGen 6.0's default; mlperf.conf sets none


def test_max_caps_profile_minimum():
    s = SingleStream(kind="single_stream", max_duration_ms=100)
    eff = s.effective("standard")  # standard's 10 s minimum would exceed the stated maximum
    assert eff.min_duration_ms == 100


def test_models_are_frozen():
    s = SingleStream(kind="single_stream")
    with pytest.raises(Exception):
        s.min_duration_ms = 5  # type: ignore[misc]


def test_duplicate_backend_needs_label():
    with pytest.raises(SpecError, match="give each a distinct `label`"):
        parse_spec(
            "name: x\nworkloads: [{name: tiny-add}]\nbackends: [{name: onnxruntime}, {name: onnxruntime}]\n"
            "scenarios: [{kind: offline}]\n",
            "x.yaml",
            Path("."),
        )


def test_json_spec_accepted(tmp_path):
    p = tmp_path / "s.json"
    p.write_text('{"name": "j", "workloads": [{"name": "tiny-add"}], "backends": [{"name": "null"}],'
                 ' "scenarios": [{"kind": "single_stream"}]}')
    assert load_spec(p).spec.name == "j"


def test_bundled_spec_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing named ci-smoke here: the shipped one is found
    loaded = load_spec("ci-smoke")
    assert loaded.spec.name == "ci-smoke"


def test_schema_has_descriptions():
    schema = Spec.model_json_schema()
    scen = schema["$defs"]["SingleStream"]["properties"]["min_duration_ms"]
    assert "description" in scen
