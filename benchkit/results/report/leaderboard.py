"""One section per workload and scenario: the leaderboard (headline with its 95 % interval, ratio to a baseline
row, runs and their spread), the latency CDF, and each cell's latency over time (collapsed)."""

from __future__ import annotations

import json
from collections import defaultdict
import math
from collections.abc import Sequence
from datetime import timezone
from html import escape

import numpy as np

from benchkit._format import fmt_bytes, fmt_ns, fmt_rate, fmt_value
from benchkit.results.report.intervals import (
    CONFIDENCE,
    HeadlineInterval,
    Ratio,
    RunSpread,
    comparison_interval,
    downsample_keep_extremes,
    headline_interval,
    meaningful_warnings,
    ratio,
    run_spread,
    stability_findings,
)
from benchkit.results.report.svg import Axis, Point, RefLine, Series, chart
from benchkit.results.report.views import View, backend_colors, fmt_count, newest_per_config, nodata, slug, td

TIER = {"VALID": 0, "INVALID": 1, "FAILED": 2}  # a leaderboard sorts within its tier: INVALID never above VALID


def _decimals(x: float) -> int:
    """Decimals that give a rate four significant digits (none at 1,000 and above)."""
    return max(0, 3 - math.floor(math.log10(abs(x)))) if x else 0


def _fmt_short(x: float, unit: str, decimals: int | None = None) -> str:
    if unit == "ns":
        return fmt_ns(x)
    return f"{x:,.{_decimals(x) if decimals is None else decimals}f}"


def fmt_ratio(x: float) -> str:
    """Three significant digits, trailing zeros kept: ``1.00``, ``0.125``, ``12.3``, ``123``."""
    return format(x, "#.3g").rstrip(".")


def fmt_range(lo: float, hi: float, unit: str) -> str:
    """``3.95–4.10 ms``, ``9,288–9,344/s``: one unit for both ends."""
    if unit == "ns":
        for u, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3), ("ns", 1.0)):
            if abs(hi) >= scale or u == "ns":
                return f"{lo / scale:.3g}–{hi / scale:.3g} {u}"
    suffix = "/s" if unit.endswith("/s") else f" {unit}"
    d = _decimals(hi)  # both ends to the same decimals
    return f"{_fmt_short(lo, unit, d)}–{_fmt_short(hi, unit, d)}{suffix}"


def _interval_cell(hi: HeadlineInterval | None, flags: list[tuple[str, str, str]]) -> str:
    if hi is None:
        return td("–", "", "num iv", "failed cell: nothing measured")
    badges = "".join(
        f' <span class="flag {escape(sev)}" data-check="{escape(check)}" title="{escape(msg)}">'
        f'{"imprecise" if check == "stability.headline" else "drift"}</span>' for check, sev, msg in flags)
    if not hi.known:
        return td(f'<span class="none">n/a</span>{badges}', "", "num iv", hi.missing)
    rel = hi.rel_half_width
    text = (f'<span class="range">{escape(fmt_range(hi.low, hi.high, hi.unit))}</span>'
            f'<span class="sub">±{rel:.1%}</span>{badges}')
    return td(text, f"{rel:.6g}", "num iv", hi.method)


def _runs_cell(n: int, spread: RunSpread | None, unit: str) -> str:
    if spread is None:
        return td(str(n), n, "num runs")
    src = "runs" if spread.source == "records" else "sessions of run.repeats (this record's repeat block)"
    tip = (f"{len(spread.values)} {src}: mean {fmt_value(spread.mean, unit)}, min {fmt_value(spread.low, unit)}, "
           f"max {fmt_value(spread.high, unit)}" + (f"; {spread.invalid} of them INVALID" if spread.invalid else ""))
    text = (f'{n}<span class="sub spread">mean {escape(_fmt_short(spread.mean, unit))}'
            f"{'/s' if unit.endswith('/s') else ''}, {escape(fmt_range(spread.low, spread.high, unit))}</span>")
    return td(text, n, "num runs", tip)


