"""What machine a result was measured on (the record's ``system`` block)."""

from __future__ import annotations

import functools
import os
import platform
import socket
from importlib import metadata

# Packages whose versions change results; vendor runtimes are added by name when present.
_PACKAGES = ("benchkit", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "openvino", "pydantic", "torch")


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _cpu_flags() -> list[str]:
    """ISA extensions that change kernel choice (and so results)."""
    wanted = {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8", "fma", "neon", "sve"}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return sorted(wanted & set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return []


def packages() -> dict[str, str]:
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


@functools.lru_cache(maxsize=1)
def describe() -> dict:
    """The system block of a record. Cached: it cannot change within a process.

    The MLPerf-style host details (sockets, cores, caches, frequency, kernel,
    distribution) come from :func:`benchkit.machine.description.host_details`; the benchkit
    process adds the user's system file and NVML's accelerators to each record.
    """
    from benchkit.machine.description import host_details

    uname = platform.uname()
    return {
        **host_details(cpu_model=cpu_model()),
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count() or 0,
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_flags": _cpu_flags(),
        "memory_bytes": memory_bytes(),
        "os": f"{uname.system} {uname.release}",
        "machine": uname.machine,
        "python": platform.python_version(),
        "packages": packages(),
    }
