"""The results store: plain JSON record files, plus an SQLite index that makes queries fast.

The files stay the canonical form (copy them, diff them, sign them); the
index, ``<results>/.index.sqlite``, is only a cache of a few fields per
record and can be deleted at any time. Every query first brings it up to
date incrementally: files are compared by path, size and mtime, only new or
changed ones are read (with the fast reader of ``benchkit.results.recordio``, which
skips the raw samples), and rows of vanished files are dropped. A file that
is not a readable record is remembered with the reason, so it is not re-read
until it changes.

Standard library ``sqlite3`` only. Where the results directory is read-only
the index lives in memory for the one command.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timezone
from pathlib import Path
from typing import Any

from benchkit._fsutil import inside
from benchkit.errors import BenchkitError

INDEX_NAME = ".index.sqlite"
INDEX_VERSION = 2  # PRAGMA user_version; 2: concurrency; 1: first version. Any other value: the index is rebuilt.

# Indexed fields of a record and their SQL types (started_us: UTC microseconds since the epoch).
_COLUMN_TYPES = {
    "run_id": "TEXT", "cell_id": "TEXT", "spec_name": "TEXT", "workload": "TEXT", "scenario": "TEXT",
    "precision": "TEXT", "backend": "TEXT", "backend_name": "TEXT", "device": "TEXT", "batch": "INTEGER",
    "target_qps": "REAL", "started_us": "INTEGER", "valid": "INTEGER", "headline_name": "TEXT",
    "headline_value": "REAL", "headline_unit": "TEXT", "p50_ns": "INTEGER", "p99_ns": "INTEGER",
    "throughput_per_s": "REAL", "error_phase": "TEXT", "concurrency": "INTEGER",
}
_COLUMNS = tuple(_COLUMN_TYPES)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,          -- relative to the results root, '/'-separated
    mtime_ns INTEGER NOT NULL,
    size INTEGER NOT NULL,
    problem TEXT,                   -- why the file is not a readable record; NULL for records
    {", ".join(f"{c} {t}" for c, t in _COLUMN_TYPES.items())}
);
CREATE INDEX IF NOT EXISTS files_cell ON files (workload, scenario, precision);
CREATE INDEX IF NOT EXISTS files_backend ON files (backend);
CREATE INDEX IF NOT EXISTS files_started ON files (started_us);
"""


class StoreError(BenchkitError):
    """A results directory or query option is unusable (missing directory, bad date, ...)."""


@dataclass(frozen=True)
class IndexedRecord:
    """What the index knows about one record file (enough to list, filter and find it)."""

    path: str  # absolute
    run_id: str
    cell_id: str
    spec_name: str
    workload: str | None
    scenario: str
    precision: str | None
    backend: str | None  # the spec's backend id (label, or adapter name)
    backend_name: str | None  # the adapter name
    device: str | None
    batch: int | None
    target_qps: float | None
    started_at: datetime
    valid: bool
    headline_name: str | None
    headline_value: float | None
    headline_unit: str | None
    p50_ns: int | None
    p99_ns: int | None
    throughput_per_s: float | None
    error_phase: str | None
    concurrency: int | None = None  # Offline's calls in flight, when more than one

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["started_at"] = self.started_at.isoformat().replace("+00:00", "Z")
        return d


@dataclass(frozen=True)
class RefreshStats:
    added: int
    updated: int
    removed: int
    unchanged: int
    problems: int  # files under the root that are not readable records


def _us(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1_000_000)


def parse_when(text: str, option: str) -> datetime:
    """``2026-01-01`` (midnight UTC) or an ISO 8601 date-time (naive means UTC)."""
    t = text.strip()
    try:
        if len(t) == 10:
            return datetime.combine(date.fromisoformat(t), time(0), tzinfo=timezone.utc)
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise StoreError(f"{option} {text!r}: expected a date such as 2026-01-01 or a date-time such as "
                         "2026-01-01T12:00:00Z") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _row_of(rec) -> tuple:
    m, w, b = rec.metrics, rec.workload, rec.backend
    qps = rec.scenario.settings.get("target_qps") if rec.scenario.kind == "server" else None
    return (
        rec.run_id, rec.cell_id, rec.spec_name, w.name if w else rec.spec.get("workload", {}).get("name"),
        rec.scenario.kind, b.precision if b else rec.spec.get("backend", {}).get("precision"),
        b.id if b else (rec.spec.get("backend", {}).get("label") or rec.spec.get("backend", {}).get("name")),
        b.name if b else rec.spec.get("backend", {}).get("name"), b.device if b else None,
        w.effective_batch_size if w else None, float(qps) if qps is not None else None,
        _us(rec.started_at), int(rec.validity.valid),
        m.headline.name if m else None, m.headline.value if m else None, m.headline.unit if m else None,
        m.latency_ns.p50 if m else None, m.latency_ns.p99 if m else None, m.throughput_per_s if m else None,
        rec.error.phase if rec.error else None,
        int(conc) if rec.scenario.kind == "offline" and (conc := rec.scenario.settings.get("concurrency", 1)) > 1
        else None,
    )


