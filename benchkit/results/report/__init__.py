"""``benchkit report``: one self-contained HTML file from result records.

Everything is inline - CSS, a few lines of JavaScript (sorting tables, switching a leaderboard's baseline), and
SVG charts drawn in Python (:mod:`benchkit.results.report.svg`) - so the file works offline, from a CI artifact
or an e-mail attachment, and prints. Sections:

* a leaderboard per workload and scenario (newest record of each backend / precision / batch / load), sortable
  by any column within its tier (INVALID and FAILED rows, marked with their reasons, never above VALID ones).
  Each headline has its 95 % interval from the record's own samples, with its relative half-width and any
  ``stability.headline`` / ``stability.drift`` finding beside it; a ratio to a baseline row the reader picks
  (above 1 is better, with the ratio's interval); how many runs exist and their headlines' mean and range
  (:mod:`.leaderboard`, figures in :mod:`.intervals`);
* latency CDF per backend, from the raw samples, and each cell's latency over time in issue order (collapsed;
  down-sampled keeping every bucket's maximum, so stalls stay visible), with its p50 and p99;
* throughput vs batch size, per workload; latency vs load (Server records at several ``target_qps``);
  throughput vs latency (Offline records at several ``concurrency``: calls kept in flight);
* a roofline: achieved FLOP/s against arithmetic intensity, with each device's compute peak and memory roof;
* run-to-run variance of each cell measured in several runs or repeat sessions, beside each run's own
  precision (:mod:`.charts`).

A chart without data says so ("no data: ...") instead of drawing an empty frame. A CV warning is shown only
where ``stats.stability_warning`` still gives one. Reads records only; never touches a backend.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timezone
from html import escape
from pathlib import Path

from benchkit.results.report.charts import (latency_vs_load, roofline, throughput_vs_batch, throughput_vs_latency,
                                           variance)
from benchkit.results.report.generative import generative
from benchkit.results.report.leaderboard import cdf, leaderboard, timelines
from benchkit.results.report.views import ReportError, View, backend_colors, load_views, slug, views_of

REPORT_FORMAT_VERSION = 2  # 2: headline intervals, ratio to a baseline, latency over time; 1: first version
# (the page carries it in <meta name="benchkit-report">)

_CSS = """
:root { --fg:#1b1b1b; --muted:#5f6368; --line:#d8dadc; --bad:#B00020; --good:#0a7d32; --bg:#fff; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg);
       margin: 0 auto; max-width: 1400px; padding: 16px 24px 48px; }
