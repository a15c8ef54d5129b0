"""Result records: schema round trip, the golden file of each schema version, atomic writes, version checks."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

from benchkit.results import records
from benchkit import stats
from benchkit.errors import RecordError

from conftest import ROOT

GOLDEN_V1 = ROOT / "tests" / "data" / "record_v1.json"

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


def test_golden_v1_loads_forever():
    rec = records.load(GOLDEN_V1)
    assert rec.schema_version == 1
    assert rec.scenario.kind == "single_stream"


def test_golden_v1_matches_json_schema():
    data = json.loads(GOLDEN_V1.read_text())
    jsonschema.validate(data, records.record_json_schema())


@pytest.mark.parametrize("path", CONTRACT)
def test_contract_paths_present(path):
    data = json.loads(GOLDEN_V1.read_text())
    _get(data, path)  # KeyError fails the test


def test_percentiles_reproducible_from_samples():
    rec = records.load(GOLDEN_V1)
    assert rec.metrics.latency_ns == stats.summarize(np.array(rec.samples_ns, dtype=np.int64))
    assert rec.metrics.count == len(rec.samples_ns)


def test_round_trip_is_lossless(tmp_path):
    rec = records.load(GOLDEN_V1)
    out = records.save(rec, tmp_path / "a" / "r.json")
    again = records.load(out)
    assert again == rec
    jsonschema.validate(json.loads(out.read_text()), records.record_json_schema())
    assert again.started_at.tzinfo is not None and again.started_at.utcoffset().total_seconds() == 0


def test_newer_schema_version_is_refused(tmp_path):
    data = json.loads(GOLDEN_V1.read_text())
    data["schema_version"] = records.SCHEMA_VERSION + 1
    p = tmp_path / "new.json"
    p.write_text(json.dumps(data))
    with pytest.raises(RecordError, match="newer than this benchkit supports"):
        records.load(p)


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
    p = tmp_path / "r.json"
    p.write_text(json.dumps(data))
    with pytest.raises(RecordError, match=r"metrics\.count"):
        records.load(p)


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
