"""Divisions: is a result about a standard workload (``closed``) or about something else (``open``)?

The rules are those of ``docs/rules.md`` ("Divisions"), version :data:`RULES_VERSION`.
A result is ``closed`` only when every one of these holds; otherwise it is
``open`` and the record lists each rule that failed:

1. the model is a standard catalog workload, byte for byte as benchkit builds
   it: its SHA-256 equals that of the catalog's deterministic build of the
   same entry and variant (fp32, or benchkit's own fp16/int8 derivation) at
   the entry's default parameters. A ``model:`` file counts when its bytes
   are such a build (``benchkit workloads export NAME -o FILE`` writes one);
2. its inputs are generated as the catalog declares them (no ``inputs``
   overrides of shape or value range);
3. the effective precision is the claimed one, and it is the graph's own
   precision; a lower compute precision (bf16, fp16, mixed on an fp32 graph)
   is permitted only with a passed accuracy gate;
4. a result measured on a deployed server (``backend.endpoint``) counts only when
   the server reports the SHA-256 of the model it loaded and that is the
   workload's (what the benchkit machine holds proves nothing about the server);
5. the accuracy gate passed (a gate that compared nothing is not a pass; a
   record from before the gate existed, which has no ``accuracy`` block, is
   judged by rules 1-4).

benchkit decides; a spec can only *request* a division (``run.division``). A
request for ``closed`` that fails a rule makes the record INVALID with the
reasons, so a submission cannot be mislabelled by accident.

:func:`decide` is a pure function of the record and of the standard build it is
compared with; :func:`standard_build` (which never builds: it reads the table of
standard-build hashes and the workload cache) finds that build; :func:`apply` puts the decision into a record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RULES_VERSION = "1.0"
"""Version of the evaluation rules (docs/rules.md) that :func:`decide` implements."""

REQUESTS = ("auto", "closed", "open")

# Compute precisions a closed result may claim on a graph of each precision: its own always;
# the lowered ones only with a passed accuracy gate (a runtime choosing bf16 for an fp32 graph
# is a property of the system under test, as long as the answers stay right).
_LOWERED_WITH_ACCURACY: dict[str, tuple[str, ...]] = {"fp32": ("bf16", "fp16", "mixed"), "fp16": ("mixed",)}


@dataclass(frozen=True)
class StandardBuild:
    """The standard catalog build a workload was compared with, and how the cell's workload departs from it."""

    name: str
    """Catalog entry."""
    variant: str
    """fp32 | fp16 | int8: benchkit's build of that precision."""
    sha256: str | None
    """SHA-256 of benchkit's deterministic build at default params; None when not built (params overridden)."""
    params_overridden: tuple[str, ...] = ()
    """``key=value`` of each builder parameter that differs from the manifest default."""
    inputs_changed: tuple[str, ...] = ()
    """One line per input generated otherwise than the manifest declares (shape or value range)."""
    unverified: str | None = None
    """Why the file could not be compared byte for byte with this build (its SHA-256 is not known here)."""

    @property
    def label(self) -> str:
        return f"{self.name} {self.variant}"