def _ratio_entry(row: View, base: View | None, why: str, hib: bool, name: str,
                 ivs: dict[tuple, tuple[float, float] | None]) -> dict:
    """What the ratio cell shows for one baseline choice (rendered here; the page's script only swaps it in)."""
    if row.rec.metrics is None:
        return {"t": "–", "c": "", "s": "", "k": "", "title": "failed cell: nothing measured"}
    if base is None:
        return {"t": "–", "c": "", "s": "", "k": "", "title": why}
    if base is row:
        return {"t": "baseline", "c": "", "s": "1", "k": "base", "title": "the baseline row"}
    rv, bv = row.rec.metrics.headline.value, base.rec.metrics.headline.value
    r: Ratio = ratio(rv, bv, hib, ivs[row.config], ivs[base.config])
    if not np.isfinite(r.value):
        return {"t": "–", "c": "", "s": "", "k": "", "title": "a headline is zero"}
    how = (f"this row's {name} / the baseline's" if hib else f"the baseline's {name} / this row's (lower is better)")
    title = f"{r.value:.3g}× the baseline {base.config_label()} ({how}); above 1 is better."
    if r.low is not None:
        title += (f" {CONFIDENCE:.0%} interval {r.low:.3g}–{r.high:.3g} from the two rows' intervals (each widened "
                  f"to the range of its runs where it has several): "
                  + {"better": "better than the baseline", "worse": "worse than the baseline",
                     "same": "not distinguishable from the baseline"}[r.verdict] + ".")
    else:
        title += " No interval: a row without one (see its interval column)."
    kind = r.verdict
    for who, v in (("This row", row), ("The baseline row", base)):
        if v.status != "VALID":
            title += f" {who} is {v.status}: the ratio is not a ranking."
            kind = ""  # no better/worse colour on a comparison that involves an INVALID record
    ci = f"{fmt_ratio(r.low)}–{fmt_ratio(r.high)}" if r.low is not None else ""
    return {"t": f"{fmt_ratio(r.value)}×", "c": ci, "s": f"{r.value:.6g}", "k": kind, "title": title}


def _baseline_row(rows: Sequence[View], key: tuple[str, str], row: View) -> tuple[View | None, str]:
    cands = [v for v in rows if (v.backend, v.precision) == key and v.rec.metrics is not None]
    same = [v for v in cands if (v.batch, v.target_qps, v.concurrency) == (row.batch, row.target_qps, row.concurrency)]
    if same:
        return same[0], ""
    if len(cands) == 1:
        return cands[0], ""
    where = f"batch {row.batch}" + (f" at {row.target_qps:g} QPS" if row.target_qps is not None else "") \
        + (f" with {row.concurrency} in flight" if row.concurrency is not None else "")
    return None, f"the baseline {key[0]} {key[1]} has no row at {where}"


