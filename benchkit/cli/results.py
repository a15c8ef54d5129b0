"""Commands that read records: show, compare, results, export, report."""

from __future__ import annotations

import json
import os
import sys

from benchkit._format import fmt_bytes, fmt_ns, fmt_rate, term_text
from benchkit.cli.tables import (
    compare_table,
    console,
    fmt_memory,
    print_problems,
    show_hardening,
)


def cmd_show(args) -> int:
    from rich.table import Table

    from benchkit.results import records

    r = records.load(args.record)
    con = console()
    status = "[green]VALID[/]" if r.validity.valid else "[red]INVALID[/]"
    con.print(f"[bold]{term_text(r.cell_id)}[/]  {status}  (schema {r.schema_version}, benchkit {r.benchkit_version}, "
              f"engine {r.engine}, run {r.run_id}, {r.started_at.isoformat()})")
    if r.probe is not None:
        p = r.probe
        con.print(f"probe     {p.index} of the peak search {p.search}: {p.phase} at target_qps {p.target_qps:g} "
                  f"(VALID up to {p.lower_qps if p.lower_qps is not None else '-'}, "
                  f"INVALID from {p.upper_qps if p.upper_qps is not None else '-'})")
    for reason in r.validity.reasons:
        con.print(f"  [red]reason:[/] {term_text(reason)}")
    for w in r.validity.warnings:
        con.print(f"  [yellow]warning:[/] {term_text(w)}")
    if r.workload:
        w = r.workload
        con.print(f"workload  {term_text(w.name)} ({w.source}{', ' + w.catalog + '/' + w.variant if w.catalog else ''}) "
                  f"sha256 {w.model_sha256[:16]}… batch {w.effective_batch_size} {w.graph_precision}")
    if r.backend:
        b = r.backend
        con.print(f"backend   {term_text(b.id)}: {term_text(b.name)} {term_text(b.version)} on {term_text(b.device)}, "
                  f"precision {b.precision} "
                  f"(claimed {b.claimed_precision})")
        if b.endpoint is not None:
            e = b.endpoint
            con.print(f"endpoint  {e.protocol} {e.url} model {e.model}" + (f" version {e.version}" if e.version else "")
                      + f", server {e.server or '?'}, model sha256 "
                      + (f"{e.model_sha256[:16]}…" if e.model_sha256 else "not reported"))
    if r.division:
        d = r.division
        con.print(f"division  {d.name} (rules {d.rules_version}"
                  + (f", requested {d.requested}" if d.requested != "auto" else "")
                  + (f", compared with {d.standard_workload}" if d.standard_workload else "") + ")")
        for reason in d.reasons:
            con.print(f"  open: {reason}")
    if r.accuracy:
        a = r.accuracy
        verdict = {True: "[green]passed[/]", False: "[red]FAILED[/]", None: "[yellow]not checked[/]"}[a.passed]
        con.print(f"accuracy  {verdict} ({a.precision} tolerances, {a.samples} call(s) vs {a.reference})"
                  + (f": {a.skipped}" if a.skipped else ""))
        for failure in a.failures:
            con.print(f"  [red]failure:[/] {failure}")
        ta = a.token_agreement
        if ta is not None:
            con.print(f"  token agreement {ta.mean_agreement:.3f} (min {ta.min_agreement:g}) over {ta.requests} "
                      f"requests' first {ta.tokens} tokens, {ta.exact_requests} exact")
    if r.audits:
        for name in type(r.audits).model_fields:
            audit = getattr(r.audits, name)
            if audit is not None:
                con.print(f"audit     {name}: {'[green]passed[/]' if audit.passed else '[red]FAILED[/]'}: {audit.summary}")
    s = r.system
    con.print(f"system    {s.cpu_model}, {s.cpu_count} CPUs, {fmt_bytes(s.memory_bytes)}, {s.os}, Python {s.python}")
    con.print(f"scenario  {r.scenario.kind} " + ", ".join(f"{k}={v}" for k, v in r.scenario.settings.items()
                                                        if v is not None))
    if r.metrics:
        m = r.metrics
        t = Table(title="metrics", title_justify="left")
        t.add_column("metric")
        t.add_column("value", justify="right")
        lat = m.latency_ns
        for key in ("min", "p50", "p90", "p95", "p99", "p999", "max", "mean", "stdev"):
            t.add_row(f"latency {key}", fmt_ns(getattr(lat, key)))
        t.add_row("CV", f"{lat.cv:.2%}")
        t.add_row("outliers (low/high)", f"{lat.outliers_low}/{lat.outliers_high}")
        t.add_row("queries / samples", f"{m.count:,} / {m.sample_count:,}")
        t.add_row("throughput", fmt_rate(m.throughput_per_s))
        t.add_row("duration", fmt_ns(m.duration_ns))
        t.add_row("first inference", fmt_ns(m.first_inference_ns))
        t.add_row("load/compile", fmt_ns(m.load_ns))
        t.add_row("stop reason", m.stop_reason)
        if r.memory is not None and r.memory.peak_rss_bytes is not None:
            t.add_row(f"peak memory ({r.memory.scope})", fmt_memory(r.memory))
        h = m.headline
        t.add_row(f"[bold]headline {h.name}[/]", fmt_ns(h.value) if h.unit == "ns" else fmt_rate(h.value))
        es = m.early_stopping
        if es is not None:
            state = "passed" if es.passed else "[red]not satisfied[/]"
            if es.estimate_ns is not None:
                t.add_row(f"early stopping p{es.percentile:g} estimate", f"{fmt_ns(es.estimate_ns)} ({state})")
            elif es.target_latency_ns is not None:
                t.add_row("early stopping", f"{es.overlatency_count} of {es.count:,} over {fmt_ns(es.target_latency_ns)}; "
                          f"needs {es.queries_needed:,} queries ({state})")
            else:
                t.add_row("early stopping", f"needs {es.queries_needed:,} queries ({state})")
        if m.in_flight is not None:
            f = m.in_flight
            t.add_row("calls in flight (asked / achieved)", f"{f.concurrency} / {f.achieved_mean:.2f} ({f.issue_mode})")
        if m.tokens is not None:
            _token_rows(t, m.tokens)
        if m.issue_lateness_ns is not None:
            late = m.issue_lateness_ns
            t.add_row("issue lateness p50/p99/max", f"{fmt_ns(late.p50)} / {fmt_ns(late.p99)} / {fmt_ns(late.max)}")
        for k, v in m.extra.items():
            t.add_row(term_text(k), term_text(v))
        con.print(t)
    show_hardening(con, r)
    if r.error:
        con.print(f"[red]error[/] in {r.error.phase}: {term_text(r.error.type)}: {term_text(r.error.message, lines=True)}")
    return 0


