"""Fleet runs on a real Ray cluster: a head and three worker nodes in a loopback-only network namespace.

Two worker nodes advertise ``accelerator:fake-a`` and one ``accelerator:fake-b``,
standing in for two accelerator models; the benchkit CLI is the driver, also
inside the namespace. One cluster serves the whole module (starting one costs
~20 s); the node-loss test kills nodes, so it runs last.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import jsonschema
import pytest

from benchkit.results import records

from conftest import run_cli, write_tiny_add
from ray_cluster import LoopbackCluster, unavailable_reason

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.skipif(unavailable_reason() is not None,
                                                  reason=unavailable_reason() or "")]

FAKE_A, FAKE_B = "accelerator:fake-a", "accelerator:fake-b"

FLEET = f"""
backends:
  acc-a: {{resources: {{"{FAKE_A}": 1}}}}
  acc-b: {{resources: {{"{FAKE_B}": 1}}}}
max_attempts: 2
reschedule_wait_s: 3
"""

ORT = "{providers: [CPUExecutionProvider]}"
SPEC = f"""
name: fleet-e2e
seed: 7
workloads:
  - {{name: tiny-add}}                   # catalog: rebuilt on the node, checked by SHA-256
  - {{name: tiny-file, model: models/tiny.onnx}}  # external file: shipped to the node
backends:
  - {{name: onnxruntime, label: cpu, options: {ORT}}}
  - {{name: onnxruntime, label: acc-a, options: {ORT}}}
  - {{name: onnxruntime, label: acc-b, options: {ORT}}}
scenarios:
  - {{kind: single_stream, min_duration_ms: 150, min_query_count: 20, warmup_ms: 0, warmup_queries: 2}}