def leaderboard(group: Sequence[View], wl: str, sc: str, baseline: str | None = None) -> str:
    shown, runs = newest_per_config(group)
    hib = next((v.rec.metrics.headline.higher_is_better for v in shown if v.rec.metrics), True)
    head_name = next((v.rec.metrics.headline.name for v in shown if v.rec.metrics), "headline")
    short = head_name.removesuffix("_ns").removeprefix("latency_").replace("_", " ")
    rate_headline = head_name == "throughput_per_s"  # then the samples/s column would repeat the headline
    if rate_headline:
        short = "samples/s"

    def order(v: View) -> tuple:
        val = v.rec.metrics.headline.value if v.rec.metrics else 0.0
        return (TIER[v.status], -val if hib else val)

    shown.sort(key=order)
    intervals = {v.config: headline_interval(v.rec, v.samples_ns) for v in shown}
    spreads = {v.config: run_spread([u.rec for u in runs[v.config]]) for v in shown}
    ivs = {k: comparison_interval(h, spreads[k]) if h is not None else None for k, h in intervals.items()}

    # Baseline choices: each measured backend / precision, in rank order.
    keys: list[tuple[str, str]] = []
    for v in shown:
        if v.rec.metrics is not None and (v.backend, v.precision) not in keys:
            keys.append((v.backend, v.precision))
    default = next((i for i, k in enumerate(keys) if baseline is not None and k[0] == baseline), 0)
    table_id = f"lb-{slug(wl, sc)}"

    cols = [("#", "num"), ("backend", "text"), ("precision", "text"), ("batch", "num")]
    if sc == "server":
        cols.append(("target QPS", "num"))
    in_flight = sc == "offline" and any(v.concurrency is not None for v in group)
    if in_flight:
        cols.append(("in flight", "num"))
    cols += [(f"{short} {'↑' if hib else '↓'}", "num"), (f"{CONFIDENCE:.0%} interval", "num"),
             ("vs baseline", "num"), ("p50", "num"), ("p99", "num")] + ([] if rate_headline else [("samples/s", "num")])
    cols.append(("peak memory", "num"))
    cols += [("validity", "text"), ("runs", "num"), ("started (UTC)", "text"), ("runtime · device", "text")]
    tips = {f"{CONFIDENCE:.0%} interval": "How precisely the run's own samples know the headline (sorted by the "
                                          "relative half-width); hover a cell for the method.",
            "peak memory": "Peak resident memory of the process that ran the cell (the record's memory block); "
                           "with the device's peak where the adapter reports one.",
            "vs baseline": "How many times better than the baseline row chosen above: above 1 is better, for "
                           "latency and throughput alike; below, the ratio's 95 % interval.",
            "runs": "Records of this configuration (runs and repeat sessions); below, their headlines' mean and "
                    "range."}
    o = []
    if keys:
        opts = "".join(f'<option value="b{i}"{" selected" if i == default else ""}>{escape(f"{b} {p}")}</option>'
                       for i, (b, p) in enumerate(keys))
        o.append(f'<p class="baseline-pick"><label>ratio to baseline <select class="baseline" '
                 f'data-table="{table_id}">{opts}</select></label></p>')
    o.append(f'<table class="sortable leaderboard" id="{table_id}" data-workload="{escape(wl)}" '
             f'data-scenario="{escape(sc)}" data-higher-is-better="{str(hib).lower()}"><thead><tr>')
    o += [f'<th data-type="{t}" tabindex="0" scope="col"' + (f' title="{escape(tips[c])}"' if c in tips else "")
          + f">{escape(c)}</th>" for c, t in cols]
    o.append("</tr></thead><tbody>")
    rank = 0
    for v in shown:
        r, m = v.rec, v.rec.metrics
        status = v.status
        if status == "VALID":
            rank += 1
        reasons = "; ".join(r.validity.reasons)
        cls = {"VALID": "valid", "INVALID": "invalid", "FAILED": "invalid failed"}[status]
        entries = {}
        for i, k in enumerate(keys):
            base, why = _baseline_row(shown, k, v)
            entries[f"b{i}"] = _ratio_entry(v, base, why, hib, short, ivs)
        now = entries.get(f"b{default}", {"t": "–", "c": "", "s": "", "k": "", "title": "no measured row"})
        o.append(f'<tr class="{cls}" data-status="{status}" data-tier="{TIER[status]}" '
                 f'data-ratios="{escape(json.dumps(entries, ensure_ascii=False))}">')
        o.append(td(str(rank) if status == "VALID" else "–", rank if status == "VALID" else 10**9))
        o.append(td(escape(v.backend), v.backend))
        o.append(td(escape(v.precision), v.precision))
        o.append(td(str(v.batch), v.batch, "num"))
        if sc == "server":
            o.append(td(f"{v.target_qps:g}" if v.target_qps is not None else "-", v.target_qps or "", "num"))
        if in_flight:
            o.append(td(str(v.concurrency or 1), v.concurrency or 1, "num"))
        if m is not None:
            h = m.headline
            o.append(td(escape(fmt_value(h.value, h.unit)), h.value, "num head"))
        else:
            o.append(td("–", "", "num head"))
        o.append(_interval_cell(intervals[v.config], stability_findings(r)))
        o.append(td(f'<span class="rv">{escape(now["t"])}</span><span class="sub ci">{escape(now["c"])}</span>',
                    now["s"], f"num ratio {now['k']}".strip(), now["title"]))
        if m is not None:
            o.append(td(escape(fmt_ns(m.latency_ns.p50)), m.latency_ns.p50, "num"))
            o.append(td(escape(fmt_ns(m.latency_ns.p99)), m.latency_ns.p99, "num"))
            if not rate_headline:
                o.append(td(escape(fmt_rate(m.throughput_per_s)), m.throughput_per_s, "num"))
        else:
            o += [td("–", "", "num")] * (2 if rate_headline else 3)
        mem = r.memory
        if mem is not None and mem.peak_rss_bytes is not None:
            text = fmt_bytes(mem.peak_rss_bytes) + ("" if mem.peak_device_bytes is None else
                                                    f'<span class="sub">device {fmt_bytes(mem.peak_device_bytes)}</span>')
            o.append(td(text, mem.peak_rss_bytes, "num mem", f"scope: {mem.scope} ({mem.source})"))
        else:
            o.append(td("–", "", "num mem", "not measured (a record from before memory was measured)"))
        badge = f'<span class="badge {status.lower()}">{status}</span>'
        if status == "FAILED" and r.error is not None:
            badge += f' <span class="why">{escape(r.error.phase)}: {escape(r.error.message[:160])}</span>'
        elif reasons:
            badge += f' <span class="why">{escape(reasons[:300])}</span>'
        warns = meaningful_warnings(r)
        if warns:
            badge += f' <span class="warn" title="{escape("; ".join(warns))}">(!)</span>'
        o.append(f'<td data-sort="{status}" title="{escape(reasons or status)}">{badge}</td>')
        o.append(_runs_cell(len(runs[v.config]), spreads[v.config], m.headline.unit if m else ""))
        started = r.started_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")
        o.append(td(escape(started), r.started_at.isoformat(), "nowrap"))
        rt = f"{r.backend.name} {r.backend.version} · {r.backend.device}" if r.backend else "-"
        o.append(td(escape(rt), rt, "small"))
        o.append("</tr>")
    o.append("</tbody></table>")
    return "".join(o)


