"""Tables and panels the commands print, on one console and one set of number formatters (benchkit._format)."""

from __future__ import annotations


from benchkit._format import fmt_bytes, fmt_ns, fmt_rate, term_text


def console(stderr: bool = False):
    from rich.console import Console

    con = Console(stderr=stderr, highlight=False)
    if not con.is_terminal:
        con = Console(stderr=stderr, highlight=False, width=piped_width())
    return con


def piped_width() -> int:
    """Columns for output that is not a terminal: ``COLUMNS`` when set, else the terminal's when there is one
    behind another stream, else 160 (a CI log would otherwise be folded at rich's 80)."""
    import os
    import shutil

    if os.environ.get("COLUMNS", "").isdigit():
        return max(40, int(os.environ["COLUMNS"]))
    for fd in (2, 1, 0):
        try:
            return max(40, os.get_terminal_size(fd).columns)
        except OSError:
            continue
    return shutil.get_terminal_size((160, 24)).columns


def peak_table(peaks) -> None:
    from rich.table import Table

    t = Table(title="peak Server throughput (highest VALID target_qps)", title_justify="left")
    for col in ("cell", "peak target_qps", "completed samples/s", "p99 at peak", "probes", "bracket", "converged"):
        t.add_column(col, justify="left" if col == "cell" else "right")
    for p in peaks:
        rec = p.peak_record
        valid_rates = [q for q, ok in p.probes if ok]
        invalid_above = [q for q, ok in p.probes if not ok and (p.peak_qps is None or q > p.peak_qps)]
        bracket = f"{p.peak_qps:g} .. {min(invalid_above):g}" if p.peak_qps is not None and invalid_above else "-"
        t.add_row(
            term_text(p.cell_id),
            ("[red]bound unattainable[/]" if p.unattainable else "[red]none VALID[/]") if p.peak_qps is None
            else f"{p.peak_qps:,.4g}",
            fmt_rate(rec.metrics.throughput_per_s) if rec and rec.metrics else "-",
            fmt_ns(rec.metrics.latency_ns.p99) if rec and rec.metrics else "-",
            f"{len(p.probes)} ({len(valid_rates)} VALID)",
            bracket,
            "yes" if p.converged else ("answered" if p.unattainable else "[yellow]no (raise --max-probes)[/]"),
        )
    con = console()
    con.print(t)
    for p in peaks:
        if p.unattainable:
            con.print(f"[red]unattainable[/] {p.cell_id}: {p.unattainable}")


def summary_table(recs) -> None:
    from rich.table import Table

    t = Table(title="benchkit results", title_justify="left")
    numeric = ("batch", "headline", "p50", "p99", "samples/s", "CV", "peak mem")
    for col in ("workload", "backend", "scenario", "precision", "batch", "headline", "p50", "p99", "samples/s", "CV",
                "peak mem", "division", "validity"):
        t.add_column(col, justify="right" if col in numeric else "left")
    for r in recs:
        wl = term_text(r.spec["workload"]["name"])
        be = term_text(r.spec["backend"].get("label") or r.spec["backend"]["name"])
        m = r.metrics
        if m is None:
            t.add_row(wl, be, r.scenario.kind, "-", "-", "-", "-", "-", "-", "-", fmt_memory(r.memory), "-",
                      f"[red]FAILED[/] ({r.error.phase if r.error else '?'})")
            continue
        h = m.headline
        head = f"{h.name.removeprefix('latency_').removesuffix('_ns')} {fmt_ns(h.value)}" if h.unit == "ns" \
            else fmt_rate(h.value)
        valid = "[green]VALID[/]" if r.validity.valid else "[red]INVALID[/]"
        if r.validity.warnings:
            valid += " [yellow](!)[/]"
        t.add_row(wl, be, r.scenario.kind, r.backend.precision if r.backend else "-",
                  str(r.workload.effective_batch_size) if r.workload else "-", head, fmt_ns(m.latency_ns.p50),
                  fmt_ns(m.latency_ns.p99), fmt_rate(m.throughput_per_s), f"{m.latency_ns.cv:.1%}",
                  fmt_memory(r.memory), r.division.name if r.division else "-", valid)
    con = console()
    con.print(t)
    err = console(stderr=True)
    for r in recs:
        for reason in r.validity.reasons:
            con.print(f"[red]INVALID[/] {term_text(r.cell_id)}: {term_text(reason)}")
        for w in r.validity.warnings:  # doubts, not results: stderr, so a script reading stdout gets the table
            err.print(f"[yellow](!)[/] {term_text(r.cell_id)}: {term_text(w)}")
        if r.division and r.division.name == "open" and r.division.requested != "closed":
            con.print(f"open {term_text(r.cell_id)}: " + term_text("; ".join(r.division.reasons)))


