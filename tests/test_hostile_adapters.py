"""Hostile adapters: adapter code (import, construction, close) never runs in the benchkit process, and a cell's
whole process tree and memory are held.

The adapters are fault-injection fakes (tests/fakes/benchkit_test_fakes.py, registered through a real entry point):
an ``__init__`` that hangs or calls ``os.abort()``, a ``close()`` that hangs, a module that aborts when imported,
1.5 GiB of ``MAP_SHARED`` memory under a 512 MiB limit (which RLIMIT_DATA does not count); the containment
mechanisms are tested on their own below (a grandchild that leaves the session with ``setsid``, shared memory),
and a cell's timeout ending a ``setsid`` grandchild in tests/test_isolation.py. Each case asserts the exit code, the message, no traceback, no hang
(the deadlines are a few seconds) and nothing written outside the output folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FAKES, run_cli
from benchkit.results import records
from benchkit.runner import confine

CHECK_S = 3  # run.cell_timeout_s of these specs: the deadline of each adapter check and of each cell

FAULTS = {  # label -> options of the fault-inject fake
    "hang-init": "{fault: hang_init}",
    "abort-init": "{fault: abort_init}",
    "hang-close": "{fault: hang_close}",
    "fine": "{fault: none}",
}

SPEC = """name: hostile
workloads: [{{name: gemm}}]
backends:
{backends}
scenarios: [{{kind: single_stream, min_duration_ms: 50, min_query_count: 5, warmup_ms: 0, warmup_queries: 0}}]
run: {{cell_timeout_s: {timeout}, max_memory_bytes: 512MiB, power: {{meters: []}}}}
"""


def _spec(folder: Path, labels: list[str]) -> Path:
    backends = "\n".join(f"  - {{name: fault-inject, label: {lb}, options: {FAULTS[lb]}}}"
                         for lb in labels)
    p = folder / "spec.yaml"
    p.write_text(SPEC.format(backends=backends, timeout=CHECK_S))
    return p


def _with_fakes() -> dict[str, str]:
    # as the fakes_on_path fixture sets it: one zygote serves the tests of this module
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(FAKES), os.environ.get("PYTHONPATH")]))}


def _alive(argv_tail: str) -> list[int]:
    """Live processes whose command line ends with ``argv_tail``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if cmd.endswith(argv_tail) and state != "Z":
            found.append(int(entry))
    return found


def _stray_cgroups() -> list[Path]:
    own, _memory, _why = confine._prepare()
    return sorted(own.glob(f"benchkit-{os.getpid()}-*")) if own is not None else []


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """One `benchkit run` over every fault: each costs its own cell, the suite goes on."""
    folder = tmp_path_factory.mktemp("hostile")
    spec = _spec(folder, list(FAULTS))
    (folder / "cwd").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(FAKES))
        t0 = time.monotonic()
        r = run_cli("run", spec, "--out", folder / "out", cwd=folder / "cwd", env=_with_fakes())
        took = time.monotonic() - t0
    recs = {p.stem.split("__")[1]: records.load(p) for p in (folder / "out").rglob("*.json") if "__" in p.stem}
    return folder, r, recs, took


def test_run_gives_each_broken_adapter_an_error_record_and_goes_on(hostile_run):
    _folder, r, recs, took = hostile_run
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert set(recs) == set(FAULTS)
    says = {"hang-init": f"hung in __init__(): no answer within {CHECK_S} s",
            "abort-init": "crashed in __init__(): its process was killed by SIGABRT",
            "hang-close": f"hung in close(): no answer within {CHECK_S} s"}
    for label, text in says.items():
        err = recs[label].error
        assert err is not None and err.type == "AdapterFault" and err.phase == "preflight", label
        assert f"backends[{list(FAULTS).index(label)}] ({label}): adapter 'fault-inject' {text}" in err.message
        assert "its cells are recorded as errors" in " ".join(r.stderr.split())
    assert recs["fine"].error is None and recs["fine"].metrics is not None
    # the three hung or crashed adapters were checked side by side, and never run as cells
    assert took < 60, f"the run took {took:.0f} s"


