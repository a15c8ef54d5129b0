"""Files benchkit reads and writes, made safe against hostile input and unlucky disks.

Reading: :func:`read_bounded` opens a path only if it is a regular file (a FIFO, a device or a folder is refused
before a byte is read, so nothing hangs or reads forever), refuses a symbolic link that leaves the folder the file
belongs to (``within``), and reads at most a stated number of bytes. :func:`loads_json` parses JSON with a depth
bound: nesting deeper than :data:`MAX_JSON_DEPTH` is a ``ValueError``, never a ``RecursionError``.

Writing: :func:`write_atomic` writes through a temporary file in the same folder, fsyncs and renames, so a reader
sees the old file or the whole new one, never a partial or empty file; a failed write (disk full, read-only
folder, no permission) removes the temporary file and raises :class:`benchkit.errors.WriteError` with a message
that says why. New files get the user's umask (0644 by default), except where a mode is given (keys: 0600).
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any

from benchkit.errors import BenchkitError, WriteError

MAX_JSON_DEPTH = 128  # a record nests about 10 levels (spec blocks included); 128 leaves room and stops bombs
MiB = 1 << 20

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def inside(path: str | Path, folder: str | Path) -> bool:
    """Whether ``path``, every symbolic link resolved, lies inside ``folder`` (also resolved)."""
    real, root = os.path.realpath(path), os.path.realpath(folder)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def open_regular(path: str | Path, *, within: str | Path | None = None,
                 error: type[BenchkitError] = BenchkitError) -> int:
    """A read-only descriptor of ``path`` if it is a regular file; ``error`` otherwise.

    FileNotFoundError passes through unchanged (callers word it themselves). The file is checked before it is
    opened (stat) and again on the open descriptor (fstat), and opened with O_NONBLOCK: a FIFO that appears in
    between makes the open return at once rather than wait for a writer.
    """
    p = os.fspath(path)
    if within is not None and not inside(p, within):
        raise error(f"{p}: a symbolic link that leads out of {within} (to {os.path.realpath(p)}); not following it")
    try:
        st = os.stat(p)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{p}: {_kind(st.st_mode)}, not a regular file; refusing to read it")
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise error(f"{p}: cannot read ({e.strerror or e})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{p}: {_kind(st.st_mode)}, not a regular file; refusing to read it")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bounded(path: str | Path, limit: int, *, within: str | Path | None = None,
                 error: type[BenchkitError] = BenchkitError, what: str = "file") -> bytes:
    """The bytes of the regular file at ``path``, at most ``limit`` of them (more is ``error``)."""
    fd = open_regular(path, within=within, error=error)
    try:
        with os.fdopen(fd, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror or e})") from None
    if len(data) > limit:
        raise error(f"{path}: larger than {limit:,} bytes, too large for a {what}; refusing to read it")
    return data


class JSONTooDeep(ValueError):
    """A JSON document nested deeper than the bound (a ValueError, like json.JSONDecodeError)."""


_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


def json_depth_exceeds(data: bytes | str, max_depth: int) -> bool:
    """Whether the arrays and objects in the JSON text ``data`` nest deeper than ``max_depth``.

    Strings are cut out first (a bracket inside a name is not nesting); what is left of a record is a handful of
    brackets, so the count is quick even where the samples array is megabytes long."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if data.count(b"[") + data.count(b"{") <= max_depth:  # the common case, at memchr speed
        return False
    brackets = _STRINGS.sub(b"", data).translate(None, _NOT_BRACKETS)
    if len(brackets) <= 2 * max_depth:
        return False
    depth = 0
    for c in brackets:
        if c == 91 or c == 123:  # [ {
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth -= 1
    return False


def loads_json(data: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` with a depth bound: anything nested deeper is :class:`JSONTooDeep` (a ValueError).

    Errors are ValueErrors only (json.JSONDecodeError, UnicodeDecodeError, JSONTooDeep): never RecursionError."""
    if json_depth_exceeds(data, max_depth):
        raise JSONTooDeep(f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(data)
    except RecursionError:
        raise JSONTooDeep(f"JSON nested deeper than {max_depth} levels") from None


def read_json(path: str | Path, limit: int, *, within: str | Path | None = None,
              error: type[BenchkitError] = BenchkitError, what: str = "JSON file") -> Any:
    """:func:`read_bounded` then :func:`loads_json`; every problem is ``error`` naming the file."""
    data = read_bounded(path, limit, within=within, error=error, what=what)
    try:
        return loads_json(data)
    except ValueError as e:
        raise error(f"{path}: not readable JSON ({e})") from None


# ------------------------------------------------------------------------------------------------ writing


def umask() -> int:
    """The process's umask, read without changing it where /proc says it (os.umask would, briefly, for every
    thread)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def write_error(path: str | Path, e: OSError) -> WriteError:
    """The WriteError for a failed write of ``path``: what happened, in words, and that nothing was left."""
    why = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
           errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
           errno.EPERM: "permission denied"}.get(e.errno or 0, e.strerror or str(e))
    err = WriteError(f"{path}: cannot write: {why} (nothing was written there; free space or choose another "
                     "place and try again)" if e.errno in (errno.ENOSPC, errno.EDQUOT) else
                     f"{path}: cannot write: {why}")
    err.errno, err.strerror, err.filename = e.errno, e.strerror, os.fspath(path)
    err.reason = why
    return err


def write_atomic(path: Path, data: str | bytes, mode: int | None = None) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` through a temporary file in the same folder and a rename.

    ``mode``: the new file's permissions (e.g. 0o600 for a private key); by default 0o666 less the umask, as
    ``open()`` would create it. A failure leaves no temporary file behind and raises
    :class:`benchkit.errors.WriteError` (also an OSError)."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):  # POSIX; mkstemp's 0600 would otherwise make every output private
                os.fchmod(f.fileno(), 0o666 & ~umask() if mode is None else mode)
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            raise write_error(path, e) from None
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