def _token_rows(t, tok) -> None:
    """A generative record's token figures, under its metrics table."""
    t.add_row("[bold]output tokens/s[/]", fmt_rate(tok.output_tokens_per_s, " tokens/s"))
    t.add_row("requests/s", fmt_rate(tok.requests_per_s))
    t.add_row(f"requests ({tok.mode}) / tokens in / out", f"{tok.requests:,} / {tok.input_tokens:,} / "
              f"{tok.output_tokens:,}")
    for label, st, bound in (("TTFT", tok.ttft_ns, tok.target_ttft_ns), ("TPOT", tok.tpot_ns, tok.target_tpot_ns),
                             ("inter-token", tok.itl_ns, None)):
        if st is not None:
            t.add_row(f"{label} p50/p90/p99/max", f"{fmt_ns(st.p50)} / {fmt_ns(st.p90)} / {fmt_ns(st.p99)} / "
                      f"{fmt_ns(st.max)}" + (f" (bound {fmt_ns(bound)})" if bound else ""))
    for label, es in (("TTFT", tok.early_stopping_ttft), ("TPOT", tok.early_stopping_tpot)):
        if es is not None:
            state = "passed" if es.passed else "[red]not satisfied[/]"
            t.add_row(f"early stopping {label}", f"{es.overlatency_count} of {es.count:,} over "
                      f"{fmt_ns(es.target_latency_ns)}; needs {es.queries_needed:,} ({state})")


def cmd_compare(args) -> int:
    from benchkit.results.compare import (
        CompareSettings,
        compare_ab,
        compare_paths,
        parse_ab,
        parse_fail_on,
        parse_percent,
        split_paths,
    )

    ab = parse_ab(args.ab) if args.ab is not None else None
    base, cand = ([f"{ab[0]} in", *args.paths], [ab[1]]) if ab else split_paths(args.paths)
    settings = CompareSettings(
        confidence=args.confidence,
        resamples=args.resamples,
        seed=args.seed,
        threshold=parse_percent(args.threshold, "--threshold"),
        fail_on=parse_fail_on(args.fail_on) if args.fail_on is not None else {},
    )
    result = compare_ab(args.paths, *ab, settings) if ab else compare_paths(base, cand, settings)
    if args.format == "table":
        text = compare_table(result, " ".join(cand), " ".join(base), args.output is None)
    elif args.format == "markdown":
        text = result.to_markdown()
    else:
        text = result.to_json() + "\n"
    if args.output is not None:
        from benchkit._fsutil import write_atomic

        write_atomic(args.output, text)
    elif text:
        sys.stdout.write(text)
    failures = result.failures()
    if failures:
        for p, m in failures:
            print(f"benchkit: regression: {p.key.label()} {m.metric} {m.change * 100:+.1f}% "
                  f"(CI {m.ci_low:.3f}-{m.ci_high:.3f}) beyond {m.threshold:.0%}", file=sys.stderr)
        return 1
    return 0


