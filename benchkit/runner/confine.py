"""What holds one worker process and everything it starts: a cgroup where one can be made, else its process tree.

A cell's worker may start processes of its own (a runtime's compiler, a
server), and those may start a session of their own (``setsid``), leaving the
worker's process group. A timeout must still end all of them, and a memory
limit must count all of them, shared mappings included. Two mechanisms, the
first that the machine allows:

cgroup v2. Where a cgroup v2 hierarchy is mounted (``/sys/fs/cgroup``, or
``/sys/fs/cgroup/unified`` on a hybrid system) and benchkit's own cgroup in it
is writable (root, or a delegated cgroup), each worker gets a cgroup of its
own, ``benchkit-PID-N`` beside benchkit, and joins it before it does anything
else; every process it starts is born there. A timeout writes ``cgroup.kill``
(Linux 5.14+), which ends every member however it detached. Where the memory
controller is enabled for benchkit's cgroup's children (``memory`` in its
``cgroup.subtree_control``; benchkit enables it when the kernel lets it) the
cell's ``run.max_memory_bytes`` becomes the cgroup's ``memory.max`` (and
``memory.swap.max`` 0): the kernel counts everything the cell's processes
charge, anonymous, shared (``MAP_SHARED``, ``/dev/shm``) and page cache, and
kills the cell when reclaim cannot keep it under the limit.

Fallback. Without a usable cgroup, the worker makes itself a child subreaper
(``PR_SET_CHILD_SUBREAPER``): a descendant whose parent exits is re-parented
to the worker, not to init, so the worker's tree, read from ``/proc``, holds
every process it started, ``setsid`` or not. A timeout stops that tree
(``SIGSTOP``, so nothing forks while it is read), then kills it. Memory: the
worker's own ``RLIMIT_DATA`` (:mod:`benchkit.runner.limits`) fails a private
allocation inside the worker, and a monitor thread in benchkit sums, every
:data:`MONITOR_INTERVAL_S`, the anonymous and shared memory of the whole tree
(``Pss_Anon + Pss_Shmem`` from ``/proc/PID/smaps_rollup``: shared mappings
counted once across the tree, pages the kernel could drop, a mapped model file,
not counted), and kills the tree past the limit. The monitor reads the cheap
``/proc/PID/statm`` first and the page-walking ``smaps_rollup`` only when the
resident total is over the limit, so it costs next to nothing in a healthy
run. It samples, so a cell may overshoot for up to one interval (the worker's descendants, found by reading
all of ``/proc`` when there is no cgroup to list them, are looked for once a second).

``BENCHKIT_CGROUP=0`` skips cgroups (the fallback is then used everywhere).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import threading
import time
from pathlib import Path

ENV_SWITCH = "BENCHKIT_CGROUP"
MONITOR_INTERVAL_S = 0.2
TREE_REREAD_TICKS = 5  # without a cgroup, the worker's descendants are looked for once a second
_V2_MOUNTS = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))
_counter = itertools.count(1)
_setup_lock = threading.Lock()
_setup: dict[int, tuple[Path | None, bool, str]] = {}  # by pid: a forked copy of benchkit decides afresh


def _own_cgroup() -> tuple[Path | None, str]:
    """This process's directory in a writable cgroup v2 hierarchy, or None and why not."""
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "off", "no", "false"):
        return None, f"{ENV_SWITCH}=0"
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError as e:
        return None, f"/proc/self/cgroup unreadable ({e})"
    rel = next((line[3:] for line in lines if line.startswith("0::")), None)
    if rel is None:
        return None, "no cgroup v2 hierarchy"
    for mount in _V2_MOUNTS:
        if not (mount / "cgroup.controllers").is_file():  # only a cgroup2 mount has this file at its root
            continue
        own = mount / rel.lstrip("/")
        if (own / "cgroup.procs").is_file() and os.access(own, os.W_OK):
            return own, ""
        return None, f"cgroup {own} is not writable by this user"
    return None, "no cgroup v2 hierarchy mounted"


