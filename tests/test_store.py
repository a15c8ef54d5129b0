"""The results store: SQLite index over plain JSON records, incremental refresh, queries, CLI."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from record_factory import T0, make_record
from real_records import real_run

from benchkit import cli
from benchkit.results import records
from benchkit.results.store import INDEX_NAME, ResultsStore, StoreError, open_store, parse_when


def populate(root: Path) -> list[Path]:
    specs = [
        dict(workload="resnet50-v1.5", kind="server", precision="int8", backend="openvino", target_qps=300.0,
             started_at=T0 + timedelta(days=40)),
        dict(workload="resnet50-v1.5", kind="server", precision="int8", backend="openvino", target_qps=600.0,
             started_at=T0 + timedelta(days=41), valid=False),
        dict(workload="resnet50-v1.5", kind="server", precision="int8", backend="onnxruntime", backend_label="ort-cpu",
             started_at=T0 + timedelta(days=42)),
        dict(workload="resnet50-v1.5", kind="server", precision="fp32", backend="openvino",
             started_at=T0 + timedelta(days=43)),
        dict(workload="resnet50-v1.5", kind="offline", precision="int8", backend="openvino", batch=8,
             started_at=T0 + timedelta(days=44), concurrency=4),
        dict(workload="bert-base", kind="server", precision="int8", backend="openvino",
             started_at=T0 + timedelta(days=45)),
        dict(workload="resnet50-v1.5", kind="server", precision="int8", backend="openvino",
             started_at=T0 - timedelta(days=90)),
    ]
    paths = []
    for i, kw in enumerate(specs):
        r = make_record(run_id=f"run{i}", seed=i, **kw)
        paths.append(records.save(r, root / "suite" / f"run{i}" / f"{r.cell_id}.json"))
    return paths


def test_query_filters(tmp_path):
    paths = populate(tmp_path)
    with open_store(tmp_path) as store:
        since = parse_when("2026-03-15", "--since")
        hits = store.query(workload="resnet50-v1.5", scenario="server", precision="int8", backend="openvino",
                           since=since)
        assert [Path(h.path) for h in hits] == [paths[1], paths[0]]  # newest first
        assert hits[0].target_qps == 600.0 and not hits[0].valid and hits[1].valid
        assert hits[0].concurrency is None
        offline = store.query(scenario="offline")
        assert [(h.batch, h.concurrency, h.target_qps) for h in offline] == [(8, 4, None)]
        assert [h.path for h in store.query(workload="resnet50-v1.5", scenario="server", precision="int8",
                                            backend="openvino", since=since, valid=True)] == [str(paths[0])]
        # the backend filter matches the spec label and the adapter name
        assert [h.backend for h in store.query(backend="ort-cpu")] == ["ort-cpu"]
        assert [h.backend_name for h in store.query(backend="onnxruntime")] == ["onnxruntime"]
        assert len(store.query(valid=False)) == 1
        assert len(store.query(until=since)) == 1
        assert len(store.query(limit=3)) == 3
        assert store.query(run_id="run5")[0].workload == "bert-base"
        assert store.query(spec="nope") == []
        runs = store.runs()
        assert len(runs) == 7 and runs[0]["run_id"] == "run5"


def test_incremental_refresh(tmp_path):
    paths = populate(tmp_path)
    with ResultsStore(tmp_path) as store:
        st = store.refresh()
        assert (st.added, st.updated, st.removed, st.unchanged) == (7, 0, 0, 0)
        assert (tmp_path / INDEX_NAME).is_file()
        st = store.refresh()
        assert (st.added, st.updated, st.removed, st.unchanged) == (0, 0, 0, 7)
        # change one record in place (a size/mtime change), delete one, add one
        r = records.load(paths[0])
        records.save(r.model_copy(update={"validity": records.Validity(valid=False, reasons=["edited"])}), paths[0])
        os.utime(paths[0], ns=(time.time_ns(), time.time_ns() + 10**9))
        paths[1].unlink()
        records.save(make_record(workload="dlrm", run_id="new"), tmp_path / "new" / "dlrm.json")
        st = store.refresh()
        assert (st.added, st.updated, st.removed, st.unchanged) == (1, 1, 1, 5)
        assert not store.query(run_id="run0")[0].valid
        assert store.query(workload="dlrm")[0].run_id == "new"
        assert store.query(run_id="run1") == []


def test_non_records_are_remembered_not_reread(tmp_path):
    populate(tmp_path)
    (tmp_path / "notes.json").write_text('{"hello": 1}')
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / ".hidden").mkdir()
    records.save(make_record(workload="hidden"), tmp_path / ".hidden" / "x.json")
    with ResultsStore(tmp_path) as store:
        st = store.refresh()
        assert st.added == 9 and st.problems == 2
        assert {Path(p).name for p, _ in store.problems()} == {"notes.json", "broken.json"}
        assert any("not a benchkit result record" in why for _, why in store.problems())
        assert store.refresh().unchanged == 9  # nothing re-read
        assert store.query(workload="hidden") == []


def test_corrupt_or_old_index_is_rebuilt(tmp_path):
    populate(tmp_path)
    (tmp_path / INDEX_NAME).write_bytes(b"this is not a database" * 100)
    with open_store(tmp_path) as store:
        assert len(store.query()) == 7 and not store.in_memory
    db = sqlite3.connect(tmp_path / INDEX_NAME)
    db.execute("PRAGMA user_version = 999")
    db.commit()
    db.close()
    with ResultsStore(tmp_path) as store:
        assert store.query() == []  # the old index was dropped...
        assert store.refresh().added == 7  # ...and is rebuilt from the files


def test_unwritable_index_falls_back_to_memory(tmp_path):
    populate(tmp_path)
    store = ResultsStore(tmp_path, index_path=tmp_path / "no-such-dir" / "index.sqlite")
    with store:
        assert store.in_memory
        store.refresh()
        assert len(store.query()) == 7


def test_errors(tmp_path):
    with pytest.raises(StoreError, match="no such results directory"):
        ResultsStore(tmp_path / "missing")
    with pytest.raises(StoreError, match="--since '2026-02-30'"):
        parse_when("2026-02-30", "--since")
    assert parse_when("2026-01-01T12:00:00", "x") == datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    assert parse_when("2026-01-01T12:00:00+02:00", "x") == datetime(2026, 1, 1, 10, tzinfo=timezone.utc)


def test_real_run_is_indexed(tmp_path):
    _, run_dir = real_run()
    with open_store(run_dir.parent.parent) as store:
        hits = store.query(workload="tiny-add", backend="onnxruntime")
        assert {h.scenario for h in hits} == {"single_stream", "offline"}
        assert all(h.p50_ns and h.throughput_per_s for h in hits)
        assert {h.batch for h in hits} == {1, 4}


def test_cli(tmp_path, capsys):
    paths = populate(tmp_path)
    assert cli.main(["results", "query", str(tmp_path), "--workload", "resnet50-v1.5", "--scenario", "server",
                     "--precision", "int8", "--backend", "openvino", "--since", "2026-01-01", "--valid",
                     "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in rows] == [str(paths[0])]
    assert rows[0]["started_at"].endswith("Z") and rows[0]["valid"] is True
    assert cli.main(["results", "query", str(tmp_path), "--invalid", "--paths"]) == 0
    assert capsys.readouterr().out == f"{paths[1]}\n"
    assert cli.main(["results", "list", str(tmp_path), "--format", "json", "--rebuild"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 7
    assert cli.main(["results", "query", str(tmp_path), "--workload", "bert-base"]) == 0
    out = capsys.readouterr().out
    assert "bert-base" in out and "1 record(s)" in out
    assert cli.main(["results", "query", str(tmp_path), "--since", "yesterday"]) == 2
    assert "--since 'yesterday'" in capsys.readouterr().err
    assert cli.main(["results", "list", str(tmp_path / "nope")]) == 2
