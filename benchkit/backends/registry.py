"""Discovery of backend adapters through the ``benchkit.backends`` entry-point group.

benchkit's own adapters are registered in the same group as any vendor's
(see ``pyproject.toml``), and only the adapter a run selects is imported:
a broken vendor install can never break the others, and start-up imports no
runtime at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from benchkit.errors import BackendError, BackendUnavailable
from benchkit.backends.base import Backend

GROUP = "benchkit.backends"


def _entry_points() -> dict[str, EntryPoint]:
    eps: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        eps.setdefault(ep.name, ep)  # first wins: duplicate installs must not shadow silently
    return eps


def names() -> list[str]:
    """Names of every registered adapter (nothing is imported)."""
    return sorted(_entry_points())


def load_backend_class(name: str) -> type[Backend]:
    """Import one adapter class by name."""
    eps = _entry_points()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none (is benchkit installed? `pip install -e .`)"
        raise BackendError(f"unknown backend {name!r}; installed backends: {known}")
    ep = eps[name]
    try:
        cls = ep.load()
    except BackendUnavailable:
        raise
    except ImportError as e:
        dist = ep.dist.name if ep.dist else "its package"
        raise BackendUnavailable(f"backend {name!r} cannot be imported ({e}); reinstall {dist}") from e
    except Exception as e:  # a vendor plugin's import-time bug must not become our traceback
        raise BackendUnavailable(f"backend {name!r} failed to import: {type(e).__name__}: {e}") from e
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise BackendError(f"backend {name!r} ({ep.value}) is not a benchkit.backends.Backend subclass")
    return cls


@dataclass(frozen=True)
class Installed:
    name: str
    target: str
    package: str
    ok: bool
    details: dict[str, Any]
    error: str | None


def survey() -> list[Installed]:
    """Import every adapter in turn and ask what it offers; failures are reported, not raised.

    In this process: an adapter that hangs or aborts while imported takes the caller with it. ``benchkit
    backends`` uses :func:`benchkit.runner.adapters.survey`, which asks each adapter in a process of its own."""
    out = []
    for name, ep in sorted(_entry_points().items()):
        pkg = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "?"
        try:
            cls = load_backend_class(name)
            details = cls.describe_installation()
            out.append(Installed(name, ep.value, pkg, True, details, None))
        except Exception as e:  # noqa: BLE001 - a survey lists failures
            out.append(Installed(name, ep.value, pkg, False, {}, f"{type(e).__name__}: {e}"))
    return out