run: {{cell_timeout_s: 90, keep_samples: false}}
"""


@pytest.fixture(scope="module")
def cluster():
    c = LoopbackCluster({"a1": {FAKE_A: 1}, "a2": {FAKE_A: 1}, "b": {FAKE_B: 1}})
    try:
        c.start()
        yield c
    finally:
        c.stop()
    assert not c.pids()


@pytest.fixture(scope="module")
def work(tmp_path_factory, tiny_model_module):
    d = tmp_path_factory.mktemp("fleet")
    (d / "spec.yaml").write_text(SPEC)
    (d / "fleet.yaml").write_text(FLEET)
    (d / "models").mkdir()
    (d / "models" / "tiny.onnx").write_bytes(tiny_model_module.read_bytes())
    return d


@pytest.fixture(scope="module")
def tiny_model_module(tmp_path_factory):
    return write_tiny_add(tmp_path_factory.mktemp("model") / "tiny.onnx")


def _records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.rglob("*.json"))]


def _at(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def ray_run(cluster, work):
    t0 = time.monotonic()
    proc = cluster.benchkit("run", "spec.yaml", "--executor", "ray", "--address", cluster.address,
                            "--fleet", "fleet.yaml", "--out", "out-ray", cwd=work, timeout=240)
    return proc, _records(work / "out-ray"), time.monotonic() - t0


def test_ray_run_writes_every_cell_valid(ray_run):
    proc, recs, _ = ray_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(recs) == 6
    for r in recs:
        assert r["validity"]["valid"], (r["cell_id"], r["validity"])
        assert r["placement"]["executor"] == "ray" and r["placement"]["attempt"] == 1
        assert r["placement"]["submitted_at"] <= r["placement"]["dispatched_at"] <= r["started_at"]


def test_cells_land_only_on_nodes_advertising_their_resource(cluster, ray_run):
    _, recs, _ = ray_run
    nodes = {n["NodeID"]: n["Resources"] for n in cluster.nodes()}  # the cluster's word, not the records'
    used: dict[str, set[str]] = defaultdict(set)
    for r in recs:
        backend = r["spec"]["backend"]["label"]
        node = r["placement"]["node_id"]
        assert node in nodes
        want = {"acc-a": FAKE_A, "acc-b": FAKE_B}.get(backend)
        if want:
            assert nodes[node].get(want, 0) >= 1, f"{r['cell_id']} ran on {node}, which lacks {want}"
            assert r["placement"]["requested"] == {"CPU": 1.0, want: 1.0}
            used[want].add(node)
        else:
            assert r["placement"]["requested"] == {"CPU": 1.0}
        # the record was built in the worker process on the node, pinned to its one core: the system block
        # says so (the driver, unpinned, sees every core)
        assert r["system"]["cpu_affinity"] == len(r["placement"]["cpu_set"]) == 1
    assert used[FAKE_B] and used[FAKE_A]


def test_no_two_cells_overlap_on_one_accelerator_or_core(ray_run):
    _, recs, _ = ray_run
    spans: dict[tuple, list[tuple[float, float, str]]] = defaultdict(list)
    for r in recs:
        start, end = _at(r["started_at"]), _at(r["finished_at"])
        p = r["placement"]
        for res in p["requested"]:
            if res.startswith("accelerator:"):
                spans[(p["node_id"], res)].append((start, end, r["cell_id"]))
        assert p["cpu_set"] and len(p["cpu_set"]) == 1  # one core each (num_cpus: 1)
        for core in p["cpu_set"]:  # cores are the machine's, shared by every node on it
            spans[("core", core)].append((start, end, r["cell_id"]))
    assert any(len(v) > 1 for k, v in spans.items() if k[0] != "core"), "no accelerator ran two cells: test is void"
    for key, items in spans.items():
        items.sort()
        for (s1, e1, c1), (s2, e2, c2) in zip(items, items[1:]):
            assert e1 <= s2, f"{c1} and {c2} overlap on {key}"


def test_workloads_reach_the_node_byte_identical(ray_run, work):
    import hashlib

    _, recs, _ = ray_run
    file_sha = hashlib.sha256((work / "models" / "tiny.onnx").read_bytes()).hexdigest()
    from benchkit.workloads import catalog, file_sha256

    cat_sha = file_sha256(catalog.materialize("tiny-add"))
    for r in recs:
        w = r["workload"]
        assert w["model_sha256"] == (file_sha if w["name"] == "tiny-file" else cat_sha)
        assert w["model_file"] == ("tiny.onnx" if w["name"] == "tiny-file" else w["model_file"])
        # the record names the cell as submitted, not the node's copy of the file
        assert r["spec"]["workload"].get("model") in (None, "models/tiny.onnx")


def test_ray_and_local_runs_give_records_of_the_same_shape(ray_run, work):
    _, ray_recs, _ = ray_run
    # the local executor from this process, each cell in its worker process as `benchkit run` does by default
    proc = run_cli("run", "spec.yaml", "--out", "out-local", cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    local_recs = _records(work / "out-local")
    assert sorted(r["cell_id"] for r in ray_recs) == sorted(r["cell_id"] for r in local_recs)
    schema = records.record_json_schema()

    typed = ("workload", "backend", "system", "scenario", "metrics", "validity", "placement")

    def shape(rec: dict) -> dict:
        """Top-level keys with value types, and the keys of every typed block."""
        out = {k: type(v).__name__ for k, v in rec.items()}
        out.update({f"{k}.keys": sorted(rec[k]) for k in typed if rec.get(k) is not None})
        out["metrics.latency_ns.keys"] = sorted(rec["metrics"]["latency_ns"])
        return out

    by_id = {r["cell_id"]: r for r in local_recs}
    for r in ray_recs:
        jsonschema.validate(r, schema)
        jsonschema.validate(by_id[r["cell_id"]], schema)
        assert shape(r) == shape(by_id[r["cell_id"]])
        assert by_id[r["cell_id"]]["placement"]["executor"] == "local"
        assert r["spec"] == by_id[r["cell_id"]]["spec"]
        assert r["workload"]["model_sha256"] == by_id[r["cell_id"]]["workload"]["model_sha256"]


def test_fleet_command_shows_nodes_resources_and_placements(cluster, work):
    proc = cluster.benchkit("fleet", "--address", cluster.address, "--fleet", "fleet.yaml", "spec.yaml", cwd=work,
                            timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "4 node(s) alive" in out
    node_rows = [line for line in out.splitlines() if "alive" in line and "│" in line]
    assert len(node_rows) == 4
    assert sum(FAKE_A in row for row in node_rows) == 2 and sum(FAKE_B in row for row in node_rows) == 1
    assert "every one of the 6 cell(s) has a node that can run it" in out
    assert "no answer" not in out  # every node answered the probe with its benchkit version


def test_a_cell_no_node_can_run_is_refused_before_the_suite(cluster, work):
    (work / "fleet-h200.yaml").write_text(FLEET.replace(FAKE_B, "accelerator:h200"))
    proc = cluster.benchkit("run", "spec.yaml", "--executor", "ray", "--address", cluster.address,
                            "--fleet", "fleet-h200.yaml", "--out", "out-h200", cwd=work, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    err = proc.stderr
    assert "2 cell(s) cannot run on any node of the Ray cluster" in err
    assert "tiny-add__acc-b__single_stream needs CPU=1, accelerator:h200=1" in err
    assert f"{FAKE_B}=1" in err  # what the nodes do offer
    assert "Traceback" not in err and not (work / "out-h200").exists()
    fleet = cluster.benchkit("fleet", "--address", cluster.address, "--fleet", "fleet-h200.yaml", "spec.yaml",
                             cwd=work, timeout=120)
    assert fleet.returncode == 2 and "cannot run on any node" in fleet.stderr
    assert "none" in fleet.stdout  # the cell table shows the cells without a node


def test_resume_on_the_cluster_runs_only_the_missing_cells(cluster, ray_run, work):
    """--resume works as it does locally: the same run directory, only cells without a record run."""
    (run_dir,) = (work / "out-ray" / "fleet-e2e").iterdir()
    gone = ["tiny-add__acc-b__single_stream.json", "tiny-file__cpu__single_stream.json"]
    kept = {p.name: p.stat().st_mtime_ns for p in run_dir.glob("*.json") if p.name not in gone}
    for name in gone:
        (run_dir / name).unlink()
    proc = cluster.benchkit("run", "spec.yaml", "--executor", "ray", "--address", cluster.address, "--fleet",
                            "fleet.yaml", "--out", "out-ray", "--resume", cwd=work, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming" in proc.stderr and "4 of 6 cells done, 2 to run" in proc.stderr
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.glob("*.json") if p.name not in gone} == kept
    run_id = json.loads((run_dir / next(iter(kept))).read_text())["run_id"]
    for name in gone:
        rec = json.loads((run_dir / name).read_text())
        assert rec["run_id"] == run_id and rec["placement"]["executor"] == "ray" and rec["validity"]["valid"]


REPEATS = f"""
name: fleet-repeats
workloads: [{{name: tiny-add}}]
backends: [{{name: onnxruntime, label: acc-a, options: {ORT}}}]
scenarios: [{{kind: single_stream, min_duration_ms: 100, min_query_count: 20, warmup_ms: 0, warmup_queries: 1}}]
run: {{repeats: 2, keep_samples: false}}
"""


def test_repeated_cells_are_separate_tasks_with_their_own_records(cluster, work):
    (work / "repeats.yaml").write_text(REPEATS)
    proc = cluster.benchkit("run", "repeats.yaml", "--executor", "ray", "--address", cluster.address, "--fleet",
                            "fleet.yaml", "--out", "out-rep", cwd=work, timeout=180)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]  # 1: a between-session spread may flag; not a crash
    (run_dir,) = (work / "out-rep" / "fleet-repeats").iterdir()
    recs = {p.name: json.loads(p.read_text()) for p in run_dir.glob("*.json")}
    assert sorted(recs) == ["tiny-add__acc-a__single_stream-r1.json", "tiny-add__acc-a__single_stream-r2.json"]
    assert sorted(r["repeat"]["index"] for r in recs.values()) == [1, 2]
    for r in recs.values():
        assert r["placement"]["executor"] == "ray" and r["repeat"]["between"] is not None
        assert r["power"]["available"] is False and "Ray node" in r["power"]["reason"]


SERVER = """
name: fleet-server
workloads: [{name: tiny-add}]
backends:
  - {name: onnxruntime, label: acc-b, options: {providers: [CPUExecutionProvider]}}
  - {name: "null", label: acc-a}
