"""Fast reading of record files for tools that read thousands of them (compare, the results index).

Most of a record file is its ``samples_ns`` array (10^4..10^7 integers), and
turning it into Python ints dominates reading. These helpers cut the
top-level array out of the bytes, validate the rest of the record with
``samples_ns: null``, and hand back the array's text untouched (to be parsed
by numpy, or not at all). The fast path is taken only when every check
passes; anything unusual goes through :func:`benchkit.results.records.load`, which
applies the version policy: it migrates older versions, drops a newer minor's
unknown fields with a warning, or raises the precise error.
"""

from __future__ import annotations

from pathlib import Path

from benchkit._fsutil import read_bounded
from benchkit.errors import RecordError
from benchkit.results import records
from benchkit.results.records import ResultRecord

_SAMPLES_KEY = b'"samples_ns"'
_INTEGER_LIST_CHARS = b"0123456789,- \n\r\t"


def split_samples(data: bytes) -> tuple[bytes, bytes] | None:
    """(the record with ``"samples_ns": null``, the array's inner text), or None if there is no integer array.

    Uses the *last* unescaped ``"samples_ns"`` key (inside a JSON string the
    quotes would be escaped); the caller's checks reject a cut that hit the
    wrong key.
    """
    i = data.rfind(_SAMPLES_KEY)
    if i < 0:
        return None
    j = i + len(_SAMPLES_KEY)
    n = len(data)
    while j < n and data[j] in b" \n\r\t:":
        j += 1
    if j >= n or data[j] != ord("["):
        return None
    k = data.find(b"]", j)
    if k < 0:
        return None
    body = data[j + 1:k]
    # (isspace and translate scan without copying 10^5 bytes, unlike strip)
    if not body or body.isspace() or body.translate(None, _INTEGER_LIST_CHARS):
        return None
    return data[:j] + b"null" + data[k + 1:], body


def load_split(path: Path, within: Path | None = None) -> tuple[ResultRecord, bytes | None]:
    """The record without its samples, and the samples' JSON text (None when it has none).

    The text holds exactly ``record.metrics.latency_ns.count`` comma-separated elements.

    Fast path: accepted only when the rest validates as it stands at the current
    major (:func:`benchkit.results.records.parse_json_fast`), holds no samples of
    its own, and the array has exactly ``metrics.latency_ns.count`` elements.
    Otherwise the record is read by :func:`benchkit.results.records.load`, which
    applies the version policy (a newer minor's unknown fields dropped with a
    RecordWarning, anything else refused with the precise error), and its samples
    (if any) are returned as text.
    """
    try:
        data = read_bounded(path, records.MAX_RECORD_BYTES, within=within, error=RecordError, what="record")
    except (OSError, RecordError):
        data = b""  # records.load below says why, in its words
    cut = split_samples(data)
    if cut is not None:
        head, body = cut
        r = records.parse_json_fast(head)
        if (r is not None and r.samples_ns is None
                and r.metrics is not None and r.metrics.latency_ns.count == body.count(b",") + 1):
            return r, body
    r = records.load(path, within=within)
    if not r.samples_ns:
        return r, None
    body = ",".join(map(str, r.samples_ns)).encode()
    return r.model_copy(update={"samples_ns": None}), body
