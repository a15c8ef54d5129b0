"""The charts across cells: throughput vs batch, latency vs load, throughput vs latency (concurrency), the roofline,
and run-to-run variance."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from html import escape

import numpy as np

from benchkit._format import fmt_ns, fmt_rate, fmt_value
from benchkit.results.report.intervals import headline_interval
from benchkit.results.report.svg import Axis, Point, RefLine, Series, chart
from benchkit.results.report.views import View, backend_colors, device_label, fmt_count, fmt_flops, nodata, td


def throughput_vs_batch(views: Sequence[View], colors: dict[str, str] | None = None) -> str:
    colors = colors or backend_colors(views)
    by_wl: dict[str, list[View]] = defaultdict(list)
    for v in views:
        # calls in flight are another load dimension: throughput_vs_latency draws those
        if v.measured and v.scenario in ("offline", "multi_stream", "single_stream") and v.concurrency is None:
            by_wl[v.workload].append(v)
    if not by_wl:
        return nodata("throughput-batch", "no closed-loop (Offline, MultiStream, SingleStream) records")
    out = []
    for wl in sorted(by_wl):
        series_pts: dict[tuple, list[View]] = defaultdict(list)
        # Offline is the batch scenario; other closed-loop records join when Offline has none at that batch.
        for v in sorted(by_wl[wl], key=lambda v: v.scenario != "offline"):
            series_pts[(v.backend, v.precision)].append(v)
        series = []
        batches: set[int] = set()
        seen: set[str] = set()
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
            # the backend's colour; a second precision of the same backend is dashed
            series.append(Series(f"{be} {prec}" + (" (has INVALID)" if invalid else ""), pts, color=colors[be],
                                 dashed=be in seen, hollow=invalid))
            seen.add(be)
        note = "" if len(batches) > 1 else '<p class="note">one batch size only: run an Offline batch sweep to ' \
                                           "draw a curve.</p>"
        ticks = [(float(b), str(b)) for b in sorted(batches)]
        svg = chart(series, kind="throughput-batch", title=f"Throughput vs batch: {wl}",
                    x=Axis("batch size (samples per call, log scale)", log=True, ticks=ticks),
                    y=Axis("samples/s", fmt=fmt_count), y_min_zero=True)
        out.append(f'<figure class="plot">{svg}{note}</figure>')
    return "".join(out)


def latency_vs_load(views: Sequence[View], colors: dict[str, str] | None = None) -> str:
    colors = colors or backend_colors(views)
    server = [v for v in views if v.measured and v.scenario == "server" and v.target_qps is not None]
    if not server:
        return nodata("latency-load", "no Server records (run a Server load sweep: several target_qps)")
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
        for (be, prec, b), pts in sorted(groups.items()):
            color = colors[be]
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
                    x=Axis("offered load, target QPS", fmt=fmt_count),
                    y=Axis("latency (log scale)", log=True, fmt=fmt_ns), refs=refs)
        out.append(f'<figure class="plot">{svg}{note}</figure>')
    return "".join(out)


def throughput_vs_latency(views: Sequence[View], colors: dict[str, str] | None = None) -> str:
    """Offline records at several ``concurrency`` values: samples/s against p50 and p99 latency, one point per
    concurrency (perf_analyzer's curve): where added calls in flight stop buying throughput and start costing latency."""
    colors = colors or backend_colors(views)
    offline = [v for v in views if v.measured and v.scenario == "offline"]
    by_wl: dict[str, list[View]] = defaultdict(list)
    for v in offline:
        by_wl[v.workload].append(v)
    if not any(v.concurrency is not None for v in offline):
        return nodata("throughput-latency", "no Offline records with calls in flight (run a concurrency sweep: "
                                            "offline.concurrency: [1, 2, 4, 8])")
    out = []
    for wl in sorted(by_wl):
        if not any(v.concurrency is not None for v in by_wl[wl]):
            continue
        groups: dict[tuple, dict[int, View]] = defaultdict(dict)
        for v in by_wl[wl]:
            g, c = groups[(v.backend, v.precision, v.batch)], v.concurrency or 1
            if c not in g or v.rec.started_at > g[c].rec.started_at:
                g[c] = v
        series = []
        for (be, prec, b), pts in sorted(groups.items()):
            color = colors[be]
            invalid = any(v.status != "VALID" for v in pts.values())
            for pct, dashed in (("p99", False), ("p50", True)):
                ps = [Point(float(getattr(v.rec.metrics.latency_ns, pct)), v.rec.metrics.throughput_per_s,
                            f"{be} {prec} b{b} concurrency {c}: {fmt_rate(v.rec.metrics.throughput_per_s)} at "
                            f"{pct} {fmt_ns(getattr(v.rec.metrics.latency_ns, pct))}, {v.status}")
                      for c, v in sorted(pts.items())]
                series.append(Series(f"{be} {prec} b{b} {pct}" + (" (has INVALID)" if invalid and pct == "p99" else ""),
                                     ps, color=color, dashed=dashed, hollow=invalid))
        svg = chart(series, kind="throughput-latency", title=f"Throughput vs latency: {wl} (Offline, calls in flight)",
                    x=Axis("latency per call (log scale)", log=True, fmt=fmt_ns),
                    y=Axis("samples/s", fmt=fmt_count), y_min_zero=True)
        out.append(f'<figure class="plot">{svg}<p class="note">one point per concurrency, in order along each '
                   "line; hover a point for its value.</p></figure>")
    return "".join(out)


def roofline(views: Sequence[View], colors: dict[str, str] | None = None) -> str:
    """Achieved FLOP/s against arithmetic intensity, one colour per backend, and each device's roofs: its peak
    (the adapter's, a device file's, or for a CPU the derived upper bound, from the record's system block when
    the record carries none) and, where a bandwidth is known, its memory roof."""
    from benchkit.machine.cpu_peak import peak_from_system

    colors = colors or backend_colors(views)
    pts_by_backend: dict[str, list[View]] = defaultdict(list)
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
        pts_by_backend[v.backend].append(v)
    if not pts_by_backend:
        return nodata("roofline", "no record carries FLOPs and bytes per sample (workload.flops, "
                                   "workload.arithmetic_intensity) with an achieved FLOP/s")
    series = []
    roofs: dict[str, set[tuple[float, float | None, str]]] = defaultdict(set)  # device -> (peak, bw, precision)
    lowest_ai = float("inf")
    for be, vs in sorted(pts_by_backend.items()):
        pts = []
        for v in vs:
            w, m, b = v.rec.workload, v.rec.metrics, v.rec.backend
            ai = w.arithmetic_intensity or w.flops / w.bytes_per_sample
            achieved = m.achieved_flops_per_s or w.flops * m.throughput_per_s
            dev = device_label(v.rec)
            peak = b.peak_flops_per_s
            if not peak and dev.startswith("cpu: "):
                peak = peak_from_system(b.precision, v.rec.system)
            frac = f", {achieved / peak:.1%} of peak" if peak else ""
            pts.append(Point(ai, achieved, f"{v.workload} {v.config_label()} ({v.scenario}) on {dev}: "
                                           f"{fmt_flops(achieved)} at {ai:.3g} FLOP/B{frac}; {v.status}"))
            lowest_ai = min(lowest_ai, ai)
            if peak:
                roofs[dev].add((peak, b.memory_bandwidth_bytes_per_s, b.precision))
        invalid = any(v.status != "VALID" for v in vs)
        series.append(Series(be + (" (has INVALID)" if invalid else ""), pts, color=colors[be], line=False,
                             hollow=invalid))
    refs = []
    for dev, peaks in sorted(roofs.items()):
        several = len({prec for _, _, prec in peaks}) > 1
        for peak, bw, prec in sorted(peaks, key=lambda t: (t[0], t[1] or 0)):
            refs.append(RefLine(f"{dev} {prec + ' ' if several else ''}peak {fmt_flops(peak)}", y=peak,
                                color="#555555"))
            if bw:
                ridge = peak / bw
                lo = min(lowest_ai, ridge) / 10
                refs.append(RefLine(f"{dev} memory roof {bw / 1e9:.3g} GB/s", segment=(lo, bw * lo, ridge, peak),
                                    color="#555555"))
    note = ""
    if not refs:
        note = '<p class="note">no device peak in these records (backend.peak_flops_per_s): points only.</p>'
    if missing:
        note += f'<p class="note">{missing} record(s) without FLOP or byte counts are not shown.</p>'
    svg = chart(series, kind="roofline", title="Roofline: achieved FLOP/s vs arithmetic intensity",
                x=Axis("arithmetic intensity, FLOP/byte (log scale)", log=True, fmt=lambda v: f"{v:g}"),
                y=Axis("achieved FLOP/s (log scale)", log=True, fmt=fmt_flops), refs=refs)
    return f'<figure class="plot">{svg}{note}</figure>'


def variance(views: Sequence[View], colors: dict[str, str] | None = None) -> str:
    """Each cell measured more than once (runs, or repeat sessions of one run): every headline over the cell's
    median, and a table setting the spread between runs beside the precision each run had on its own."""
    groups: dict[tuple, list[View]] = defaultdict(list)
    for v in views:
        if v.measured:
            groups[(v.rec.spec_name, v.workload, v.scenario, *v.config)].append(v)
    multi = {k: sorted(vs, key=lambda v: v.rec.started_at) for k, vs in groups.items() if len(vs) > 1}
    if not multi:
        return nodata("variance", "no cell was measured in more than one run (or repeat session)")
    rows, series, ticks = [], [], []
    # a generative scenario has records with a load (server form) and without (offline): None sorts first
    for i, (k, vs) in enumerate(sorted(multi.items(), key=lambda kv: tuple(-1.0 if x is None else x for x in kv[0]))):
        h = vs[0].rec.metrics.headline
        vals = np.array([v.rec.metrics.headline.value for v in vs], dtype=np.float64)
        med = float(np.median(vals))
        label = f"{k[1]} {k[2]} {vs[0].config_label()}"
        ivs = [headline_interval(v.rec, v.samples_ns) for v in vs]
        known = [iv for iv in ivs if iv is not None and iv.known]
        within = float(np.median([iv.rel_half_width for iv in known])) if known else None
        spread = (vals.max() / vals.min() - 1) if vals.min() else 0.0
        if len(known) == len(vs):
            overlap = max(iv.low for iv in known) <= min(iv.high for iv in known)
            agree, agree_tip = ("yes", "every run's 95 % interval overlaps every other's") if overlap else (
                "no", "some runs' 95 % intervals do not overlap: the spread between runs exceeds what each run "
                      "measures on its own (within-run intervals ignore run-to-run variation)")
        else:
            agree, agree_tip = "n/a", "a run has no interval (no raw samples, or a Server throughput)"
        ticks.append((float(i), str(i + 1)))
        series.append(Series(f"{i + 1}: {label}", [
            Point(float(i), float(v.rec.metrics.headline.value / med) if med else 1.0,
                  f"{label} run {v.rec.run_id}"
                  + (f" session {v.rec.repeat.index}" if v.rec.repeat else "")
                  + f": {fmt_value(v.rec.metrics.headline.value, h.unit)} "
                  f"({v.rec.metrics.headline.value / med - 1:+.1%} vs median; {v.status})") for v in vs],
            color=(colors or backend_colors(views))[vs[0].backend], line=False,
            hollow=any(v.status != "VALID" for v in vs)))
        rows.append(
            f'<tr class="{"valid" if all(v.status == "VALID" for v in vs) else "invalid"}">'
            + td(str(i + 1), i + 1) + td(escape(label), label) + td(escape(h.name), h.name)
            + td(str(len(vs)), len(vs), "num") + td(escape(fmt_value(med, h.unit)), med, "num")
            + td(escape(fmt_value(float(vals.min()), h.unit)), float(vals.min()), "num")
            + td(escape(fmt_value(float(vals.max()), h.unit)), float(vals.max()), "num")
            + td(f"{spread:.2%}", spread, "num")
            + td(f"±{within:.1%}" if within is not None else "–", within if within is not None else "", "num",
                 "median over the runs of the relative half-width of each run's own 95 % headline interval")
            + td(agree, agree, "", agree_tip)
            + "</tr>")
    svg = chart(series, kind="variance", title="Run-to-run variance: headline / median of its cell",
                x=Axis("cell (see table)", ticks=ticks, pad=0.5),
                y=Axis("headline / cell median", fmt=lambda v: f"{v:.3g}"),
                refs=[RefLine("median", y=1.0)])
    head = "".join(f'<th data-type="{t}" tabindex="0" scope="col">{c}</th>' for c, t in (
        ("#", "num"), ("cell", "text"), ("headline", "text"), ("runs", "num"), ("median", "num"), ("min", "num"),
        ("max", "num"), ("max/min − 1", "num"), ("within-run ±", "num"), ("intervals overlap", "text")))
    table = f'<table class="sortable" id="variance-table"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}' \
            "</tbody></table>"
    return f'<figure class="plot">{svg}</figure>{table}'
