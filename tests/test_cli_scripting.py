"""The run command for scripts and logs: progress as plain i/N lines with an ETA on stderr when piped, --json and
--quiet, tables that follow COLUMNS, and `results query --format csv`."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from conftest import run_cli

SPEC = """
name: scripting
seed: 3
workloads: [{name: tiny-add}]
backends: [{name: onnxruntime}]
scenarios:
  - {kind: single_stream, min_duration_ms: 50, min_query_count: 20}
  - {kind: offline, batch_size: 4, min_duration_ms: 50, min_query_count: 20}
run: {profile: quick}
"""


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scripting")
    (tmp / "s.yaml").write_text(SPEC)
    piped = run_cli("run", "s.yaml", "--inline", "--out", "out", cwd=tmp, env={"COLUMNS": "100"})
    as_json = run_cli("run", "s.yaml", "--inline", "--out", "out", "--json", cwd=tmp)
    quiet = run_cli("run", "s.yaml", "--inline", "--out", "out", "--quiet", cwd=tmp)
    return tmp, piped, as_json, quiet


def test_piped_progress_is_plain_lines_with_position_and_eta(ran):
    _, piped, _, _ = ran
    assert piped.returncode == 0, piped.stderr
    lines = [ln for ln in piped.stderr.splitlines() if ln.startswith("[")]
    assert [ln.split()[0] for ln in lines] == ["[1/2]", "[2/2]"]
    assert re.search(r"^\[1/2\] tiny-add__onnxruntime__single_stream: VALID \(0:00:\d\d elapsed, ETA 0:00:\d\d\) -> ",
                     lines[0])
    assert "ETA" not in lines[1]  # nothing left to estimate
    assert "\x1b[" not in piped.stderr  # no terminal escapes in a log
    # The results table is on stdout and fits the 100 columns asked for; progress is not on stdout.
    table = [ln for ln in piped.stdout.splitlines() if ln.startswith(("┃", "│", "┏"))]
    assert table and max(len(ln) for ln in table) <= 100
    progress_on_stdout = [ln for ln in piped.stdout.splitlines() if re.match(r"\[\d+/\d+\] ", ln)]
    assert not progress_on_stdout, piped.stdout
    # the peak memory column (its header: at 100 columns a value may be folded to "113…")
    assert any("mem" in ln for ln in table if ln.startswith("┃"))


def test_json_summary_is_the_only_stdout(ran):
    _, _, as_json, _ = ran
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    assert doc["all_valid"] is True and len(doc["records"]) == 2
    r = doc["records"][0]
    assert {"cell_id", "path", "valid", "headline", "p50_ns", "p99_ns", "throughput_per_s", "peak_rss_bytes"} <= r.keys()
    assert r["peak_rss_bytes"] > 10 << 20 and r["headline"]["unit"] in ("ns", "samples/s")
    assert "[1/2]" not in as_json.stderr


def test_quiet_prints_nothing_and_exits_by_validity(ran):
    _, _, _, quiet = ran
    assert quiet.returncode == 0 and quiet.stdout == ""
    assert "[1/2]" not in quiet.stderr and "VALID" not in quiet.stderr


def test_results_query_csv(ran):
    tmp, *_ = ran
    proc = run_cli("results", "query", str(tmp / "out"), "--format", "csv", "--scenario", "offline")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert len(rows) == 3 and {r["scenario"] for r in rows} == {"offline"}  # one per run above
    assert all(r["valid"] == "True" and float(r["throughput_per_s"]) > 0 and r["batch"] == "4" for r in rows)
    runs = run_cli("results", "list", str(tmp / "out"), "--format", "csv")
    assert next(csv.reader(io.StringIO(runs.stdout)))[:3] == ["started_at", "run_id", "spec_name"]


def test_workload_details_count_from_shapes_with_progress(tmp_path):
    """No weights built, nothing cached, one progress line per workload; the figures are the built models' (the
    counts equal those of full builds, checked for several models in test_workload_shapes_only)."""
    cache = tmp_path / "cache"
    proc = run_cli("workloads", "--details", env={"BENCHKIT_CACHE_DIR": str(cache), "COLUMNS": "250"})
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("[")]
    n = len(lines)
    assert n > 10 and lines[0].startswith(f"[1/{n}] ") and lines[-1].startswith(f"[{n}/{n}] ")
    assert not cache.exists() or not any(cache.rglob("*"))
    row = next(ln for ln in proc.stdout.splitlines() if "resnet50-v1.5" in ln)
    assert "25,610,152" in row  # ResNet-50 v1.5's parameter count
