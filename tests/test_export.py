"""benchkit export pytest-benchmark: the JSON pytest-benchmark writes, checked by pytest-benchmark's own CLI."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from real_records import env, real_run
from record_factory import lognormal_ns, make_record

from benchkit import cli
from benchkit.results import records
from benchkit.results.export import ExportError, export_pytest_benchmark, machine_id, to_pytest_benchmark

STATS_FIELDS = {"min", "max", "mean", "stddev", "rounds", "median", "iqr", "q1", "q3", "iqr_outliers",
                "stddev_outliers", "outliers", "ld15iqr", "hd15iqr", "ops", "total", "iterations"}


def pytest_benchmark_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("pytest-benchmark")
    cmd = [exe] if exe else [sys.executable, "-m", "pytest_benchmark.cli"]
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, env=env(), timeout=120)


def test_stats_in_seconds_from_samples():
    x = lognormal_ns(501, seed=4)
    r = make_record(x)
    doc = to_pytest_benchmark([(r, x.tolist(), "r.json")], include_data=True).document
    (b,) = doc["benchmarks"]
    st = b["stats"]
    assert set(st) == STATS_FIELDS | {"data"}
    secs = [v / 1e9 for v in x.tolist()]
    assert st["rounds"] == 501 and st["iterations"] == 1
    assert st["min"] == min(secs) and st["max"] == max(secs)
    assert st["median"] == pytest.approx(statistics.median(secs))
    assert st["mean"] == pytest.approx(statistics.mean(secs)) and st["ops"] == pytest.approx(1 / st["mean"])
    assert st["q1"] <= st["median"] <= st["q3"] and st["data"] == secs
    assert b["group"] == "mlp single_stream" and b["name"] == "mlp[onnxruntime-fp32-b1]"
    assert b["extra_info"]["headline"]["name"] == "latency_p90_ns" and b["extra_info"]["valid"] is True
    mi = doc["machine_info"]
    assert mi["cpu"]["brand_raw"] == r.system.cpu_model and mi["node"] == "bench-01"
    assert machine_id(mi) == "Linux-CPython-3.11-64bit"
    assert {"id", "project"} <= set(doc["commit_info"])


def test_invalid_and_sampleless_records_are_left_out_with_warnings():
    ok = make_record(workload="a")
    bad = make_record(workload="b", valid=False, reasons=["stopped early"])
    bare = make_record(workload="c", keep_samples=False)
    failed = make_record(workload="d", failed=True)
    items = [(r, r.samples_ns, r.cell_id) for r in (ok, bad, bare, failed)]
    res = to_pytest_benchmark(items)
    assert [b["name"].split("[")[0] for b in res.document["benchmarks"]] == ["a"]
    text = "\n".join(res.warnings)
    assert "INVALID (stopped early)" in text and "no raw samples" in text and "no measurement" in text
    res = to_pytest_benchmark(items, include_invalid=True)
    assert [b["extra_info"]["valid"] for b in res.document["benchmarks"]] == [True, False]
    with pytest.raises(ExportError, match="nothing to export"):
        to_pytest_benchmark(items[2:])


def test_pytest_benchmark_compare_reads_the_export(tmp_path):
    """Two exports of real records, compared by the `pytest-benchmark compare` command itself."""
    _, run_dir = real_run()
    base, cand = tmp_path / "base.json", tmp_path / "cand.json"
    assert cli.main(["export", "pytest-benchmark", str(run_dir), "-o", str(base)]) == 0
    # A candidate: the same records with every latency 20 % longer (as a slower build would give).
    slow_dir = tmp_path / "slow"
    for p in sorted(run_dir.glob("*.json")):
        r = records.load(p)
        slower = [int(v * 1.2) for v in r.samples_ns]
        records.save(r.model_copy(update={"samples_ns": slower}), slow_dir / p.name)
    assert cli.main(["export", "pytest-benchmark", str(slow_dir), "-o", str(cand), "--include-data"]) == 0
    doc = json.loads(base.read_text())
    assert len(doc["benchmarks"]) == 2

    r = pytest_benchmark_cli("compare", "base.json", "cand.json", "--columns", "min,median,mean,rounds",
                             "--csv", "cmp", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "benchmark 'tiny-add single_stream'" in r.stdout and "benchmark 'tiny-add offline'" in r.stdout
    assert "tiny-add[onnxruntime-fp32-b1] (base)" in r.stdout and "tiny-add[onnxruntime-fp32-b1] (cand)" in r.stdout
    csv = (tmp_path / "cmp.csv").read_text().splitlines()
    assert csv[0].split(",")[:2] == ["name", "param:backend"]
    medians = sorted(float(line.split(",")[csv[0].split(",").index("median")]) for line in csv[1:]
                     if "single_stream" in line)
    assert len(medians) == 2 and medians[1] == pytest.approx(medians[0] * 1.2, rel=0.01)


def test_storage_layout_for_pytest_benchmark(tmp_path):
    _, run_dir = real_run()
    store = tmp_path / ".benchmarks"
    for name in ("base", "cand"):
        assert cli.main(["export", "pytest-benchmark", str(run_dir), "--storage", str(store), "--name", name]) == 0
    files = sorted(store.rglob("*.json"))
    assert [p.name for p in files] == ["0001_base.json", "0002_cand.json"]
    # the folder is pytest-benchmark's machine id of the machine that measured the records
    assert files[0].parent.name == machine_id(json.loads(files[0].read_text())["machine_info"])
    r = pytest_benchmark_cli("--storage", str(store), "compare", "0001", "0002", "--columns", "median",
                             cwd=tmp_path)
    assert r.returncode == 0 and "(0001_base)" in r.stdout and "(0002_cand)" in r.stdout, r.stdout + r.stderr


def test_cli_needs_a_destination(tmp_path, capsys):
    p = records.save(make_record(), tmp_path / "r.json")
    assert cli.main(["export", "pytest-benchmark", str(p)]) == 2
    assert "-o FILE and/or --storage DIR" in capsys.readouterr().err
    assert export_pytest_benchmark([p]).document["benchmarks"][0]["extra_info"]["benchkit_record"] == str(p)
