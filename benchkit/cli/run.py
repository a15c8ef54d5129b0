"""Commands that plan and run: validate, schema, run, backends, workloads, fleet, check-adapter."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchkit._format import fmt_bytes
from benchkit.errors import BenchkitError
from benchkit.cli.tables import (
    console,
    peak_table,
    power_table,
    repeats_table,
    summary_table,
)


def cmd_validate(args) -> int:
    from benchkit.runner.suite import RunOptions, plan_cells
    from benchkit.spec import load_spec

    loaded = load_spec(args.spec)
    cells = plan_cells(loaded, RunOptions())
    print(f"{args.spec}: valid: {len(loaded.spec.workloads)} workload(s) x {len(loaded.spec.backends)} backend(s) "
          f"x {len(loaded.spec.scenarios)} scenario(s) = {len(cells)} cell(s)")
    return 0


def cmd_schema(args) -> int:
    if args.markdown:
        from benchkit.refdocs import markdown

        sys.stdout.write(markdown(args.which))
        return 0
    if args.which == "spec":
        from benchkit.spec import spec_json_schema

        schema = spec_json_schema()
    else:
        from benchkit.results.records import record_json_schema

        schema = record_json_schema()
    print(json.dumps(schema, indent=2))
    return 0


def cmd_run(args) -> int:
    from rich.markup import escape

    from benchkit.cli.progress import RunProgress
    from benchkit.runner.executors import make_executor
    from benchkit.runner.peak import PeakOptions
    from benchkit.runner.suite import RunOptions, plan_cells, run_suite

    if args.inline and args.executor != "local":
        raise BenchkitError("--inline runs cells in this process; it cannot be combined with --executor ray")
    loaded = _load_run_target(args)
    if loaded is None:  # --print-spec: printed, nothing to run
        return 0
    options = RunOptions(
        out_dir=Path(args.out), backends=tuple(args.backend), workloads=tuple(args.workload),
        profile="quick" if args.quick else args.profile, isolation="inline" if args.inline else None,
        audit=True if args.audit else None, engine=args.engine, cache_dir=args.cache_dir,
        device_file=args.device_file, find_peak=args.find_peak,
        peak=PeakOptions(tolerance=args.peak_tolerance, max_probes=args.max_probes, probe_max_s=args.probe_max_s),
        resume=args.resume, system_file=args.system_file)
    peak = args.find_peak
    if args.engine == "mlperf":
        from benchkit.measure.loadgen import require_loadgen

        require_loadgen()  # fail before anything runs, naming the extra
    # Built first: a missing optional extra is reported before any work. The process's exit
    # disconnects from a cluster, so there is no close() to forget on an error path.
    executor = make_executor(args.executor, args.address, args.fleet)
    err = console(stderr=True)
    with err.status("resolving workloads and backends..."):
        # An adapter that hangs or crashes while starting: its cells get error records, the others run.
        cells = plan_cells(loaded, options, adapter_faults="record")
    for message in sorted({c.preflight_error for c in cells if c.preflight_error}):
        err.print(f"benchkit: warning: {escape(message)}; its cells are recorded as errors", markup=True)
    with err.status(f"checking that the {executor.name} executor can run every cell..."):
        executor.check(cells)  # a cell no node can run fails here, not hours into the suite
    done: list = []
    # A peak search decides its number of probes as it goes.
    total = None if peak else len(cells) * loaded.spec.run.repeats
    with RunProgress(err, total, quiet=args.quiet or args.json) as bar:

        def on_start(run_dir, pending: int) -> None:
            if total is not None:
                bar.started(total - pending)
            if args.resume:
                bar.say(f"resuming {run_dir}: {total - pending} of {total} cells done, {pending} to run")

        def on_record(rec, path) -> None:
            done.append((rec, path))
            bar.finished(rec, path)

        try:
            result = run_suite(loaded, cells, options, executor=executor, progress=bar.phase, on_record=on_record,
                               on_start=on_start, notice=bar.say)
        except KeyboardInterrupt:
            err.print(f"interrupted after {len(done)} more cell(s); every record written is kept "
                      f"(benchkit run {args.spec} --resume completes the run)")
            raise
    status = 0 if result.all_valid else 1
    if peak:
        # Probes above the peak are INVALID by design; the search succeeds when it found a VALID rate.
        status = 0 if all(p.peak_qps is not None for p in result.peaks) else 1
    if args.json:
        print(json.dumps(run_summary(result), indent=2))
        return status
    if args.quiet:
        return status
    summary_table(result.records)
    power_table(result.records)
    repeats_table(result.records)
    print(f"{len(result.records)} record(s) in {result.out_dir}")
    if peak:
        peak_table(result.peaks)
    return status


def run_summary(result) -> dict:
    """``run --json``: the run's records in brief, one object per record, for scripts (full records are files)."""
    def row(rec, path) -> dict:
        m = rec.metrics
        return {
            "cell_id": rec.cell_id, "path": str(path), "valid": rec.validity.valid, "reasons": rec.validity.reasons,
            "workload": rec.spec["workload"]["name"], "backend": rec.spec["backend"].get("label") or
            rec.spec["backend"]["name"], "scenario": rec.scenario.kind,
            "precision": rec.backend.precision if rec.backend else None,
            "batch": rec.workload.effective_batch_size if rec.workload else None,
            "headline": None if m is None else {"name": m.headline.name, "value": m.headline.value,
                                                "unit": m.headline.unit},
            "p50_ns": None if m is None else m.latency_ns.p50, "p99_ns": None if m is None else m.latency_ns.p99,
            "throughput_per_s": None if m is None else m.throughput_per_s,
            "peak_rss_bytes": rec.memory.peak_rss_bytes if rec.memory else None,
            "peak_device_bytes": rec.memory.peak_device_bytes if rec.memory else None,
            "error": None if rec.error is None else {"phase": rec.error.phase, "message": rec.error.message},
        }

    out = {"run_id": result.run_id, "out_dir": str(result.out_dir), "all_valid": result.all_valid,
           "records": [row(r, p) for r, p in zip(result.records, result.paths)]}
    if result.peaks:
        out["peaks"] = [{"cell_id": p.cell_id, "peak_qps": p.peak_qps, "converged": p.converged,
                         "probes": [{"target_qps": q, "valid": ok} for q, ok in p.probes],
                         "unattainable": p.unattainable, "light_load_latency_ns": p.light_load_latency_ns}
                        for p in result.peaks]
    return out


