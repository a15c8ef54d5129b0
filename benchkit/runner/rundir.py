"""A run's directory: created exclusively, described by a manifest, locked while written, resumable.

Layout: ``OUT/<spec name>/<run id>/<cell id>.json`` (``<cell id>-r<k>.json``
with ``run.repeats`` > 1), one record per cell written atomically as the cell
finishes, plus two hidden files that record readers skip:

``.benchkit-run``
    the manifest (JSON): spec name and SHA-256, repetitions, and every planned
    cell, so ``--resume`` knows what the run was meant to hold.
``.benchkit-run.lock``
    held with ``flock`` by the process writing the run; the kernel drops it
    when that process dies, even by SIGKILL.

Run ids are a UTC timestamp plus random hex, and a run directory is created
with an exclusive ``mkdir``: two benchkit processes writing to the same
results directory can never share a run directory, so neither loses records.

Resuming (``benchkit run SPEC --resume [RUN_DIR]``) keeps every record that
exists, parses, and belongs to this run (cell id, run id and spec SHA-256
match) and runs only the rest. A spec whose text changed since is refused:
records measured under two different specs must not pose as one run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchkit._fsutil import read_json
from benchkit.results import records
from benchkit._version import __version__
from benchkit.errors import BenchkitError, RunError

MANIFEST = ".benchkit-run"
LOCK = ".benchkit-run.lock"
_MANIFEST_FORMAT = 1


def record_name(cell_id: str, repeat: int, repeats: int) -> str:
    return f"{cell_id}.json" if repeats == 1 else f"{cell_id}-r{repeat}.json"


def _cell_json(cell: Any) -> dict[str, Any]:
    return json.loads(json.dumps(cell.model_dump(mode="json"), sort_keys=True))


@dataclass
class RunDir:
    """An open (locked) run directory and what is already in it."""

    run_id: str
    path: Path
    repeats: int
    planned: list[tuple[Any, int]]  # (Cell, repetition index 1..repeats)
    done: dict[tuple[str, int], tuple[Path, records.ResultRecord]] = field(default_factory=dict)
    replaced: list[str] = field(default_factory=list)  # unreadable record files that will be measured again
    _lock_fd: int | None = None

    @property
    def pending(self) -> list[tuple[Any, int]]:
        return [(c, r) for c, r in self.planned if (c.cell_id, r) not in self.done]

    def path_for(self, cell_id: str, repeat: int) -> Path:
        return self.path / record_name(cell_id, repeat, self.repeats)

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None


def _lock(path: Path) -> int | None:
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking, concurrent resumes of one run are the user's problem
        return None
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise RunError(f"{path}: another benchkit process is writing this run right now; "
                       "wait for it to finish, or start a new run") from None
    return fd


def create(out_dir: Path, spec_name: str, spec_sha256: str, cells: list, repeats: int, new_id) -> RunDir:
    """Claim a new run directory under ``out_dir/spec_name`` (never one another process has)."""
    parent = out_dir / spec_name
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"cannot create results directory {parent}: {e}") from None
    for _ in range(100):
        run_id = new_id()
        path = parent / run_id
        try:
            path.mkdir()  # exclusive: fails if another process made it first
        except FileExistsError:
            continue
        except OSError as e:
            raise RunError(f"cannot create run directory {path}: {e}") from None
        break
    else:
        raise RunError(f"{parent}: could not find a free run id")
    fd = _lock(path)
    manifest = {
        "format": _MANIFEST_FORMAT,
        "run_id": run_id,
        "spec_name": spec_name,
        "spec_sha256": spec_sha256,
        "repeats": repeats,
        "benchkit_version": __version__,
        "created_at": records.utcnow().isoformat(),
        "cells": [_cell_json(c) for c in cells],
    }
    try:
        records.write_atomic(path / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    except OSError:
        # Nothing was measured yet: leave no empty run behind for a later --resume to trip over.
        if fd is not None:
            os.close(fd)
        for leftover in path.iterdir():
            leftover.unlink(missing_ok=True)
        path.rmdir()
        raise
    planned = [(c, r) for r in range(1, repeats + 1) for c in cells]
    return RunDir(run_id, path, repeats, planned, _lock_fd=fd)


def latest_run(out_dir: Path, spec_name: str) -> Path:
    parent = out_dir / spec_name
    runs = sorted(p for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
    if not runs:
        raise RunError(f"--resume: no earlier run of spec {spec_name!r} under {parent}")
    return runs[-1]  # run ids start with a UTC timestamp: the last in name order is the newest


def reopen(out_dir: Path, spec_name: str, spec_sha256: str, cells: list, repeats: int,
           run_dir: Path | None = None) -> RunDir:
    """Reopen an earlier run (default: the newest of this spec) to complete its missing cells."""
    path = Path(run_dir) if run_dir is not None else latest_run(out_dir, spec_name)
    if not path.is_dir():
        raise RunError(f"--resume: {path} is not a run directory")
    fd = _lock(path)
    try:
        return _reopen_locked(path, fd, spec_name, spec_sha256, cells, repeats)
    except BaseException:
        if fd is not None:
            os.close(fd)
        raise


def _reopen_locked(path: Path, fd: int | None, spec_name: str, spec_sha256: str, cells: list,
                   repeats: int) -> RunDir:
    manifest: dict[str, Any] | None = None
    mpath = path / MANIFEST
    if mpath.exists():
        try:
            manifest = read_json(mpath, 64 << 20, within=path, error=RunError, what="run manifest")
        except (OSError, RunError) as e:
            raise RunError(f"--resume: {mpath} is unreadable ({e})") from None
        if not isinstance(manifest, dict):
            raise RunError(f"--resume: {mpath} is unreadable (not a JSON object)")
    existing = sorted(p for p in path.glob("*.json") if not p.name.startswith("."))
    if manifest is None and not existing:
        raise RunError(f"--resume: {path} holds neither a run manifest nor records: not a benchkit run")
    run_id = manifest["run_id"] if manifest else path.name
    old_sha = manifest.get("spec_sha256") if manifest else None
    if manifest and manifest.get("spec_name") != spec_name:
        raise RunError(f"--resume: {path} is a run of spec {manifest.get('spec_name')!r}, not {spec_name!r}")
    if old_sha is not None and old_sha != spec_sha256:
        raise RunError(_changed(path, old_sha, spec_sha256))
    if manifest:
        if manifest.get("repeats", 1) != repeats:
            raise RunError(f"--resume: {path} was planned with run.repeats = {manifest.get('repeats', 1)}, "
                           f"the spec now says {repeats}")
        want = [_cell_json(c) for c in cells]
        if want != manifest.get("cells"):
            had = [c.get("cell_id") for c in manifest.get("cells", [])]
            now = [c["cell_id"] for c in want]
            diff = sorted(set(had) ^ set(now))
            detail = (f"cells {', '.join(diff)} differ" if diff else
                      "the same cells now have other settings (profile, device file, ...)")
            raise RunError(f"--resume: {path} was planned with other options ({detail}); resume with the same "
                           "--backend, --workload, --profile/--quick and --device-file options as the original run")
    # Leftovers of writes interrupted by a kill: never records, safe to drop.
    for tmp in path.glob(".*.tmp"):
        try:
            tmp.unlink()
        except OSError:
            pass
    run = RunDir(run_id, path, repeats, [(c, r) for r in range(1, repeats + 1) for c in cells], _lock_fd=fd)
    expected = {run.path_for(c.cell_id, r).name: (c, r) for c, r in run.planned}
    for p in existing:
        try:
            rec = records.load(p, within=path)
        except BenchkitError:
            if p.name in expected:
                run.replaced.append(p.name)
            continue
        if rec.spec_sha256 != spec_sha256:
            raise RunError(_changed(path, rec.spec_sha256, spec_sha256, p.name))
        key = expected.get(p.name)
        if key is not None and rec.cell_id == key[0].cell_id and rec.run_id == run_id:
            run.done[(key[0].cell_id, key[1])] = (p, rec)
    return run


def _changed(path: Path, old: str, new: str, where: str = "") -> str:
    src = f" ({where})" if where else ""
    return (f"--resume: the spec changed since {path} was run{src}: it had SHA-256 {old[:12]}…, now {new[:12]}…; "
            "records of two different specs cannot make one run: start a new run (without --resume)")
