"""Resolved scenarios for tests that drive the measurement loops and latency rules directly."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from benchkit.spec import Scenario

_ADAPTER = TypeAdapter(Scenario)
_SERVER_DEFAULTS = {"target_qps": 100.0, "target_latency_ns": 10_000_000}


def scenario(kind: str, profile: str = "quick", **fields: Any):
    """A ``kind`` scenario with ``fields`` set and the rest from ``profile`` (Server gets a rate and bound)."""
    base = dict(_SERVER_DEFAULTS) if kind == "server" else {}
    return _ADAPTER.validate_python({"kind": kind, **base, **fields}).effective(profile)
