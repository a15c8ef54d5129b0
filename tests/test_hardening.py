"""Faults survived, nothing lost: the memory limit, close() and shape faults end to end, SIGKILL of benchkit and
--resume, two benchkit processes on one results directory, Ctrl-C.

The faults run in real worker processes; SIGKILL, Ctrl-C and two concurrent writers are real `benchkit`
processes. What only checks bookkeeping (--resume after the kill, refusals) runs the command in this process
with --inline. The faulty adapters are the test fakes in tests/fakes (registered through a real entry point).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchkit.runner import limits, rundir
from benchkit.results import records
from benchkit.cli import main
from benchkit.errors import RunError
from benchkit.spec import parse_spec

from conftest import ROOT, run_cli


def _records(run_dir: Path) -> dict[str, records.ResultRecord]:
    return {p.name: records.load(p) for p in sorted(run_dir.glob("*.json"))}


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
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/status") as f:
                if any(line.startswith("State:") and "Z" in line for line in f):
                    return True  # dead, waiting to be reaped by whoever adopted it
        except OSError:
            return True
        time.sleep(0.05)
    return False


def _wait_for_records(run_root: Path, n: int, proc: subprocess.Popen, within_s: float = 90) -> list[Path]:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        found = [p for p in run_root.rglob("*.json") if not p.name.startswith(".")]
        if len(found) >= n:
            return found
        if proc.poll() is not None:
            raise AssertionError(f"benchkit ended early ({proc.returncode})")
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} records after {within_s} s")


# --------------------------------------------------------------------------- faults end to end

FAULTS = """
name: faults7
workloads: [{{name: tiny, model: {model}}}]
backends:
  - {{name: fault-inject, label: oom, options: {{fault: oom}}}}
  - {{name: fault-inject, label: raise-close, options: {{fault: raise_close}}}}
  - {{name: fault-inject, label: wrong-shape, options: {{fault: wrong_shape}}}}
  - {{name: fault-inject, label: fine}}
