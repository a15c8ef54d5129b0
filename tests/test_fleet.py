"""Fleet runs without a cluster: fleet files, placement rules, CPU sets, the executor choice, the missing extra."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from benchkit.results import records
from benchkit.errors import FleetError
from benchkit.runner.executors import LocalExecutor, cpuset
from benchkit.runner.fleet import (
    FleetSpec,
    NodeInfo,
    ResourceRequest,
    check_feasible,
    load_fleet,
    runnable_on,
    shortfall,
)
from benchkit.runner.plan import expand
from benchkit.runner.suite import RunOptions, run_suite
from benchkit.spec import BackendSpec, parse_spec

from conftest import ROOT, run_cli, write_spec

SPEC = """
name: fleet-unit
workloads: [{name: tiny-add}]
backends:
  - {name: onnxruntime, label: cpu, options: {providers: [CPUExecutionProvider]}}
  - {name: onnxruntime, label: acc-a, options: {providers: [CPUExecutionProvider]}}
scenarios: [{kind: single_stream, min_duration_ms: 50, min_query_count: 10, warmup_ms: 0, warmup_queries: 1}]
"""


def bk(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchkit", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


# --------------------------------------------------------------------------- fleet file


def test_fleet_file_maps_backends_to_ray_resources(tmp_path):
    f = write_spec(tmp_path, """
backends:
  acc-a: {resources: {"accelerator:fake-a": 1}}
  onnxruntime: {num_cpus: 2, memory_bytes: 1000000}
  gpu: {num_gpus: 1, num_cpus: 0}
