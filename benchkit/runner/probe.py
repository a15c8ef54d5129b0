"""The child side of an adapter check (the parent side is :mod:`benchkit.runner.adapters`).

Runs in an isolated process (:func:`benchkit.runner.child.main` with an
``adapter`` payload): imports one adapter through its entry point and either
asks what it offers (``describe_installation``) or constructs it with the
spec's options and closes it. Each step is announced as a phase first, so the
parent can say where a hang or a crash happened. What it returns is plain JSON.
"""

from __future__ import annotations

import json
from typing import Any


def _phase(name: str) -> None:
    print(f"phase {name}", flush=True)


def check_here(request: dict[str, Any]) -> dict[str, Any]:
    """{"ok": true, "details": {...}} or {"ok": false, "stage": ..., "message": ..., "user_error": bool}."""
    from benchkit.backends import load_backend_class
    from benchkit.errors import BenchkitError

    name = request["name"]
    _phase("import")
    try:
        if request.get("generative"):
            from benchkit.backends.generative import load_generator_class

            cls = load_generator_class(name)
        else:
            cls = load_backend_class(name)
    except BenchkitError as e:  # unknown name, runtime not installed, not a Backend: the user's to fix
        return {"ok": False, "stage": "import", "message": str(e), "user_error": True}
    if not request.get("construct"):
        _phase("describe")
        try:
            details = cls.describe_installation()
        except Exception as e:  # noqa: BLE001 - reported, as a survey lists failures
            return {"ok": False, "stage": "describe", "message": f"{type(e).__name__}: {e}",
                    "user_error": isinstance(e, BenchkitError)}
        # what an adapter reports may hold anything: made JSON here, each odd value as its text
        return {"ok": True, "details": json.loads(json.dumps(details, default=str))}
    _phase("construct")
    try:
        adapter = cls(request.get("options") or {})
    except BenchkitError as e:
        return {"ok": False, "stage": "options", "message": str(e), "user_error": True}
    except Exception as e:  # noqa: BLE001 - an adapter bug, reported without a traceback
        return {"ok": False, "stage": "construct", "message": f"failed to start: {type(e).__name__}: {e}",
                "user_error": False}
    _phase("close")
    try:
        adapter.close()
    except Exception:  # noqa: BLE001 - only the options are checked here; a cell's own close() is reported
        pass
    return {"ok": True, "details": {}}