def test_shared_memory_counts_against_the_memory_limit(hostile_run, tmp_path, fakes_on_path, monkeypatch):
    """1.5 GiB of MAP_SHARED memory, held, under a 512 MiB limit: the cell ends at the limit, long before its
    timeout (RLIMIT_DATA alone never counted it, and the cell ran VALID)."""
    from benchkit.runner.plan import SuiteContext, expand
    from benchkit.runner.worker import run_in_worker
    from benchkit.spec import load_spec

    monkeypatch.chdir(hostile_run[0] / "cwd")  # the run's zygote serves this cell too
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(backends="  - {name: fault-inject, options: {fault: shared_mem, alloc_bytes: "
                                "1610612736}}", timeout=60))
    loaded = load_spec(spec)
    (cell,) = expand(loaded)
    ctx = SuiteContext(run_id="r", spec_name="hostile", spec_sha256=loaded.sha256, base_dir=str(tmp_path),
                       keep_samples=False, max_memory_bytes=512 << 20)
    t0 = time.monotonic()
    rec = run_in_worker(cell, ctx, 60)
    assert rec.error is not None and rec.error.type == "MemoryLimit", rec.error
    assert rec.error.message.startswith("worker memory limit exceeded (run.max_memory_bytes = 536870912 = 512 MiB)")
    assert time.monotonic() - t0 < 45
    assert not _stray_cgroups()


def test_nothing_is_written_outside_the_output_folder(hostile_run):  # (validate, below, writes there neither)
    folder = hostile_run[0]
    assert sorted(p.name for p in folder.iterdir()) == ["cwd", "out", "spec.yaml"]
    assert not any((folder / "cwd").iterdir())
    assert not _stray_cgroups()


# validate checks adapters as run does (hang-init, abort-init and hang-close above), and exits 2 on the first broken
# one (spec order), as below
def test_validate_reports_an_adapter_module_that_aborts_when_imported(tmp_path, fakes_on_path, hostile_run):
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: a\nworkloads: [{name: gemm}]\nbackends: [{name: abort-at-import}]\n"
                    "scenarios: [{kind: single_stream}]\nrun: {cell_timeout_s: 30}\n")
    r = run_cli("validate", spec, cwd=hostile_run[0] / "cwd")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == (f"benchkit: error: {spec}: backends[0] (abort-at-import): adapter 'abort-at-import' "
                                "crashed while importing its module: its process was killed by SIGABRT")


# ----------------------------------------------------------------------------- the mechanisms, without a cell

_DETACHING_CHILD = """
import subprocess, sys, time
from benchkit.runner import limits
limits.confine_self(sys.argv[1] or None)
subprocess.run(["sh", "-c", "setsid sleep " + sys.argv[2] + " >/dev/null 2>&1 &"], check=True)
print("ready", flush=True)
time.sleep(600)
"""

_SHARING_CHILD = """
import mmap, sys, time
from benchkit.runner import limits
limits.confine_self(sys.argv[1] or None)
m = mmap.mmap(-1, 768 << 20, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
print("ready", flush=True)
for off in range(0, len(m), mmap.PAGESIZE):
    m[off] = 1
time.sleep(600)
"""


def _confined(code: str, box: confine.Confinement, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", code, str(box.cgroup or ""), *args], stdout=subprocess.PIPE,
                            text=True, start_new_session=True, env={**os.environ, **_with_fakes()})
    box.started(proc.pid)
    assert proc.stdout.readline().strip() == "ready"
    return proc


@pytest.fixture(params=["cgroup", "tree"])
def mechanism(request, monkeypatch):
    """Each containment mechanism this machine offers: a cgroup v2 (where writable), and the subreaper tree."""
    if request.param == "tree":
        monkeypatch.setenv(confine.ENV_SWITCH, "0")
    monkeypatch.setattr(confine, "_setup", {})
    if request.param == "cgroup" and confine._prepare()[0] is None:
        pytest.skip(f"no writable cgroup v2 here: {confine.mechanism()}")
    yield request.param
    confine._setup.clear()


def test_kill_all_ends_a_detached_grandchild(mechanism):
    mark = f"{os.getpid()}.{time.monotonic_ns() % 10**6}1"
    box = confine.Confinement()
    proc = _confined(_DETACHING_CHILD, box, mark)
    try:
        deadline = time.monotonic() + 5
        while not _alive(f"sleep {mark}") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _alive(f"sleep {mark}"), "the grandchild never started"
        box.kill_all()
        assert proc.wait(5) == -9
        deadline = time.monotonic() + 5
        while _alive(f"sleep {mark}") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _alive(f"sleep {mark}"), f"the grandchild in its own session survived ({mechanism})"
    finally:
        for pid in _alive(f"sleep {mark}"):
            os.kill(pid, 9)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        box.close()
    assert box.cgroup is None or not box.cgroup.exists()


def test_shared_memory_past_the_limit_ends_the_process(mechanism):
    box = confine.Confinement(256 << 20)
    proc = _confined(_SHARING_CHILD, box)
    try:
        assert proc.wait(20) == -9
        by_kernel = box.oom_killed()  # memory.max, where the cgroup has the memory controller
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        box.close()
    assert box.exceeded is not None or by_kernel
    if box.exceeded:
        assert "anonymous and shared memory" in box.exceeded
