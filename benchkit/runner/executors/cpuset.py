"""Non-overlapping CPU sets for cells running side by side on one machine.

Ray counts CPUs but does not say *which* cores a task may use, so two cells
on one node would otherwise share cores and disturb each other's timing. A
cell holds an advisory lock (``flock``) on one file per core for as long as
it runs, and the thread that starts its worker process is pinned to those
cores; the worker process inherits the affinity. The locks live in the
machine's temporary directory, not per Ray node, because several Ray nodes on
one machine share its cores. The kernel drops a lock when its holder dies, so
a killed task never leaves a core taken.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from benchkit.errors import FleetError

_POLL_S = 0.05


def default_lock_dir() -> Path:
    return Path(tempfile.gettempdir()) / "benchkit-cpusets"


def _try_hold(pool: list[int], n: int, lock_dir: Path) -> list[tuple[int, int]] | None:
    held: list[tuple[int, int]] = []
    for core in pool:
        fd = os.open(lock_dir / f"cpu{core}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        held.append((core, fd))
        if len(held) == n:
            return held
    # All or nothing: holding a partial set while waiting could deadlock two cells that each want two cores.
    _release(held)
    return None


def _release(held: list[tuple[int, int]]) -> None:
    for _, fd in held:
        os.close(fd)  # closing the only descriptor drops the flock


@contextlib.contextmanager
def pinned(n_cores: int, wait_s: float, lock_dir: Path | None = None) -> Iterator[list[int] | None]:
    """Hold `n_cores` cores that no other cell on this machine holds, and pin the calling thread to them.

    Processes the thread starts meanwhile inherit the affinity. Yields the cores
    (sorted), or None when `n_cores` is 0 or the platform cannot pin. Waits up
    to `wait_s` for enough cores to come free, then raises :class:`FleetError`.
    The thread's previous affinity is restored on exit.
    """
    if n_cores <= 0 or not hasattr(os, "sched_setaffinity"):
        yield None
        return
    pool = sorted(os.sched_getaffinity(0))
    if n_cores > len(pool):
        raise FleetError(f"the cell asks for {n_cores} cores (num_cpus) but this node's processes may use only "
                         f"{len(pool)} ({_ranges(pool)})")
    lock_dir = lock_dir or default_lock_dir()
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    while (held := _try_hold(pool, n_cores, lock_dir)) is None:
        if time.monotonic() >= deadline:
            raise FleetError(f"no {n_cores} free core(s) among {_ranges(pool)} within {wait_s:g} s: cells of "
                             "other Ray nodes on this machine hold them (start each node with as many CPUs as it owns)")
        time.sleep(_POLL_S)
    cores = [c for c, _ in held]
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, cores)
        yield cores
    finally:
        try:
            os.sched_setaffinity(0, before)
        finally:
            _release(held)


def _ranges(cores: list[int]) -> str:
    return ",".join(map(str, cores))


__all__ = ["pinned", "default_lock_dir"]