# --------------------------------------------------------------------------- CDF


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


def server_load(shown: Sequence[View]) -> tuple[list[View], str]:
    """Server curves to set side by side: all at one offered load, so a curve is never compared with another
    backend's at a different rate. The load is the highest that every configuration ran, preferring one where
    all stayed VALID; without a common load, each configuration's highest VALID load, and a note saying so."""
    by_cfg: dict[tuple, dict[float, View]] = defaultdict(dict)
    for v in shown:
        by_cfg[(v.backend, v.precision, v.batch)][v.target_qps or 0.0] = v
    common = set.intersection(*(set(loads) for loads in by_cfg.values())) if by_cfg else set()
    if common:
        q = max(common, key=lambda q: (all(c[q].status == "VALID" for c in by_cfg.values()), q))
        return [c[q] for c in by_cfg.values()], f" @ {q:g} QPS"
    best = [max(c.values(), key=lambda v: (v.status == "VALID", v.target_qps or 0)) for c in by_cfg.values()]
    return best, " (no load common to every configuration: each at its highest VALID load)"


def cdf(group: Sequence[View], wl: str, sc: str, colors: dict[str, str] | None = None) -> str:
    shown, _ = newest_per_config(group)
    shown = [v for v in shown if v.measured and v.samples_ns is not None and v.samples_ns.size]
    at = ""
    if sc == "server" and shown:
        # One curve per configuration, all at one offered load; the other loads are in the latency-vs-load chart.
        shown, at = server_load(shown)
    if not shown:
        return nodata("cdf", f"no raw samples for {wl} {sc} (run with run.keep_samples: true)")
    colors = colors or backend_colors(shown)
    shown.sort(key=lambda v: (v.status != "VALID", v.config_label()))
    series = [Series(v.config_label() + ("" if v.status == "VALID" else " (INVALID)"), _cdf_points(v.sorted_ns),
                     color=colors[v.backend], dashed=v.status != "VALID", hollow=v.status != "VALID")
              for v in shown]
    return chart(series, kind="cdf", title=f"Latency CDF: {wl} · {sc}{at}",
                 x=Axis("latency per query (log scale)", log=True, fmt=fmt_ns),
                 y=Axis("fraction of queries at or below", fmt=lambda v: f"{v:.0%}"))


