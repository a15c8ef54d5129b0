"""Result records: the golden file of every schema version, the evolution policy, round trip, atomic writes.

Golden files (tests/data/record_v<major>.<minor>.json; record_v1.json is 1.0) are real records, each written
by the benchkit that introduced its version, with the cell of tests/data/golden_record_spec.yaml:

    1.0  f891095  (record_v1.json)          1.4  591a604 (with --audit)      1.7  4678525
    1.1  bbfdbc1                             1.5  5baa681                     1.8  schema_minor written
    1.2  01f18f2                             1.6  1a41c66                     1.13 memory, in_flight, tokens ...

They stay loadable forever. To add the golden file of a new minor (after bumping records.SCHEMA_MINOR):

    python -m benchkit run tests/data/golden_record_spec.yaml --inline --out /tmp/golden
    python tests/test_records.py /tmp/golden/golden/*/tiny-add__onnxruntime__single_stream.json

tests/data/future/ holds what a later benchkit could write: a newer minor with fields this one does not know
(read, with a warning) and a newer major (refused).
"""

from __future__ import annotations

import json
import re
import sys
import warnings
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from benchkit.results import recordio, records
from benchkit import stats
from benchkit.errors import RecordError

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
GOLDEN_V1 = DATA / "record_v1.json"
GOLDEN = sorted(DATA.glob("record_*.json"))
NEWER_MINOR = DATA / "future" / "record_v1.99.json"
NEWER_MAJOR = DATA / "future" / "record_v2.0.json"
MINOR_WRITTEN_SINCE = 8  # records of earlier minors carry no schema_minor and read as 1.0

# Field paths clients rely on (issue contract): never renamed.
CONTRACT = [
    "schema_version", "benchkit_version", "run_id", "started_at", "spec_sha256", "spec",
    "workload.name", "workload.model_sha256", "backend.name", "backend.version", "backend.device",
    "backend.precision", "backend.options", "system.cpu_model", "system.cpu_count", "system.memory_bytes",
    "system.os", "system.python", "system.packages", "scenario.kind", "scenario.settings",
    *(f"metrics.latency_ns.{k}" for k in ("min", "mean", "stdev", "p50", "p90", "p95", "p99", "p999", "max")),
    "metrics.count", "metrics.throughput_per_s", "metrics.first_inference_ns", "metrics.load_ns", "samples_ns",
    "validity.valid", "validity.reasons",
]


def _get(d, path):
    for part in path.split("."):
        d = d[part]
    return d


def version_of(path: Path) -> tuple[int, int]:
    """record_v1.json -> (1, 0); record_v1.8.json -> (1, 8)."""
    m = re.fullmatch(r"record_v(\d+)(?:\.(\d+))?\.json", path.name)
    assert m, f"{path.name}: golden files are named record_v<major>[.<minor>].json"
    return int(m[1]), int(m[2] or 0)


def write(tmp_path, data, name="r.json"):
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


@pytest.fixture(scope="module")
def json_schema():
    """A validator of the record's JSON Schema, built once (jsonschema.validate checks the schema itself each call)."""
    schema = records.record_json_schema()
    return jsonschema.validators.validator_for(schema)(schema)


@pytest.fixture
def no_record_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error", records.RecordWarning)
        yield


# --------------------------------------------------------------------------- golden files, every version


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_golden_loads_forever(path, json_schema, no_record_warnings):
    major, minor = version_of(path)
    data = json.loads(path.read_text())
    rec = records.load(path)
    assert rec.schema_version == major == data["schema_version"]
    if minor < MINOR_WRITTEN_SINCE:
        assert "schema_minor" not in data and rec.schema_minor == 0
    else:
        assert data["schema_minor"] == rec.schema_minor == minor
    for p in CONTRACT:
        _get(data, p)  # KeyError fails the test
    json_schema.validate(data)
    if rec.samples_ns:
        assert rec.metrics.latency_ns == stats.summarize(np.array(rec.samples_ns, dtype=np.int64))
    # The fast reader (compare, the results index) reads the same record.
    fast, body = recordio.load_split(path)
    assert fast == rec.model_copy(update={"samples_ns": None})
    assert (body is None) == (not rec.samples_ns)


def test_a_golden_file_for_every_version():
    have = {version_of(p) for p in GOLDEN}
    want = {tuple(map(int, v.split("."))) for v in records.SCHEMA_HISTORY}
    missing = sorted(want - have)
    assert not missing, (
        f"no golden record of schema {', '.join(f'{a}.{b}' for a, b in missing)}; write one with:\n"
        "    python -m benchkit run tests/data/golden_record_spec.yaml --inline --out /tmp/golden\n"
        "    python tests/test_records.py /tmp/golden/golden/*/tiny-add__onnxruntime__single_stream.json"
    )
    assert have <= want, f"golden files of versions the history does not list: {sorted(have - want)}"


def test_history_ends_at_the_writers_version():
    assert list(records.SCHEMA_HISTORY) == [f"{records.SCHEMA_VERSION}.{m}" for m in range(records.SCHEMA_MINOR + 1)]
    assert records.SCHEMA_MINOR >= MINOR_WRITTEN_SINCE


def test_a_record_built_here_is_written_at_the_current_version(tmp_path):
    from record_factory import make_record

    rec = make_record([100, 200, 300])
    assert (rec.schema_version, rec.schema_minor) == (records.SCHEMA_VERSION, records.SCHEMA_MINOR)
    data = json.loads(records.save(rec, tmp_path / "r.json").read_text())
    assert (data["schema_version"], data["schema_minor"]) == (records.SCHEMA_VERSION, records.SCHEMA_MINOR)
    assert records.load(tmp_path / "r.json") == rec


def test_round_trip_is_lossless(tmp_path, json_schema, no_record_warnings):
    rec = records.load(GOLDEN_V1)
    out = records.save(rec, tmp_path / "a" / "r.json")
    again = records.load(out)
    assert again == rec and again.schema_minor == 0  # an old record saved again keeps its version
    json_schema.validate(json.loads(out.read_text()))
    assert again.started_at.tzinfo is not None and again.started_at.utcoffset().total_seconds() == 0


# --------------------------------------------------------------------------- the evolution policy


def test_newer_minor_is_read_without_the_fields_this_version_does_not_know():
    with pytest.warns(records.RecordWarning) as caught:
        rec = records.load(NEWER_MINOR)
    assert len(caught) == 1
    w = caught[0].message
    assert w.schema == (1, 99) and w.source == str(NEWER_MINOR)
    assert w.fields == ("workload.inputs[].layout", "metrics.latency_ns.p9999", "metrics.tail_ratio", "carbon")
    assert str(w) == (
        f"record {NEWER_MINOR} was written by a newer benchkit (schema 1.99); fields this version does not know "
        "were ignored: workload.inputs[].layout, metrics.latency_ns.p9999, metrics.tail_ratio, carbon"
    )
    # Everything it does know is kept, exactly.
    current = records.load(DATA / "record_v1.8.json")  # what record_v1.99.json was made from
    assert rec.schema_minor == 99 and rec.metrics == current.metrics and rec.workload == current.workload


def test_newer_minor_through_the_fast_reader_warns_once():
    with pytest.warns(records.RecordWarning) as caught:
        rec, body = recordio.load_split(NEWER_MINOR)
    assert len(caught) == 1 and rec.schema_minor == 99 and body is None


def test_newer_minor_with_an_invalid_value_is_still_refused(tmp_path):
    data = json.loads(NEWER_MINOR.read_text())
    data["metrics"]["count"] = "many"
    with pytest.raises(RecordError, match=r"invalid record at metrics\.count: .*newer benchkit \(schema 1\.99\)"):
        records.load(write(tmp_path, data))


@pytest.mark.parametrize("golden", ["record_v1.json", "record_v1.8.json"])
@pytest.mark.parametrize("where", ["extra", "metrics.extra_ns", "workload.inputs.0.layout", "metrics.latency_ns.p9"])
def test_unknown_field_at_this_or_an_older_minor_is_refused(tmp_path, golden, where):
    data = json.loads((DATA / golden).read_text())
    *parents, leaf = where.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[leaf] = 1
    shown = re.sub(r"\.(\d+)", r"[\1]", where)
    refused = rf"unknown field\(s\) {re.escape(shown)}: a schema 1\.\d+ record has no such"
    with pytest.raises(RecordError, match=refused):
        records.load(write(tmp_path, data))
    with pytest.raises(RecordError, match=re.escape(shown)):
        recordio.load_split(tmp_path / "r.json")


