"""Worker-process isolation: a crash, a hang or an exception in an adapter costs one cell, never the suite.

The faulty adapters are test fakes (tests/fakes/benchkit_test_fakes.py) registered through a real entry
point, and the cells run in real worker processes: forked from the zygote (benchkit.runner.forkserver, the
default on Linux), or fresh interpreters where it is switched off.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from benchkit.results import records
from benchkit.runner import forkserver
from benchkit.runner.plan import SuiteContext, expand
from benchkit.runner.worker import run_in_worker
from benchkit.spec import parse_spec

SPEC = """
name: faults
seed: 3
workloads:
  - name: tiny
    model: {model}
backends:
  - name: onnxruntime
  - {{name: fault-inject, label: segfault, options: {{fault: segfault, after: 2}}}}
  - {{name: fault-inject, label: hang, options: {{fault: hang, after: 2}}}}
  - {{name: fault-inject, label: raise-load, options: {{fault: raise_load}}}}
  - {{name: fault-inject, label: exit, options: {{fault: exit}}}}
  - {{name: fault-inject, label: nan, options: {{fault: nan}}}}
  - {{name: fault-inject, label: fine, options: {{fault: none}}}}
scenarios:
  - kind: single_stream
    min_duration_ms: 100
    min_query_count: 10
run:
  cell_timeout_s: 8
"""

# Each test runs in a forked child of pytest (pytest-forked): these tests kill, interrupt and crash processes on
# purpose, and a signal or native crash that escapes must cost one test, never the whole run.
pytestmark = pytest.mark.forked


@pytest.fixture
def fault_records(tmp_path, tiny_model, fakes_on_path):
    spec = tmp_path / "faults.yaml"
    spec.write_text(SPEC.format(model=tiny_model))
    proc = subprocess.run([sys.executable, "-m", "benchkit", "run", str(spec), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=240)
    recs = {p.stem.split("__")[1]: records.load(p) for p in (tmp_path / "out").rglob("*.json")}
    return proc, recs


def test_every_fault_yields_an_error_record_and_the_suite_completes(fault_records):
    proc, recs = fault_records
    assert proc.returncode == 1, proc.stderr  # finished, some cells invalid
    assert "Traceback" not in proc.stderr
    assert set(recs) == {"onnxruntime", "segfault", "hang", "raise-load", "exit", "nan", "fine"}
    assert recs["onnxruntime"].validity.valid and recs["fine"].validity.valid

    seg = recs["segfault"]
    assert not seg.validity.valid and seg.error.type == "WorkerCrash" and "SIGSEGV" in seg.error.message
    hang = recs["hang"]
    assert hang.error.type == "Timeout" and "cell_timeout_s=8" in hang.error.message
    rl = recs["raise-load"]
    assert rl.error.phase == "load" and "injected failure in load()" in rl.error.message
    assert "Traceback" in rl.error.detail  # a non-benchkit exception keeps its traceback for the vendor
    ex = recs["exit"]
    assert ex.error.type == "WorkerCrash" and "status 3" in ex.error.message
    nan = recs["nan"]
    assert not nan.validity.valid and nan.metrics is not None
    assert any("NaN" in r for r in nan.validity.reasons)
    for name in ("segfault", "hang", "raise-load", "exit"):
        assert recs[name].metrics is None and recs[name].scenario.kind == "single_stream"
        assert recs[name].workload is None or recs[name].workload.name == "tiny"


def test_inline_mode_turns_exceptions_into_records(tmp_path, tiny_model, fakes_on_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(f"""
name: inline
workloads: [{{name: tiny, model: {tiny_model}}}]
backends: [{{name: fault-inject, options: {{fault: raise_run, after: 3}}}}]
scenarios: [{{kind: single_stream, min_duration_ms: 10, min_query_count: 5}}]
""")
    proc = subprocess.run([sys.executable, "-m", "benchkit", "run", str(spec), "--inline", "--out",
                           str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    rec = records.load(next((tmp_path / "o").rglob("*.json")))
    assert rec.error.phase in ("warmup", "first_inference") and "injected failure in run()" in rec.error.message
    assert rec.backend is not None and rec.backend.name == "fault-inject"


def test_a_broken_plugin_does_not_break_the_others(fakes_on_path):
    p = subprocess.run([sys.executable, "-m", "benchkit", "backends"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0
    assert "broken-import" in p.stdout and "failed" in p.stdout
    assert "onnxruntime" in p.stdout and "fault-inject" in p.stdout


# --------------------------------------------------------------------------- the fork server (zygote)
#
# The tests below run cells through `run_in_worker` in this process, so that they can watch the worker from
# outside (its parent, its group, its grandchildren) while it runs. Each starts the zygote after
# `fakes_on_path` has set PYTHONPATH: a zygote is keyed by the environment, so one started before that would
# be replaced, never reused without the fakes.

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server is Linux-only")


@pytest.fixture(scope="module", autouse=True)
def _no_zygote_left_behind():
    """One zygote serves the tests below (each the same environment), and none outlives them."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(forkserver.ENV_SWITCH, raising=False)
        forkserver.shutdown()
        yield
        pids = [z.pid for z in [forkserver._current, *forkserver._retired] if z is not None]
        forkserver.shutdown()
    assert all(_gone(pid) for pid in pids), f"zygote(s) {pids} still running after shutdown()"


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out |= {int(x) for x in f.read().split()}
    except OSError:
        pass
    return out


