"""The one type a check hands to the verdict: a :class:`Finding`.

Checks never return strings that another module matches: each returns a list
of findings, and the verdict author turns ``severity="reason"`` findings into
``validity.reasons`` (the record is INVALID) and ``severity="warning"`` ones
into ``validity.warnings``, printing each message once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["reason", "warning"]


@dataclass(frozen=True)
class Finding:
    """One thing a check found wrong or doubtful about a result."""

    check: str  # stable name of the rule that found it, e.g. "plausibility.peak", "provenance.runtime_version"
    message: str  # one sentence for the reader, with the figures it rests on
    severity: Severity = "reason"  # "reason": the record is INVALID; "warning": published beside the result

    def __post_init__(self) -> None:
        if self.severity not in ("reason", "warning"):
            raise ValueError(f"Finding.severity must be 'reason' or 'warning', got {self.severity!r}")


def reasons(findings: list[Finding]) -> list[Finding]:
    """The findings that make a record INVALID."""
    return [f for f in findings if f.severity == "reason"]


__all__ = ["Finding", "Severity", "reasons"]
