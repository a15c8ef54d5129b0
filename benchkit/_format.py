"""Human-readable numbers shared by compare, results and report output (no heavy imports)."""

from __future__ import annotations

import re


def fmt_ns(ns: float | None) -> str:
    """Nanoseconds with a readable unit, three significant digits: ``1.23 ms``."""
    if ns is None:
        return "-"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if abs(ns) >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.0f} ns"


def fmt_rate(x: float | None, unit: str = "/s") -> str:
    """A rate with thousands separators: ``9,316.2/s``."""
    if x is None:
        return "-"
    return f"{x:,.1f}{unit}"


def fmt_value(x: float | None, unit: str) -> str:
    """A metric value in its unit: ns as a duration, anything per second as a rate."""
    if unit == "ns":
        return fmt_ns(x)
    if unit.endswith("/s"):
        return fmt_rate(x)
    if unit == "bytes" and x is not None:
        return fmt_bytes(int(x))
    if x is None:
        return "-"
    return f"{x:,.4g} {unit}".rstrip()


def fmt_bytes(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


# Names in records (workloads, backends, labels, cells) are whatever a spec or a record file says: before they reach a
# terminal or a pull-request comment they are made inert. Control characters (newlines, terminal escape sequences,
# bidirectional overrides) would rewrite the screen or break a table row; they become U+FFFD.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")
# CommonMark lets a backslash escape any ASCII punctuation; these are the marks that can start something: a table
# cell (|), emphasis, a link or image, a heading (#), HTML or an entity (<, &), code (`). An @mention is broken by a
# word joiner (U+2060) after the @.
_MENTION = re.compile(r"@(?=[0-9A-Za-z])")
# An underscore inside a word (single_stream) starts nothing and stays as it is.
_MD_SPECIAL = re.compile(r"([\\`*\[\]<>&|#!~]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z]))")


def one_line(text: object) -> str:
    """``text`` as one line of plain characters: control and invisible formatting characters replaced by U+FFFD."""
    return _CONTROL.sub("\ufffd", str(text))


def md_text(text: object) -> str:
    """``text`` as inert Markdown (a table cell or a list item): one line, Markdown's marks escaped, no
    @mention, no HTML, no heading, no link."""
    return _MENTION.sub("@\u2060", _MD_SPECIAL.sub(r"\\\1", one_line(text)))


def term_text(text: object, lines: bool = False) -> str:
    """``text`` for a rich console: one line (``lines``: newlines kept), and rich markup (``[red]``) shown as
    written, not applied."""
    from rich.markup import escape

    if lines:
        return escape("\n".join(one_line(line) for line in str(text).split("\n")))
    return escape(one_line(text))