def _load_run_target(args):
    """The spec ``benchkit run`` runs: a spec file, or the spec of a model run (``benchkit run MODEL.onnx``).
    With ``--print-spec`` the model run's spec is printed and None returned."""
    from benchkit.cli.model_spec import is_model_path, load_model_spec
    from benchkit.spec import load_spec

    model_flags = [f for f, v in (("--scenario", args.scenario), ("--batch", args.batch), ("--dim", args.dim),
                                  ("--data", args.data), ("--target-qps", args.target_qps),
                                  ("--target-latency-ms", args.target_latency_ms), ("--print-spec", args.print_spec),
                                  ("--precision", args.precision != "fp32")) if v]
    if not is_model_path(args.spec):
        if model_flags:
            raise BenchkitError(f"{', '.join(model_flags)}: for benchkit run MODEL.onnx; {args.spec} is a spec, "
                                "which says its own scenarios, batch and precision")
        return load_spec(args.spec)
    if args.workload:
        raise BenchkitError("--workload: for specs; a model run has one workload")
    loaded, text = load_model_spec(args.spec, args)
    if args.print_spec:
        sys.stdout.write(text)
        return None
    return loaded


def cmd_backends(args) -> int:
    from rich.table import Table

    from rich.markup import escape

    from benchkit.runner.adapters import survey

    if not 0 < args.timeout_s <= 3600:
        raise BenchkitError(f"--timeout-s: expected seconds between 0 and 3600, got {args.timeout_s:g}")
    t = Table(title="benchkit backends (entry-point group benchkit.backends)", title_justify="left")
    for col in ("name", "status", "runtime", "devices / providers", "provided by"):
        t.add_column(col)
    for b in survey(args.timeout_s):  # each adapter imported and asked in a process of its own
        if b.ok:
            d = b.details
            devices = d.get("providers") or d.get("devices") or d.get("device") or ""
            if isinstance(devices, (list, tuple)):
                devices = ", ".join(map(str, devices))
            t.add_row(b.name, "[green]ok[/]", str(d.get("version", "")), str(devices), b.package)
        else:
            # escaped: messages name extras in brackets ('.[openvino]'), which rich would take as markup
            t.add_row(b.name, "[red]failed[/]", "", f"[red]{escape(b.error)}[/]", b.package)
    console().print(t)
    return 0


def _scalar(text: str):
    import yaml

    return yaml.safe_load(text)