def decide(record: Any, build: StandardBuild | None, requested: str = "auto"):
    """The :class:`benchkit.results.records.Division` of ``record`` (a ResultRecord with workload and backend blocks).

    ``build`` is the standard build to compare with (:func:`standard_build`),
    None when the model has no catalog counterpart. ``requested`` is the
    spec's ``run.division``; asking for ``open`` labels the result open even
    when it would qualify as closed. Reads ``record.accuracy`` when the record
    has such a block.
    """
    from benchkit.results.records import Division

    if requested not in REQUESTS:
        raise ValueError(f"requested division must be one of {', '.join(REQUESTS)}, got {requested!r}")
    wl, be = record.workload, record.backend
    reasons: list[str] = []
    if build is None:
        what = f"model file {wl.model_file}" if wl.source == "file" else f"workload {wl.name}"
        reasons.append(f"{what} is not a standard catalog workload: no {wl.graph_precision} catalog build with its "
                       "inputs has its SHA-256 or its graph structure")
    else:
        if build.params_overridden:
            reasons.append(f"catalog parameters changed from {build.name}'s defaults: "
                           + ", ".join(build.params_overridden))
        elif build.unverified is not None:
            reasons.append(f"model has the graph structure of {build.label} but cannot be compared with benchkit's "
                           f"build byte for byte: {build.unverified}")
        elif build.sha256 is not None and build.sha256 != wl.model_sha256:
            reasons.append(f"model SHA-256 {wl.model_sha256[:16]}… differs from benchkit's build of "
                           f"{build.label} ({build.sha256[:16]}…): the graph was changed")
        reasons.extend(f"input {line}" for line in build.inputs_changed)

    endpoint = getattr(be, "endpoint", None)
    if endpoint is not None:
        if endpoint.model_sha256 is None:
            reasons.append(f"served by {endpoint.url} ({endpoint.server or 'server'}), which does not report the "
                           "SHA-256 of the model it loaded: which graph ran cannot be told")
        elif endpoint.model_sha256 != wl.model_sha256:
            reasons.append(f"the server reports model SHA-256 {endpoint.model_sha256[:16]}…, not the workload's "
                           f"{wl.model_sha256[:16]}…")

    accuracy = getattr(record, "accuracy", None)
    accuracy_passed = accuracy is not None and accuracy.passed is True
    effective, claimed, graph = be.precision, be.claimed_precision, wl.graph_precision
    if effective != claimed:
        reasons.append(f"effective precision {effective} differs from the claimed {claimed}")
    if effective != graph:
        lowered = _LOWERED_WITH_ACCURACY.get(graph, ())
        if effective not in lowered:
            reasons.append(f"precision {effective} on a {graph} graph is not a closed precision "
                           f"(a {graph} graph runs at {graph}"
                           + (f", or {'/'.join(lowered)} with a passed accuracy gate)" if lowered else ")"))
        elif not accuracy_passed:
            reasons.append(f"precision {effective} on a {graph} graph needs a passed accuracy gate")
    if accuracy is not None and accuracy.passed is not True:
        reasons.append("accuracy gate failed" if accuracy.passed is False
                       else f"accuracy gate not run: {getattr(accuracy, 'skipped', None) or 'nothing compared'}")

    if requested == "open" and not reasons:
        reasons.append("requested by the spec (run.division: open); every closed rule holds")
    return Division(
        name="open" if reasons else "closed",
        requested=requested,
        reasons=reasons,
        standard_workload=build.label if build else None,
        standard_sha256=build.sha256 if build else None,
        rules_version=RULES_VERSION,
    )


def findings(division: Any) -> list:
    """A failed request for ``closed`` (``run.division: closed``) makes the record INVALID, once per broken rule."""
    from benchkit.checks.verdict import reason

    if division.requested != "closed" or division.name == "closed":
        return []
    return [reason("division", f"run.division requests closed, but {r}") for r in division.reasons]


# --------------------------------------------------------------------------- finding the standard build


