"""Inline SVG charts written in Python: no JavaScript library, no CDN, readable offline and in print.

One function, :func:`chart`, draws line and scatter series on linear or log
axes, with a legend, grid, tick labels, reference lines (roofs, targets) and
a ``<title>`` tooltip on every marker. Data markers carry ``class="pt"`` and
data lines ``class="line"`` inside ``<g class="series">``, so a test (or a
reader's script) can find exactly what was plotted.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
_CLIP_IDS = itertools.count(1)  # unique clip-path ids within one page

PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#8C564B")


@dataclass
class Point:
    x: float
    y: float
    tip: str = ""  # tooltip text
    marker: bool = True  # draw a marker (a CDF draws its line densely and marks only a few points)


@dataclass
class Series:
    name: str
    points: list[Point]
    color: str = ""
    line: bool = True
    dashed: bool = False
    hollow: bool = False  # INVALID results: open markers


@dataclass
class RefLine:
    """A reference drawn behind the data: a horizontal line, or a segment (x0, y0) - (x1, y1)."""

    label: str
    y: float | None = None
    segment: tuple[float, float, float, float] | None = None
    color: str = "#555555"
    label_at: str = "end"  # where a horizontal line's label sits: "end" (right) or "start" (left)


@dataclass
class Axis:
    label: str
    log: bool = False
    fmt: Callable[[float], str] = field(default=lambda v: f"{v:g}")
    ticks: Sequence[tuple[float, str]] | None = None  # explicit ticks (e.g. batch sizes, categories)
    pad: float = 0.0  # extend a linear domain by this much on each side (categories: 0.5)


def _nice_step(span: float, target: int) -> float:
    raw = span / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag


def _domain(values: list[float], log: bool) -> tuple[float, float]:
    vals = [v for v in values if math.isfinite(v) and (v > 0 or not log)]
    if not vals:
        return (1.0, 10.0) if log else (0.0, 1.0)
    lo, hi = min(vals), max(vals)
    if log:
        # Whole decades, with room above the top value for a label or a marker on the edge.
        lo_e, hi_e = math.floor(math.log10(lo)), math.ceil(math.log10(hi * 1.6))
        if hi_e == lo_e:
            hi_e += 1
        return 10.0 ** lo_e, 10.0 ** hi_e
    if hi == lo:
        pad = abs(hi) * 0.1 or 1.0
        return lo - pad, hi + pad
    step = _nice_step(hi - lo, 5)
    return math.floor(lo / step) * step, math.ceil(hi / step) * step


def _ticks(lo: float, hi: float, axis: Axis) -> list[tuple[float, str]]:
    if axis.ticks is not None:
        return [(v, label) for v, label in axis.ticks if lo <= v <= hi]
    if axis.log:
        exps = range(int(round(math.log10(lo))), int(round(math.log10(hi))) + 1)
        return [(10.0 ** e, axis.fmt(10.0 ** e)) for e in exps]
    step = _nice_step(hi - lo, 5)
    out, v = [], lo
    while v <= hi + step * 1e-9:
        out.append((v, axis.fmt(0.0 if abs(v) < step * 1e-9 else v)))
        v += step
    return out


def chart(
    series: Sequence[Series],
    *,
    kind: str,
    title: str,
    x: Axis,
    y: Axis,
    refs: Sequence[RefLine] = (),
    width: int = 660,
    height: int = 380,
    y_min_zero: bool = False,
) -> str:
    """One SVG chart. ``kind`` names it for readers and tests (``data-kind``)."""
    xs = [p.x for s in series for p in s.points]
    ys = [p.y for s in series for p in s.points]
    for r in refs:
        if r.y is not None:
            ys.append(r.y)
        if r.segment is not None:
            xs += [r.segment[0], r.segment[2]]
            ys += [r.segment[1], r.segment[3]]
    if x.ticks:
        xs += [v for v, _ in x.ticks]
    x0, x1 = _domain(xs, x.log)
    if x.pad and not x.log:
        x0, x1 = min(xs) - x.pad, max(xs) + x.pad
    y0, y1 = _domain(ys + ([0.0] if y_min_zero and not y.log else []), y.log)
    y_ticks = _ticks(y0, y1, y)
    # Room for the widest y tick label (about 6.5 px a character at 11 px) plus the axis title.
    left = 34 + int(6.5 * max((len(label) for _, label in y_ticks), default=4))
    right, top, bottom = 20, 34, 56
    pw = width - left - right
    two_cols = max((len(s.name) for s in series), default=0) * 6.5 + 24 < pw / 2
    legend_rows = (len(series) + 1) // 2 if two_cols else len(series)
    legend_h = 18 * legend_rows + 6
    height += legend_h
    ph = height - top - bottom - legend_h

    def sx(v: float) -> float:
        if x.log:
            v = max(v, x0)
            return left + pw * (math.log10(v) - math.log10(x0)) / (math.log10(x1) - math.log10(x0))
        return left + pw * (v - x0) / (x1 - x0)

    def sy(v: float) -> float:
        if y.log:
            v = max(v, y0)
            return top + ph - ph * (math.log10(v) - math.log10(y0)) / (math.log10(y1) - math.log10(y0))
        return top + ph - ph * (v - y0) / (y1 - y0)

    o: list[str] = [
        f'<svg class="chart" data-kind="{escape(kind)}" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f'<title>{escape(title)}</title>',
        f'<text class="ctitle" x="{left}" y="20">{escape(title)}</text>',
        f'<rect class="plot" x="{left}" y="{top}" width="{pw}" height="{ph}"/>',
    ]
    o.append('<g class="grid">')
    for v, label in _ticks(x0, x1, x):
        px = sx(v)
        o.append(f'<line x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{top + ph}"/>')
        o.append(f'<text class="tick" x="{px:.1f}" y="{top + ph + 16}" text-anchor="middle">{escape(label)}</text>')
    for v, label in y_ticks:
        py = sy(v)
        o.append(f'<line x1="{left}" y1="{py:.1f}" x2="{left + pw}" y2="{py:.1f}"/>')
        o.append(f'<text class="tick" x="{left - 6}" y="{py + 4:.1f}" text-anchor="end">{escape(label)}</text>')
    o.append("</g>")
    o.append(f'<text class="alabel" x="{left + pw / 2:.0f}" y="{top + ph + 38}" text-anchor="middle">'
             f'{escape(x.label)}</text>')
    o.append(f'<text class="alabel" transform="translate(16 {top + ph / 2:.0f}) rotate(-90)" '
             f'text-anchor="middle">{escape(y.label)}</text>')
    clip = f"clip-{next(_CLIP_IDS)}"
    o.append(f'<clipPath id="{clip}"><rect x="{left}" y="{top}" width="{pw}" height="{ph}"/></clipPath>')
    o.append(f'<g class="refs" clip-path="url(#{clip})">')
    labels = []
    for r in refs:
        if r.y is not None:
            py = sy(r.y)
            o.append(f'<line class="ref" x1="{left}" y1="{py:.1f}" x2="{left + pw}" y2="{py:.1f}" '
                     f'stroke="{r.color}"><title>{escape(r.label)}</title></line>')
            lx, anchor = (left + 4, "start") if r.label_at == "start" else (left + pw - 4, "end")
            labels.append(f'<text class="reflabel" x="{lx}" y="{max(py - 4, top + 10):.1f}" '
                          f'text-anchor="{anchor}" fill="{r.color}">{escape(r.label)}</text>')
        elif r.segment is not None:
            a, b, c, d = r.segment
            o.append(f'<line class="ref" x1="{sx(a):.1f}" y1="{sy(b):.1f}" x2="{sx(c):.1f}" y2="{sy(d):.1f}" '
                     f'stroke="{r.color}"><title>{escape(r.label)}</title></line>')
    o.append("</g>")
    for i, s in enumerate(series):
        color = s.color or PALETTE[i % len(PALETTE)]
        o.append(f'<g class="series" data-series="{escape(s.name)}" data-n="{len(s.points)}">')
        pts = sorted(s.points, key=lambda p: p.x) if s.line else s.points
        if s.line and len(pts) > 1:
            d = " ".join(f"{'M' if j == 0 else 'L'}{sx(p.x):.1f},{sy(p.y):.1f}" for j, p in enumerate(pts))
            dash = ' stroke-dasharray="6 4"' if s.dashed else ""
            o.append(f'<path class="line" d="{d}" stroke="{color}"{dash}/>')
        for p in pts:
            if not p.marker:
                continue
            fill = "white" if s.hollow else color
            o.append(f'<circle class="pt" cx="{sx(p.x):.1f}" cy="{sy(p.y):.1f}" r="4" fill="{fill}" '
                     f'stroke="{color}"><title>{escape(p.tip or s.name)}</title></circle>')
        o.append("</g>")
    o.extend(labels)  # over the data, on a white halo (CSS): a reference line's label stays readable
    o.append('<g class="legend">')
    for i, s in enumerate(series):
        color = s.color or PALETTE[i % len(PALETTE)]
        lx = left + (i % 2) * (pw / 2) if two_cols else left
        ly = top + ph + 50 + 18 * (i // 2 if two_cols else i)
        fill = "white" if s.hollow else color
        o.append(f'<rect x="{lx:.0f}" y="{ly - 9}" width="12" height="12" fill="{fill}" stroke="{color}"/>')
        o.append(f'<text x="{lx + 18:.0f}" y="{ly + 1}">{escape(s.name)}</text>')
    o.append("</g></svg>")
    return "\n".join(o)