def _prepare() -> tuple[Path | None, bool, str]:
    """(benchkit's cgroup, may its children have memory.max, why not) once per process."""
    with _setup_lock:
        got = _setup.get(os.getpid())
        if got is not None:
            return got
        own, why = _own_cgroup()
        memory = False
        if own is not None:
            _remove_stale(own)
            try:
                memory = "memory" in (own / "cgroup.subtree_control").read_text().split()
                if not memory and "memory" in (own / "cgroup.controllers").read_text().split():
                    # Refused (EBUSY) for a non-root cgroup holding processes: then the fallback is used.
                    (own / "cgroup.subtree_control").write_text("+memory")
                    memory = True
            except OSError as e:
                why = f"memory controller not available to {own}'s children ({e.strerror or e})"
            if not memory and not why:
                why = f"memory controller not available to {own}'s children"
        _setup[os.getpid()] = got = (own, memory, why)
        return got


def _remove_stale(own: Path) -> None:
    """Empty cgroups of benchkit processes that died without removing them (a ``kill -9``)."""
    with contextlib.suppress(OSError):
        for d in own.glob("benchkit-*-*"):
            pid = d.name.split("-")[1]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                with contextlib.suppress(OSError):
                    d.rmdir()


def mechanism() -> str:
    """How cells are held on this machine, in words (for docs, diagnostics and tests)."""
    own, memory, why = _prepare()
    if own is None:
        return f"process tree (subreaper) and memory monitor; no cgroup: {why}"
    if memory:
        return f"cgroup v2 under {own} (cgroup.kill, memory.max)"
    return f"cgroup v2 under {own} (cgroup.kill) and memory monitor; {why}"


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(b")", 1)[-1].split()
        if len(fields) > 1:
            kids.setdefault(int(fields[1]), []).append(int(entry.name))
    return kids


def tree(pid: int) -> list[int]:
    """``pid`` and every live descendant of it (from /proc), parents before children."""
    kids = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


def _kill_tree(pid: int) -> None:
    """Stop the tree (nothing in it can fork while stopped), read it again until it holds still, kill it."""
    stopped: set[int] = set()
    for _ in range(50):
        members = set(tree(pid)) - stopped
        if not members:
            break
        for p in members:
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGSTOP)
        stopped |= members
    for p in stopped:
        with contextlib.suppress(OSError):
            os.kill(p, signal.SIGKILL)


