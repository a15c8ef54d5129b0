"""Checks of adapters that never run adapter code in the benchkit process.

Importing an adapter's module, constructing it and closing it is a vendor's
code: it may hang, call ``os.abort()`` or crash in a native library. ``validate``
and ``run`` (:func:`benchkit.runner.preflight.preflight`) and ``benchkit backends``
do it here, each adapter in an isolated process with a deadline
(:mod:`benchkit.runner.isolate`, the machinery that runs cells), and get an
:class:`AdapterCheck` back: what the adapter offers, or one line saying what
went wrong and where (importing its module, ``__init__``, ``close()``).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Any

from benchkit.runner.isolate import Outcome, run_isolated

CHECK_TIMEOUT_S = 120.0
"""Longest an adapter may take to import, start and close in a check (a preflight uses the spec's
``run.cell_timeout_s`` when that is shorter): a cold import of a GPU runtime takes tens of seconds."""

PARALLEL_CHECKS = 4
"""Adapter checks run at once (each is a process importing a runtime)."""

_WHERE = {"import": "while importing its module", "describe": "in describe_installation()", "construct": "in __init__()",
          "options": "in __init__()", "close": "in close()"}


@dataclass(frozen=True)
class AdapterCheck:
    """What one check of an adapter found."""

    name: str
    ok: bool
    message: str = ""  # one line: what went wrong, and where
    user_error: bool = False  # the adapter refused (unknown name, runtime not installed, bad options): not a fault
    stage: str = ""  # import | describe | options | construct | close
    details: dict[str, Any] = field(default_factory=dict)


def check_starts(name: str, options: dict[str, Any], timeout_s: float = CHECK_TIMEOUT_S,
                 generative: bool = False) -> AdapterCheck:
    """Import adapter ``name`` (``generative``: its generator, :mod:`benchkit.backends.generative`), construct it
    with ``options`` and close it, in an isolated process."""
    return _check({"name": name, "options": options, "construct": True, "generative": generative}, timeout_s)


def check_all(adapters: list[tuple[str, dict[str, Any], bool]],
              timeout_s: float = CHECK_TIMEOUT_S) -> list[AdapterCheck]:
    """:func:`check_starts` for each (name, options, generative), a few at once; results in the order given."""
    return _side_by_side(lambda a: check_starts(a[0], a[1], timeout_s, a[2]), adapters)


def _side_by_side(fn, items: list) -> list:
    from concurrent.futures import ThreadPoolExecutor

    if len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(PARALLEL_CHECKS, len(items)), thread_name_prefix="benchkit-check") as pool:
        return list(pool.map(fn, items))


def describe(name: str, timeout_s: float = CHECK_TIMEOUT_S) -> AdapterCheck:
    """Import adapter ``name`` and ask what it offers (``describe_installation``), in an isolated process."""
    return _check({"name": name, "construct": False}, timeout_s)


def _check(request: dict[str, Any], timeout_s: float) -> AdapterCheck:
    out = run_isolated({"adapter": request}, timeout_s)
    name = request["name"]
    if isinstance(out.answer, dict) and "ok" in out.answer:
        a = out.answer
        return AdapterCheck(name, bool(a["ok"]), str(a.get("message", "")), bool(a.get("user_error")),
                            str(a.get("stage", "")), a.get("details") or {})
    return AdapterCheck(name, False, _fault(out, timeout_s), False, out.phase or "import")


def _fault(out: Outcome, timeout_s: float) -> str:
    where = _WHERE.get(out.phase or "", "while starting")
    if out.timed_out:
        return f"hung {where}: no answer within {timeout_s:g} s; its process was killed"
    if out.rc < 0:
        try:
            sig = signal.Signals(-out.rc).name
        except ValueError:
            sig = f"signal {-out.rc}"
        why = f"crashed {where}: its process was killed by {sig}"
    else:
        why = f"ended its process in {where} with status {out.rc}"
    last = next((line.strip() for line in reversed(out.stderr.splitlines()) if line.strip()), "")
    return f"{why} (last line of its stderr: {last[:300]})" if last else why


def survey(timeout_s: float = CHECK_TIMEOUT_S) -> list:
    """Every registered adapter, each imported and described in its own process: failures are listed, never raised."""
    from benchkit.backends.registry import Installed, _entry_points

    eps = sorted(_entry_points().items())
    found = _side_by_side(lambda item: describe(item[0], timeout_s), eps)
    return [Installed(name, ep.value, f"{ep.dist.name} {ep.dist.version}" if ep.dist else "?", got.ok, got.details,
                      None if got.ok else got.message) for (name, ep), got in zip(eps, found)]


__all__ = ["AdapterCheck", "CHECK_TIMEOUT_S", "PARALLEL_CHECKS", "check_all", "check_starts", "describe", "survey"]