scenarios: [{kind: server, target_qps: 1000, target_latency_ns: 2000000000, min_duration_ms: 300}]
run: {profile: quick, keep_samples: false}
"""


def test_loadgen_engine_on_a_node_brings_its_logs_back(cluster, work):
    pytest.importorskip("mlperf_loadgen", reason="MLPerf LoadGen is not installed (the mlperf extra)")
    (work / "server.yaml").write_text(SERVER)
    proc = cluster.benchkit("run", "server.yaml", "--backend", "acc-b", "--engine", "mlperf", "--executor", "ray",
                            "--address", cluster.address, "--fleet", "fleet.yaml", "--out", "out-lg", cwd=work,
                            timeout=180)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    (run_dir,) = (work / "out-lg" / "fleet-server").iterdir()
    rec = records.load(run_dir / "tiny-add__acc-b__server.json")
    assert rec.engine == "mlperf" and rec.error is None, rec.validity.reasons
    assert rec.placement.executor == "ray" and FAKE_B in rec.placement.requested
    logs = run_dir / "tiny-add__acc-b__server.mlperf"  # written on the node, now beside the record here
    assert (logs / "mlperf_log_summary.txt").is_file() and (logs / "mlperf_log_detail.txt").is_file()


def test_peak_search_probes_run_on_the_cluster(cluster, work):
    (work / "server.yaml").write_text(SERVER)
    proc = cluster.benchkit("run", "server.yaml", "--backend", "acc-a", "--find-peak", "--max-probes", "2",
                            "--executor", "ray", "--address", cluster.address, "--fleet", "fleet.yaml",
                            "--out", "out-peak", cwd=work, timeout=180)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    recs = _records(work / "out-peak")
    assert len(recs) == 2 and all(r["probe"]["search"] == "tiny-add__acc-a__server" for r in recs)
    assert {r["placement"]["executor"] for r in recs} == {"ray"}
    assert [r["probe"]["index"] for r in sorted(recs, key=lambda r: r["started_at"])] == [0, 1]


LONG = f"""
name: fleet-loss
workloads: [{{name: tiny-add}}]
backends:
  - {{name: onnxruntime, label: acc-a, options: {ORT}}}
  - {{name: onnxruntime, label: acc-b, options: {ORT}}}