def _statm_resident(pid: int, page: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * page
    except (OSError, IndexError, ValueError):
        return 0


def _charged(pid: int) -> int:
    """Anonymous and shared memory of one process, shared pages divided among those mapping them (bytes)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            text = f.read().decode("ascii", "replace")
    except OSError:
        return 0
    fields = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[key.strip()] = int(parts[0]) * 1024
    if "Pss_Anon" in fields:
        return fields["Pss_Anon"] + fields.get("Pss_Shmem", 0)
    return fields.get("Pss", 0)  # kernels before 5.7 give no breakdown: count everything


class Confinement:
    """One worker's container: made before the worker starts, closed (everything in it killed) after."""

    def __init__(self, memory_limit_bytes: int | None = None) -> None:
        self.limit = memory_limit_bytes
        self.cgroup: Path | None = None
        self.kernel_limit = False  # memory.max holds the limit
        self.exceeded: str | None = None  # set by the monitor when it killed the tree
        self._pid: int | None = None
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None
        own, memory, _why = _prepare()
        if own is None:
            return
        path = own / f"benchkit-{os.getpid()}-{next(_counter)}"
        try:
            path.mkdir()
        except OSError:
            return
        self.cgroup = path
        if memory and self.limit:
            try:
                (path / "memory.max").write_text(str(self.limit))
                self.kernel_limit = True
                with contextlib.suppress(OSError):
                    (path / "memory.swap.max").write_text("0")  # past the limit is an error, never swapping
            except OSError:
                pass

    def for_child(self) -> dict:
        """What the worker is told, to confine itself before it does anything else (see limits.confine_self)."""
        return {"cgroup": str(self.cgroup) if self.cgroup else None}

    def started(self, pid: int) -> None:
        """The worker has this pid: make sure it is in the cgroup, and watch its memory where the kernel does not."""
        self._pid = pid
        if self.cgroup is not None:
            with contextlib.suppress(OSError):
                (self.cgroup / "cgroup.procs").write_text(str(pid))
            if not self._holds(pid):
                # Not allowed to move it (a delegated cgroup whose parent's cgroup.procs is not ours): the tree and
                # the monitor hold the worker instead, never a cgroup that holds nothing.
                self.kernel_limit = False
                self._drop_cgroup()
        if self.limit and not self.kernel_limit:
            self._monitor = threading.Thread(target=self._watch, name=f"benchkit-memory-{pid}", daemon=True)
            self._monitor.start()

    def _holds(self, pid: int) -> bool:
        try:
            lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        except OSError:
            return True  # gone already: nothing to hold
        rel = next((line[3:] for line in lines if line.startswith("0::")), "")
        return self.cgroup is not None and self.cgroup.name == Path(rel).name

    def _drop_cgroup(self) -> None:
        with contextlib.suppress(OSError):
            self.cgroup.rmdir()
        self.cgroup = None

    def members(self) -> list[int]:
        if self._pid is None:
            return []
        if self.cgroup is not None:
            with contextlib.suppress(OSError, ValueError):
                return [int(p) for p in (self.cgroup / "cgroup.procs").read_text().split()]
        return tree(self._pid)

    def kill_all(self) -> None:
        """SIGKILL every process of the worker: the cgroup at once, else the tree (and its group, as before)."""
        if self._pid is None:
            return
        if self.cgroup is not None:
            with contextlib.suppress(OSError):
                (self.cgroup / "cgroup.kill").write_text("1")
        _kill_tree(self._pid)
        for kill in (os.killpg, os.kill):
            with contextlib.suppress(OSError):
                kill(self._pid, signal.SIGKILL)

    def oom_killed(self) -> bool:
        """Did the kernel kill a process of the cgroup for passing memory.max?"""
        if not self.kernel_limit or self.cgroup is None:
            return False
        with contextlib.suppress(OSError, ValueError):
            for line in (self.cgroup / "memory.events").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
        return False

    def _watch(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        pids: list[int] = []
        for tick in itertools.count():
            if self._stop.wait(MONITOR_INTERVAL_S):
                return
            # A cgroup lists its members cheaply; a tree is read from all of /proc (milliseconds on a busy
            # machine), so only every TREE_REREAD_TICKS-th period, the worker itself being watched at every one.
            if self.cgroup is not None or tick % TREE_REREAD_TICKS == 0 or not pids:
                pids = self.members()
            if not pids:
                continue
            if sum(_statm_resident(p, page) for p in pids) <= self.limit:
                continue  # resident memory bounds what smaps_rollup would count: nothing to walk
            held = sum(_charged(p) for p in pids)
            if held > self.limit:
                from benchkit.runner.limits import fmt_bytes

                self.exceeded = (f"the worker's {len(pids)} process(es) held {fmt_bytes(held)} of anonymous and "
                                 "shared memory (proportional set size, shared mappings included); killed")
                self.kill_all()
                return

    def close(self) -> None:
        """Stop watching, kill what is left (a cell's stray daemon), remove the cgroup."""
        self._stop.set()
        if self._monitor is not None:
            self._monitor.join(2)
        if self.cgroup is None:
            return
        if self.members():
            with contextlib.suppress(OSError):
                (self.cgroup / "cgroup.kill").write_text("1")
        deadline = time.monotonic() + 2.0
        while True:  # the killed members leave the cgroup when they are reaped
            try:
                self.cgroup.rmdir()
                return
            except OSError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.02)


__all__ = ["Confinement", "mechanism", "tree", "ENV_SWITCH", "MONITOR_INTERVAL_S"]