def standard_build(wl: Any, cache_dir: Path | None = None) -> StandardBuild | None:
    """The standard catalog build a resolved workload is to be compared with, or None if it has none.

    A catalog workload is compared with its own entry and variant; its file is
    benchkit's build, so nothing is rebuilt (with overridden params the
    default build is not even made: the params alone make it open). A
    ``model:`` file is compared with the catalog entries whose declared inputs
    it has (names, dtypes, fixed dims), at the variant of its graph precision,
    the entry named like the workload first, through the table of standard-build
    hashes (:mod:`benchkit.workloads.hashes`) and the builds already in the
    workload cache: nothing is built here. When no build has the file's bytes,
    the candidate whose graph structure the file has is returned (the record says
    which build the file departs from), or None when it has none's.
    """
    from benchkit.workloads import catalog, hashes
    from benchkit.workloads.model import model_sha256

    if wl.source == "catalog":
        defaults = catalog.resolve_params(wl.catalog)
        resolved = catalog.resolve_params(wl.catalog, wl.params)
        overridden = tuple(f"{k}={resolved[k]!r}" for k in sorted(resolved) if resolved[k] != defaults[k])
        return StandardBuild(wl.catalog, wl.variant, None if overridden else wl.sha256, overridden,
                             _inputs_changed(wl, catalog.get(wl.catalog)))
    variant = wl.graph_precision
    candidates = [e for e in catalog.entries().values() if variant in e.variants and _same_inputs(wl, e)]
    candidates.sort(key=lambda e: (e.name != wl.name, e.name))
    if not candidates:
        return None
    # 1. the table of standard-build hashes, then builds already in the cache: nothing is built here
    size = Path(wl.path).stat().st_size
    for entry in candidates:
        known = hashes.known(entry.name, variant)
        if known is not None and known.sha256 == wl.sha256:
            return StandardBuild(entry.name, variant, known.sha256, (), _inputs_changed(wl, entry))
    for entry in candidates:
        cached = _cached_build(entry.name, variant, cache_dir)
        if cached is not None and cached.stat().st_size == size and model_sha256(cached) == wl.sha256:
            return StandardBuild(entry.name, variant, wl.sha256, (), _inputs_changed(wl, entry))
    # 2. no build has these bytes: name the one whose structure the file has (a re-export, other weights), or none
    try:
        import onnx

        structure = hashes.structure_sha256(onnx.load(str(wl.path), load_external_data=False))
    except Exception:  # noqa: BLE001 - resolve() parsed this file already; a second failure leaves it unmatched
        return None
    for entry in candidates:
        recorded = hashes.recorded(entry.name, variant)
        if recorded is None or recorded.structure != structure:
            continue
        known = hashes.known(entry.name, variant)
        if known is None:  # the table is stale for it: its bytes now are unknown without a build
            return StandardBuild(entry.name, variant, None, (), _inputs_changed(wl, entry),
                                 unverified="its SHA-256 is not in benchkit's table of standard builds for this "
                                 "version (python -m benchkit.workloads.hashes regenerates it)")
        return StandardBuild(entry.name, variant, known.sha256, (), _inputs_changed(wl, entry))
    return None


def _cached_build(name: str, variant: str, cache_dir: Path | None) -> Path | None:
    """The default build of ``name`` when the workload cache already holds it (never built here)."""
    from benchkit.errors import BenchkitError
    from benchkit.workloads import catalog

    try:
        key = catalog.cache_key(name, None, variant)
    except (BenchkitError, ImportError):
        return None
    folder = Path(cache_dir) if cache_dir is not None else catalog.cache_dir()
    path = folder / f"{name}-{variant}-{key[:16]}.onnx"
    return path if path.is_file() else None


def _same_inputs(wl: Any, entry: Any) -> bool:
    """Whether the graph's inputs could be the entry's: same names, dtypes and rank, same fixed dims."""
    decls = entry.inputs
    if [i.name for i in wl.inputs] != [d.name for d in decls]:
        return False
    for inp, decl in zip(wl.inputs, decls):
        if inp.dtype.name != decl.dtype or len(inp.shape) != len(decl.shape):
            return False
        for got, want in zip(inp.shape, decl.shape):
            if isinstance(want, int) and isinstance(got, int) and got != want:
                return False
    return True


def _inputs_changed(wl: Any, entry: Any) -> tuple[str, ...]:
    """How the cell's generated inputs depart from the entry's declarations (shape overrides, value ranges)."""
    declared: Mapping[str, Any] = {d.name: d for d in entry.inputs}
    out = []
    for inp in wl.inputs:
        decl = declared.get(inp.name)
        if inp.shape_override is not None:
            out.append(f"{inp.name}: shape overridden to {list(inp.shape_override)}")
        if getattr(inp, "data", None) is not None:
            out.append(f"{inp.name}: real samples from {inp.data.source}, not the catalog's generated values")
            continue
        want = tuple(decl.range) if decl is not None and decl.range is not None else (None, None)
        got = (inp.low, inp.high)
        if got != want and not (want == (None, None) and got == (None, None)):
            shown = "the default generator" if want == (None, None) else f"[{want[0]:g}, {want[1]:g})"
            have = "the default generator" if got == (None, None) else \
                f"[{'-' if got[0] is None else f'{got[0]:g}'}, {'-' if got[1] is None else f'{got[1]:g}'})"
            out.append(f"{inp.name}: values from {have}, the catalog declares {shown}")
    return tuple(out)


__all__ = ["RULES_VERSION", "StandardBuild", "findings", "decide", "standard_build"]