@pytest.mark.parametrize("read", [records.load, recordio.load_split], ids=["load", "load_split"])
def test_newer_major_is_refused(read):
    with pytest.raises(RecordError, match=r"written by a newer benchkit \(schema 2\); upgrade benchkit"):
        read(NEWER_MAJOR)


def test_newer_major_without_minor_is_refused(tmp_path):
    data = json.loads(GOLDEN_V1.read_text())
    data["schema_version"] = records.SCHEMA_VERSION + 1
    with pytest.raises(RecordError, match=rf"written by a newer benchkit \(schema {records.SCHEMA_VERSION + 1}\)"):
        records.load(write(tmp_path, data))


@pytest.mark.parametrize("minor", [-1, "8", 1.5, True, None])
def test_schema_minor_must_be_a_count(tmp_path, minor):
    data = json.loads(GOLDEN_V1.read_text())
    data["schema_minor"] = minor
    with pytest.raises(RecordError, match="schema_minor must be a non-negative integer"):
        records.load(write(tmp_path, data))


@pytest.mark.parametrize("version", [0, -1, "1", True, 1.0])
def test_schema_version_must_be_a_positive_integer(tmp_path, version):
    data = json.loads(GOLDEN_V1.read_text())
    data["schema_version"] = version
    with pytest.raises(RecordError, match="schema_version must be a positive integer"):
        records.load(write(tmp_path, data))


def test_cli_reads_a_newer_minor_and_refuses_a_newer_major(capsys):
    from benchkit.cli import main

    with pytest.warns(records.RecordWarning):
        assert main(["show", str(NEWER_MINOR)]) == 0
    assert main(["show", str(NEWER_MAJOR)]) == 2
    err = capsys.readouterr().err
    assert "written by a newer benchkit (schema 2); upgrade benchkit" in err and "Traceback" not in err


def test_every_record_reader_applies_the_policy():
    """ResultRecord.model_validate alone skips the version policy: only records.py may call it."""
    offenders = [
        str(p.relative_to(ROOT)) for p in (ROOT / "benchkit").rglob("*.py")
        if p.name != "records.py" and "ResultRecord.model_validate" in p.read_text(encoding="utf-8")
    ]
    assert offenders == []


# --------------------------------------------------------------------------- errors, atomic writes


@pytest.mark.parametrize(
    "content, match",
    [("{not json", "not readable JSON"), ('{"a": 1}', "no schema_version"), ("[]", "no schema_version")],
)
def test_unreadable_records(tmp_path, content, match):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(RecordError, match=match):
        records.load(p)


def test_invalid_field_is_named(tmp_path):
    data = json.loads(GOLDEN_V1.read_text())
    data["metrics"]["count"] = "many"
    with pytest.raises(RecordError, match=r"invalid record at metrics\.count"):
        records.load(write(tmp_path, data))


def test_atomic_write_leaves_no_temporaries(tmp_path):
    target = tmp_path / "x.json"
    records.write_atomic(target, "first")
    records.write_atomic(target, "second")
    assert target.read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_atomic_write_failure_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "x.json"
    records.write_atomic(target, "old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("benchkit._fsutil.os.replace", boom)
    with pytest.raises(OSError):
        records.write_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


# --------------------------------------------------------------------------- writing a golden file


def make_golden(record: Path) -> Path:
    """Copy a record written by this benchkit to tests/data/record_v<major>.<minor>.json, as written."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", records.RecordWarning)
        rec = records.load(record)
    if (rec.schema_version, rec.schema_minor) != (records.SCHEMA_VERSION, records.SCHEMA_MINOR):
        raise SystemExit(f"{record}: schema {rec.schema_version}.{rec.schema_minor} is not this benchkit's")
    if rec.samples_ns and len(rec.samples_ns) > 1000:
        raise SystemExit(f"{record}: {len(rec.samples_ns)} samples; run tests/data/golden_record_spec.yaml")
    out = DATA / f"record_v{rec.schema_version}.{rec.schema_minor}.json"
    out.write_bytes(record.read_bytes())
    return out


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(make_golden(Path(arg)))
