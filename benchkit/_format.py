"""Human-readable numbers shared by compare, results and report output (no heavy imports)."""

from __future__ import annotations


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