# --------------------------------------------------------------------------- latency over time

STALLS_MARKED = 3  # the largest samples of at least twice the p99 (stalls) get a marker with their query number


def timeline_chart(v: View, wl: str, sc: str, color: str = "") -> str:
    """Latency of each query in issue order, down-sampled keeping each bucket's maximum, with p50 and p99 lines."""
    x = v.samples_ns
    n = int(x.size)
    idx, vals = downsample_keep_extremes(x)
    lat = v.rec.metrics.latency_ns
    top = {int(j) for j in np.argsort(vals)[::-1][:STALLS_MARKED] if vals[j] >= 2 * lat.p99}
    pts = [Point(float(i) + 1, float(max(val, 1)),
                 f"query {i + 1:,}: {fmt_ns(float(val))} ({val / lat.p50:.1f}× the p50)" if j in top else "",
                 marker=j in top) for j, (i, val) in enumerate(zip(idx.tolist(), vals.tolist()))]
    drawn = "every query" if idx.size == n else (f"{idx.size:,} of {n:,} queries: each bucket of about "
                                                f"{n / (idx.size / 2):.0f} consecutive queries as its minimum and "
                                                "maximum, so no stall is lost")
    refs = [RefLine(f"p99 {fmt_ns(lat.p99)}", y=float(lat.p99), color="#B00020"),
            RefLine(f"p50 {fmt_ns(lat.p50)}", y=float(lat.p50), color="#555555", label_at="start")]
    svg = chart([Series(f"{v.config_label()} ({v.status})", pts, color=color, hollow=v.status != "VALID")],
                kind="timeline", title=f"Latency over time: {wl} · {sc} · {v.config_label()}",
                x=Axis("query, in issue order", fmt=fmt_count), y=Axis("latency (log scale)", log=True, fmt=fmt_ns),
                refs=refs, width=900, height=300)
    return f'{svg}<p class="note">drawn: {escape(drawn)}.</p>'


def timelines(group: Sequence[View], wl: str, sc: str, colors: dict[str, str] | None = None) -> str:
    """One collapsed ``<details>`` per cell of the leaderboard that kept its samples, in the leaderboard's order."""
    shown, _ = newest_per_config(group)
    shown = [v for v in shown if v.measured and v.samples_ns is not None and v.samples_ns.size]
    if not shown:
        return ""
    hib = shown[0].rec.metrics.headline.higher_is_better
    shown.sort(key=lambda v: (TIER[v.status], -v.rec.metrics.headline.value if hib else v.rec.metrics.headline.value))
    o = ['<div class="timelines">']
    for v in shown:
        flags = [c for c, _, _ in stability_findings(v.rec)]
        color = (colors or {}).get(v.backend, "")
        note = "".join(f' <span class="flag">{"drift" if c == "stability.drift" else "imprecise"}</span>'
                       for c in flags)
        o.append(f'<details class="timeline" id="tl-{slug(wl, sc, *v.config)}" data-status="{v.status}">'
                 f"<summary>Latency over time: {escape(v.config_label())} · {v.samples_ns.size:,} queries"
                 f"{'' if v.status == 'VALID' else f' · {v.status}'}{note}</summary>"
                 f'<figure class="plot">{timeline_chart(v, wl, sc, color)}</figure></details>')
    o.append("</div>")
    return "".join(o)
