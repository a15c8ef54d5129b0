"""Access to NVIDIA's management library (NVML) through nvidia-ml-py, imported lazily.

Shared by the power meter (:mod:`benchkit.power.nvml`), the stability gate and
the system description. Every caller may pass its own binding module (tests
pass a fake one); by default ``pynvml`` from the ``nvidia-ml-py`` package.
NVML counts its initialisations, so each session here pairs ``nvmlInit`` with
``nvmlShutdown``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from benchkit._install import install_hint
from benchkit.errors import BenchkitError


class NvmlUnavailable(BenchkitError):
    """NVML cannot be used here; the message says why (package missing, no driver, no device)."""


def import_nvml(module: Any = None) -> Any:
    if module is not None:
        return module
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        raise NvmlUnavailable(f"nvidia-ml-py is not installed: {install_hint('nvml')}") from None
    return pynvml


def init(nv: Any) -> None:
    try:
        nv.nvmlInit()
    except Exception as e:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        raise NvmlUnavailable(f"NVML cannot start (no NVIDIA driver here?): {e}") from None


def shutdown(nv: Any) -> None:
    try:
        nv.nvmlShutdown()
    except Exception:  # noqa: BLE001 - nothing useful to do about a failed shutdown
        pass


@contextlib.contextmanager
def nvml_session(module: Any = None) -> Iterator[Any]:
    nv = import_nvml(module)
    init(nv)
    try:
        yield nv
    except NvmlUnavailable:
        raise
    except Exception as e:  # an NVMLError from a query: say so instead of crashing the caller
        raise NvmlUnavailable(f"NVML query failed: {e}") from None
    finally:
        shutdown(nv)


def text(value: Any) -> str:
    """NVML strings are bytes in older bindings, str in newer ones."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
