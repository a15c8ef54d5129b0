"""``benchkit report``: one self-contained HTML file from result records.

Everything is inline - CSS, a few lines of JavaScript to sort tables, and SVG
charts drawn in Python (:mod:`benchkit.results.report.svg`) - so the file works
offline, from a CI artifact or an e-mail attachment, and prints. Sections:

* a leaderboard per workload and scenario (newest record of each backend /
  precision / batch / load; how many runs exist), sortable by any column,
  INVALID and FAILED rows marked with their reasons;
* latency CDF per backend, from the raw samples;
* throughput vs batch size, per workload;
* latency vs load (Server records at several ``target_qps``);
* a roofline: achieved FLOP/s against arithmetic intensity, with each
  device's compute peak and memory roof where the records carry them;
* run-to-run variance of each cell measured in several runs.

A chart without data says so ("no data: ...") instead of drawing an empty
frame. Reads records only; never touches a backend.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from benchkit._format import fmt_ns, fmt_rate, fmt_value
from benchkit.errors import BenchkitError
from benchkit.results.records import ResultRecord
from benchkit.results.report.svg import PALETTE, Axis, Point, RefLine, Series, chart

REPORT_FORMAT_VERSION = 1  # 1: first version (the page carries it in <meta name="benchkit-report">)


class ReportError(BenchkitError):
    """No records to report, or an output path that cannot be written."""


@dataclass(frozen=True)
class View:
    """One record as the report needs it."""

    rec: ResultRecord
    path: str
    sorted_ns: np.ndarray | None

    @property
    def measured(self) -> bool:
        return self.rec.metrics is not None and self.rec.workload is not None and self.rec.backend is not None

    @property
    def workload(self) -> str:
        r = self.rec
        return r.workload.name if r.workload else str(r.spec.get("workload", {}).get("name", "?"))

    @property
    def scenario(self) -> str:
        return self.rec.scenario.kind

    @property
    def backend(self) -> str:
        r = self.rec
        if r.backend:
            return r.backend.id
        b = r.spec.get("backend", {})
        return str(b.get("label") or b.get("name") or "?")

    @property
    def precision(self) -> str:
        r = self.rec
        return r.backend.precision if r.backend else str(r.spec.get("backend", {}).get("precision", "?"))

    @property
    def batch(self) -> int:
        r = self.rec
        return (r.workload.effective_batch_size or 1) if r.workload else 1

    @property
    def target_qps(self) -> float | None:
        q = self.rec.scenario.settings.get("target_qps") if self.scenario == "server" else None
        return float(q) if q is not None else None

    @property
    def config(self) -> tuple:
        return (self.backend, self.precision, self.batch, self.target_qps)

    def config_label(self, with_batch: bool = True) -> str:
        s = f"{self.backend} {self.precision}"
        if with_batch:
            s += f" b{self.batch}"
        if self.target_qps is not None:
            s += f" @{self.target_qps:g}qps"
        return s

    @property
    def status(self) -> str:
        if self.rec.metrics is None:
            return "FAILED"
        return "VALID" if self.rec.validity.valid else "INVALID"


def load_views(paths: Sequence[str | Path]) -> list[View]:
    from benchkit.results import records
    from benchkit.results.compare import load_with_samples

    files = records.find(list(paths))
    if not files:
        raise ReportError(f"no record files in {', '.join(map(str, paths))}")
    out = []
    for p in files:
        r, arr = load_with_samples(p)
        out.append(View(r, str(p), None if arr is None else np.sort(arr)))
    return out


def views_of(recs: Sequence[ResultRecord]) -> list[View]:
    """Views of records already in memory (their own samples)."""
    return [View(r, r.cell_id, np.sort(np.asarray(r.samples_ns, dtype=np.int64)) if r.samples_ns else None)
            for r in recs]


# --------------------------------------------------------------------------- helpers


def _slug(*parts: Any) -> str:
    import re

    return re.sub(r"[^a-z0-9]+", "-", "-".join(map(str, parts)).lower()).strip("-")


def _newest_per_config(views: Sequence[View]) -> tuple[list[View], dict[tuple, int]]:
    newest: dict[tuple, View] = {}
    runs: dict[tuple, int] = defaultdict(int)
    for v in views:
        k = v.config
        runs[k] += 1
        if k not in newest or v.rec.started_at > newest[k].rec.started_at:
            newest[k] = v
    return list(newest.values()), runs


def _nodata(kind: str, why: str) -> str:
    return f'<p class="nodata" data-kind="{escape(kind)}">no data: {escape(why)}</p>'


def _td(text: str, sort: Any = None, cls: str = "") -> str:
    attr = f' data-sort="{escape(str(sort))}"' if sort is not None else ""
    c = f' class="{cls}"' if cls else ""
    return f"<td{c}{attr}>{text}</td>"


def _fmt_flops(x: float) -> str:
    for unit, scale in (("PFLOP/s", 1e15), ("TFLOP/s", 1e12), ("GFLOP/s", 1e9), ("MFLOP/s", 1e6), ("kFLOP/s", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.3g} FLOP/s"


def _fmt_count(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


# --------------------------------------------------------------------------- leaderboards and CDFs


def _leaderboard(group: Sequence[View], wl: str, sc: str) -> str:
    shown, runs = _newest_per_config(group)
    hib = next((v.rec.metrics.headline.higher_is_better for v in shown if v.rec.metrics), True)
    head_name = next((v.rec.metrics.headline.name for v in shown if v.rec.metrics), "headline")

    def order(v: View) -> tuple:
        rank = {"VALID": 0, "INVALID": 1, "FAILED": 2}[v.status]
        val = v.rec.metrics.headline.value if v.rec.metrics else 0.0
        return (rank, -val if hib else val)

    shown.sort(key=order)
    cols = [("#", "num"), ("backend", "text"), ("precision", "text"), ("batch", "num")]
    if sc == "server":
        cols.append(("target QPS", "num"))
    cols += [(f"{head_name.removesuffix('_ns').replace('_', ' ')} {'↑' if hib else '↓'}", "num"), ("p50", "num"),
             ("p99", "num"), ("samples/s", "num"), ("validity", "text"), ("runs", "num"), ("started (UTC)", "text"),
             ("runtime · device", "text")]
    o = [f'<table class="sortable leaderboard" id="lb-{_slug(wl, sc)}" data-workload="{escape(wl)}" '
         f'data-scenario="{escape(sc)}"><thead><tr>']
    o += [f'<th data-type="{t}" tabindex="0" scope="col">{escape(c)}</th>' for c, t in cols]
    o.append("</tr></thead><tbody>")
    rank = 0
    for v in shown:
        r, m = v.rec, v.rec.metrics
        status = v.status
        if status == "VALID":
            rank += 1
        reasons = "; ".join(r.validity.reasons)
        cls = {"VALID": "valid", "INVALID": "invalid", "FAILED": "invalid failed"}[status]
        o.append(f'<tr class="{cls}" data-status="{status}">')
        o.append(_td(str(rank) if status == "VALID" else "–", rank if status == "VALID" else 10**9))
        o.append(_td(escape(v.backend), v.backend))
        o.append(_td(escape(v.precision), v.precision))
        o.append(_td(str(v.batch), v.batch, "num"))
        if sc == "server":
            o.append(_td(f"{v.target_qps:g}" if v.target_qps is not None else "-", v.target_qps or "", "num"))
        if m is not None:
            h = m.headline
            o.append(_td(escape(fmt_value(h.value, h.unit)), h.value, "num head"))
            o.append(_td(escape(fmt_ns(m.latency_ns.p50)), m.latency_ns.p50, "num"))
            o.append(_td(escape(fmt_ns(m.latency_ns.p99)), m.latency_ns.p99, "num"))
            o.append(_td(escape(fmt_rate(m.throughput_per_s)), m.throughput_per_s, "num"))
        else:
            o += [_td("–", "", "num")] * 4
        badge = f'<span class="badge {status.lower()}">{status}</span>'
        if status == "FAILED" and r.error is not None:
            badge += f' <span class="why">{escape(r.error.phase)}: {escape(r.error.message[:160])}</span>'
        elif reasons:
            badge += f' <span class="why">{escape(reasons[:300])}</span>'
        if r.validity.warnings:
            badge += f' <span class="warn" title="{escape("; ".join(r.validity.warnings))}">(!)</span>'
        o.append(f'<td data-sort="{status}" title="{escape(reasons or status)}">{badge}</td>')
        o.append(_td(str(runs[v.config]), runs[v.config], "num"))
        started = r.started_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")
        o.append(_td(escape(started), r.started_at.isoformat(), "nowrap"))
        rt = f"{r.backend.name} {r.backend.version} · {r.backend.device}" if r.backend else "-"
        o.append(_td(escape(rt), rt, "small"))
        o.append("</tr>")
    o.append("</tbody></table>")
    return "".join(o)


def _cdf_points(s: np.ndarray) -> list[Point]:
    n = s.size
    # Dense where tails live: 1 % steps to p90, then finer to the maximum.
    q = np.unique(np.concatenate([np.linspace(0, 0.9, 91), np.linspace(0.9, 0.99, 46), np.linspace(0.99, 1, 51)]))
    idx = np.unique(np.minimum((q * n).astype(np.int64), n - 1))
    marks = {min(int(n * f), n - 1): f"p{f * 100:g}" for f in (0.5, 0.9, 0.99)}
    pts = []
    for i in idx.tolist():
        frac = (i + 1) / n
        label = marks.get(i)
        pts.append(Point(float(max(s[i], 1)), frac, f"{fmt_ns(float(s[i]))} at {frac:.1%}"
                         + (f" ({label})" if label else ""), marker=label is not None))
    return pts


def _cdf(group: Sequence[View], wl: str, sc: str) -> str:
    shown, _ = _newest_per_config(group)
    shown = [v for v in shown if v.measured and v.sorted_ns is not None and v.sorted_ns.size]
    if sc == "server":
        # One curve per backend: its highest load that stayed VALID (else its highest load);
        # the other loads are in the latency-vs-load chart.
        best: dict[tuple, View] = {}
        for v in shown:
            k = (v.backend, v.precision, v.batch)
            cur = best.get(k)
            if cur is None or ((v.status == "VALID", v.target_qps or 0) > (cur.status == "VALID", cur.target_qps or 0)):
                best[k] = v
        shown = list(best.values())
    if not shown:
        return _nodata("cdf", f"no raw samples for {wl} {sc} (run with run.keep_samples: true)")
    shown.sort(key=lambda v: (v.status != "VALID", v.config_label()))
    series = [Series(v.config_label() + ("" if v.status == "VALID" else " (INVALID)"), _cdf_points(v.sorted_ns),
                     dashed=v.status != "VALID", hollow=v.status != "VALID") for v in shown]
    return chart(series, kind="cdf", title=f"Latency CDF: {wl} · {sc}",
                 x=Axis("latency per query (log scale)", log=True, fmt=fmt_ns),
                 y=Axis("fraction of queries at or below", fmt=lambda v: f"{v:.0%}"))


# --------------------------------------------------------------------------- throughput, load, roofline


def _throughput_vs_batch(views: Sequence[View]) -> str:
    by_wl: dict[str, list[View]] = defaultdict(list)
    for v in views:
        if v.measured and v.scenario in ("offline", "multi_stream", "single_stream"):
            by_wl[v.workload].append(v)
    if not by_wl:
        return _nodata("throughput-batch", "no closed-loop (Offline, MultiStream, SingleStream) records")
    out = []
    for wl in sorted(by_wl):
        series_pts: dict[tuple, list[View]] = defaultdict(list)
        # Offline is the batch scenario; other closed-loop records join when Offline has none at that batch.
        for v in sorted(by_wl[wl], key=lambda v: v.scenario != "offline"):
            series_pts[(v.backend, v.precision)].append(v)
        series = []
        batches: set[int] = set()
        for (be, prec), vs in sorted(series_pts.items()):
            newest: dict[int, View] = {}
            for v in vs:
                if v.batch not in newest or (newest[v.batch].scenario != "offline" and v.scenario == "offline") or \
                        (newest[v.batch].scenario == v.scenario and v.rec.started_at > newest[v.batch].rec.started_at):
                    newest[v.batch] = v
            pts = [Point(float(b), v.rec.metrics.throughput_per_s,
                         f"{be} {prec} batch {b}: {fmt_rate(v.rec.metrics.throughput_per_s)} ({v.scenario}, "
                         f"{v.status})") for b, v in sorted(newest.items())]
            batches |= set(newest)
            invalid = any(v.status != "VALID" for v in newest.values())
            series.append(Series(f"{be} {prec}" + (" (has INVALID)" if invalid else ""), pts, hollow=invalid))
        note = "" if len(batches) > 1 else '<p class="note">one batch size only: run an Offline batch sweep to ' \
                                           "draw a curve.</p>"
        ticks = [(float(b), str(b)) for b in sorted(batches)]
        svg = chart(series, kind="throughput-batch", title=f"Throughput vs batch: {wl}",
                    x=Axis("batch size (samples per call, log scale)", log=True, ticks=ticks),
                    y=Axis("samples/s", fmt=_fmt_count), y_min_zero=True)
        out.append(f'<figure class="plot">{svg}{note}</figure>')
    return "".join(out)


def _latency_vs_load(views: Sequence[View]) -> str:
    server = [v for v in views if v.measured and v.scenario == "server" and v.target_qps is not None]
    if not server:
        return _nodata("latency-load", "no Server records (run a Server load sweep: several target_qps)")
    by_wl: dict[str, list[View]] = defaultdict(list)
    for v in server:
        by_wl[v.workload].append(v)
    out = []
    for wl in sorted(by_wl):
        groups: dict[tuple, dict[float, View]] = defaultdict(dict)
        for v in by_wl[wl]:
            g = groups[(v.backend, v.precision, v.batch)]
            if v.target_qps not in g or v.rec.started_at > g[v.target_qps].rec.started_at:
                g[v.target_qps] = v
        series = []
        bound = None
        for i, ((be, prec, b), pts) in enumerate(sorted(groups.items())):
            color = PALETTE[i % len(PALETTE)]
            for pct, attr, dashed in (("p99", "p99", False), ("p50", "p50", True)):
                ps = [Point(q, float(getattr(v.rec.metrics.latency_ns, attr)),
                            f"{be} {prec} @ {q:g} QPS: {pct} {fmt_ns(getattr(v.rec.metrics.latency_ns, attr))}, "
                            f"achieved {v.rec.metrics.queries_per_s:,.1f} QPS, {v.status}")
                      for q, v in sorted(pts.items())]
                invalid = any(v.status != "VALID" for v in pts.values())
                series.append(Series(f"{be} {prec} b{b} {pct}" + (" (has INVALID)" if invalid and pct == "p99" else ""),
                                     ps, color=color, dashed=dashed, hollow=invalid))
            bound = bound or next((v.rec.scenario.settings.get("target_latency_ns") for v in pts.values()), None)
        refs = [RefLine(f"latency bound {fmt_ns(bound)}", y=float(bound), color="#B00020")] if bound else []
        loads = {q for pts in groups.values() for q in pts}
        note = "" if len(loads) > 1 else '<p class="note">one load only: give target_qps several values (a load ' \
                                         "sweep) to draw a curve.</p>"
        svg = chart(series, kind="latency-load", title=f"Latency vs load: {wl} (Server)",
                    x=Axis("offered load, target QPS", fmt=_fmt_count),
                    y=Axis("latency (log scale)", log=True, fmt=fmt_ns), refs=refs)
        out.append(f'<figure class="plot">{svg}{note}</figure>')
    return "".join(out)


def _roofline(views: Sequence[View]) -> str:
    pts_by_dev: dict[str, list[View]] = defaultdict(list)
    missing = 0
    for v in views:
        if not v.measured:
            continue
        w, m = v.rec.workload, v.rec.metrics
        ai = w.arithmetic_intensity or (w.flops / w.bytes_per_sample if w.flops and w.bytes_per_sample else None)
        achieved = m.achieved_flops_per_s or (w.flops * m.throughput_per_s if w.flops else None)
        if not ai or not achieved:
            missing += 1
            continue
        pts_by_dev[v.rec.backend.device].append(v)
    if not pts_by_dev:
        return _nodata("roofline", "no record carries FLOPs and bytes per sample (workload.flops, "
                                   "workload.arithmetic_intensity) with an achieved FLOP/s")
    series, refs = [], []
    for i, (dev, vs) in enumerate(sorted(pts_by_dev.items())):
        color = PALETTE[i % len(PALETTE)]
        pts = []
        for v in vs:
            w, m, b = v.rec.workload, v.rec.metrics, v.rec.backend
            ai = w.arithmetic_intensity or w.flops / w.bytes_per_sample
            achieved = m.achieved_flops_per_s or w.flops * m.throughput_per_s
            frac = f", {achieved / b.peak_flops_per_s:.1%} of peak" if b.peak_flops_per_s else ""
            pts.append(Point(ai, achieved, f"{v.workload} {v.config_label()} ({v.scenario}): {_fmt_flops(achieved)} "
                                           f"at {ai:.3g} FLOP/B{frac}; {v.status}"))
        invalid = any(v.status != "VALID" for v in vs)
        series.append(Series(dev + (" (has INVALID)" if invalid else ""), pts, color=color, line=False,
                             hollow=invalid))
        peaks = {(v.rec.backend.peak_flops_per_s, v.rec.backend.memory_bandwidth_bytes_per_s) for v in vs}
        for peak, bw in sorted(peaks, key=lambda t: (t[0] or 0, t[1] or 0)):
            if peak:
                refs.append(RefLine(f"{dev} peak {_fmt_flops(peak)}", y=peak, color=color))
                if bw:
                    ridge = peak / bw
                    lo = min(min(p.x for p in pts), ridge) / 10
                    refs.append(RefLine(f"{dev} memory roof {bw / 1e9:.3g} GB/s", segment=(lo, bw * lo, ridge, peak),
                                        color=color))
    note = ""
    if not any(r.y for r in refs):
        note = '<p class="note">no device peak in these records (backend.peak_flops_per_s): points only.</p>'
    if missing:
        note += f'<p class="note">{missing} record(s) without FLOP or byte counts are not shown.</p>'
    svg = chart(series, kind="roofline", title="Roofline: achieved FLOP/s vs arithmetic intensity",
                x=Axis("arithmetic intensity, FLOP/byte (log scale)", log=True, fmt=lambda v: f"{v:g}"),
                y=Axis("achieved FLOP/s (log scale)", log=True, fmt=_fmt_flops), refs=refs)
    return f'<figure class="plot">{svg}{note}</figure>'


def _variance(views: Sequence[View]) -> str:
    groups: dict[tuple, list[View]] = defaultdict(list)
    for v in views:
        if v.measured:
            groups[(v.rec.spec_name, v.workload, v.scenario, *v.config)].append(v)
    multi = {k: sorted(vs, key=lambda v: v.rec.started_at) for k, vs in groups.items()
             if len({v.rec.run_id for v in vs}) > 1}
    if not multi:
        return _nodata("variance", "no cell was measured in more than one run")
    rows, series, ticks = [], [], []
    for i, (k, vs) in enumerate(sorted(multi.items())):
        h = vs[0].rec.metrics.headline
        vals = np.array([v.rec.metrics.headline.value for v in vs], dtype=np.float64)
        med = float(np.median(vals))
        cv = float(vals.std(ddof=1) / vals.mean()) if vals.size > 1 and vals.mean() else 0.0
        label = f"{k[1]} {k[2]} {vs[0].config_label()}"
        ticks.append((float(i), str(i + 1)))
        series.append(Series(f"{i + 1}: {label}", [
            Point(float(i), float(v.rec.metrics.headline.value / med) if med else 1.0,
                  f"{label} run {v.rec.run_id}: {fmt_value(v.rec.metrics.headline.value, h.unit)} "
                  f"({v.rec.metrics.headline.value / med - 1:+.1%} vs median; {v.status})") for v in vs],
            line=False, hollow=any(v.status != "VALID" for v in vs)))
        rows.append(
            f'<tr class="{"valid" if all(v.status == "VALID" for v in vs) else "invalid"}">'
            + _td(str(i + 1), i + 1) + _td(escape(label), label) + _td(escape(h.name), h.name)
            + _td(str(len(vs)), len(vs), "num") + _td(escape(fmt_value(med, h.unit)), med, "num")
            + _td(escape(fmt_value(float(vals.min()), h.unit)), float(vals.min()), "num")
            + _td(escape(fmt_value(float(vals.max()), h.unit)), float(vals.max()), "num")
            + _td(f"{cv:.2%}", cv, "num") + _td(f"{(vals.max() / vals.min() - 1) if vals.min() else 0:.2%}",
                                                (vals.max() / vals.min() - 1) if vals.min() else 0, "num")
            + "</tr>")
    svg = chart(series, kind="variance", title="Run-to-run variance: headline / median of its cell",
                x=Axis("cell (see table)", ticks=ticks, pad=0.5), y=Axis("headline / cell median", fmt=lambda v: f"{v:.3g}"),
                refs=[RefLine("median", y=1.0)])
    head = "".join(f'<th data-type="{t}" tabindex="0" scope="col">{c}</th>' for c, t in (
        ("#", "num"), ("cell", "text"), ("headline", "text"), ("runs", "num"), ("median", "num"), ("min", "num"),
        ("max", "num"), ("CV", "num"), ("max/min − 1", "num")))
    table = f'<table class="sortable" id="variance-table"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}' \
            "</tbody></table>"
    return f'<figure class="plot">{svg}</figure>{table}'


# --------------------------------------------------------------------------- page

_CSS = """
:root { --fg:#1b1b1b; --muted:#5f6368; --line:#d8dadc; --bad:#B00020; --good:#0a7d32; --bg:#fff; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg);
       margin: 0 auto; max-width: 1400px; padding: 16px 24px 48px; }
