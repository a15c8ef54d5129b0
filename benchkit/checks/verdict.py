"""The one author of a record's verdict.

Every check in :mod:`benchkit.checks` returns typed :class:`Finding` objects
(a reason, which makes the record INVALID, or a warning), each naming the
check that found it. :func:`verdict` turns a cell's findings into the
record's ``validity`` block, and :func:`amend` adds findings made later (by
the suite session in the parent process, by an executor, when ``close()``
fails). Nothing else constructs or edits ``Validity``: a test walks the
package for any other writer.

This is LoadGen's shape: the result is computed in one place and each reason
printed once; no module matches another's strings.
"""

from __future__ import annotations

from collections.abc import Iterable

from benchkit.results.records import Finding, Validity

__all__ = ["Finding", "finding", "reason", "warning", "verdict", "amend", "findings_of"]


def finding(check: str, message: str, severity: str = "reason") -> Finding:
    """A finding of either severity (``reason`` or ``warning``)."""
    return Finding(check=check, severity=severity, message=message)


def reason(check: str, message: str) -> Finding:
    """A finding that makes the record INVALID."""
    return Finding(check=check, severity="reason", message=message)


def warning(check: str, message: str) -> Finding:
    """A finding that does not invalidate: a doubt a reader should see."""
    return Finding(check=check, severity="warning", message=message)


def verdict(findings: Iterable[Finding]) -> Validity:
    """The validity block of a record with these findings, in the order the checks made them."""
    found = list(findings)
    reasons = [f.message for f in found if f.severity == "reason"]
    return Validity(valid=not reasons, reasons=reasons,
                    warnings=[f.message for f in found if f.severity == "warning"], findings=found)


def findings_of(validity: Validity) -> list[Finding]:
    """The typed findings behind a validity block. A record written before findings existed (schema < 1.11)
    has only strings: they come back under the check ``recorded``, so an amended verdict keeps them."""
    if validity.findings or (not validity.reasons and not validity.warnings):
        return list(validity.findings)
    return ([reason("recorded", r) for r in validity.reasons] + [warning("recorded", w) for w in validity.warnings]
            + ([] if validity.valid or validity.reasons else [reason("recorded", "INVALID (no reason recorded)")]))


def amend(validity: Validity, more: Iterable[Finding], *, drop: Iterable[str] = ()) -> Validity:
    """``validity`` with ``more`` findings added; findings of the checks named in ``drop`` are replaced, not kept
    (a check that re-judges what it judged before, such as ``error`` with a better message)."""
    dropped = set(drop)
    return verdict([*(f for f in findings_of(validity) if f.check not in dropped), *more])