class ResultsStore:
    """A results directory and its index. Use as a context manager, or call :meth:`close`."""

    def __init__(self, root: str | Path, index_path: str | Path | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise StoreError(f"{self.root}: no such results directory")
        self.index_path = Path(index_path) if index_path else self.root / INDEX_NAME
        self.in_memory = False
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        # The index is ours to replace, but never through a link or onto something else: a symbolic link (dangling
        # or not) or any non-regular file in its place is removed (only the link itself, never its target) and a
        # new index made there; what cannot be removed leaves the index in memory.
        for p in (self.index_path, *(self.index_path.with_name(self.index_path.name + s)
                                     for s in ("-journal", "-wal", "-shm"))):
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            except OSError:
                self.in_memory = True
                return self._connect(None)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:  # a hard link shares its inode with another file
                try:
                    if stat.S_ISDIR(st.st_mode):
                        raise IsADirectoryError(p)
                    os.unlink(p)
                except OSError:
                    self.in_memory = True
                    return self._connect(None)
        try:
            db = self._connect(self.index_path)
        except (sqlite3.DatabaseError, OSError):
            # A corrupt index is only a cache: start afresh. A read-only directory: keep it in memory.
            try:
                self.index_path.unlink(missing_ok=True)
                db = self._connect(self.index_path)
            except (sqlite3.DatabaseError, OSError):
                self.in_memory = True
                db = self._connect(None)
        return db

    @staticmethod
    def _connect(path: Path | None) -> sqlite3.Connection:
        db = sqlite3.connect(":memory:" if path is None else str(path), timeout=30)
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version != INDEX_VERSION:
            db.executescript("DROP TABLE IF EXISTS files;")
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version = {INDEX_VERSION}")
        db.execute("PRAGMA synchronous = NORMAL")
        db.commit()
        return db

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    # ----------------------------------------------------------------- indexing

    def _scan(self) -> Iterator[tuple[str, int, int]]:
        """(relative path, mtime_ns, size) of every ``*.json`` under the root, hidden entries skipped."""
        # Plain strings, not pathlib: with 10^4 files, Path objects cost more than the stat calls.
        stack = [("", str(self.root))]
        while stack:
            rel_dir, d = stack.pop()
            try:
                it = os.scandir(d)
            except OSError:
                continue
            with it:
                for e in it:
                    if e.name.startswith("."):
                        continue
                    if e.is_dir(follow_symlinks=False):
                        stack.append((f"{rel_dir}{e.name}/", e.path))
                    elif e.name.endswith(".json"):
                        if e.is_symlink() and not inside(e.path, self.root):
                            # A link out of the results folder is listed by its own stat, never its target's;
                            # reading it is refused (load_split within the root), which records the problem.
                            st = e.stat(follow_symlinks=False)
                        elif e.is_file():  # FIFOs, devices and folders named *.json are no records
                            st = e.stat()
                        else:
                            continue
                        yield f"{rel_dir}{e.name}", st.st_mtime_ns, st.st_size

    def refresh(self) -> RefreshStats:
        """Bring the index up to date with the files (only new or changed files are read)."""
        known = {p: (m, s) for p, m, s in self._db.execute("SELECT path, mtime_ns, size FROM files")}
        seen: set[str] = set()
        todo: list[tuple[str, int, int]] = []
        for rel, mtime, size in self._scan():
            seen.add(rel)
            if known.get(rel) != (mtime, size):
                todo.append((rel, mtime, size))
        gone = [p for p in known if p not in seen]
        rows = []
        if todo:
            from benchkit.results.recordio import load_split  # pydantic and the record model: only when there is reading to do
        for rel, mtime, size in todo:
            try:
                rec, _ = load_split(self.root / rel, within=self.root)
                rows.append((rel, mtime, size, None, *_row_of(rec)))
            except BenchkitError as e:
                rows.append((rel, mtime, size, str(e), *([None] * len(_COLUMNS))))
        with self._db:  # one transaction: readers see the old or the new index, never half of it
            self._db.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in gone])
            marks = ", ".join("?" * (4 + len(_COLUMNS)))
            self._db.executemany(f"INSERT OR REPLACE INTO files VALUES ({marks})", rows)
        added = sum(1 for rel, _, _ in todo if rel not in known)
        total_problems = self._db.execute("SELECT COUNT(*) FROM files WHERE problem IS NOT NULL").fetchone()[0]
        return RefreshStats(added, len(todo) - added, len(gone), len(seen) - len(todo), total_problems)

    def rebuild(self) -> RefreshStats:
        """Forget the index and read every file again."""
        with self._db:
            self._db.execute("DELETE FROM files")
        return self.refresh()

    def problems(self) -> list[tuple[str, str]]:
        """(path, reason) of files under the root that are not readable records."""
        return [(str(self.root / p), why) for p, why in
                self._db.execute("SELECT path, problem FROM files WHERE problem IS NOT NULL ORDER BY path")]

    # ----------------------------------------------------------------- queries

    def query(
        self,
        *,
        workload: str | None = None,
        scenario: str | None = None,
        precision: str | None = None,
        backend: str | None = None,
        spec: str | None = None,
        run_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        valid: bool | None = None,
        limit: int | None = None,
    ) -> list[IndexedRecord]:
        """Indexed records matching every given filter, newest first.

        ``backend`` matches the spec's backend id (label) or the adapter name;
        ``since`` is inclusive and ``until`` exclusive. Call :meth:`refresh` first.
        """
        where, args = ["problem IS NULL"], []
        for col, val in (("workload", workload), ("scenario", scenario), ("precision", precision),
                         ("spec_name", spec), ("run_id", run_id)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        if backend is not None:
            where.append("(backend = ? OR backend_name = ?)")
            args += [backend, backend]
        if since is not None:
            where.append("started_us >= ?")
            args.append(_us(since))
        if until is not None:
            where.append("started_us < ?")
            args.append(_us(until))
        if valid is not None:
            where.append("valid = ?")
            args.append(int(valid))
        sql = f"SELECT path, {', '.join(_COLUMNS)} FROM files WHERE {' AND '.join(where)} " \
              "ORDER BY started_us DESC, path"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        out = []
        root = str(self.root)
        for row in self._db.execute(sql, args):
            d = dict(zip(("path", *_COLUMNS), row))
            us = d.pop("started_us")
            d["started_at"] = datetime.fromtimestamp(us / 1_000_000, tz=timezone.utc)
            d["valid"] = bool(d["valid"])
            d["path"] = os.path.join(root, d["path"])
            out.append(IndexedRecord(**d))
        return out

    def runs(self) -> list[dict[str, Any]]:
        """One summary per run: id, spec, first start, record count, valid count, backends, workloads."""
        sql = """SELECT run_id, spec_name, MIN(started_us), COUNT(*), SUM(valid),
                        GROUP_CONCAT(DISTINCT backend), GROUP_CONCAT(DISTINCT workload)
                 FROM files WHERE problem IS NULL GROUP BY run_id, spec_name ORDER BY MIN(started_us) DESC"""
        out = []
        for run_id, spec, us, n, n_valid, backends, workloads in self._db.execute(sql):
            out.append({
                "run_id": run_id, "spec_name": spec,
                "started_at": datetime.fromtimestamp(us / 1_000_000, tz=timezone.utc).isoformat().replace(
                    "+00:00", "Z"),
                "records": n, "valid": int(n_valid or 0), "invalid": n - int(n_valid or 0),
                "backends": sorted(filter(None, (backends or "").split(","))),
                "workloads": sorted(filter(None, (workloads or "").split(","))),
            })
        return out


def open_store(root: str | Path, rebuild: bool = False, quiet: bool = False) -> ResultsStore:
    """Open and refresh (or rebuild) the index of ``root``; note an in-memory fallback on stderr."""
    store = ResultsStore(root)
    if store.in_memory and not quiet:
        print(f"benchkit: note: cannot write {store.index_path}; indexing in memory for this command",
              file=sys.stderr)
    store.rebuild() if rebuild else store.refresh()
    return store


__all__ = ["INDEX_NAME", "INDEX_VERSION", "IndexedRecord", "RefreshStats", "ResultsStore", "StoreError",
           "open_store", "parse_when"]
