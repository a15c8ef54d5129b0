"""The report's generative section: token latencies (TTFT, TPOT, inter-token) per record, and tokens/s, TTFT and
TPOT against the offered load of Server-form runs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from html import escape

from benchkit._format import fmt_ns, fmt_rate
from benchkit.results.report.svg import PALETTE, Axis, Point, RefLine, Series, chart
from benchkit.results.report.views import View, fmt_count, nodata, td


def generative(views: Sequence[View]) -> str:
    gen = [v for v in views if v.measured and v.rec.metrics.tokens is not None]
    if not gen:
        return nodata("generative", "no generative records (kind: generative)")
    return _table(gen) + _vs_load(gen)


def _table(views: Sequence[View]) -> str:
    head = ("workload", "backend", "mode", "load", "tokens/s", "TTFT p50", "TTFT p90", "TTFT p99", "TPOT p50",
            "TPOT p90", "TPOT p99", "inter-token p99", "agreement", "validity")
    rows = []
    for v in sorted(views, key=lambda v: (v.workload, v.backend, v.target_qps or 0.0)):
        t = v.rec.metrics.tokens
        agree = v.rec.accuracy.token_agreement if v.rec.accuracy else None
        cells = [td(escape(v.workload)), td(escape(v.config_label(with_batch=False))), td(t.mode),
                 td(f"{v.target_qps:g} QPS" if v.target_qps else "all at once", sort=v.target_qps or 0),
                 td(fmt_rate(t.output_tokens_per_s), sort=t.output_tokens_per_s)]
        for st in (t.ttft_ns, t.tpot_ns):
            for key in ("p50", "p90", "p99"):
                val = getattr(st, key) if st is not None else None
                cells.append(td(fmt_ns(val) if val is not None else "-", sort=val if val is not None else ""))
        itl = t.itl_ns.p99 if t.itl_ns is not None else None
        cells.append(td(fmt_ns(itl) if itl is not None else "-", sort=itl or ""))
        cells.append(td(f"{agree.mean_agreement:.3f}" if agree else "-"))
        cells.append(td(v.status, cls="invalid" if v.status != "VALID" else ""))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return ('<table class="sortable" data-kind="generative-table"><thead><tr>'
            + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr></thead><tbody>" + "".join(rows)
            + "</tbody></table>")


def _vs_load(views: Sequence[View]) -> str:
    server = [v for v in views if v.target_qps is not None]
    if not server:
        return '<p class="note">no Server-form generative records: give target_qps several values (a load sweep) ' \
               "to draw tokens/s and token latencies against load.</p>"
    by_wl: dict[str, dict[tuple, dict[float, View]]] = defaultdict(lambda: defaultdict(dict))
    for v in server:
        g = by_wl[v.workload][(v.backend, v.precision)]
        if v.target_qps not in g or v.rec.started_at > g[v.target_qps].rec.started_at:
            g[v.target_qps] = v
    out = []
    for wl, groups in sorted(by_wl.items()):
        rate, lat = [], []
        bounds: dict[str, int] = {}
        for i, ((be, prec), pts) in enumerate(sorted(groups.items())):
            color = PALETTE[i % len(PALETTE)]
            invalid = any(v.status != "VALID" for v in pts.values())
            tag = " (has INVALID)" if invalid else ""
            rate.append(Series(f"{be} {prec}{tag}", [
                Point(q, v.rec.metrics.tokens.output_tokens_per_s,
                      f"{be} {prec} @ {q:g} QPS: {fmt_rate(v.rec.metrics.tokens.output_tokens_per_s, ' tokens/s')}, "
                      f"{v.status}") for q, v in sorted(pts.items())], color=color, hollow=invalid))
            for name, dashed in (("ttft", False), ("tpot", True)):
                ps = [Point(q, float(getattr(v.rec.metrics.tokens, f"{name}_ns").p99),
                            f"{be} {prec} @ {q:g} QPS: {name.upper()} p99 "
                            f"{fmt_ns(getattr(v.rec.metrics.tokens, f'{name}_ns').p99)}, {v.status}")
                      for q, v in sorted(pts.items()) if getattr(v.rec.metrics.tokens, f"{name}_ns") is not None]
                lat.append(Series(f"{be} {prec} {name.upper()} p99{tag}", ps, color=color, dashed=dashed,
                                  hollow=invalid))
                bound = next((getattr(v.rec.metrics.tokens, f"target_{name}_ns") for v in pts.values()), None)
                if bound:
                    bounds[name] = bound
        refs = [RefLine(f"{n.upper()} bound {fmt_ns(b)}", y=float(b), color="#B00020") for n, b in bounds.items()]
        x = Axis("offered load, target QPS", fmt=fmt_count)
        out.append('<figure class="plot">' + chart(rate, kind="tokens-load", title=f"Output tokens/s vs load: {wl}",
                                                   x=x, y=Axis("output tokens/s", fmt=fmt_count), y_min_zero=True)
                   + "</figure>")
        out.append('<figure class="plot">' + chart(lat, kind="token-latency-load",
                                                   title=f"TTFT (solid) and TPOT (dashed) p99 vs load: {wl}", x=x,
                                                   y=Axis("latency (log scale)", log=True, fmt=fmt_ns), refs=refs)
                   + "</figure>")
    return "".join(out)


__all__ = ["generative"]
