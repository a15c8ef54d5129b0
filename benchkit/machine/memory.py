"""Peak resident memory of this process, for the record's ``memory`` block.

Linux keeps each process's resident high-water mark (``VmHWM`` in
``/proc/self/status``) and lets the process reset it (writing ``5`` to
``/proc/self/clear_refs``, Linux 4.0+), so a cell's peak is its own even when
the process ran something before it (``--inline``, or a worker forked from a
zygote that had imported numpy and onnx). Where the reset is refused the
figure covers the whole process and the record says so (``scope``).
Elsewhere ``getrusage``'s ``ru_maxrss`` (kilobytes on Linux, bytes on macOS)
is the fallback, always process-wide.
"""

from __future__ import annotations

import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak() -> bool:
    """Start a new high-water mark at the current resident size; False when this OS or kernel cannot."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def _status_bytes(key: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024  # the kernel writes kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss_bytes() -> int | None:
    """Resident memory now (``VmRSS``), where the OS says."""
    return _status_bytes("VmRSS")


def peak_rss_bytes() -> tuple[int | None, str]:
    """``(peak resident bytes, where it came from)``: ``VmHWM`` on Linux, else ``ru_maxrss``."""
    hwm = _status_bytes("VmHWM")
    if hwm is not None:
        return hwm, "VmHWM"
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (ImportError, OSError):
        return None, "unavailable"
    return (peak if sys.platform == "darwin" else peak * 1024), "ru_maxrss"


class Start:
    """What :func:`start` saw: whether the peak was reset, and the resident size then."""

    def __init__(self, reset: bool, rss: int | None) -> None:
        self.reset, self.rss = reset, rss


def start() -> Start:
    """Call when a cell starts: reset the high-water mark where possible, note the resident size."""
    return Start(reset_peak(), rss_bytes())


def device_peak(backend: object) -> int | None:
    """The adapter's ``peak_device_memory_bytes()``, where it has one and it answers; never raises."""
    ask = getattr(backend, "peak_device_memory_bytes", None)
    if ask is None:
        return None
    try:
        value = ask()
    except Exception:  # noqa: BLE001 - a figure the adapter cannot give is absent, not a failed cell
        return None
    return int(value) if isinstance(value, (int, float)) and value >= 0 else None


def block(begun: Start, peak_device: int | None = None):
    """The record's ``memory`` block for a cell begun at ``begun``."""
    from benchkit.results.records import Memory

    peak, source = peak_rss_bytes()
    return Memory(peak_rss_bytes=peak, rss_at_start_bytes=begun.rss,
                  scope="cell" if begun.reset and source == "VmHWM" else "process", source=source,
                  peak_device_bytes=peak_device)