default: {num_cpus: 1}
max_attempts: 2
""", "fleet.yaml")
    fleet = load_fleet(f)
    assert fleet.request_for(BackendSpec(**{"name": "onnxruntime", "label": "acc-a"})).ray_resources() == \
        {"CPU": 1.0, "accelerator:fake-a": 1.0}
    # by id first, then by adapter name, then the default
    assert fleet.request_for(BackendSpec(**{"name": "onnxruntime", "label": "other"})).ray_resources() == \
        {"CPU": 2.0, "memory": 1e6}
    assert fleet.request_for(BackendSpec(**{"name": "null"})).ray_resources() == {"CPU": 1.0}
    assert fleet.request_for(BackendSpec(**{"name": "x", "label": "gpu"})).ray_resources() == {"GPU": 1.0}
    assert fleet.max_attempts == 2
    assert FleetSpec().request_for(BackendSpec(**{"name": "anything"})).ray_resources() == {"CPU": 1.0}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("backends: {a: {resources: {'accelerator:h200': 0.5}}}", "backends.a.resources.accelerator:h200"),
        ("backends: {a: {resources: {'accelerator:h200': 0}}}", "at least one whole unit"),
        ("backends: {a: {num_gpus: 0.5}}", "backends.a.num_gpus"),
        ("backends: {a: {resources: {GPU: 1}}}", "use `num_gpus`"),
        ("backends: {a: {num_cpu: 1}}", "backends.a.num_cpu: unknown key"),
        ("max_attempts: 0", "max_attempts"),
        ("- a\n- b", "expected a mapping"),
    ],
)
def test_bad_fleet_files_name_file_and_field(tmp_path, text, expected):
    f = write_spec(tmp_path, text, "fleet.yaml")
    with pytest.raises(FleetError) as e:
        load_fleet(f)
    assert str(f) in str(e.value) and expected in str(e.value), str(e.value)


def test_missing_fleet_file(tmp_path):
    with pytest.raises(FleetError, match="fleet file not found"):
        load_fleet(tmp_path / "nope.yaml")


# --------------------------------------------------------------------------- placement rules


def _node(nid: str, alive: bool = True, **res: float) -> NodeInfo:
    return NodeInfo(node_id=nid * 8, address="127.0.0.1", hostname="h", alive=alive,
                    resources={"CPU": 1.0, "node:127.0.0.1": 1.0, **res})


def test_a_node_runs_a_cell_only_with_every_resource_it_asks():
    a, b = _node("a", **{"accelerator:fake-a": 1.0}), _node("b", **{"accelerator:fake-b": 1.0})
    want = {"CPU": 1.0, "accelerator:fake-a": 1.0}
    assert shortfall(want, a) == {} and shortfall(want, b) == {"accelerator:fake-a": 1.0}
    assert runnable_on(want, [a, b]) == [a]
    assert runnable_on({"CPU": 2.0}, [a, b]) == []
    dead = _node("c", alive=False, **{"accelerator:fake-a": 1.0})
    assert runnable_on(want, [dead, b]) == []  # a lost node runs nothing


def test_cells_no_node_can_run_are_listed_with_what_the_nodes_offer(tmp_path):
    loaded = parse_spec(SPEC, "spec.yaml", tmp_path)
    cells = expand(loaded)
    fleet = FleetSpec(backends={"acc-a": ResourceRequest(resources={"accelerator:h200": 1})})
    nodes = [_node("a", **{"accelerator:fake-a": 1.0})]
    with pytest.raises(FleetError) as e:
        check_feasible(cells, nodes, fleet, "127.0.0.1:6379")
    msg = str(e.value)
    assert "1 cell(s) cannot run on any node of the Ray cluster at 127.0.0.1:6379" in msg
    assert "tiny-add__acc-a__single_stream needs CPU=1, accelerator:h200=1" in msg
    assert "accelerator:fake-a=1" in msg and "tiny-add__cpu" not in msg
    check_feasible(cells, nodes, FleetSpec(), "x")  # CPU cells: fine


# --------------------------------------------------------------------------- CPU sets


needs_two_cores = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2, reason="needs 2 usable cores and Linux"
)


@needs_two_cores
def test_cpu_sets_of_concurrent_cells_never_overlap(tmp_path):
    pool = sorted(os.sched_getaffinity(0))
    held: list[list[int]] = []
    inside = threading.Barrier(2)
    release = threading.Event()
    errors: list[BaseException] = []

    def cell() -> None:
        try:
            with cpuset.pinned(1, wait_s=5, lock_dir=tmp_path) as cores:
                held.append(cores)
                assert sorted(os.sched_getaffinity(0)) == cores  # this thread is pinned ...
                inside.wait(5)
                release.wait(5)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=cell) for _ in range(2)]
    for t in threads:
        t.start()
    for _ in range(100):
        if len(held) == 2:
            break
        time.sleep(0.05)
    if len(pool) == 2:  # every core taken: a third cell waits, then gives up with the reason
        with pytest.raises(FleetError, match="no 1 free core"):
            with cpuset.pinned(1, wait_s=0.3, lock_dir=tmp_path):
                pass
    release.set()
    for t in threads:
        t.join(10)
    assert not errors, errors
    assert len(held) == 2 and not set(held[0]) & set(held[1])
    assert sorted(os.sched_getaffinity(0)) == pool  # ... and the main thread never was


@needs_two_cores
def test_worker_processes_inherit_the_cpu_set(tmp_path):
    with cpuset.pinned(1, wait_s=5, lock_dir=tmp_path) as cores:
        out = subprocess.run([sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
                             capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(cores)


@needs_two_cores
def test_a_killed_holder_frees_its_cores(tmp_path):
    n = len(os.sched_getaffinity(0))
    code = ("import sys, time; from pathlib import Path; from benchkit.runner.executors import cpuset\n"
            f"with cpuset.pinned({n}, wait_s=5, lock_dir=Path({str(tmp_path)!r})):\n"
            "    print('held', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(FleetError):
            with cpuset.pinned(1, wait_s=0.2, lock_dir=tmp_path):
                pass
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        with cpuset.pinned(n, wait_s=5, lock_dir=tmp_path) as cores:
            assert len(cores) == n
    finally:
        proc.kill()
        proc.wait()


def test_no_pinning_when_no_cores_are_asked(tmp_path):
    with cpuset.pinned(0, wait_s=0, lock_dir=tmp_path) as cores:
        assert cores is None


def test_asking_more_cores_than_the_node_has_says_so(tmp_path):
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("Linux only")
    with pytest.raises(FleetError, match="asks for 4096 cores"):
        with cpuset.pinned(4096, wait_s=0, lock_dir=tmp_path):
            pass


# --------------------------------------------------------------------------- executor choice


def test_local_executor_stamps_placement(tmp_path):
    loaded = parse_spec(SPEC, "spec.yaml", tmp_path)
    cells = expand(loaded, backends=["cpu"])
    result = run_suite(loaded, cells, RunOptions(out_dir=tmp_path / "out", isolation="inline"), executor=LocalExecutor())
    (rec,) = result.records
    assert rec.placement.executor == "local" and rec.placement.node_id is None and rec.placement.attempt == 1
    assert rec.placement.submitted_at <= rec.placement.dispatched_at <= rec.started_at
    assert records.load(result.paths[0]).placement == rec.placement


def test_executor_ray_without_ray_names_the_extra(tmp_path, monkeypatch):
    spec = write_spec(tmp_path, SPEC)
    # `sys.modules['ray'] = None` makes `import ray` fail exactly as it does where Ray is not installed
    monkeypatch.setitem(sys.modules, "ray", None)
    for args in (["run", str(spec), "--executor", "ray", "--out", str(tmp_path / "out")], ["fleet"]):
        proc = run_cli(*args)
        assert proc.returncode == 2, proc.stderr
        assert "[ray]'" in proc.stderr and "pip install -e '" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, expected", [
    (["--executor", "ray", "--inline"], "cannot be combined with --executor ray"),
    (["--address", "127.0.0.1:6379"], "apply to --executor ray only"),
])
def test_executor_option_misuse_is_bad_input(tmp_path, extra, expected):
    spec = write_spec(tmp_path, SPEC)
    proc = run_cli("run", str(spec), "--out", str(tmp_path / "out"), *extra)
    assert proc.returncode == 2 and expected in proc.stderr, proc.stderr


@pytest.mark.slow  # a fresh process starts Ray
def test_executor_ray_without_a_cluster_fails_before_running(tmp_path):
    pytest.importorskip("ray")
    spec = write_spec(tmp_path, SPEC)
    # A port nothing listens on: joining fails at once, nothing is measured. A process of its own: ray.init,
    # even failing, changes logging and starts threads in the interpreter that calls it.
    proc = bk("run", str(spec), "--executor", "ray", "--address", "127.0.0.1:1", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr
    assert "--address 127.0.0.1:1: cannot join a Ray cluster there" in proc.stderr
    assert not (tmp_path / "out").exists()
