"""Hostile and careless specs: each refused at ``validate`` with one message naming the file and field, exit 2,
no traceback, no hang, nothing written; and the same for the paths a spec or a command names.

Each case is a spec an attacker or an unlucky operator could write (issue: strictness gaps): a key given twice,
a duration of 10^34 ms, ``true`` as a count, NaN as an input bound, an unquoted ``null`` as a name, a spec path
that does not exist, a model that is a device, a FIFO or a folder, a record whose schema_version is a string.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from conftest import run_cli, write_tiny_add
from benchkit.errors import SpecError
from benchkit.spec import MAX_DURATION_MS, MAX_QUERY_COUNT, parse_spec

HEAD = """name: strict
workloads: [{name: tiny, model: models/tiny.onnx}]
backends: [{name: "null"}]
"""
SCENARIO = "scenarios: [{kind: single_stream}]\n"

# (case, spec text, what the message must say)
CASES = [
    ("duplicate-key", "name: a\n" + HEAD + SCENARIO, "key 'name' is given twice, at line 1 and at line 2"),
    ("duplicate-nested-key", HEAD + "scenarios: [{kind: single_stream, warmup_ms: 1, warmup_ms: 2}]\n",
     "key 'warmup_ms' is given twice"),
    ("huge-duration", HEAD + "scenarios: [{kind: single_stream, min_duration_ms: " + "9" * 40 + "}]\n",
     f"min_duration_ms: Input should be less than or equal to {MAX_DURATION_MS}"),
    ("huge-count", HEAD + f"scenarios: [{{kind: offline, max_query_count: {MAX_QUERY_COUNT + 1}}}]\n",
     "max_query_count: Input should be less than or equal to"),
    ("huge-rate", HEAD + "scenarios: [{kind: server, target_qps: 1.0e+12, target_latency_ns: 1000000}]\n",
     "target_qps must be a positive number (at most 1000000000)"),
    ("huge-latency", HEAD + "scenarios: [{kind: server, target_qps: 10, target_latency_ns: " + "9" * 30 + "}]\n",
     "target_latency_ns: Input should be less than or equal to"),
    ("huge-timeout", HEAD + SCENARIO + "run: {cell_timeout_s: 1.0e+300}\n",
     "cell_timeout_s: Input should be less than or equal to"),
    ("infinite-timeout", HEAD + SCENARIO + "run: {cell_timeout_s: .inf}\n", "cell_timeout_s: Input should be"),
    ("huge-memory-size", HEAD + SCENARIO + "run: {max_memory_bytes: " + "9" * 400 + "GiB}\n",
     "run.max_memory_bytes: expected bytes"),
    ("huge-batch", HEAD + "scenarios: [{kind: offline, batch_size: [1, 100000000]}]\n",
     "each batch_size in the sweep must be a positive integer (at most 1048576)"),
    ("bool-count", HEAD + "scenarios: [{kind: single_stream, min_query_count: true}]\n",
     "min_query_count: Input should be a valid integer (got True)"),
    ("float-count", HEAD + "scenarios: [{kind: single_stream, min_query_count: 5.0}]\n",
     "min_query_count: Input should be a valid integer (got 5.0)"),
    ("string-count", HEAD + "scenarios: [{kind: single_stream, warmup_queries: '5'}]\n",
     "warmup_queries: Input should be a valid integer (got '5')"),
    ("bool-batch", HEAD + "scenarios: [{kind: offline, batch_size: true}]\n", "batch_size must be a positive integer"),
    ("nan-low", HEAD.replace("model: models/tiny.onnx}", "model: models/tiny.onnx, inputs: {x: {low: .nan}}}")
     + SCENARIO, "inputs.x.low: Input should be a finite number (got nan)"),
    ("inf-high", HEAD.replace("model: models/tiny.onnx}", "model: models/tiny.onnx, inputs: {x: {high: .inf}}}")
     + SCENARIO, "inputs.x.high: Input should be a finite number (got inf)"),
    ("low-above-high", HEAD.replace("model: models/tiny.onnx}",
                                    "model: models/tiny.onnx, inputs: {x: {low: 3, high: 1}}}") + SCENARIO,
     "low must be below high"),
    ("huge-catalog-param", "name: p\nworkloads: [{name: gemm, params: {m: " + "9" * 20 + "}}]\n"
     "backends: [{name: 'null'}]\n" + SCENARIO, "param 'm' must be finite and, for an integer, between 0 and"),
    ("null-spec-name", HEAD.replace("name: strict", "name: null") + SCENARIO,
     'name: no value: YAML reads an unquoted null, ~ or an empty value as nothing; a name spelled so must be quoted'),
    ("null-backend-name", HEAD.replace('{name: "null"}', "{name: null}") + SCENARIO,
     "backends[0].name: no value: YAML reads an unquoted null"),
]


@pytest.fixture
def folder(tmp_path) -> Path:
    write_tiny_add(tmp_path / "models" / "tiny.onnx")
    return tmp_path


def _refused(r, *says: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    assert r.stderr.startswith("benchkit: error: "), r.stderr
    for s in says:
        assert s in r.stderr, r.stderr


@pytest.mark.parametrize("case,text,says", CASES, ids=[c[0] for c in CASES])
def test_validate_refuses(case, text, says, folder):
    spec = folder / "spec.yaml"
    spec.write_text(text)
    before = sorted(p.name for p in folder.iterdir())
    r = run_cli("validate", spec, cwd=folder)
    _refused(r, f"{spec}: ", says)
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written


def test_bounds_admit_the_largest_honest_values(folder):
    text = HEAD + (f"scenarios: [{{kind: single_stream, min_duration_ms: {MAX_DURATION_MS}, "
                   f"max_query_count: {MAX_QUERY_COUNT}}}, {{kind: server, target_qps: 1.0e+9, "
                   "target_latency_ns: 3600000000000, workers: 1024}, {kind: offline, batch_size: 1048576}]\n"
                   "run: {cell_timeout_s: 604800, max_memory_bytes: 1PiB}\n").replace("1PiB", str(1 << 50))
    loaded = parse_spec(text, "bounds.yaml", folder)
    assert loaded.spec.scenarios[0].min_duration_ms == MAX_DURATION_MS


def test_a_merge_key_may_be_overridden(folder):
    # `<<: *base` followed by a key is an override YAML allows, not a key given twice
    text = HEAD + "scenarios:\n  - &b {kind: single_stream, warmup_ms: 1}\n  - {<<: *b, warmup_ms: 2}\n"
    loaded = parse_spec(text, "merge.yaml", folder)
    assert [s.warmup_ms for s in loaded.spec.scenarios] == [1, 2]


@pytest.mark.parametrize("arg", ["/nonexistent/dir/ci-smoke.yaml", "ci-smoke.yaml", "sub/ci-smoke"])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_spec_path_that_does_not_exist_is_not_the_bundled_spec(command, arg, tmp_path):
    r = run_cli(command, arg, "--out", tmp_path / "out", cwd=tmp_path) if command == "run" else \
        run_cli(command, arg, cwd=tmp_path)
    _refused(r, f"{arg}: spec file not found (the standard spec of that name is given by its bare name: ci-smoke)")
    assert not (tmp_path / "out").exists()


def test_bundle_takes_a_standard_spec_by_name_as_run_does(tmp_path):
    from benchkit.spec import find_bundled_spec
    from record_factory import make_record

    sha = hashlib.sha256(find_bundled_spec("ci-smoke").read_bytes()).hexdigest()
    (tmp_path / "runs").mkdir()
    rec = make_record(spec_name="ci-smoke").model_copy(update={"spec_sha256": sha})
    (tmp_path / "runs" / "r.json").write_text(rec.model_dump_json())
    r = run_cli("bundle", tmp_path / "runs", "-o", tmp_path / "b.tar.gz", "--spec", "ci-smoke")
    assert r.returncode == 0 and (tmp_path / "b.tar.gz").is_file(), r.stderr
    r = run_cli("bundle", tmp_path / "runs", "-o", tmp_path / "c.tar.gz", "--spec", "/nonexistent/ci-smoke.yaml")
    _refused(r, "/nonexistent/ci-smoke.yaml: spec file not found")
    assert not (tmp_path / "c.tar.gz").exists()


def _model_spec(folder: Path, model: str) -> Path:
    spec = folder / "spec.yaml"
    spec.write_text(HEAD.replace("models/tiny.onnx", model) + SCENARIO)
    return spec


@pytest.mark.parametrize("model,says", [("/dev/zero", "is a character device, not an ONNX file"),
                                        ("models", "is a directory, not an ONNX file")])
def test_a_model_that_is_not_a_file_is_named_for_what_it_is(model, says, folder):
    r = run_cli("validate", _model_spec(folder, model))  # one zygote key: no cwd of its own
    _refused(r, "workloads[0] (tiny).model: ", says)


def test_a_model_that_is_a_fifo_is_never_opened(folder):
    fifo = folder / "pipe.onnx"
    os.mkfifo(fifo)
    opened, done = [], threading.Event()

    def writer() -> None:
        # A non-blocking open for writing succeeds only while a reader has the FIFO open: then benchkit opened it
        # (and would wait for ever); closing it at once gives that reader its end of file, so the test fails
        # instead of hanging.
        while not done.wait(0.05):
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                opened.append(True)
            except OSError:
                pass

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        r = run_cli("validate", _model_spec(folder, "pipe.onnx"))
    finally:
        done.set()
        t.join()
    _refused(r, "pipe.onnx: is a FIFO (named pipe), not an ONNX file")
    assert not opened


def test_schema_version_as_a_string_is_refused_alike_by_every_reader(tmp_path):
    from record_factory import make_record

    data = make_record().model_dump_json().replace('"schema_version":1,', '"schema_version":"1",', 1)
    assert '"schema_version":"1"' in data
    (tmp_path / "runs").mkdir()
    rec = tmp_path / "runs" / "r.json"
    rec.write_text(data)
    says = f"{rec}: schema_version must be a positive integer, got '1' (a JSON number, 1, not a string)"
    for args in (["show", rec], ["compare", tmp_path / "runs", tmp_path / "runs"],
                 ["report", tmp_path / "runs", "-o", tmp_path / "report.html"]):
        _refused(run_cli(*args), says)
    listing = run_cli("results", "list", tmp_path / "runs")
    assert says.split(": ", 1)[1] in " ".join((listing.stdout + listing.stderr).split())  # as a skipped file
    assert not (tmp_path / "report.html").exists()


def test_strictness_is_the_spec_models_not_the_command_line():
    with pytest.raises(SpecError, match="min_query_count: Input should be a valid integer"):
        parse_spec("name: a\nworkloads: [{name: gemm}]\nbackends: [{name: 'null'}]\n"
                   "scenarios: [{kind: offline, min_query_count: false}]\n", "api.yaml", Path("."))