h1 { font-size: 22px; margin: 8px 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 6px; } .meta, .note, .nodata { color: var(--muted); }
.nodata { font-style: italic; padding: 10px; border: 1px dashed var(--line); display: inline-block; }
nav a { margin-right: 14px; } .cell { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.cell > div { flex: 1 1 100%; overflow-x: auto; }
td.nowrap { white-space: nowrap; } td.small { font-size: 12px; color: var(--muted); }
table { border-collapse: collapse; font-size: 13px; margin: 4px 0 12px; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th { background: #f3f4f6; cursor: pointer; user-select: none; white-space: nowrap; }
th[aria-sort=ascending]::after { content: " ▲"; } th[aria-sort=descending]::after { content: " ▼"; }
tr.invalid { background: #fdecee; } tr.invalid td:first-child { border-left: 4px solid var(--bad); }
.badge { font-weight: 600; font-size: 11px; padding: 1px 6px; border-radius: 3px; }
.badge.valid { color: var(--good); border: 1px solid var(--good); }
.badge.invalid, .badge.failed { color: #fff; background: var(--bad); }
.why { color: var(--bad); font-size: 12px; } .warn { color: #9a6700; cursor: help; }
figure.plot { margin: 8px 0; display: inline-block; vertical-align: top; }
svg.chart { font-size: 11px; background: #fff; } svg.chart .plot { fill: #fbfbfc; stroke: var(--line); }
svg.chart .grid line { stroke: #e6e7e9; } svg.chart .tick { fill: var(--muted); }
svg.chart .ctitle { font-weight: 600; font-size: 13px; } svg.chart .alabel { fill: #333; }
svg.chart path.line { fill: none; stroke-width: 2; } svg.chart .ref { stroke-width: 1.5; stroke-dasharray: 3 3; }
svg.chart .reflabel { font-size: 10px; } svg.chart circle.pt:hover { r: 6; }
ul.warnings li { color: #9a6700; }
@media print { nav { display: none; } }
"""

_JS = """
(function () {
  function sortBy(table, th, col) {
    var asc = th.getAttribute('aria-sort') !== 'ascending';
    var numeric = th.getAttribute('data-type') === 'num';
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].getAttribute('data-sort'), y = b.cells[col].getAttribute('data-sort');
      if (numeric) {
        var nx = parseFloat(x), ny = parseFloat(y);
        if (isNaN(nx) || isNaN(ny)) { return isNaN(nx) - isNaN(ny); }  /* no value: always last */
        return asc ? nx - ny : ny - nx;
      }
      var r = String(x).localeCompare(String(y));
      return asc ? r : -r;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.addEventListener('click', function () { sortBy(table, th, col); });
      th.addEventListener('keydown', function (e) { if (e.key === 'Enter') { sortBy(table, th, col); } });
    });
  });
})();
"""


def build_html(views: Sequence[View], title: str | None = None, generated_at: datetime | None = None) -> str:
    """The whole page, as one string."""
    from benchkit._version import __version__
    from benchkit.results.compare import fingerprint

    if not views:
        raise ReportError("no records to report")
    when = (generated_at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    specs = sorted({v.rec.spec_name for v in views})
    title = title or f"benchkit report: {', '.join(specs)}"
    n_valid = sum(v.status == "VALID" for v in views)
    systems = sorted({f"{v.rec.system.cpu_model} ×{v.rec.system.cpu_count}" for v in views})
    warnings = []
    cpus = {fingerprint(v.rec)["cpu"] for v in views}
    if len(cpus) > 1:
        warnings.append(f"records come from {len(cpus)} different CPUs: compare across systems with care")
    groups: dict[tuple[str, str], list[View]] = defaultdict(list)
    for v in views:
        groups[(v.workload, v.scenario)].append(v)
    order = {"single_stream": 0, "multi_stream": 1, "server": 2, "offline": 3}
    keys = sorted(groups, key=lambda k: (k[0], order.get(k[1], 9)))

    body = [f"<h1>{escape(title)}</h1>",
            f'<p class="meta">{len(views)} record(s), {n_valid} VALID, {len(views) - n_valid} INVALID or failed · '
            f"spec(s) {escape(', '.join(specs))} · {escape('; '.join(systems))} · generated "
            f"{when.strftime('%Y-%m-%d %H:%M UTC')} by benchkit {escape(__version__)}</p>",
            '<nav><a href="#leaderboards">Leaderboards</a><a href="#throughput-batch">Throughput vs batch</a>'
            '<a href="#latency-load">Latency vs load</a><a href="#roofline">Roofline</a>'
            '<a href="#variance">Run-to-run variance</a></nav>']
    if warnings:
        body.append('<ul class="warnings">' + "".join(f"<li>{escape(w)}</li>" for w in warnings) + "</ul>")
    body.append('<h2 id="leaderboards">Leaderboards and latency CDFs</h2>'
                '<p class="note">Newest record of each backend / precision / batch (/ load); click a column to '
                "sort. INVALID rows are marked in red with their reasons and are never ranked.</p>")
    for wl, sc in keys:
        g = groups[(wl, sc)]
        body.append(f'<section class="cell" id="{_slug("cell", wl, sc)}"><div><h3>{escape(wl)} · {escape(sc)}</h3>'
                    f"{_leaderboard(g, wl, sc)}</div><div>{_cdf(g, wl, sc)}</div></section>")
    body.append(f'<h2 id="throughput-batch">Throughput vs batch size</h2>{_throughput_vs_batch(views)}')
    body.append(f'<h2 id="latency-load">Latency vs load</h2>{_latency_vs_load(views)}')
    body.append(f'<h2 id="roofline">Roofline</h2>{_roofline(views)}')
    body.append(f'<h2 id="variance">Run-to-run variance</h2>{_variance(views)}')
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="benchkit {escape(__version__)}">'
        f'<meta name="benchkit-report" content="{REPORT_FORMAT_VERSION}">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>\n<body>\n" + "\n".join(body)
        + f"\n<script>{_JS}</script>\n</body></html>\n"
    )


def write_report(paths: Sequence[str | Path], out: str | Path, title: str | None = None) -> Path:
    """Read records (files or directories) and write the report to ``out``."""
    from benchkit.results.records import write_atomic

    html = build_html(load_views(paths), title)
    out = Path(out)
    try:
        write_atomic(out, html)
    except OSError as e:
        raise ReportError(f"{out}: cannot write the report ({e})") from None
    return out


__all__ = ["REPORT_FORMAT_VERSION", "ReportError", "View", "build_html", "load_views", "views_of", "write_report"]
