"""Where the data that ships with benchkit lives.

In a source checkout (and an editable install) the standard specs and workload
manifests are the top-level ``specs/`` and ``workloads/`` folders; a wheel
carries copies under ``benchkit/_data/``. Callers never need to know which.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def data_dir(kind: str) -> Path:
    """Return the folder holding shipped data of ``kind`` ("specs" or "workloads")."""
    packaged = _PKG / "_data" / kind
    if packaged.is_dir():
        return packaged
    return _PKG.parent / kind
