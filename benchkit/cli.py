"""Command line: thin commands over the library.

Exit codes: 0 success (for ``run``: every cell VALID); 1 a run finished but
some cell is INVALID or failed; 2 bad input (spec, record, option, model),
reported as one message naming the file and field, never a traceback;
130 interrupted (records already written are kept).

Start-up imports nothing heavy: pydantic, numpy and every runtime are
imported inside the command that needs them, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ._version import __version__
from .errors import BenchkitError

DEFAULT_OUT = "results"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="benchkit",
        description="Performance evaluation of AI accelerators: one spec, standard ONNX workloads, "
        "pluggable backends, comparable result records.",
        epilog="Exit codes: 0 ok, 1 some cell INVALID or failed, 2 bad input, 130 interrupted.",
    )
    p.add_argument("--version", action="version", version=f"benchkit {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run a spec's suite and write one record per cell")
    r.add_argument("spec", help="spec file (YAML/JSON), or the name of a standard spec such as ci-smoke")
    r.add_argument("--out", default=DEFAULT_OUT, help="results directory (default: %(default)s)")
    r.add_argument("--backend", action="append", default=[], metavar="NAME", help="only this backend (repeatable)")
    r.add_argument("--workload", action="append", default=[], metavar="NAME", help="only this workload (repeatable)")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="use the quick profile (CI: seconds per cell)")
    g.add_argument("--profile", choices=["quick", "standard", "mlperf", "certify"],
                   help="override the spec's run profile (certify: standard minimums, the compliance audits, "
                        "and stability flags make a record INVALID)")
    r.add_argument("--audit", action="store_true",
                   help="run the compliance audits after each cell (timed outputs, repeated input, alternate seed)")
    r.add_argument("--inline", action="store_true", help="run cells in this process (debugging; no crash isolation)")
    r.add_argument("--device-file", type=Path, metavar="YAML",
                   help="device descriptor (peak FLOP/s per precision) for roofline figures, for every backend")
    r.add_argument("--cache-dir", type=Path, help="built-workload cache (default: $BENCHKIT_CACHE_DIR or ~/.cache/benchkit)")
    r.add_argument("--engine", choices=["benchkit", "mlperf"], default="benchkit",
                   help="what drives the measurement: benchkit's own loops (default) or MLPerf LoadGen "
                   "(pip install 'benchkit[mlperf]'); both write the same record format")
    r.add_argument("--find-peak", action="store_true",
                   help="search each Server scenario for the highest target_qps that stays VALID, starting at its "
                   "target_qps; every probe is recorded")
    r.add_argument("--peak-tolerance", type=float, default=0.05, metavar="FRACTION",
                   help="--find-peak stops when the lowest INVALID rate is within this fraction above the highest "
                   "VALID one (default: %(default)s)")
    r.add_argument("--max-probes", type=int, default=12, metavar="N",
                   help="--find-peak runs at most N probes per Server scenario (default: %(default)s)")
    r.add_argument("--resume", nargs="?", const=True, default=False, metavar="RUN_DIR",
                   help="complete an interrupted run: only cells without a readable record run "
                        "(default RUN_DIR: the newest run of this spec under --out)")
    r.add_argument("--system-file", type=Path, metavar="YAML",
                   help="system description (submitter, system_name, status, cooling, notes) stored in every record")
    r.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="where cells run: this machine one by one (default), or as tasks on a Ray cluster")
    r.add_argument("--address", metavar="HOST:PORT|auto", help="Ray cluster to join (--executor ray; default: auto)")
    r.add_argument("--fleet", type=Path, metavar="YAML",
                   help="fleet file: Ray resources each backend's cells ask for (--executor ray; default: one core)")

    v = sub.add_parser("validate", help="check a spec (and the models it names) without running it")
    v.add_argument("spec")

    s = sub.add_parser("schema", help="print a JSON Schema, or with --markdown the reference page")
    s.add_argument("which", choices=["spec", "result"])
    s.add_argument("--markdown", action="store_true",
                   help="print the Markdown reference (every field: type, unit, default, description) instead")

    sub.add_parser("backends", help="list installed backend adapters, their versions and devices, and load failures")

    ca = sub.add_parser("check-adapter", help="run the conformance kit on a backend adapter (exit 1 if a check fails)")
    ca.add_argument("name", help="adapter name in the benchkit.backends entry-point group")
    ca.add_argument("--options", default="{}", metavar="JSON", help="adapter options as a JSON object")
    ca.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16", "int8", "mixed"],
                    help="precision the micro-workload runs claim (default: %(default)s)")
    ca.add_argument("--also-precision", action="append", default=[], metavar="P",
                    help="add a precision[P] check: gemm claimed at P must report P and meet P's tolerance")
    ca.add_argument("--workload", action="append", default=None, metavar="NAME",
                    help="only this micro-workload (repeatable; default: all)")
    ca.add_argument("--cycles", type=int, default=20, help="load/close cycles of the leak check (default: %(default)s)")
    ca.add_argument("--rss-limit-mib", type=float, default=64.0,
                    help="resident-memory growth allowed over the cycles (default: %(default)s)")
    ca.add_argument("--json", action="store_true", help="print the report as JSON")

    w = sub.add_parser("workloads", help="list the standard workload catalog; `workloads export` writes one to a file")
    w.add_argument("--details", action="store_true", help="build each model and show parameters, FLOPs and bytes")
    wsub = w.add_subparsers(dest="workloads_command", metavar="SUBCOMMAND")
    ex = wsub.add_parser("export", help="write a catalog workload to an ONNX file")
    ex.add_argument("name", help="catalog workload, e.g. resnet50-v1.5")
    ex.add_argument("-o", "--output", type=Path, required=True, help="ONNX file to write")
    ex.add_argument("--variant", default="fp32", help="fp32 | fp16 | int8 (default: %(default)s)")
    ex.add_argument("--batch", type=int, help="fix the batch dimension (default: left dynamic)")
    ex.add_argument("--dim", action="append", default=[], metavar="NAME=N", help="fix a named dynamic dimension")
    ex.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="builder parameter override")

    f = sub.add_parser("fleet", help="show a Ray cluster's nodes, what each advertises, and which cells of a spec "
                       "each can run")
    f.add_argument("spec", nargs="?", help="spec whose cells to place (optional)")
    f.add_argument("--address", metavar="HOST:PORT|auto", help="Ray cluster to join (default: auto)")
    f.add_argument("--fleet", type=Path, metavar="YAML", help="fleet file: Ray resources each backend's cells ask for")

    sh = sub.add_parser("show", help="print a result record readably")
    sh.add_argument("record", type=Path)

    c = sub.add_parser(
        "compare", help="candidate vs base: ratios with bootstrap confidence intervals, verdicts, a CI gate",
        description="Match records by workload, scenario, precision and batch; for p50, p99, throughput and the "
        "headline metric print cand/base with a bootstrap confidence interval from the raw samples and a verdict. "
        "Exit 1 only when --fail-on is given and a regression is both significant and beyond its threshold.",
    )
    c.add_argument("paths", nargs="+", metavar="PATH",
                   help="BASE CAND, or BASE... vs CAND... (record files or directories)")
    c.add_argument("--format", choices=["table", "markdown", "json"], default="table",
                   help="terminal table (default), Markdown for a pull-request comment, or JSON")
    c.add_argument("-o", "--output", type=Path, help="write the output to this file instead of stdout")
    c.add_argument("--fail-on", metavar="GATE",
                   help='exit 1 on a significant regression beyond the threshold, e.g. "p99:5%%,throughput:3%%"')
    c.add_argument("--threshold", default="5%",
                   help="practical threshold for the verdict of metrics not named in --fail-on (default: %(default)s)")
    c.add_argument("--confidence", type=float, default=0.95, help="confidence level (default: %(default)s)")
    c.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default: %(default)s)")
    c.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: %(default)s)")

    res = sub.add_parser("results", help="list and query a results directory (SQLite index, rebuilt on demand)")
    rsub = res.add_subparsers(dest="results_command", required=True, metavar="ACTION")
    for name, what in (("list", "one line per run"), ("query", "records matching every filter, newest first")):
        q = rsub.add_parser(name, help=what)
        q.add_argument("root", nargs="?", default=DEFAULT_OUT, type=Path,
                       help="results directory (default: %(default)s)")
        q.add_argument("--format", choices=["table", "json"], default="table")
        q.add_argument("--rebuild", action="store_true", help="re-read every file instead of updating the index")
        if name == "query":
            q.add_argument("--workload")
            q.add_argument("--scenario", choices=["single_stream", "multi_stream", "server", "offline"])
            q.add_argument("--precision")
            q.add_argument("--backend", help="backend id (spec label) or adapter name")
            q.add_argument("--spec", help="spec name")
            q.add_argument("--run", dest="run_id", help="run id")
            q.add_argument("--since", help="started at or after: 2026-01-01 or an ISO date-time (UTC)")
            q.add_argument("--until", help="started before: 2026-02-01 or an ISO date-time (UTC)")
            g = q.add_mutually_exclusive_group()
            g.add_argument("--valid", action="store_true", help="only VALID records")
            g.add_argument("--invalid", action="store_true", help="only INVALID records")
            q.add_argument("--limit", type=int, help="at most this many records")
            q.add_argument("--paths", action="store_true", help="print only the record paths (for xargs)")

    ex = sub.add_parser("export", help="write records in another tool's format")
    exsub = ex.add_subparsers(dest="export_format", required=True, metavar="FORMAT")
    pb = exsub.add_parser("pytest-benchmark", help="pytest-benchmark's JSON (for `pytest-benchmark compare`)")
    pb.add_argument("records", nargs="+", metavar="RECORD", help="record files or directories")
    pb.add_argument("-o", "--output", type=Path, help="write the JSON file here")
    pb.add_argument("--storage", type=Path, help="also save into this pytest-benchmark storage folder "
                    "(<storage>/<machine id>/NNNN_<name>.json), e.g. .benchmarks")
    pb.add_argument("--name", default="benchkit", help="file name suffix in --storage (default: %(default)s)")
    pb.add_argument("--include-data", action="store_true", help="add every per-query latency (stats.data)")
    pb.add_argument("--include-invalid", action="store_true", help="export INVALID records too")

    kg = sub.add_parser("keygen", help="create an Ed25519 key pair for signing records (needs benchkit[sign])")
    kg.add_argument("--out", type=Path, required=True, help="private key file (mode 0600); public key: OUT.pub")
    kg.add_argument("--force", action="store_true", help="replace existing key files")

    sg = sub.add_parser("sign", help="write a detached Ed25519 signature RECORD.sig over each record")
    sg.add_argument("records", nargs="+", metavar="RECORD", help="record files or directories")
    sg.add_argument("--key", type=Path, required=True, help="private key from benchkit keygen")

    vf = sub.add_parser("verify", help="check records against their signatures (exit 1 if any was altered)")
    vf.add_argument("records", nargs="+", metavar="RECORD", help="record files or directories")
    vf.add_argument("--pubkey", type=Path, help="the public key you trust (default: only check integrity "
                    "against the key embedded in the signature)")

    bd = sub.add_parser("bundle", help="pack records, spec, system, models, adapters and accuracy into a "
                        "certification bundle with a SHA-256 manifest")
    bd.add_argument("results", nargs="+", metavar="RESULTS", help="record files or directories (one spec)")
    bd.add_argument("-o", "--output", type=Path, required=True, help="bundle file, e.g. bundle.tar.gz")
    bd.add_argument("--spec", type=Path, help="the spec file the records were run from (default: the standard "
                    "spec of that name, if its SHA-256 matches)")
    bd.add_argument("--key", type=Path, help="sign the manifest with this private key (benchkit keygen)")

    cb = sub.add_parser("check-bundle", help="review a bundle rule by rule (PASS/FAIL each; exit 1 if any failed or "
                        "no trusted key was given)")
    cb.add_argument("bundle", type=Path)
    cb.add_argument("--pubkey", type=Path, help="the public key of the signer you trust; without it the verdict is "
                    "UNTRUSTED")
    cb.add_argument("--trust-bundle-key", action="store_true",
                    help="INSECURE: accept the key the bundle carries itself (proves integrity, not who signed)")
    cb.add_argument("--require-accuracy", action="store_true",
                    help="kept for old scripts: a passed accuracy gate is always required")

    rp = sub.add_parser("report", help="one self-contained HTML report (leaderboards, CDFs, roofline, ...)")
    rp.add_argument("results", nargs="+", metavar="RESULTS", help="record files or directories")
    rp.add_argument("-o", "--output", type=Path, required=True, help="HTML file to write, e.g. report.html")
    rp.add_argument("--title", help="page title (default: the spec names)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except BenchkitError as e:
        print(f"benchkit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("benchkit: interrupted; records already written are kept", file=sys.stderr)
        return 130


# --------------------------------------------------------------------------- commands


def _console(stderr: bool = False):
    from rich.console import Console

    con = Console(stderr=stderr, highlight=False)
    if not con.is_terminal:
        # Piped output (CI logs) would otherwise be folded at 80 columns.
        con = Console(stderr=stderr, highlight=False, width=160)
    return con


def cmd_validate(args) -> int:
    from .runner import expand, preflight
    from .spec import load_spec

    loaded = load_spec(args.spec)
    cells = expand(loaded)
    preflight(loaded, cells)
    print(f"{args.spec}: valid: {len(loaded.spec.workloads)} workload(s) x {len(loaded.spec.backends)} backend(s) "
          f"x {len(loaded.spec.scenarios)} scenario(s) = {len(cells)} cell(s)")
    return 0


def cmd_schema(args) -> int:
    if args.markdown:
        from .refdocs import markdown

        sys.stdout.write(markdown(args.which))
        return 0
    if args.which == "spec":
        from .spec import spec_json_schema

        schema = spec_json_schema()
    else:
        from .records import record_json_schema

        schema = record_json_schema()
    print(json.dumps(schema, indent=2))
    return 0


def cmd_run(args) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .executors import make_executor
    from .runner import expand, preflight, run_suite
    from .spec import load_spec

    if args.inline and args.executor != "local":
        raise BenchkitError("--inline runs cells in this process; it cannot be combined with --executor ray")
    loaded = load_spec(args.spec)
    profile = "quick" if args.quick else args.profile
    peak = None
    if args.find_peak:
        from .peak import PeakOptions

        peak = PeakOptions(tolerance=args.peak_tolerance, max_probes=args.max_probes)
    cells = expand(loaded, args.backend, args.workload, profile, args.device_file, find_peak=args.find_peak)
    if args.engine == "mlperf":
        from .engines.mlperf import require_loadgen

        require_loadgen()  # fail before anything runs, naming the extra
    # Built first: a missing optional extra is reported before any work. The process's exit
    # disconnects from a cluster, so there is no close() to forget on an error path.
    executor = make_executor(args.executor, args.address, args.fleet)
    err = _console(stderr=True)
    with err.status("resolving workloads and backends..."):
        preflight(loaded, cells, args.cache_dir)
    with err.status(f"checking that the {executor.name} executor can run every cell..."):
        executor.check(cells)  # a cell no node can run fails here, not hours into the suite
    out = Path(args.out)
    done: list = []
    with Progress(
        TextColumn("[bold]{task.fields[cell]}"),
        TextColumn("{task.fields[phase]}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} cells"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        # A peak search decides its number of probes as it goes.
        total = len(cells) * loaded.spec.run.repeats
        task = bar.add_task("suite", total=None if peak else total, cell="", phase="")

        def on_start(run_dir, pending: int) -> None:
            if not peak:
                bar.update(task, completed=total - pending)
            if args.resume:
                bar.console.print(f"resuming {run_dir}: {total - pending} of {total} cells done, {pending} to run")

        def progress(cell_id: str, phase: str) -> None:
            bar.update(task, cell=cell_id, phase=phase)

        def on_record(rec, path) -> None:
            done.append((rec, path))
            bar.advance(task)
            mark = "VALID" if rec.validity.valid else "INVALID"
            bar.console.print(f"  {rec.cell_id}: {mark} -> {path}")

        try:
            result = run_suite(
                loaded, out, cells, "inline" if args.inline else None, progress, on_record, args.cache_dir,
                audit=True if args.audit else None,
                engine=args.engine, peak=peak, resume=args.resume, system_file=args.system_file, on_start=on_start,
                executor=executor,
            )
        except KeyboardInterrupt:
            err.print(f"interrupted after {len(done)} more cell(s); every record written is kept "
                      f"(benchkit run {args.spec} --resume completes the run)")
            raise
    _summary_table(result.records)
    _power_table(result.records)
    _repeats_table(result.records)
    print(f"{len(result.records)} record(s) in {result.out_dir}")
    if peak is not None:
        _peak_table(result.peaks)
        # Probes above the peak are INVALID by design; the search succeeds when it found a VALID rate.
        return 0 if all(p.peak_qps is not None for p in result.peaks) else 1
    return 0 if result.all_valid else 1


def _peak_table(peaks) -> None:
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
            p.cell_id,
            "[red]none VALID[/]" if p.peak_qps is None else f"{p.peak_qps:,.4g}",
            _fmt_rate(rec.metrics.throughput_per_s) if rec and rec.metrics else "-",
            _fmt_ns(rec.metrics.latency_ns.p99) if rec and rec.metrics else "-",
            f"{len(p.probes)} ({len(valid_rates)} VALID)",
            bracket,
            "yes" if p.converged else "[yellow]no (raise --max-probes)[/]",
        )
    _console().print(t)


def _fmt_ns(ns: float | None) -> str:
    if ns is None:
        return "-"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.0f} ns"


def _fmt_rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.1f}/s"


def _summary_table(recs) -> None:
    from rich.table import Table

    t = Table(title="benchkit results", title_justify="left")
    for col in ("workload", "backend", "scenario", "precision", "batch", "headline", "p50", "p99", "samples/s", "CV",
                "division", "validity"):
        t.add_column(col, justify="right" if col in ("batch", "headline", "p50", "p99", "samples/s", "CV") else "left")
    for r in recs:
        wl = r.spec["workload"]["name"]
        be = r.spec["backend"].get("label") or r.spec["backend"]["name"]
        m = r.metrics
        if m is None:
            t.add_row(wl, be, r.scenario.kind, "-", "-", "-", "-", "-", "-", "-", "-",
                      f"[red]FAILED[/] ({r.error.phase if r.error else '?'})")
            continue
        h = m.headline
        head = f"{h.name.removeprefix('latency_').removesuffix('_ns')} {_fmt_ns(h.value)}" if h.unit == "ns" \
            else _fmt_rate(h.value)
        valid = "[green]VALID[/]" if r.validity.valid else "[red]INVALID[/]"
        if r.validity.warnings:
            valid += " [yellow](!)[/]"
        t.add_row(wl, be, r.scenario.kind, r.backend.precision if r.backend else "-",
                  str(r.workload.effective_batch_size) if r.workload else "-", head, _fmt_ns(m.latency_ns.p50),
                  _fmt_ns(m.latency_ns.p99), _fmt_rate(m.throughput_per_s), f"{m.latency_ns.cv:.1%}",
                  r.division.name if r.division else "-", valid)
    con = _console()
    con.print(t)
    for r in recs:
        for reason in r.validity.reasons:
            con.print(f"[red]INVALID[/] {r.cell_id}: {reason}")
        for w in r.validity.warnings:
            con.print(f"[yellow](!)[/] {r.cell_id}: {w}")
        if r.division and r.division.name == "open" and r.division.requested != "closed":
            con.print(f"open {r.cell_id}: " + "; ".join(r.division.reasons))


def _repeats_table(recs) -> None:
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
        fmt = _fmt_ns if b.unit == "ns" else _fmt_rate
        within = sorted(c for c in b.within_run_cv if c is not None)
        median = (within[(len(within) - 1) // 2] + within[len(within) // 2]) / 2 if within else None
        t.add_row(cell_id, f"{sum(v is not None for v in b.values)}/{len(b.values)}", b.metric, fmt(b.mean),
                  fmt(b.min), fmt(b.max), "-" if b.cv is None else f"{b.cv:.2%}",
                  "-" if median is None else f"{median:.2%}")
    _console().print(t)


def cmd_backends(args) -> int:
    from rich.table import Table

    from rich.markup import escape

    from .backends import survey

    t = Table(title="benchkit backends (entry-point group benchkit.backends)", title_justify="left")
    for col in ("name", "status", "runtime", "devices / providers", "provided by"):
        t.add_column(col)
    for b in survey():
        if b.ok:
            d = b.details
            devices = d.get("providers") or d.get("devices") or d.get("device") or ""
            if isinstance(devices, (list, tuple)):
                devices = ", ".join(map(str, devices))
            t.add_row(b.name, "[green]ok[/]", str(d.get("version", "")), str(devices), b.package)
        else:
            # escaped: messages name extras in brackets (benchkit[openvino]), which rich would take as markup
            t.add_row(b.name, "[red]failed[/]", "", f"[red]{escape(b.error)}[/]", b.package)
    _console().print(t)
    return 0


def _pairs(items: list[str], flag: str, cast) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BenchkitError(f"{flag} {item!r}: expected KEY=VALUE")
        try:
            out[key] = cast(value)
        except ValueError:
            raise BenchkitError(f"{flag} {item!r}: {value!r} is not a valid value") from None
    return out


def _scalar(text: str):
    import yaml

    return yaml.safe_load(text)


def cmd_workloads(args) -> int:
    from rich.markup import escape
    from rich.table import Table

    from .workloads import catalog

    if args.workloads_command == "export":
        from .workloads.export import export

        dims = _pairs(args.dim, "--dim", int)
        if args.batch is not None:
            if args.batch <= 0:
                raise BenchkitError(f"--batch: expected a positive integer, got {args.batch}")
            dims["batch"] = args.batch
        digest = export(args.name, args.output, _pairs(args.param, "--param", _scalar), args.variant, dims)
        print(f"{args.output}: {args.name} ({args.variant}) sha256 {digest}")
        return 0

    entries = catalog.entries()
    t = Table(title="benchkit standard workloads", title_justify="left")
    cols = ["name", "family", "task", "inputs", "variants"]
    if args.details:
        cols += ["params", "GFLOPs/sample", "weights", "AI (flop/B)"]
    for col in cols:
        t.add_column(col)
    for name, e in entries.items():
        shown = [f"{i.name}[{','.join(map(str, i.shape))}] {i.dtype}" for i in e.inputs]
        if len(shown) > 3:  # KV-cache decoders have dozens of inputs
            shown = shown[:2] + [f"... +{len(shown) - 2} more"]
        inputs = escape("; ".join(shown))  # shapes look like rich markup: [batch,16]
        row = [name, e.family, e.task, inputs, ",".join(e.variants)]
        if args.details:
            from .workloads.flops import analyze, per_sample

            path = catalog.materialize(name)
            dims = {**e.dims, "batch": 1}
            cost = per_sample(analyze(path, dims), 1)
            row += [f"{cost.params:,}", f"{cost.flops / 1e9:.3f}", _fmt_bytes(cost.weight_bytes),
                    f"{cost.arithmetic_intensity:.1f}"]
        t.add_row(*row)
    _console().print(t)
    return 0


def _fmt_bytes(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def cmd_show(args) -> int:
    from rich.table import Table

    from . import records

    r = records.load(args.record)
    con = _console()
    status = "[green]VALID[/]" if r.validity.valid else "[red]INVALID[/]"
    con.print(f"[bold]{r.cell_id}[/]  {status}  (schema {r.schema_version}, benchkit {r.benchkit_version}, "
              f"engine {r.engine}, run {r.run_id}, {r.started_at.isoformat()})")
    if r.probe is not None:
        p = r.probe
        con.print(f"probe     {p.index} of the peak search {p.search}: {p.phase} at target_qps {p.target_qps:g} "
                  f"(VALID up to {p.lower_qps if p.lower_qps is not None else '-'}, "
                  f"INVALID from {p.upper_qps if p.upper_qps is not None else '-'})")
    for reason in r.validity.reasons:
        con.print(f"  [red]reason:[/] {reason}")
    for w in r.validity.warnings:
        con.print(f"  [yellow]warning:[/] {w}")
    if r.workload:
        w = r.workload
        con.print(f"workload  {w.name} ({w.source}{', ' + w.catalog + '/' + w.variant if w.catalog else ''}) "
                  f"sha256 {w.model_sha256[:16]}… batch {w.effective_batch_size} {w.graph_precision}")
    if r.backend:
        b = r.backend
        con.print(f"backend   {b.id}: {b.name} {b.version} on {b.device}, precision {b.precision} "
                  f"(claimed {b.claimed_precision})")
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
    if r.audits:
        for name in type(r.audits).model_fields:
            audit = getattr(r.audits, name)
            if audit is not None:
                con.print(f"audit     {name}: {'[green]passed[/]' if audit.passed else '[red]FAILED[/]'}: {audit.summary}")
    s = r.system
    con.print(f"system    {s.cpu_model}, {s.cpu_count} CPUs, {_fmt_bytes(s.memory_bytes)}, {s.os}, Python {s.python}")
    con.print(f"scenario  {r.scenario.kind} " + ", ".join(f"{k}={v}" for k, v in r.scenario.settings.items()
                                                        if v is not None))
    if r.metrics:
        m = r.metrics
        t = Table(title="metrics", title_justify="left")
        t.add_column("metric")
        t.add_column("value", justify="right")
        lat = m.latency_ns
        for key in ("min", "p50", "p90", "p95", "p99", "p999", "max", "mean", "stdev"):
            t.add_row(f"latency {key}", _fmt_ns(getattr(lat, key)))
        t.add_row("CV", f"{lat.cv:.2%}")
        t.add_row("outliers (low/high)", f"{lat.outliers_low}/{lat.outliers_high}")
        t.add_row("queries / samples", f"{m.count:,} / {m.sample_count:,}")
        t.add_row("throughput", _fmt_rate(m.throughput_per_s))
        t.add_row("duration", _fmt_ns(m.duration_ns))
        t.add_row("first inference", _fmt_ns(m.first_inference_ns))
        t.add_row("load/compile", _fmt_ns(m.load_ns))
        t.add_row("stop reason", m.stop_reason)
        h = m.headline
        t.add_row(f"[bold]headline {h.name}[/]", _fmt_ns(h.value) if h.unit == "ns" else _fmt_rate(h.value))
        es = m.early_stopping
        if es is not None:
            state = "passed" if es.passed else "[red]not satisfied[/]"
            if es.estimate_ns is not None:
                t.add_row(f"early stopping p{es.percentile:g} estimate", f"{_fmt_ns(es.estimate_ns)} ({state})")
            elif es.target_latency_ns is not None:
                t.add_row("early stopping", f"{es.overlatency_count} of {es.count:,} over {_fmt_ns(es.target_latency_ns)}; "
                          f"needs {es.queries_needed:,} queries ({state})")
            else:
                t.add_row("early stopping", f"needs {es.queries_needed:,} queries ({state})")
        if m.issue_lateness_ns is not None:
            late = m.issue_lateness_ns
            t.add_row("issue lateness p50/p99/max", f"{_fmt_ns(late.p50)} / {_fmt_ns(late.p99)} / {_fmt_ns(late.max)}")
        for k, v in m.extra.items():
            t.add_row(k, str(v))
        con.print(t)
    _show_hardening(con, r)
    if r.error:
        con.print(f"[red]error[/] in {r.error.phase}: {r.error.type}: {r.error.message}")
    return 0


def cmd_fleet(args) -> int:
    from rich.table import Table

    from .executors.ray import RayExecutor
    from .fleet import check_feasible, format_resources, runnable_on

    executor = RayExecutor(address=args.address, fleet_file=args.fleet)
    try:
        cells = []
        if args.spec:
            from .runner import expand
            from .spec import load_spec

            cells = expand(load_spec(args.spec))
        nodes = executor.nodes()
        alive = [n for n in nodes if n.alive]
        about = executor.probe(alive)
        requests = {c.cell_id: executor.fleet.request_for(c.backend).ray_resources() for c in cells}
        runs = {c.cell_id: {n.node_id for n in runnable_on(requests[c.cell_id], alive)} for c in cells}
        con = _console()
        t = Table(title=f"Ray cluster at {executor.address}: {len(alive)} node(s) alive, {len(nodes) - len(alive)} lost",
                  title_justify="left")
        for col in ("node", "address", "state", "resources advertised", "benchkit", "host"):
            t.add_column(col)
        if cells:
            t.add_column("cells it can run", justify="right")
        for n in sorted(nodes, key=lambda n: (not n.alive, n.address, n.node_id)):
            a = about.get(n.node_id) or {}
            row = [n.node_id[:12], n.address, "[green]alive[/]" if n.alive else "[red]lost[/]",
                   format_resources(n.advertised), a.get("benchkit") or a.get("error") or ("-" if not n.alive
                                                                                          else "[red]no answer[/]"),
                   f"{a['hostname']} ({a['cpu_count']} CPUs)" if "hostname" in a else "-"]
            if cells:
                row.append(f"{sum(n.node_id in r for r in runs.values())}/{len(cells)}")
            t.add_row(*row)
        con.print(t)
        if cells:
            ct = Table(title=f"cells of {args.spec}", title_justify="left")
            for col in ("cell", "needs", "nodes that can run it"):
                ct.add_column(col)
            for c in cells:
                can = sorted(x[:12] for x in runs[c.cell_id])
                ct.add_row(c.cell_id, format_resources(requests[c.cell_id]), ", ".join(can) or "[red]none[/]")
            con.print(ct)
            check_feasible(cells, nodes, executor.fleet, executor.address)
            print(f"every one of the {len(cells)} cell(s) has a node that can run it")
        return 0
    finally:
        executor.close()


def _show_hardening(con, r) -> None:
    """System description extras, power, stability and repetition lines of `benchkit show`."""
    from rich.markup import escape

    s = r.system
    who = ", ".join(f"{k} {v}" for k, v in (("submitter", s.submitter), ("system", s.system_name),
                                             ("status", s.status), ("cooling", s.cooling)) if v)
    if who:
        con.print(f"          {escape(who)}")
    for a in s.accelerators:
        mem = f", {_fmt_bytes(a.memory_bytes)}" if a.memory_bytes else ""
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


def _power_table(recs) -> None:
    from rich.markup import escape
    from rich.table import Table

    rows = [r for r in recs if r.power is not None and r.power.available]
    if not rows:
        reasons = {r.power.reason for r in recs if r.power is not None and r.power.reason}
        for why in sorted(reasons):
            _console().print(escape(f"power: unavailable ({why})"))
        return
    t = Table(title="power (mean over the measured run; idle baseline before the suite)", title_justify="left")
    for col in ("cell", "power", "idle", "J/inference", "samples/s/W", "meters"):
        t.add_column(col, justify="left" if col in ("cell", "meters") else "right")
    for r in rows:
        p = r.power
        t.add_row(r.cell_id, f"{p.avg_power_w:.1f} W", "-" if p.idle_power_w is None else f"{p.idle_power_w:.1f} W",
                  f"{p.energy_per_inference_j:.3g}", "-" if p.samples_per_s_per_w is None else
                  f"{p.samples_per_s_per_w:,.2f}", escape(", ".join(f"{d.meter}/{d.domain}" for d in p.domains)))
    _console().print(t)


def cmd_compare(args) -> int:
    from .compare import CompareSettings, compare_paths, parse_fail_on, parse_percent, split_paths

    base, cand = split_paths(args.paths)
    settings = CompareSettings(
        confidence=args.confidence,
        resamples=args.resamples,
        seed=args.seed,
        threshold=parse_percent(args.threshold, "--threshold"),
        fail_on=parse_fail_on(args.fail_on) if args.fail_on is not None else {},
    )
    result = compare_paths(base, cand, settings)
    if args.format == "table":
        text = _compare_table(result, " ".join(cand), " ".join(base), args.output is None)
    elif args.format == "markdown":
        text = result.to_markdown()
    else:
        text = result.to_json() + "\n"
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
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
    from .store import open_store, parse_when

    with open_store(args.root, rebuild=args.rebuild) as store:
        if args.results_command == "list":
            runs = store.runs()
            if args.format == "json":
                print(json.dumps(runs, indent=1))
                return 0
            from rich.table import Table

            t = Table(title=f"runs in {args.root}", title_justify="left")
            for col in ("started (UTC)", "run", "spec", "records", "valid", "invalid", "backends", "workloads"):
                t.add_column(col, justify="right" if col in ("records", "valid", "invalid") else "left")
            for r in runs:
                t.add_row(r["started_at"][:19].replace("T", " "), r["run_id"], r["spec_name"], str(r["records"]),
                          str(r["valid"]), f"[red]{r['invalid']}[/]" if r["invalid"] else "0",
                          ", ".join(r["backends"]), ", ".join(r["workloads"]))
            con = _console()
            con.print(t)
            _print_problems(con, store)
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
        from rich.table import Table

        from ._format import fmt_ns, fmt_value

        t = Table(title=f"{len(rows)} record(s) in {args.root}", title_justify="left")
        for col in ("started (UTC)", "workload", "backend", "scenario", "precision", "batch", "headline", "p50",
                    "p99", "validity", "path"):
            t.add_column(col, justify="right" if col in ("batch", "headline", "p50", "p99") else "left",
                         overflow="fold")
        for r in rows:
            head = "-" if r.headline_value is None else fmt_value(r.headline_value, r.headline_unit or "")
            scen = r.scenario + (f" @{r.target_qps:g}qps" if r.target_qps is not None else "")
            valid = "[green]VALID[/]" if r.valid else (f"[red]FAILED[/] ({r.error_phase})" if r.error_phase
                                                        else "[red]INVALID[/]")
            t.add_row(r.started_at.strftime("%Y-%m-%d %H:%M:%S"), r.workload or "-", r.backend or "-", scen,
                      r.precision or "-", str(r.batch or "-"), head, fmt_ns(r.p50_ns), fmt_ns(r.p99_ns), valid,
                      os.path.relpath(r.path))
        con = _console()
        con.print(t)
        _print_problems(con, store)
    return 0


def cmd_export(args) -> int:
    from .export import ExportError, export_pytest_benchmark, save_to_storage

    if args.output is None and args.storage is None:
        raise ExportError("export pytest-benchmark: give -o FILE and/or --storage DIR")
    result = export_pytest_benchmark(args.records, args.include_data, args.include_invalid)
    for w in result.warnings:
        print(f"benchkit: warning: {w}", file=sys.stderr)
    n = len(result.document["benchmarks"])
    if args.output is not None:
        from .records import write_atomic

        write_atomic(args.output, json.dumps(result.document, indent=4) + "\n")
        print(f"{n} benchmark(s) -> {args.output}")
    if args.storage is not None:
        print(f"{n} benchmark(s) -> {save_to_storage(result.document, args.storage, args.name)}")
    return 0


def cmd_keygen(args) -> int:
    from .trust import key_id, keygen, load_public_key

    priv, pub = keygen(args.out, args.force)
    from cryptography.hazmat.primitives import serialization

    raw = load_public_key(pub).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    print(f"private key {priv} (keep it secret), public key {pub}, key id {key_id(raw)}")
    return 0


def cmd_sign(args) -> int:
    from . import records
    from .trust import load_private_key, sign_record

    load_private_key(args.key)  # a bad key fails before anything is written
    for p in records.find(args.records):
        print(f"signed {p} -> {sign_record(p, args.key)}")
    return 0


def cmd_verify(args) -> int:
    from . import records
    from .trust import verify_record

    files = [p for p in records.find(args.records) if not p.name.endswith(".sig")]
    failed = 0
    for p in files:
        v = verify_record(p, args.pubkey)
        for c in v.checks:
            print(f"  {'PASS' if c.passed else 'FAIL'} {c.name}: {c.detail}")
        who = f"key {v.key_id}" + ("" if v.trusted_key else " (embedded in the signature; pass --pubkey to check "
                                                            "it is a key you trust)")
        print(f"{'VERIFIED' if v.ok else 'ALTERED'} {p} ({who})")
        failed += not v.ok
    if failed:
        print(f"benchkit: {failed} of {len(files)} record(s) failed verification", file=sys.stderr)
    return 1 if failed else 0


def cmd_bundle(args) -> int:
    from .bundle import make_bundle

    out = make_bundle(args.results, args.output, args.spec, args.key)
    print(f"bundle {out} ({out.stat().st_size:,} bytes); check it with: benchkit check-bundle {out}")
    return 0


def cmd_check_bundle(args) -> int:
    from .bundle import RULES, check_bundle, verdict

    results = check_bundle(args.bundle, args.pubkey, trust_bundle_key=args.trust_bundle_key)
    width = max(len(name) for name, _, _ in RULES)
    for r in results:
        print(f"{'PASS' if r.passed else 'FAIL'}  {r.rule:<{width}}  {r.detail}")
    failed = [r.rule for r in results if not r.passed]
    v = verdict(results)
    if v == "UNTRUSTED":
        print(f"UNTRUSTED: every other rule passes, but nothing says who signed {args.bundle}; check it with "
              "--pubkey SIGNER.pub")
        return 1
    if failed:
        print(f"FAILED: {len(failed)} of {len(results)} rules ({', '.join(failed)}) in {args.bundle}")
        return 1
    trusted = "" if args.pubkey else " (INSECURE: the signer's key was taken from the bundle, --trust-bundle-key)"
    print(f"all {len(results)} rules PASS for {args.bundle}{trusted}")
    return 0


def cmd_report(args) -> int:
    from .report import write_report

    out = write_report(args.results, args.output, args.title)
    print(f"report {out} ({out.stat().st_size:,} bytes; self-contained, opens offline)")
    return 0


def _print_problems(con, store) -> None:
    probs = store.problems()
    for path, why in probs[:5]:
        con.print(f"[yellow]skipped[/] {why}")
    if len(probs) > 5:
        con.print(f"[yellow]skipped[/] {len(probs) - 5} more file(s) that are not readable records")


_VERDICT_STYLE = {"regression": "bold red", "improvement": "green", "small change": "yellow", "no change": "dim",
                  "no samples": "dim"}


def _compare_table(result, cand: str, base: str, to_terminal: bool) -> str:
    """The rich table; printed directly when going to the terminal, else rendered to text."""
    from rich.table import Table

    from ._format import fmt_value

    conf = f"{result.settings.confidence:.0%}"
    t = Table(title=f"compare: {cand} / {base}", title_justify="left")
    for col in ("workload", "scenario", "precision", "batch", "backend", "metric", "base", "cand",
                f"ratio ({conf} CI)", "change", "verdict"):
        t.add_column(col, justify="right" if col in ("batch", "base", "cand", "change") or col.startswith("ratio")
                     else "left")
    for p in result.pairs:
        k = p.key
        scen = k.scenario + (f" @{k.target_qps:g}qps" if k.target_qps is not None else "")
        be = p.base.backend if p.base.backend == p.cand.backend else f"{p.base.backend}→{p.cand.backend}"
        for m in p.metrics:
            ratio = f"{m.ratio:.3f}" if m.ci_low is None else f"{m.ratio:.3f} ({m.ci_low:.3f}-{m.ci_high:.3f})"
            style = _VERDICT_STYLE[m.verdict]
            t.add_row(k.workload, scen, k.precision, str(k.batch), be, m.metric + (" *" if m.headline else ""),
                      fmt_value(m.base, m.unit), fmt_value(m.cand, m.unit), ratio, f"{m.change * 100:+.1f}%",
                      f"[{style}]{m.verdict}[/]")
    con = _console() if to_terminal else None
    if con is None:
        import io

        from rich.console import Console

        con = Console(record=True, width=160, file=io.StringIO(), highlight=False)
    for w in result.warnings:
        con.print(f"[yellow]warning:[/] {w}")
    con.print(t)
    if not result.pairs:
        con.print("no matching records (matched by workload, scenario, precision and batch)")
    counts = ", ".join(f"{n} {v}" for v, n in result.counts().items() if n)
    con.print(f"{len(result.pairs)} pair(s): {counts or 'nothing compared'}. * headline metric. A verdict needs the "
              f"interval to exclude 1; regression/improvement also need the change beyond "
              f"{result.settings.threshold:.0%} (or the --fail-on threshold).")
    return "" if to_terminal else con.export_text()


def cmd_check_adapter(args) -> int:
    from .errors import BackendError
    from .testing import check_adapter

    try:
        options = json.loads(args.options)
    except json.JSONDecodeError as e:
        raise BackendError(f"--options: not valid JSON ({e.msg} at column {e.colno}): {args.options}") from None
    if not isinstance(options, dict):
        raise BackendError(f"--options: expected a JSON object, got {type(options).__name__}")
    if args.cycles < 1:
        raise BackendError(f"--cycles: expected a positive integer, got {args.cycles}")
    err = _console(stderr=True)
    colour = {"passed": "green", "failed": "red", "skipped": "yellow"}

    from rich.markup import escape

    def progress(r) -> None:
        if not args.json:  # check names hold brackets (workload[gemm]): not rich markup
            err.print(f"  [{colour[r.status]}]{r.status.upper():7s}[/] {escape(r.name)}: {escape(r.detail)}")

    report = check_adapter(args.name, options, precision=args.precision, precisions=args.also_precision,
                           workloads=args.workload, cycles=args.cycles, rss_growth_limit_mib=args.rss_limit_mib,
                           progress=progress)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1, default=str))
    else:
        n = {s: sum(r.status == s for r in report.results) for s in colour}
        verdict = "[green]PASSED[/]" if report.passed else "[red]FAILED[/]"
        _console().print(f"{args.name}: conformance {verdict} ({n['passed']} passed, {n['failed']} failed, "
                         f"{n['skipped']} skipped)")
    return 0 if report.passed else 1


_COMMANDS = {
    "run": cmd_run,
    "validate": cmd_validate,
    "schema": cmd_schema,
    "backends": cmd_backends,
    "workloads": cmd_workloads,
    "fleet": cmd_fleet,
    "show": cmd_show,
    "compare": cmd_compare,
    "results": cmd_results,
    "export": cmd_export,
    "keygen": cmd_keygen,
    "sign": cmd_sign,
    "verify": cmd_verify,
    "bundle": cmd_bundle,
    "check-bundle": cmd_check_bundle,
    "report": cmd_report,
    "check-adapter": cmd_check_adapter,
}