scenarios: [{{kind: single_stream, min_duration_ms: 8000, min_query_count: 10, warmup_ms: 0, warmup_queries: 1}}]
run: {{cell_timeout_s: 60, keep_samples: false}}
"""


def test_node_lost_mid_suite_retries_elsewhere_or_fails_with_the_cause(cluster, work):
    """Lose the nodes running both cells (raylet and its processes killed): fake-a has a second node (retry
    there), fake-b has none (failed record with the cause)."""
    (work / "long.yaml").write_text(LONG)
    t0 = time.monotonic()
    proc = cluster.popen([sys.executable, "-m", "benchkit", "run", "long.yaml", "--executor", "ray", "--address",
                          cluster.address, "--fleet", "fleet.yaml", "--out", "out-loss"], cwd=work)
    try:
        running: dict[str, int] = {}
        while len(running) < 2 and time.monotonic() - t0 < 90 and proc.poll() is None:
            running = cluster.cell_workers()
            time.sleep(0.2)
        assert len(running) == 2, f"cells did not start: {running}; {proc.poll()}"
        killed = {}
        for cell_id, pid in running.items():
            raylet = cluster.raylet_of(pid)
            assert raylet is not None
            killed[cell_id] = raylet
        for raylet in killed.values():
            cluster.kill_node(raylet)
        _, stderr = proc.communicate(timeout=150)  # never a hang: bounded by the fleet's waits
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, stderr[-3000:]  # a cell failed: exit 1, not a crash
    recs = {r["cell_id"]: r for r in _records(work / "out-loss")}
    assert set(recs) == {"tiny-add__acc-a__single_stream", "tiny-add__acc-b__single_stream"}

    a = recs["tiny-add__acc-a__single_stream"]
    assert a["validity"]["valid"], a["validity"]
    assert a["placement"]["attempt"] == 2 and len(a["placement"]["lost_nodes"]) == 1, (a["placement"], killed)
    assert a["placement"]["node_id"] != a["placement"]["lost_nodes"][0]
    assert a["metrics"]["duration_ns"] >= 8_000_000_000  # a whole run on the second node

    b = recs["tiny-add__acc-b__single_stream"]
    assert not b["validity"]["valid"] and b["error"]["type"] == "NodeLost"
    assert "no alive node of the cluster can run the cell any more" in b["error"]["message"]
    assert FAKE_B in b["error"]["message"] and "which was lost" in b["error"]["message"]
    assert b["placement"]["node_id"]  # the node it was lost on