h1 { font-size: 22px; margin: 8px 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 6px; } .meta, .note, .nodata { color: var(--muted); }
.nodata { font-style: italic; padding: 10px; border: 1px dashed var(--line); display: inline-block; }
nav a { margin-right: 14px; } .cell { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.cell > div { flex: 1 1 100%; overflow-x: auto; }
td.nowrap { white-space: nowrap; } td.small { font-size: 12px; color: var(--muted); max-width: 240px; }
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
svg.chart .reflabel { font-size: 10px; paint-order: stroke; stroke: #fff; stroke-width: 3px; }
svg.chart circle.pt:hover { r: 6; } svg.chart[data-kind=timeline] path.line { stroke-width: 1; }
ul.warnings li { color: #9a6700; }
td .sub { display: block; font-size: 11px; color: var(--muted); } td.iv .none { color: var(--muted); }
td.iv, td.ratio { cursor: help; } td.ratio .rv { font-weight: 600; }
td.ratio.better .rv { color: var(--good); } td.ratio.worse .rv { color: var(--bad); }
td.ratio.base .rv { color: var(--muted); }
.flag { font-size: 10px; font-weight: 600; color: #9a6700; border: 1px solid #d4a72c; border-radius: 3px;
        padding: 0 4px; }
.flag.reason { color: #fff; background: var(--bad); border-color: var(--bad); }
.baseline-pick { margin: 4px 0; font-size: 13px; } .baseline-pick select { font: inherit; }
.timelines { margin-top: 4px; } details.timeline { margin: 2px 0; }
details.timeline > summary { cursor: pointer; color: #0b57d0; font-size: 13px; }
details.timeline[data-status=INVALID] > summary { color: var(--bad); }
@media print { nav, .baseline-pick { display: none; } }
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
      /* A leaderboard sorts within its tier: VALID, then INVALID, then FAILED, whatever the column. */
      var ta = +(a.getAttribute('data-tier') || 0), tb = +(b.getAttribute('data-tier') || 0);
      if (ta !== tb) { return ta - tb; }
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
  /* Ratio to a baseline: the report computed every row's figures for every baseline (data-ratios); this swaps
     in the chosen one, as text, so nothing in the data becomes markup. */
  Array.prototype.forEach.call(document.querySelectorAll('select.baseline'), function (sel) {
    var table = document.getElementById(sel.getAttribute('data-table'));
    sel.addEventListener('change', function () {
      Array.prototype.forEach.call(table.tBodies[0].rows, function (tr) {
        var cell = tr.querySelector('td.ratio');
        var r = JSON.parse(tr.getAttribute('data-ratios') || '{}')[sel.value] ||
                {t: '\u2013', c: '', s: '', k: '', title: 'no measured row'};
        cell.querySelector('.rv').textContent = r.t;
        cell.querySelector('.ci').textContent = r.c;
        cell.setAttribute('data-sort', r.s);
        cell.setAttribute('title', r.title);
        cell.className = ('num ratio ' + r.k).trim();
      });
    });
  });
})();
"""


def build_html(views: Sequence[View], title: str | None = None, generated_at: datetime | None = None,
               baseline: str | None = None) -> str:
    """The whole page, as one string. ``baseline``: the backend id each leaderboard's ratios start from (else the
    top-ranked row's); the reader can pick another in the page."""
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
    colors = backend_colors(views)  # one colour per backend in every chart
    keys = sorted(groups, key=lambda k: (k[0], order.get(k[1], 9)))

    body = [f"<h1>{escape(title)}</h1>",
            f'<p class="meta">{len(views)} record(s), {n_valid} VALID, {len(views) - n_valid} INVALID or failed · '
            f"spec(s) {escape(', '.join(specs))} · {escape('; '.join(systems))} · generated "
            f"{when.strftime('%Y-%m-%d %H:%M UTC')} by benchkit {escape(__version__)}</p>",
            '<nav><a href="#leaderboards">Leaderboards</a><a href="#throughput-batch">Throughput vs batch</a>'
            '<a href="#latency-load">Latency vs load</a><a href="#throughput-latency">Throughput vs latency</a>'
            + ('<a href="#generative">Generation</a>' if any(v.measured and v.rec.metrics.tokens is not None
                                                             for v in views) else "")
            + '<a href="#roofline">Roofline</a><a href="#variance">Run-to-run variance</a></nav>']
    if warnings:
        body.append('<ul class="warnings">' + "".join(f"<li>{escape(w)}</li>" for w in warnings) + "</ul>")
    body.append('<h2 id="leaderboards">Leaderboards and latency CDFs</h2>'
                '<p class="note">Newest record of each backend / precision / batch (/ load); click a column to '
                "sort. INVALID rows are marked in red with their reasons, never ranked, and never sorted above a "
                "VALID row. Beside each headline: its 95% interval from the run's own samples (hover for the "
                "method) and how far it reaches (±, relative); <i>imprecise</i> and <i>drift</i> mark the "
                "record's own findings. Within-run intervals ignore run-to-run variation: the runs column gives "
                "the spread of a configuration's runs, and a ratio's interval covers it. Each cell's latency over "
                "time (in issue order) is under its table.</p>")
    for wl, sc in keys:
        g = groups[(wl, sc)]
        body.append(f'<section class="cell" id="{slug("cell", wl, sc)}"><div><h3>{escape(wl)} · {escape(sc)}</h3>'
                    f"{leaderboard(g, wl, sc, baseline)}</div><div>{cdf(g, wl, sc, colors)}</div>"
                    + (f"<div>{tl}</div>" if (tl := timelines(g, wl, sc, colors)) else "") + "</section>")
    body.append(f'<h2 id="throughput-batch">Throughput vs batch size</h2>{throughput_vs_batch(views, colors)}')
    body.append(f'<h2 id="latency-load">Latency vs load</h2>{latency_vs_load(views, colors)}')
    body.append(f'<h2 id="throughput-latency">Throughput vs latency (calls in flight)</h2>'
                f"{throughput_vs_latency(views, colors)}")
    if any(v.measured and v.rec.metrics.tokens is not None for v in views):  # only where there are any
        body.append(f'<h2 id="generative">Generation: tokens</h2>{generative(views)}')
    body.append(f'<h2 id="roofline">Roofline</h2>{roofline(views, colors)}')
    body.append(f'<h2 id="variance">Run-to-run variance</h2>{variance(views, colors)}')
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="benchkit {escape(__version__)}">'
        f'<meta name="benchkit-report" content="{REPORT_FORMAT_VERSION}">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>\n<body>\n" + "\n".join(body)
        + f"\n<script>{_JS}</script>\n</body></html>\n"
    )


def write_report(paths: Sequence[str | Path], out: str | Path, title: str | None = None,
                 baseline: str | None = None) -> Path:
    """Read records (files or directories) and write the report to ``out``."""
    from benchkit.errors import WriteError
    from benchkit.results.records import write_atomic

    html = build_html(load_views(paths), title, baseline=baseline)
    out = Path(out)
    try:
        write_atomic(out, html)
    except WriteError:
        raise  # says the path and why
    except OSError as e:
        raise ReportError(f"{out}: cannot write the report ({e})") from None
    return out


__all__ = ["REPORT_FORMAT_VERSION", "ReportError", "View", "build_html", "load_views", "views_of", "write_report"]