def cmd_workloads(args) -> int:
    from rich.markup import escape
    from rich.table import Table

    from benchkit.workloads import catalog

    if args.workloads_command == "export":
        from benchkit.cli.model_spec import parse_pairs
        from benchkit.workloads.export import export

        dims = parse_pairs(args.dim, "--dim", int)
        if args.batch is not None:
            if args.batch <= 0:
                raise BenchkitError(f"--batch: expected a positive integer, got {args.batch}")
            dims["batch"] = args.batch
        digest = export(args.name, args.output, parse_pairs(args.param, "--param", _scalar), args.variant, dims)
        print(f"{args.output}: {args.name} ({args.variant}) sha256 {digest}")
        return 0

    entries = catalog.entries()
    t = Table(title="benchkit standard workloads", title_justify="left")
    cols = ["name", "family", "task", "inputs", "variants"]
    if args.details:
        cols += ["params", "GFLOPs/sample", "weights", "AI (flop/B)"]
    for col in cols:
        t.add_column(col)
    err = console(stderr=True)
    for k, (name, e) in enumerate(entries.items(), 1):
        shown = [f"{i.name}[{','.join(map(str, i.shape))}] {i.dtype}" for i in e.inputs]
        if len(shown) > 3:  # KV-cache decoders have dozens of inputs
            shown = shown[:2] + [f"... +{len(shown) - 2} more"]
        inputs = escape("; ".join(shown))  # shapes look like rich markup: [batch,16]
        row = [name, e.family, e.task, inputs, ",".join(e.variants)]
        if args.details:
            from benchkit.workloads.builders._graph import shapes_only
            from benchkit.workloads.flops import analyze, per_sample

            # Counted from the graph's shapes: no weight is drawn, nothing is written to the cache.
            if err.is_terminal:
                status = err.status(f"[{k}/{len(entries)}] {name}: counting from shapes...")
                status.start()
            else:
                status = None
                err.print(f"[{k}/{len(entries)}] {name}", highlight=False)
            try:
                with shapes_only():
                    model = catalog.build(name)
                cost = per_sample(analyze(model, {**e.dims, "batch": 1}), 1)
            finally:
                if status is not None:
                    status.stop()
            row += [f"{cost.params:,}", f"{cost.flops / 1e9:.3f}", fmt_bytes(cost.weight_bytes),
                    f"{cost.arithmetic_intensity:.1f}"]
        t.add_row(*row)
    console().print(t)
    from benchkit.workloads.generation import MODELS

    g = Table(title="generation workloads (kind: generative): a prefill and a KV-cache decode graph each",
              title_justify="left")
    for col in ("name", "layers", "hidden", "heads", "vocabulary", "context", "description"):
        g.add_column(col)
    for m in MODELS.values():
        p = m.params
        g.add_row(m.name, str(p["layers"]), str(p["hidden"]), str(p["heads"]), str(p["vocab"]), str(p["n_ctx"]),
                  m.description)
    console().print(g)
    return 0


def cmd_fleet(args) -> int:
    from rich.table import Table

    from benchkit.runner.executors.ray import RayExecutor
    from benchkit.runner.fleet import check_feasible, format_resources, runnable_on

    executor = RayExecutor(address=args.address, fleet_file=args.fleet)
    try:
        cells = []
        if args.spec:
            from benchkit.runner.plan import expand
            from benchkit.spec import load_spec

            cells = expand(load_spec(args.spec))
        nodes = executor.nodes()
        alive = [n for n in nodes if n.alive]
        about = executor.probe(alive)
        requests = {c.cell_id: executor.fleet.request_for(c.backend).ray_resources() for c in cells}
        runs = {c.cell_id: {n.node_id for n in runnable_on(requests[c.cell_id], alive)} for c in cells}
        con = console()
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


def cmd_check_adapter(args) -> int:
    from benchkit.errors import BackendError
    from benchkit.conformance.kit import check_adapter

    try:
        options = json.loads(args.options)
    except json.JSONDecodeError as e:
        raise BackendError(f"--options: not valid JSON ({e.msg} at column {e.colno}): {args.options}") from None
    if not isinstance(options, dict):
        raise BackendError(f"--options: expected a JSON object, got {type(options).__name__}")
    if args.cycles < 1:
        raise BackendError(f"--cycles: expected a positive integer, got {args.cycles}")
    err = console(stderr=True)
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
        console().print(f"{args.name}: conformance {verdict} ({n['passed']} passed, {n['failed']} failed, "
                         f"{n['skipped']} skipped)")
    return 0 if report.passed else 1
