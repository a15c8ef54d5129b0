"""One exception root for everything benchkit reports to a user.

The CLI turns any :class:`BenchkitError` into a one-paragraph message and exit
code 2; anything else escaping is a bug in benchkit and keeps its traceback.
"""

from __future__ import annotations


class BenchkitError(Exception):
    """Root of every error benchkit raises on purpose."""


class SpecError(BenchkitError):
    """The evaluation spec (or a file it names) is malformed or inconsistent."""


class WorkloadError(BenchkitError):
    """A workload cannot be built, loaded, or fed (bad model file, shape conflict, ...)."""


class BackendError(BenchkitError):
    """A backend adapter failed while loading, staging or running a workload."""


class BackendUnavailable(BackendError):
    """A backend is not installed or cannot be imported; the message names the extra."""


class RecordError(BenchkitError):
    """A result record is unreadable, invalid, or from an unsupported schema version."""


class RunError(BenchkitError):
    """A run directory cannot be created, resumed or locked (e.g. --resume of a changed spec)."""


class PowerMeterError(BenchkitError):
    """A power meter is unknown, misconfigured, or cannot be read here; the message says which and why."""


class FleetError(BenchkitError):
    """The fleet file, the Ray cluster, or a cell's placement on it is unusable (cell no node can run, no cluster)."""


class WriteError(BenchkitError, OSError):
    """A file cannot be written (disk full, read-only folder, no permission); nothing partial is left behind.

    Also an OSError, with its errno, so code that handles OSError keeps working."""

    def __str__(self) -> str:  # the message, not OSError's "[Errno 28] ...: path" built from errno and filename
        return str(self.args[0]) if self.args else ""