def cmd_results(args) -> int:
    from benchkit.results.store import open_store, parse_when

    with open_store(args.root, rebuild=args.rebuild) as store:
        if args.results_command == "list":
            runs = store.runs()
            if args.format == "json":
                print(json.dumps(runs, indent=1))
                return 0
            if args.format == "csv":
                _write_csv(runs, ["started_at", "run_id", "spec_name", "records", "valid", "invalid", "backends",
                                  "workloads"])
                return 0
            from rich.table import Table

            t = Table(title=f"runs in {args.root}", title_justify="left")
            for col in ("started (UTC)", "run", "spec", "records", "valid", "invalid", "backends", "workloads"):
                t.add_column(col, justify="right" if col in ("records", "valid", "invalid") else "left")
            for r in runs:
                t.add_row(r["started_at"][:19].replace("T", " "), term_text(r["run_id"]), term_text(r["spec_name"]),
                          str(r["records"]), str(r["valid"]), f"[red]{r['invalid']}[/]" if r["invalid"] else "0",
                          term_text(", ".join(r["backends"])), term_text(", ".join(r["workloads"])))
            con = console()
            con.print(t)
            print_problems(con, store)
            return 0
        rows = store.query(
            workload=args.workload, scenario=args.scenario, precision=args.precision, backend=args.backend,
            spec=args.spec, run_id=args.run_id,
            since=parse_when(args.since, "--since") if args.since else None,
            until=parse_when(args.until, "--until") if args.until else None,
            valid=True if args.valid else (False if args.invalid else None), limit=args.limit,
        )
        if args.paths:
            sys.stdout.write("".join(f"{r.path}\n" for r in rows))
            return 0
        if args.format == "json":
            print(json.dumps([r.to_dict() for r in rows], indent=1))
            return 0
        if args.format == "csv":
            from dataclasses import fields

            from benchkit.results.store import IndexedRecord

            _write_csv([r.to_dict() for r in rows], [f.name for f in fields(IndexedRecord)])
            return 0
        from rich.table import Table

        from benchkit._format import fmt_ns, fmt_value

        t = Table(title=f"{len(rows)} record(s) in {args.root}", title_justify="left")
        for col in ("started (UTC)", "workload", "backend", "scenario", "precision", "batch", "headline", "p50",
                    "p99", "validity", "path"):
            t.add_column(col, justify="right" if col in ("batch", "headline", "p50", "p99") else "left",
                         overflow="fold")
        for r in rows:
            head = "-" if r.headline_value is None else fmt_value(r.headline_value, r.headline_unit or "")
            scen = r.scenario + (f" @{r.target_qps:g}qps" if r.target_qps is not None else
                                 f" @c{r.concurrency}" if r.concurrency is not None else "")
            valid = "[green]VALID[/]" if r.valid else (f"[red]FAILED[/] ({r.error_phase})" if r.error_phase
                                                        else "[red]INVALID[/]")
            t.add_row(r.started_at.strftime("%Y-%m-%d %H:%M:%S"), term_text(r.workload or "-"),
                      term_text(r.backend or "-"), term_text(scen),
                      r.precision or "-", str(r.batch or "-"), head, fmt_ns(r.p50_ns), fmt_ns(r.p99_ns), valid,
                      term_text(os.path.relpath(r.path)))
        con = console()
        con.print(t)
        print_problems(con, store)
    return 0


def _write_csv(rows: list[dict], columns: list[str]) -> None:
    """RFC 4180 CSV on stdout: lists joined with ';', None as an empty field, the header always written."""
    import csv

    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow(["" if row.get(c) is None else ";".join(map(str, row[c])) if isinstance(row.get(c), list)
                    else row[c] for c in columns])


def cmd_export(args) -> int:
    from benchkit.results.export import ExportError, export_pytest_benchmark, save_to_storage

    if args.output is None and args.storage is None:
        raise ExportError("export pytest-benchmark: give -o FILE and/or --storage DIR")
    result = export_pytest_benchmark(args.records, args.include_data, args.include_invalid)
    for w in result.warnings:
        print(f"benchkit: warning: {w}", file=sys.stderr)
    n = len(result.document["benchmarks"])
    if args.output is not None:
        from benchkit.results.records import write_atomic

        write_atomic(args.output, json.dumps(result.document, indent=4) + "\n")
        print(f"{n} benchmark(s) -> {args.output}")
    if args.storage is not None:
        print(f"{n} benchmark(s) -> {save_to_storage(result.document, args.storage, args.name)}")
    return 0


def cmd_report(args) -> int:
    from benchkit.results.report import write_report

    out = write_report(args.results, args.output, args.title, baseline=args.baseline)
    print(f"report {out} ({out.stat().st_size:,} bytes; self-contained, opens offline)")
    return 0
