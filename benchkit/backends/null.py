"""The ``null`` backend: does no work and returns at once.

It measures the harness itself, as LoadGen's demo systems under test do: a
scenario's figures on ``null`` are the floor that benchkit adds to any device.
It offers asynchronous submission that completes inside ``submit``, so a
Server run on ``null`` measures the scheduler alone: its issue lateness and
the highest arrival rate it sustains.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from benchkit._version import __version__
from benchkit.errors import BackendError
from benchkit.backends.base import Backend, BackendInfo, Done, WorkloadInfo


class NullBackend(Backend):
    name = "null"
    computes_outputs = False  # it measures the harness: nothing to check, nothing to certify

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        if options:
            raise BackendError(f"null backend takes no options, got: {', '.join(sorted(options))}")
        self._outputs: list[np.ndarray] = []
        self._workload: WorkloadInfo | None = None

    @classmethod
    def describe_installation(cls) -> dict[str, Any]:
        return {"version": __version__, "device": "none (harness overhead only)"}

    def load(self, model_path: Path, workload: WorkloadInfo) -> None:
        self._workload = workload

    def run(self, staged: Any) -> Any:
        return None

    def supports_async(self) -> bool:
        return True

    def submit(self, staged: Any, done: Done, tag: int) -> None:
        # Nothing to wait for: complete at once, on the issuing thread.
        done(tag, None)

    def fetch(self, result: Any) -> list[np.ndarray]:
        return []

    def info(self) -> BackendInfo:
        prec = str(self._workload.extra.get("graph_precision", "fp32")) if self._workload else "fp32"
        return BackendInfo(name=self.name, version=__version__, device="none", precision=prec,
                           adapter=f"{__name__}:NullBackend")