def _gone(pid: int, within_s: float = 10) -> bool:
    """Dead (a zombie not yet reaped by whoever adopted it counts as dead)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def _pids_running(argv_tail: str) -> list[int]:
    """Processes whose command line ends with ``argv_tail`` (the grandchild's unique sleep)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            if cmd.endswith(argv_tail) and not _gone(int(entry), 0):
                found.append(int(entry))
    return found


def _cells(tmp_path: Path, model: Path, backends: list[str], max_memory_bytes: int | None = None):
    lines = "\n".join(f"  - {b}" for b in backends)
    loaded = parse_spec(f"""
name: iso
workloads: [{{name: tiny, model: {model}}}]
backends:
{lines}
scenarios: [{{kind: single_stream, min_duration_ms: 50, min_query_count: 10}}]
""", "iso", tmp_path)
    ctx = SuiteContext("t", "iso", loaded.sha256, str(tmp_path), keep_samples=False, max_memory_bytes=max_memory_bytes)
    return expand(loaded), ctx


class Watch:
    """A cell's progress callback that also notes, at each phase, which processes the zygote has forked."""

    def __init__(self, at: str = "load", then=None) -> None:
        self.phases: list[str] = []
        self.workers: set[int] = set()
        self.cmdlines: dict[int, list[bytes]] = {}
        self.reached = threading.Event()
        self._at, self._then = at, then

    def __call__(self, _cell_id: str, phase: str) -> None:
        self.phases.append(phase)
        if forkserver._current is not None:
            for pid in _children(forkserver._current.pid) - self.workers:
                self.workers.add(pid)
                with contextlib.suppress(OSError):
                    self.cmdlines[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        if phase == self._at:
            self.reached.set()
            if self._then:
                self._then(self)


@linux_only
def test_each_cell_runs_in_its_own_process_forked_from_one_zygote(tmp_path, tiny_model, fakes_on_path):
    cells, ctx = _cells(tmp_path, tiny_model, ["{name: fault-inject, label: a}", "{name: fault-inject, label: b}"])
    seen = []
    for cell in cells:
        watch = Watch()
        rec = run_in_worker(cell, ctx, 60, watch)
        assert rec.validity.valid, rec.validity.reasons
        assert forkserver._current is not None
        seen.append((rec.backend.options["pid"], forkserver._current.pid, watch))
    (pid_a, zygote_a, watch_a), (pid_b, zygote_b, _) = seen
    assert zygote_a == zygote_b  # one zygote for the suite ...
    assert pid_a != pid_b and {pid_a, pid_b}.isdisjoint({zygote_a, os.getpid()})  # ... a new process per cell
    assert pid_a in watch_a.workers  # forked by the zygote, not started by this process
    # ... and named in `ps` as a fresh worker would be: `python -m benchkit.runner.child CELL.json RECORD.json`
    assert watch_a.cmdlines[pid_a][1:3] == [b"-m", b"benchkit.runner.child"]
    assert watch_a.cmdlines[pid_a][3].endswith(b"/cell.json")
    assert watch_a.phases[:5] == ["load", "stage", "first_inference", "warmup", "measure"]  # phases relayed as they happen
    # The zygote itself never loads a runtime, a model or an adapter: its children do, and end.
    maps = Path(f"/proc/{zygote_a}/maps").read_text()
    assert "onnxruntime" not in maps and "benchkit_test_fakes" not in maps


# hold_ms: the worker waits in load() before its fault, so the Watch (called as the "load" phase is relayed, on a
# busy runner after a delay) sees it alive among the zygote's children, not already reaped.
FORK_FAULTS = {
    "segfault": ("{name: fault-inject, options: {fault: segfault, after: 2, hold_ms: 500}}", "WorkerCrash",
                 "worker process killed by SIGSEGV"),
    "exit": ("{name: fault-inject, options: {fault: exit, hold_ms: 500, stderr: 'vendor runtime: device lost'}}",
             "WorkerCrash", "worker process exited with status 3 without a record"),
    # The fake allocates only under a limit below 1 GiB: its MemoryError shows that the forked worker applied
    # run.max_memory_bytes (the suite's session then names the limit in the record: test_hardening).
    "memory": ("{name: fault-inject, options: {fault: oom, hold_ms: 500}}", "MemoryError",
               "MemoryError: Unable to allocate"),
}


@linux_only
@pytest.mark.parametrize("fault", sorted(FORK_FAULTS))
def test_faults_in_a_forked_worker_become_records_naming_the_cause(fault, tmp_path, tiny_model, fakes_on_path):
    backend, etype, message = FORK_FAULTS[fault]
    cells, ctx = _cells(tmp_path, tiny_model, [backend], max_memory_bytes=512 << 20)
    watch = Watch()
    rec = run_in_worker(cells[0], ctx, 60, watch)
    assert not rec.validity.valid and rec.metrics is None
    assert rec.error.type == etype and message in rec.error.message, rec.error
    assert watch.workers, "the cell did not run in a process forked by the zygote"
    if fault == "exit":
        assert "vendor runtime: device lost" in rec.error.detail  # the worker's stderr tail is kept


@linux_only
def test_a_hang_kills_the_worker_group_and_the_child_has_benchkits_environment_and_cores(
        tmp_path, tiny_model, fakes_on_path, monkeypatch):
    with forkserver.borrowed() as zygote:  # started before the environment changes below
        assert zygote is not None
    mark = f"3600.{secrets.randbelow(10**6):06d}"
    detached = f"3601.{secrets.randbelow(10**6):06d}"  # `setsid sleep`: out of the worker's session, its parent gone
    hang = (f"{{name: fault-inject, options: {{fault: hang, after: 2, grandchild: '{mark}', "
            f"detached_grandchild: '{detached}'}}}}")
    cells, ctx = _cells(tmp_path, tiny_model, [hang])
    # Set after the zygote started, and not part of its key (a device runtime reads it in the child): the
    # worker must see benchkit's value now, as a Ray task's CUDA_VISIBLE_DEVICES.
    token = f"benchkit-test-{secrets.token_hex(4)}"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", token)
    grandchild: dict = {}

    def look(_watch) -> None:
        # Both were spawned before warmup, but a spawn through setsid may still be under way on a busy machine:
        # looked for up to 5 s (the worker hangs on; only this relay thread waits).
        deadline = time.monotonic() + 5
        while True:
            grandchild["detached"] = _pids_running(f"sleep {detached}")
            found = _pids_running(f"sleep {mark}")
            if (found and grandchild["detached"]) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if found:
            pid = found[0]
            grandchild["pid"] = pid
            grandchild["environ"] = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            grandchild["cpus"] = os.sched_getaffinity(pid)

    watch = Watch(at="warmup", then=look)
    before = os.sched_getaffinity(0)
    one_core = {min(before)}
    os.sched_setaffinity(0, one_core)  # this thread only, as the Ray executor pins a cell
    try:
        t0 = time.monotonic()
        rec = run_in_worker(cells[0], ctx, 8, watch)
        took_s = time.monotonic() - t0
    finally:
        os.sched_setaffinity(0, before)
    assert forkserver._current is not None and forkserver._current.pid == zygote.pid  # the same zygote
    assert rec.error.type == "Timeout" and "cell_timeout_s=8" in rec.error.message and took_s < 30
    assert "pid" in grandchild, f"the grandchild never started ({watch.phases}, {rec.error.detail[-500:]})"
    assert f"CUDA_VISIBLE_DEVICES={token}".encode() in grandchild["environ"]
    assert grandchild["cpus"] == one_core
    assert _gone(grandchild["pid"]), "the worker's own child survived the timeout"
    assert grandchild["detached"], "the detached grandchild never started"
    assert all(_gone(pid) for pid in grandchild["detached"]), "a grandchild in its own session survived the timeout"
    assert all(_gone(pid) for pid in watch.workers)


@linux_only
def test_a_worker_killed_from_outside_is_named(tmp_path, tiny_model, fakes_on_path):
    cells, ctx = _cells(tmp_path, tiny_model, ["{name: fault-inject, options: {fault: hang, after: 2}}"])
    watch = Watch(at="warmup", then=lambda w: [os.kill(pid, signal.SIGKILL) for pid in w.workers])
    rec = run_in_worker(cells[0], ctx, 60, watch)
    assert rec.error.type == "WorkerCrash"
    assert rec.error.message == "worker process killed by SIGKILL (out of memory, or killed from outside)"


@linux_only
@pytest.mark.xfail(reason="the interrupted process sometimes dies of SIGSEGV after KeyboardInterrupt (seen 3 times in "
                          "full runs, never alone): a real bug under investigation, contained here by pytest-forked",
                   strict=False)
def test_ctrl_c_in_benchkit_kills_the_forked_worker(tmp_path, tiny_model, fakes_on_path):
    cells, ctx = _cells(tmp_path, tiny_model, ["{name: fault-inject, options: {fault: hang, after: 2}}"])
    watch = Watch(at="warmup")

    def interrupt() -> None:
        if watch.reached.wait(60):
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        run_in_worker(cells[0], ctx, 60, watch)
    assert watch.workers and all(_gone(pid) for pid in watch.workers)
    assert forkserver._current is not None and forkserver._current.alive()  # the zygote serves the next cell


@linux_only
def test_the_zygote_and_the_worker_die_with_benchkit(tmp_path, tiny_model, fakes_on_path):
    spec = tmp_path / "hang.yaml"
    spec.write_text(f"""
name: hang
workloads: [{{name: tiny, model: {tiny_model}}}]
backends: [{{name: fault-inject, options: {{fault: hang, after: 2}}}}]
scenarios: [{{kind: single_stream, min_duration_ms: 50, min_query_count: 10}}]
run: {{cell_timeout_s: 120}}
""")
    proc = subprocess.Popen([sys.executable, "-m", "benchkit", "run", str(spec), "--out", str(tmp_path / "o")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, zygote, workers = time.monotonic() + 90, None, set()
        while time.monotonic() < deadline and not workers:
            for pid in _children(proc.pid):
                if b"benchkit.runner.zygote" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    zygote, workers = pid, _children(pid)
            time.sleep(0.1)
        assert zygote and workers, "no worker forked by a zygote appeared"
    finally:
        proc.kill()  # SIGKILL: benchkit runs no clean-up at all
        proc.wait()
    assert _gone(zygote), "the zygote outlived benchkit"
    assert all(_gone(pid) for pid in workers), "the worker outlived benchkit"


@linux_only
def test_a_new_zygote_when_the_environment_changes(tmp_path, tiny_model, monkeypatch):
    from conftest import FAKES

    with forkserver.borrowed() as before:
        assert before is not None
    # what `fakes_on_path` does, after a zygote without the fakes exists
    monkeypatch.syspath_prepend(str(FAKES))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(FAKES), os.environ.get("PYTHONPATH")])))
    cells, ctx = _cells(tmp_path, tiny_model, ["{name: fault-inject}"])
    rec = run_in_worker(cells[0], ctx, 60)
    assert rec.validity.valid, rec.error  # the new zygote's children find the adapter on the new PYTHONPATH
    assert forkserver._current.pid != before.pid and _gone(before.pid)  # the old one ended with its last cell
    forkserver.shutdown()  # the next test's environment is this test's before its changes