scenarios: [{{kind: single_stream, min_duration_ms: 100, min_query_count: 10}}]
run: {{profile: quick, max_memory_bytes: 512MiB, cell_timeout_s: 60}}
"""


@pytest.mark.slow  # four worker processes, one allocating up to its limit
def test_memory_close_and_shape_faults_each_end_as_a_record_naming_the_cause(tmp_path, tiny_model, fakes_on_path):
    spec = tmp_path / "faults.yaml"
    spec.write_text(FAULTS.format(model=tiny_model))
    proc = run_cli("run", spec, "--out", tmp_path / "out")  # this process plans; each cell runs in its worker
    assert proc.returncode == 1, proc.stderr  # the suite finished; some cells are INVALID
    assert "Traceback" not in proc.stderr
    recs = {r.cell_id.split("__")[1]: r for r in _records(next((tmp_path / "out" / "faults7").iterdir())).values()}
    assert set(recs) == {"oom", "raise-close", "wrong-shape", "fine"}

    oom = recs["oom"]  # a 2 GiB runaway under a 512 MiB limit fails inside its own worker
    assert not oom.validity.valid and oom.metrics is None and oom.error.phase == "load"
    assert oom.error.message.startswith("worker memory limit exceeded (run.max_memory_bytes = 536870912 = 512 MiB)")
    assert "MemoryError" in oom.error.message and "memory limit exceeded" in oom.validity.reasons[0]

    close = recs["raise-close"]  # measured completely, then close() failed: kept, INVALID, cause named
    assert not close.validity.valid and close.metrics is not None and close.metrics.count >= 10
    assert close.error.phase == "close" and close.error.message == "RuntimeError: injected failure in close()"
    assert "close failed: RuntimeError: injected failure in close()" in close.validity.reasons

    shape = recs["wrong-shape"]
    assert not shape.validity.valid and shape.metrics is not None
    assert shape.validity.reasons == ["output 'y' has shape [1, 15]; the graph declares [N, 16], so dimension 1 "
                                      "should be 16"]
    assert recs["fine"].validity.valid and recs["fine"].error is None


def test_memory_limit_settings():
    assert limits.parse_size("512MiB") == 512 << 20 and limits.parse_size("8 GB") == 8 * 10**9
    assert limits.parse_size(1234) == 1234
    for bad in ("lots", True, 1.5, "12 parsecs"):
        with pytest.raises(ValueError):
            limits.parse_size(bad)
    total = limits.physical_memory_bytes()
    assert limits.resolve_memory_limit("auto") == int(total * limits.AUTO_FRACTION)
    assert limits.resolve_memory_limit(None) is None and limits.resolve_memory_limit(1 << 30) == 1 << 30
    base = "name: s\nworkloads: [{name: tiny-add}]\nbackends: [{name: onnxruntime}]\nscenarios: [{kind: offline}]\n"
    assert parse_spec(base, "s", Path(".")).spec.run.max_memory_bytes == "auto"
    assert parse_spec(base + "run: {max_memory_bytes: 2GiB}", "s", Path(".")).spec.run.max_memory_bytes == 2 << 30
    assert parse_spec(base + "run: {max_memory_bytes: null}", "s", Path(".")).spec.run.max_memory_bytes is None
    from benchkit.errors import SpecError

    with pytest.raises(SpecError, match=r"run.max_memory_bytes: must be at least 67108864 bytes"):
        parse_spec(base + "run: {max_memory_bytes: 10MiB}", "s", Path("."))
    with pytest.raises(SpecError, match=r"run.max_memory_bytes: expected bytes"):
        parse_spec(base + "run: {max_memory_bytes: plenty}", "s", Path("."))


def test_only_host_allocation_failures_are_blamed_on_the_limit():
    assert limits.looks_like_oom("MemoryError: Unable to allocate 64.0 MiB for an array")
    assert limits.looks_like_oom("terminate called after throwing an instance of 'std::bad_alloc'")
    assert not limits.looks_like_oom("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB")
    assert not limits.looks_like_oom("RuntimeError: injected failure in run()")


def test_apply_memory_limit_in_a_child_process():
    code = ("import resource; from benchkit.runner import limits; assert limits.apply_memory_limit(300 << 20) is None; "
            "print(resource.getrlimit(resource.RLIMIT_DATA)[0], limits.current_memory_limit())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.stdout.split() == [str(300 << 20)] * 2, out.stderr


# --------------------------------------------------------------------------- SIGKILL and --resume

SUITE = """
name: killme
workloads: [{{name: tiny, model: {model}}}]
backends:
{backends}
scenarios: [{{kind: single_stream, min_duration_ms: {ms}, min_query_count: 10}}]
run: {{profile: quick}}
"""


def _suite(tmp_path: Path, model: Path, n: int, ms: int = 400, name: str = "suite.yaml") -> Path:
    backends = "\n".join(f"  - {{name: fault-inject, label: b{i}}}" for i in range(n))
    p = tmp_path / name
    p.write_text(SUITE.format(model=model, backends=backends, ms=ms))
    return p


@pytest.mark.slow  # real benchkit and worker processes end to end
def test_sigkill_mid_suite_loses_nothing_and_resume_completes_only_the_rest(tmp_path, tiny_model, fakes_on_path,
                                                                           capsys):
    spec = _suite(tmp_path, tiny_model, 4, ms=300)
    out = tmp_path / "out"
    with open(tmp_path / "err.txt", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "benchkit", "run", str(spec), "--out", str(out)],
                                stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT)
        try:
            _wait_for_records(out, 2, proc)
            workers = _children(proc.pid)
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert all(_gone(w) for w in workers), "a worker outlived the killed benchkit process"
    (run_dir,) = (out / "killme").iterdir()
    before = _records(run_dir)  # every file present parses: no partial or corrupt record
    assert 2 <= len(before) < 4
    snapshot = {n: (run_dir / n).read_bytes() for n in before}

    proc2 = run_cli("run", spec, "--out", out, "--resume", "--inline")  # the bookkeeping: no worker needed
    assert proc2.returncode == 0, proc2.stderr
    assert f"resuming {run_dir}: {len(before)} of 4 cells done, {4 - len(before)} to run" in " ".join(
        proc2.stderr.split())
    after = _records(run_dir)
    assert sorted(after) == sorted(f"tiny__b{i}__single_stream.json" for i in range(4))
    assert {r.run_id for r in after.values()} == {run_dir.name}
    assert all((run_dir / n).read_bytes() == b for n, b in snapshot.items())  # finished cells were not re-run
    assert not list(run_dir.glob(".*.tmp"))

    again = main(["run", str(spec), "--out", str(out), "--resume", str(run_dir)])  # nothing left: nothing runs
    assert again == 0 and "4 of 4 cells done, 0 to run" in " ".join(capsys.readouterr().err.split())


def test_resume_refuses_a_changed_spec_or_other_options(tmp_path, tiny_model, fakes_on_path, capsys):
    spec = _suite(tmp_path, tiny_model, 2, ms=50)
    out = tmp_path / "out"
    assert run_cli("run", spec, "--out", out, "--inline").returncode == 0  # isolation is not part of the plan
    (run_dir,) = (out / "killme").iterdir()
    (run_dir / "tiny__b1__single_stream.json").unlink()
    (run_dir / "tiny__b0__single_stream.json").write_text('{"schema_version": 1, "trunc')  # corrupted

    def refused(*args: str) -> str:  # in-process: these end before any cell runs
        assert main(["run", str(spec), "--out", str(out), "--resume", *args]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return " ".join(err.split())

    original = spec.read_text()
    spec.write_text(original.replace("min_duration_ms: 50", "min_duration_ms: 60"))
    err = refused()
    assert "--resume: the spec changed since" in err and "start a new run (without --resume)" in err
    spec.write_text(original)
    assert "was planned with other options (cells tiny__b1__single_stream differ)" in refused("--backend", "b0")
    assert "the same cells now have other settings" in refused("--profile", "standard")
    assert "no earlier run of spec 'killme'" in main_err(capsys, "run", str(spec), "--out", str(tmp_path / "x"),
                                                          "--resume")

    # the missing record and the unreadable one are measured again, in the same run
    p = run_cli("run", spec, "--out", out, "--resume", run_dir, "--inline")
    assert p.returncode == 0, p.stderr
    recs = _records(run_dir)
    assert len(recs) == 2 and {r.run_id for r in recs.values()} == {run_dir.name}


def main_err(capsys, *args: str) -> str:
    assert main(list(args)) == 2
    return " ".join(capsys.readouterr().err.split())


class _Cell:
    """A planned cell as the run directory sees it: an id and its settings as JSON."""

    def __init__(self, cell_id: str) -> None:
        self.cell_id = cell_id

    def model_dump(self, mode: str = "python") -> dict:
        return {"cell_id": self.cell_id}


def test_a_run_directory_is_locked_while_written(tmp_path):
    cells = [_Cell("a")]
    run = rundir.create(tmp_path, "s", "0" * 64, cells, 1, lambda: "20260101T000000Z-aaaaaa")
    try:
        with pytest.raises(RunError, match="another benchkit process is writing this run"):
            rundir.reopen(tmp_path, "s", "0" * 64, cells, 1)
    finally:
        run.close()
    rundir.reopen(tmp_path, "s", "0" * 64, cells, 1).close()  # free again once the writer is done


def test_run_ids_never_collide(tmp_path):
    ids = iter(["same", "same", "other"])
    a = rundir.create(tmp_path, "s", "0" * 64, [_Cell("a")], 1, lambda: next(ids))
    b = rundir.create(tmp_path, "s", "0" * 64, [_Cell("a")], 1, lambda: next(ids))
    assert (a.run_id, b.run_id) == ("same", "other")
    a.close()
    b.close()


@pytest.mark.slow  # two real benchkit processes
def test_two_benchkit_processes_on_one_results_directory_lose_nothing(tmp_path, tiny_model, fakes_on_path):
    spec = _suite(tmp_path, tiny_model, 2, ms=150)
    out = tmp_path / "shared-out"
    # two real benchkit processes at once; their cells inline (the subject is the shared folder, not workers)
    procs = [subprocess.Popen([sys.executable, "-m", "benchkit", "run", str(spec), "--out", str(out), "--inline"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT) for _ in range(2)]
    try:
        results = [p.communicate(timeout=180) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0], [r[1] for r in results]
    runs = sorted((out / "killme").iterdir())
    assert len(runs) == 2
    for run_dir in runs:
        recs = _records(run_dir)
        assert len(recs) == 2 and {r.run_id for r in recs.values()} == {run_dir.name}
        manifest = json.loads((run_dir / rundir.MANIFEST).read_text())
        assert manifest["run_id"] == run_dir.name and len(manifest["cells"]) == 2


@pytest.mark.slow  # real benchkit and worker processes end to end
def test_ctrl_c_stops_cleanly_keeps_what_finished_and_kills_the_worker(tmp_path, tiny_model, fakes_on_path):
    spec = _suite(tmp_path, tiny_model, 4, ms=1500)
    out = tmp_path / "out"
    with open(tmp_path / "err.txt", "w+") as err:
        # its own process group, as a terminal would give it: SIGINT goes to the whole group
        proc = subprocess.Popen([sys.executable, "-m", "benchkit", "run", str(spec), "--out", str(out)],
                                stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT, start_new_session=True)
        try:
            _wait_for_records(out, 1, proc)
            time.sleep(0.5)  # into the next cell's worker
            workers = _children(proc.pid)
            os.killpg(proc.pid, signal.SIGINT)
            rc = proc.wait(60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        err.seek(0)
        stderr = err.read()
    assert rc == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr and "--resume" in stderr
    assert workers and all(_gone(w) for w in workers)
    (run_dir,) = (out / "killme").iterdir()
    kept = _records(run_dir)
    assert 1 <= len(kept) < 4 and all(r.validity.valid for r in kept.values())