def fmt_memory(mem) -> str:
    """Peak host memory of a cell, and the adapter's peak device memory where it reports one."""
    if mem is None or mem.peak_rss_bytes is None:
        return "-"
    text = fmt_bytes(mem.peak_rss_bytes)
    if mem.peak_device_bytes is not None:
        text += f" (dev {fmt_bytes(mem.peak_device_bytes)})"
    return text


def repeats_table(recs) -> None:
    """Between-session spread beside the within-run spread, one row per repeated cell."""
    from rich.table import Table

    rows = {}
    for r in recs:
        if r.repeat is not None and r.repeat.between is not None:
            rows.setdefault(r.cell_id, r.repeat.between)
    if not rows:
        return
    t = Table(title="repetitions: spread between sessions (fresh processes) vs within each run", title_justify="left")
    for col in ("cell", "sessions", "headline", "mean", "min", "max", "between-session CV", "within-run CV (median)"):
        t.add_column(col, justify="left" if col in ("cell", "headline") else "right")
    for cell_id, b in rows.items():
        fmt = fmt_ns if b.unit == "ns" else fmt_rate
        within = sorted(c for c in b.within_run_cv if c is not None)
        median = (within[(len(within) - 1) // 2] + within[len(within) // 2]) / 2 if within else None
        t.add_row(cell_id, f"{sum(v is not None for v in b.values)}/{len(b.values)}", b.metric, fmt(b.mean),
                  fmt(b.min), fmt(b.max), "-" if b.cv is None else f"{b.cv:.2%}",
                  "-" if median is None else f"{median:.2%}")
    console().print(t)


def power_table(recs) -> None:
    from rich.markup import escape
    from rich.table import Table

    rows = [r for r in recs if r.power is not None and r.power.available]
    if not rows:
        reasons = {r.power.reason for r in recs if r.power is not None and r.power.reason}
        for why in sorted(reasons):
            console(stderr=True).print(escape(f"power: unavailable ({why})"))
        return
    t = Table(title="power (mean over the measured run; idle baseline before the suite)", title_justify="left")
    for col in ("cell", "power", "idle", "J/inference", "samples/s/W", "meters"):
        t.add_column(col, justify="left" if col in ("cell", "meters") else "right")
    for r in rows:
        p = r.power
        t.add_row(r.cell_id, f"{p.avg_power_w:.1f} W", "-" if p.idle_power_w is None else f"{p.idle_power_w:.1f} W",
                  f"{p.energy_per_inference_j:.3g}", "-" if p.samples_per_s_per_w is None else
                  f"{p.samples_per_s_per_w:,.2f}", escape(", ".join(f"{d.meter}/{d.domain}" for d in p.domains)))
    console().print(t)


_VERDICT_STYLE = {"regression": "bold red", "improvement": "green", "small change": "yellow", "no change": "dim",
                  "no samples": "dim", "no interval": "dim", "slower": "bold", "faster": "bold", "more memory": "",
                  "less memory": ""}


def compare_table(result, cand: str, base: str, to_terminal: bool) -> str:
    """The rich table; printed directly when going to the terminal, else rendered to text."""
    from rich.table import Table

    from benchkit._format import fmt_value
    from benchkit.results.compare import verdict_word

    conf = f"{result.settings.confidence:.0%}"
    t = Table(title=f"compare: {term_text(cand)} / {term_text(base)}", title_justify="left")
    for col in ("workload", "scenario", "precision", "batch", "backend", "runs", "metric", "base", "cand",
                f"ratio ({conf} CI)", "change", "verdict"):
        t.add_column(col, justify="right" if col in ("batch", "runs", "base", "cand", "change")
                     or col.startswith("ratio") else "left", no_wrap=col in ("runs", "verdict"))
    for p in result.pairs:
        k = p.key
        scen = k.scenario + (f" @{k.target_qps:g}qps" if k.target_qps is not None else
                             f" @c{k.concurrency}" if k.concurrency is not None else "")
        be = p.base.backend if p.base.backend == p.cand.backend else f"{p.base.backend}→{p.cand.backend}"
        # How many records each side pooled: one run a side leaves between-run variation to a default.
        runs = f"{len(p.runs('base'))}/{len(p.runs('cand'))}"
        # An INVALID side is compared but never ranked silently: the mark is on every row of its pair.
        invalid = " [bold red]INVALID " + ("base+cand" if len(p.invalid) == 2 else p.invalid[0]) + "[/]" \
            if p.invalid else ""
        for m in p.metrics:
            ratio = f"{m.ratio:.3f}" if m.ci_low is None else f"{m.ratio:.3f} ({m.ci_low:.3f}-{m.ci_high:.3f})"
            word = verdict_word(p, m)
            style = _VERDICT_STYLE[word]
            t.add_row(term_text(k.workload), term_text(scen), term_text(k.precision), str(k.batch), term_text(be),
                      runs, term_text(m.metric) + (" *" if m.headline else ""),
                      fmt_value(m.base, m.unit), fmt_value(m.cand, m.unit), ratio, f"{m.change * 100:+.1f}%",
                      (f"[{style}]{word}[/]" if style else word) + invalid)
    con = console() if to_terminal else None
    if con is None:
        import io

        from rich.console import Console

        con = Console(record=True, width=piped_width(), file=io.StringIO(), highlight=False)
    err = console(stderr=True)
    for w in result.warnings:  # on stderr, never inside the table a script reads
        err.print(f"[yellow]warning:[/] {term_text(w)}")
    con.print(t)
    if not result.pairs:
        con.print("no matching records (matched by workload, scenario, precision and batch)")
    counts = ", ".join(f"{n} {v}" for v, n in result.shown_counts().items() if n)
    invalid = result.invalid_pairs()
    if invalid:
        con.print(f"[bold red]{len(invalid)} pair(s) INVALID[/]: compared, not results to rank (the record's "
                  "reasons are in the warnings).")
    con.print(f"{len(result.pairs)} pair(s): {counts or 'nothing compared'}. * headline metric; runs: records pooled "
              "base/cand. A verdict needs the "
              f"interval to exclude 1; regression/improvement also need the change beyond "
              f"{result.settings.threshold:.0%} (or the --fail-on threshold).")
    return "" if to_terminal else con.export_text()


def show_hardening(con, r) -> None:
    """System description extras, power, stability and repetition lines of `benchkit show`."""
    from rich.markup import escape

    s = r.system
    who = ", ".join(f"{k} {v}" for k, v in (("submitter", s.submitter), ("system", s.system_name),
                                             ("status", s.status), ("cooling", s.cooling)) if v)
    if who:
        con.print(f"          {escape(who)}")
    for a in s.accelerators:
        mem = f", {fmt_bytes(a.memory_bytes)}" if a.memory_bytes else ""
        con.print(escape(f"accel     {a.model}{mem}{', driver ' + a.driver if a.driver else ''} ({a.source})"))
    if r.power is not None:
        p = r.power
        if p.available:
            idle = f", idle {p.idle_power_w:.1f} W" if p.idle_power_w is not None else ""
            ppw = f", {p.samples_per_s_per_w:,.2f} samples/s/W" if p.samples_per_s_per_w else ""
            con.print(escape(f"power     {p.avg_power_w:.1f} W{idle}, {p.energy_per_inference_j:.3g} J/inference"
                             f"{ppw} ({', '.join(f'{d.meter}/{d.domain}' for d in p.domains)})"))
        else:
            con.print(escape(f"power     unavailable: {p.reason}"))
    if r.stability is not None and r.stability.flags:
        for f in r.stability.flags:
            con.print(f"  [yellow]stability:[/] {escape(f)}")
    if r.repeat is not None:
        b = r.repeat.between
        spread = f"; between sessions CV {b.cv:.2%}" if b is not None and b.cv is not None else ""
        con.print(f"repeat    session {r.repeat.index} of {r.repeat.count}{spread}")


def print_problems(con, store) -> None:
    probs = store.problems()
    for path, why in probs[:5]:
        con.print(f"[yellow]skipped[/] {term_text(why)}")
    if len(probs) > 5:
        con.print(f"[yellow]skipped[/] {len(probs) - 5} more file(s) that are not readable records")