def test_fresh_interpreters_where_the_fork_server_is_off(tmp_path, tiny_model, fakes_on_path, monkeypatch):
    monkeypatch.setenv(forkserver.ENV_SWITCH, "0")
    cells, ctx = _cells(tmp_path, tiny_model, ["{name: fault-inject, label: fine}",
                                               "{name: fault-inject, label: seg, options: {fault: segfault}}"])
    mine: set[int] = set()
    fine = run_in_worker(cells[0], ctx, 60, lambda _c, _p: mine.update(_children(os.getpid())))
    seg = run_in_worker(cells[1], ctx, 60)
    assert fine.validity.valid and fine.backend.options["pid"] in mine  # started by this process, not forked
    assert seg.error.type == "WorkerCrash" and "SIGSEGV" in seg.error.message


@linux_only
def test_a_zygote_that_cannot_start_costs_only_speed(tmp_path, tiny_model, fakes_on_path, monkeypatch, capsys):
    forkserver.shutdown()
    monkeypatch.setattr(forkserver, "_HELLO_TIMEOUT_S", 0.001)  # no zygote preloads that fast
    cells, ctx = _cells(tmp_path, tiny_model, ["{name: fault-inject}"])
    try:
        rec = run_in_worker(cells[0], ctx, 60)
        with forkserver.borrowed() as again:
            assert again is None  # not retried for every cell
    finally:
        forkserver.shutdown()  # forgets the refusal
    assert rec.validity.valid, rec.error
    err = capsys.readouterr().err
    assert err.count("benchkit: no fork server, each cell starts a fresh interpreter: no answer within") == 1


@linux_only
def test_more_modules_can_be_preloaded_and_a_missing_one_costs_only_speed(monkeypatch):
    from benchkit.runner import zygote

    monkeypatch.setenv(zygote.ENV_PRELOAD, "colorsys, benchkit_no_such_module")
    try:
        with forkserver.borrowed() as z:
            assert z is not None
            assert "colorsys" in z.hello["preloaded"] and "numpy" in z.hello["preloaded"]
            assert "benchkit_no_such_module" in z.hello["failed"]
            assert not z.hello["failed"].keys() - {"benchkit_no_such_module"}  # all of PRELOAD imported
    finally:
        forkserver.shutdown()
