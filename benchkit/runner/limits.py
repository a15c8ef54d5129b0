"""Limits a worker process runs under, so that one runaway cell costs that cell and nothing more.

Memory. Each worker sets ``RLIMIT_DATA`` on itself before it imports any
runtime (``run.max_memory_bytes``). Since Linux 4.7 that limit covers the heap
and every private writable mapping, which is where runtimes put tensors and
arenas: an allocation past it fails inside the worker (numpy raises
``MemoryError``, a C++ runtime throws ``std::bad_alloc``), the cell gets an
error record naming the limit, and the machine's out-of-memory killer never
has to choose a victim. ``RLIMIT_AS`` was rejected: it counts reserved
address space too, which GPU runtimes take by the terabyte and ONNX Runtime's
threads by the hundreds of megabytes, so it fails healthy runs. A cgroup v2
``memory.max`` would be tighter still, but needs a delegated, writable cgroup
that an ordinary user rarely has. File-backed read-only mappings (an mmapped
model file) are not counted: the kernel can drop those pages at will.

A worker forked from the zygote (:mod:`benchkit.runner.forkserver`) sets the
same limit after fork, with numpy, onnx and benchkit already imported. The
kernel counts the private writable mappings it inherited (about 120 MB of
address space, most of it shared copy-on-write with the zygote) exactly as it
counts those a fresh interpreter maps when it imports the same modules under
the limit, so a limit means the same in both: nothing already mapped needs
subtracting. A limit below what is already mapped is not refused by the
kernel; the worker's next allocation fails, with the error record naming the
limit (``MIN_MEMORY_BYTES`` keeps specs well clear of that).

Lifetime. A worker asks the kernel to SIGKILL it when its parent dies
(``PR_SET_PDEATHSIG``), so killing benchkit mid-suite, even with SIGKILL,
leaves no orphaned worker measuring into the void.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from typing import Any

AUTO_FRACTION = 0.75
"""``max_memory_bytes: auto`` allows a worker this share of the machine's physical memory."""

MIN_MEMORY_BYTES = 64 << 20
"""Below this no Python process with numpy and a runtime can start; smaller limits are refused."""

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12,
          "tb": 10**12, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")

# What a failed *host* allocation looks like in an exception message or on a runtime's stderr: Python's
# MemoryError, numpy's message, C++ operator new, the OS. Device-memory failures ("CUDA out of memory", an
# arena's "Failed to allocate") are deliberately absent: the worker's limit has nothing to do with them.
_OOM_SIGNS = ("MemoryError", "Unable to allocate", "bad_alloc", "Cannot allocate memory", "ENOMEM")


def parse_size(value: Any) -> int:
    """Bytes from an int or a size string such as ``'512MiB'`` or ``'8 GB'``; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number of bytes, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m and m.group(2).lower() in _UNITS:
            n = float(m.group(1)) * _UNITS[m.group(2).lower()]
            if n == n and n != float("inf"):  # 400 digits read as a float are infinite: not a size
                return int(n)
    raise ValueError(f"expected bytes (an integer) or a size such as '512MiB' or '8GiB', got {value!r}")


def physical_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def resolve_memory_limit(setting: int | str | None) -> int | None:
    """The byte limit a worker gets for a spec's ``max_memory_bytes`` (``'auto'``, bytes, or None for none)."""
    if setting is None:
        return None
    if setting == "auto":
        total = physical_memory_bytes()
        return int(total * AUTO_FRACTION) if total else None
    return int(setting)


def fmt_bytes(n: int) -> str:
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def apply_memory_limit(limit_bytes: int | None) -> str | None:
    """Set this process's soft RLIMIT_DATA to ``limit_bytes``; returns why it could not, or None.

    Called by the worker before it imports a runtime. The hard limit is never
    raised (an unprivileged process cannot); a lower existing hard limit wins.
    """
    if limit_bytes is None:
        return None
    try:
        import resource
    except ImportError:  # not POSIX
        return "memory limit not applied: the resource module is unavailable on this platform"
    try:
        _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        soft = limit_bytes if hard == resource.RLIM_INFINITY else min(limit_bytes, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))
    except (ValueError, OSError) as e:
        return f"memory limit not applied: setrlimit(RLIMIT_DATA, {limit_bytes}) failed: {e}"
    return None


def current_memory_limit() -> int | None:
    """This process's soft RLIMIT_DATA, or None when unlimited or unknown."""
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_DATA)
    except (ImportError, ValueError, OSError):
        return None
    return None if soft == resource.RLIM_INFINITY else int(soft)


def looks_like_oom(text: str) -> bool:
    """Does an exception message or stderr tail show a failed allocation?"""
    return any(sign in text for sign in _OOM_SIGNS)


def memory_limit_message(limit_bytes: int, what: str) -> str:
    return (f"worker memory limit exceeded (run.max_memory_bytes = {limit_bytes} = {fmt_bytes(limit_bytes)}): "
            f"{what}")


def die_with_parent(parent_pid: int | None) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux); exit now if it already has."""
    if not sys.platform.startswith("linux") or parent_pid is None:
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    # The parent may have died between our fork and the prctl: then nobody waits for this cell.
    if os.getppid() != parent_pid:
        os._exit(70)


def confine_self(cgroup: str | None) -> None:
    """The worker's first act (:mod:`benchkit.runner.confine`): join its cgroup, or become a child subreaper.

    In its cgroup every process the cell starts is born inside it; a subreaper keeps every descendant that
    detaches (``setsid``, double fork) in its own tree, where benchkit finds it on a timeout."""
    if cgroup:
        try:
            with open(os.path.join(cgroup, "cgroup.procs"), "w", encoding="ascii") as f:
                f.write(str(os.getpid()))
        except OSError:
            pass  # benchkit wrote our pid there too; if neither worked, the subreaper below still holds the tree
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_child_subreaper = 36
        libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass
