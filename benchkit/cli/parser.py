"""The argument parser: every command, flag and help text of ``benchkit``."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchkit._version import __version__

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

    r = sub.add_parser(
        "run", help="run a spec's suite, or one ONNX file, and write one record per cell",
        description="Run a spec's suite (benchkit run SPEC), or benchmark one ONNX file with the flags below "
        "(benchkit run MODEL.onnx [--backend B] [--scenario S] [--batch N] [--precision P] [--profile P]): the "
        "same records and summary either way. --print-spec prints the spec a model run stands for and exits, so "
        "the run can be repeated exactly: benchkit run MODEL.onnx --print-spec > m.yaml && benchkit run m.yaml.")
    r.add_argument("spec", help="spec file (YAML/JSON), the name of a standard spec such as ci-smoke, or an ONNX "
                   "model file (*.onnx)")
    r.add_argument("--out", default=DEFAULT_OUT, help="results directory (default: %(default)s)")
    r.add_argument("--backend", action="append", default=[], metavar="NAME",
                   help="with a spec: only this backend; with an ONNX file: run on this backend (default: "
                   "onnxruntime). Repeatable")
    m = r.add_argument_group("running an ONNX file (benchkit run MODEL.onnx)")
    m.add_argument("--scenario", action="append", default=[], metavar="KIND",
                   choices=["single_stream", "multi_stream", "server", "offline"],
                   help="single_stream | multi_stream | server | offline (repeatable; default: single_stream)")
    m.add_argument("--batch", type=int, metavar="N",
                   help="offline batch_size and multi_stream samples_per_query (default: the scenarios' own, 1 and 8)")
    m.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16", "int8", "mixed"],
                   help="precision the result claims (default: %(default)s); the adapter reports what ran")
    m.add_argument("--dim", action="append", default=[], metavar="NAME=N",
                   help="value of a named dynamic dimension, e.g. --dim seq=128 (repeatable)")
    m.add_argument("--data", action="append", default=[], metavar="INPUT=PATH",
                   help="real samples for an input: .npy, .npz (the array named like the input) or a folder of "
                   ".npy files (repeatable)")
    m.add_argument("--target-qps", type=float, metavar="QPS", help="server: arrival rate (queries per second)")
    m.add_argument("--target-latency-ms", type=float, metavar="MS", help="server: p99 latency bound")
    m.add_argument("--print-spec", action="store_true",
                   help="print the spec (YAML) this model run stands for, its model pinned by SHA-256, and exit "
                   "without running")
    r.add_argument("--workload", action="append", default=[], metavar="NAME", help="only this workload (repeatable)")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="use the quick profile (CI: seconds per cell)")
    g.add_argument("--profile", choices=["quick", "standard", "mlperf", "certify"],
                   help="override the spec's run profile (certify: standard minimums, the compliance audits, "
                        "and stability flags make a record INVALID)")
    r.add_argument("--audit", action="store_true",
                   help="run the compliance audits after each cell (timed outputs, repeated input, alternate seed)")
    r.add_argument("--inline", action="store_true", help="run cells in this process (debugging; no crash isolation)")
    out = r.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true",
                     help="print a machine-readable summary of the run on stdout (one object per record) instead of "
                          "the tables; no progress output")
    out.add_argument("--quiet", "-q", action="store_true",
                     help="print nothing but errors; the exit status says whether every record is VALID")
    r.add_argument("--device-file", type=Path, metavar="YAML",
                   help="device descriptor (peak FLOP/s per precision) for roofline figures, for every backend")
    r.add_argument("--cache-dir", type=Path, help="built-workload cache (default: $BENCHKIT_CACHE_DIR or ~/.cache/benchkit)")
    r.add_argument("--engine", choices=["benchkit", "mlperf"], default="benchkit",
                   help="what drives the measurement: benchkit's own loops (default) or MLPerf LoadGen "
                   "(the mlperf extra); both write the same record format")
    r.add_argument("--find-peak", action="store_true",
                   help="search each Server scenario for the highest target_qps that stays VALID, starting at its "
                   "target_qps; every probe is recorded")
    r.add_argument("--probe-max-s", type=float, default=120.0, metavar="S",
                   help="--find-peak: no probe measures longer than S seconds (or its min_duration_ms, if longer); "
                        "the search's worst case is printed before it starts (default: %(default)s)")
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

    bk = sub.add_parser("backends", help="list installed backend adapters, their versions and devices, and load failures",
                        description="Each adapter is imported and asked what it offers in a process of its own: "
                        "one that hangs, crashes or aborts is listed as failed, with where it did.")
    bk.add_argument("--timeout-s", type=float, default=120.0, metavar="S",
                    help="longest one adapter may take to import and describe itself (default: 120)")

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
    w.add_argument("--details", action="store_true", help="parameters, FLOPs and bytes of each model, counted from its graph's shapes (no weights built)")
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
        description="Match records by workload, scenario, precision, batch and load (Server target_qps, Offline concurrency); for p50, p99, throughput and the "
        "headline metric print cand/base with a bootstrap confidence interval from the raw samples and a verdict. "
        "Exit 1 only when --fail-on is given and a regression is both significant and beyond its threshold.",
    )
    c.add_argument("paths", nargs="+", metavar="PATH",
                   help="BASE CAND, or BASE... vs CAND... (record files or directories); with --ab, the records "
                        "of one session")
    c.add_argument("--ab", metavar="BASE_ID,CAND_ID",
                   help="interleaved A/B: split the records of PATH... by backend id into base and candidate (a "
                        "spec with both backends and run.repeats measures them alternately in one session)")
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
        q.add_argument("--format", choices=["table", "json", "csv"], default="table",
                       help="table (for reading), json, or csv (one header line, one row per " +
                            ("run" if name == "list" else "record") + "; for spreadsheets and scripts)")
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

    kg = sub.add_parser("keygen", help="create an Ed25519 key pair for signing records (needs the sign extra)")
    kg.add_argument("--out", type=Path, required=True, help="private key file (mode 0600); public key: OUT.pub")
    kg.add_argument("--force", action="store_true", help="replace existing key files")

    sg = sub.add_parser("sign", help="write a detached Ed25519 signature RECORD.sig over each record")
    sg.add_argument("records", nargs="+", metavar="RECORD", help="record files or directories")
    sg.add_argument("--key", type=Path, required=True, help="private key from benchkit keygen")

    vf = sub.add_parser("verify", help="check every record against its signature and report each (exit 1 if any is "
                        "altered, unsigned or unreadable)")
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
    rp.add_argument("--baseline", metavar="BACKEND_ID",
                    help="backend whose rows the ratio column starts from (each leaderboard can switch it)")
    return p
