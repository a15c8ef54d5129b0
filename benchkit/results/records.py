"""Result records: one versioned JSON document per cell (workload x backend x scenario).

Clients rely on the field paths below; fields may be added, never renamed. How the
format evolves, and what a reader does with a record of another version, is written
next to SCHEMA_VERSION.
A cell that failed still gets a record (``validity.valid: false``, the error
in ``validity.reasons``), so a suite never silently loses a cell. Every
reported percentile can be recomputed from ``samples_ns`` with
:func:`benchkit.stats.summarize` (nearest-rank).
"""

from __future__ import annotations

import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator

from benchkit.backends.base import BackendInfo
from benchkit._fsutil import inside, read_json
from benchkit._fsutil import write_atomic  # noqa: F401  (re-exported: records.write_atomic)
from benchkit.errors import RecordError
from benchkit.stats import LatencyStats

# The format's version is MAJOR.MINOR, kept in two fields: `schema_version` (the major) is the path every client has
# read since 1.0, so it keeps its place and its integer type; `schema_minor` is new, and a record without it reads
# as minor 0 (every record written before 1.8, whatever blocks it holds).
# A minor step only adds optional fields, absent meaning what it meant before. A reader therefore accepts a record of
# its major and a newer minor: it drops the fields it does not know, with a RecordWarning naming them. A record of the
# same or an older minor with an unknown field is refused (this benchkit knows every field of those versions: the
# field is a typo or an edit). Anything but an addition (a rename, a removal, a new required field, a narrower or
# wider type, a new meaning) is a major step, and a reader refuses a newer major: "upgrade benchkit".
# To add a field: bump SCHEMA_MINOR, add its line to SCHEMA_HISTORY, add tests/data/record_v1.<minor>.json
# (`python tests/test_records.py RECORD`) and regenerate docs/reference/result.md.
SCHEMA_VERSION = 1  # the major: 1 since the first record
SCHEMA_MINOR = 13  # the minor this benchkit writes: always the newest entry of SCHEMA_HISTORY
SCHEMA_HISTORY: dict[str, str] = {
    # Minors 1-7 were added before minors existed: records of those versions carry no schema_minor (they read as
    # 1.0), and which of these blocks they hold tells which benchkit wrote them.
    "1.0": "first version: latency statistics, raw samples, provenance (spec, workload, backend, system), validity",
    "1.1": "roofline: workload.{macs, param_count, bytes_per_sample, arithmetic_intensity, unknown_ops}, "
    "backend.{memory_bandwidth_bytes_per_s, peak_source}, metrics.fraction_of_peak",
    "1.2": "accuracy (the accuracy gate: outputs vs a reference backend), audits (compliance audits)",
    "1.3": "metrics.early_stopping (LoadGen's early-stopping check), metrics.issue_lateness_ns (Server), "
    "probe (one step of a --find-peak search); engine 'mlperf' for records measured through LoadGen",
    "1.4": "accuracy.outputs[].max_abs_error and max_rel_error may be null (not comparable): a wider type, the one "
    "step that is not an addition (made before this policy; under it, it would be a major step)",
    "1.5": "division (closed | open and why, decided by benchkit.checks.divisions under rules version 1.0)",
    "1.6": "system: MLPerf-style description (cpu_sockets, cpu_cores, cpu_frequency_mhz, cpu_caches, kernel, "
    "os_release, accelerators, submitter, system_name, status, cooling, notes); power (meters, idle baseline, "
    "energy per inference, performance per watt); stability (machine state around the measurement, flags); "
    "repeat (this session's index among run.repeats, spread between sessions)",
    "1.7": "placement (which executor and node ran the cell, resources asked, CPU set, attempt)",
    "1.8": "schema_minor: the minor is written, and readers accept newer minors (unknown fields dropped, warned)",
    "1.9": "validity.findings: each reason and warning with the check that made it (benchkit.checks.verdict)",
    "1.10": "metrics.stage_ns and metrics.fetch_ns (the untimed phases, measured), audits.boundary (the end-to-end "
    "boundary audit), backend.provenance (the adapter's installed files), a derived CPU peak in backend.peak_source",
    "1.11": "accuracy.measured_outputs (the gate's outputs, kept so that check-bundle can re-check them), "
    "accuracy.pool_positions (which inputs of the pool the gate compared)",
    "1.12": "accuracy.tolerance_source (below fp32: the tolerance derived from the standard's own build at that "
    "precision)",
    "1.13": "memory (peak host and device memory of the cell); metrics.in_flight (Offline calls in flight); "
    "backend.endpoint (a deployed server reached over the Open Inference Protocol); workload.inputs[].data_source "
    "and data_sha256 (real samples); accuracy.outputs[].not_comparable; error phases after the measurement (the "
    "metrics kept); scenario kind 'generative' with metrics.tokens and accuracy.token_agreement (a new value of "
    "scenario.kind: a reader of an older minor refuses such a record, naming the value, rather than misread it)",
}


class RecordWarning(UserWarning):
    """A record was read, but not all of it: it comes from a newer minor, and the fields this benchkit does not
    know were dropped.

    Issued with :func:`warnings.warn` by every reader (:func:`parse`, :func:`load`,
    :func:`benchkit.results.recordio.load_split`). ``str(w)`` is one line for a CLI to print; ``source``,
    ``schema`` (major, minor) and ``fields`` (dotted paths, ``[]`` for list items) are there to collect.
    Catch them with ``warnings.catch_warnings(record=True)`` and ``issubclass(w.category, RecordWarning)``.
    """

    def __init__(self, source: str, schema: tuple[int, int], fields: tuple[str, ...]):
        self.source = source
        self.schema = schema
        self.fields = fields
        super().__init__(
            f"record {source} was written by a newer benchkit (schema {schema[0]}.{schema[1]}); "
            f"fields this version does not know were ignored: {', '.join(fields)}"
        )

    def __reduce__(self) -> Any:  # a warning may cross a process boundary (pickle rebuilds it from these)
        return (type(self), (self.source, self.schema, self.fields))


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InputInfo(_Model):
    """One graph input as the cell fed it: generated values, or real samples (then with their SHA-256)."""

    name: str = Field(description="Graph input name.")
    dtype: str = Field(description="numpy dtype name, e.g. float32, int64.")
    shape: list[int] = Field(description="Shape of one inference call's input.")
    data_source: str | None = Field(
        None, description="Where the real samples came from (spec `inputs.NAME.data`: file, `archive.npz:NAME` or "
        "`folder/`); null: generated values."
    )
    data_sha256: str | None = Field(
        None, description="SHA-256 of the real samples read: the file's bytes, or for a folder, the SHA-256 of "
        "its file list (`name  sha256` lines, in name order)."
    )


class WorkloadRecord(_Model):
    """The model that ran: where it came from, its exact bytes (SHA-256), its inputs and its cost per sample."""

    name: str = Field(description="Workload name in the spec.")
    source: Literal["catalog", "file"] = Field(description="catalog: built by benchkit; file: an ONNX file given by path.")
    catalog: str | None = Field(None, description="Catalog entry built (source catalog).")
    variant: str | None = Field(None, description="Catalog precision variant built: fp32 | fp16 | int8.")
    params: dict[str, Any] = Field(default_factory=dict, description="Catalog builder overrides given in the spec.")
    model_sha256: str = Field(
        description="The workload version: SHA-256 of the model file's bytes; for a graph with external-data files, "
        "of a manifest of the graph's and each data file's SHA-256 (benchkit.workloads.model_sha256)."
    )
    model_file: str = Field(description="File name of the model (not its path: records travel between machines).")
    graph_precision: str = Field(description="Precision of the graph's weights and quantisation: fp32 | fp16 | int8 ...")
    dims: dict[str, int] = Field(default_factory=dict, description="Values of the named dynamic dims (batch excluded).")
    inputs: list[InputInfo] = Field(default_factory=list, description="Inputs fed, with one call's shapes.")
    effective_batch_size: int | None = Field(None, description="Samples per inference call actually used.")
    flops: int | None = Field(None, description="FLOPs per sample (benchkit.workloads.flops conventions), where known.")
    macs: int | None = Field(None, description="Multiply-accumulates per sample, where known.")
    param_count: int | None = Field(None, description="Parameter elements (weights) of the graph.")
    bytes_per_sample: int | None = Field(
        None, description="Weight bytes plus unfused activation traffic per sample: the roofline's byte count."
    )
    arithmetic_intensity: float | None = Field(None, description="flops / bytes_per_sample (FLOP/byte).")
    unknown_ops: list[str] = Field(default_factory=list, description="Ops counted as zero FLOPs (no formula).")


class AdapterProvenance(_Model):
    """Where an adapter's code came from, as the installed files show it (benchkit.checks.provenance)."""

    adapter: str = Field(description="Python path of the adapter class, module:qualname.")
    entry_point: str | None = Field(None, description="Its name in the benchkit.backends group, if registered.")
    distribution: str | None = Field(
        None, description="Distribution providing it, as installed (null: no distribution claims it).")
    version: str | None = Field(None, description="That distribution's installed version.")
    editable: bool = Field(False, description="Installed in editable mode (PEP 610): the version does not pin the code.")
    method: Literal["record", "editable-sources", "no-record-sources", "no-distribution-sources"] = Field(
        description="record: the files RECORD lists; editable-sources / no-record-sources / no-distribution-sources: "
                    "the Python sources of the packages defining the class and its bases, because RECORD cannot say."
    )
    files_sha256: str = Field(description="SHA-256 over the sorted (path, file SHA-256) lines of the files hashed.")
    files_hashed: int = Field(description="Number of files in the digest.")
    files_missing: int = Field(0, description="Files RECORD lists that are not on disk.")
    files_modified: tuple[str, ...] = Field((), description="Files whose content differs from the hash RECORD gives.")
    source_roots: tuple[str, ...] = Field((), description="Folders the sources were read from (the *-sources methods).")


class BackendRecord(BackendInfo):
    """What the adapter reported about the runtime and device that ran (effective precision, resolved options)."""

    id: str = Field(description="Backend label in the spec (defaults to name).")
    claimed_precision: str = Field(description="Precision the spec claims for this result.")
    memory_bandwidth_bytes_per_s: float | None = Field(None, description="Device memory bandwidth, if known.")
    peak_source: str | None = Field(None, description="Where the peak figures came from: adapter | device file | derived CPU peak (with its inputs).")
    provenance: AdapterProvenance | None = Field(
        None, description="The adapter's code as installed files show it (observed, not reported): distribution, "
        "version, hash of its files.")


class CacheInfo(_Model):
    """One CPU cache level, as sysfs describes it."""

    level: int = Field(description="Cache level: 1, 2, 3.")
    type: str = Field(description="Data | Instruction | Unified.")
    size_bytes: int = Field(description="Size of one instance.")
    instances: int | None = Field(None, description="How many of this cache the host has (from shared_cpu_list).")


class AcceleratorInfo(_Model):
    """One accelerator in the machine."""

    model: str = Field(description="Device model name, e.g. NVIDIA H200.")
    memory_bytes: int | None = Field(None, description="Device memory, where known.")
    driver: str | None = Field(None, description="Driver version, where known.")
    index: int | None = Field(None, description="Device index as the source numbers it.")
    source: str = Field(description="Where the description came from: nvml | probe pci|dev|drm|accel (files on the "
                        "machine) | claim adapter <name> (observed | not observed): the adapter's word, marked as such "
                        "(records before 1.10: adapter <name>).")


class SystemRecord(_Model):
    """The machine the result was measured on (benchkit.machine.host.describe)."""

    hostname: str = Field(description="Host name.")
    cpu_model: str = Field(description="Host CPU model name.")
    cpu_count: int = Field(description="Logical CPUs of the machine.")
    cpu_affinity: int | None = Field(None, description="Logical CPUs the process may run on, where the OS says.")
    cpu_flags: list[str] = Field(
        default_factory=list, description="ISA extensions that change kernel choice (avx512f, amx_bf16, sve ...)."
    )
    memory_bytes: int = Field(description="Physical memory.")
    os: str = Field(description="Operating system and kernel release.")
    machine: str = Field(description="Architecture, e.g. x86_64, aarch64.")
    python: str = Field(description="Python version.")
    packages: dict[str, str] = Field(description="Versions of the packages that shape results (runtimes, numpy, onnx).")
    # MLPerf-style system description; fields absent in older records, null where unreadable.
    cpu_sockets: int | None = Field(None, description="Physical processor packages.")
    cpu_cores: int | None = Field(None, description="Physical cores over all sockets (cpu_count counts threads).")
    cpu_frequency_mhz: float | None = Field(None, description="Maximum frequency (cpufreq cpuinfo_max_freq), else nominal.")
    cpu_caches: list[CacheInfo] = Field(default_factory=list, description="CPU caches, one entry per level and type.")
    kernel: str | None = Field(None, description="Kernel release and build (uname -r -v).")
    os_release: str | None = Field(None, description="Distribution, from /etc/os-release PRETTY_NAME.")
    accelerators: list[AcceleratorInfo] = Field(
        default_factory=list, description="Accelerators found (NVML), else as the adapter describes its device."
    )
    submitter: str | None = Field(None, description="From the system file: who submits the result.")
    system_name: str | None = Field(None, description="From the system file: the system's marketed name.")
    status: Literal["available", "preview", "rdi"] | None = Field(
        None, description="From the system file: available | preview | rdi (research, development, internal)."
    )
    cooling: str | None = Field(None, description="From the system file, e.g. air, liquid.")
    notes: str | None = Field(None, description="From the system file: anything else a reader must know.")


class ScenarioRecord(_Model):
    """The scenario that ran, with every setting as it applied."""

    kind: Literal["single_stream", "multi_stream", "server", "offline", "generative"] = Field(
        description="Scenario kind.")
    settings: dict[str, Any] = Field(description="Effective settings, profile defaults filled in.")


class Headline(_Model):
    """The scenario's one headline figure (p90 latency for SingleStream, samples/s for Offline ...)."""

    name: str = Field(description="Metric name, e.g. latency_p90_ns, throughput_per_s.")
    value: float = Field(description="Its value, in `unit`.")
    unit: str = Field(description="ns | samples/s.")
    higher_is_better: bool = Field(description="True for throughputs, false for latencies.")


class Metrics(_Model):
    """The measurement: latency statistics, throughput, and the untimed phases' durations."""

    latency_ns: LatencyStats = Field(description="Per-query latency statistics (percentiles by LoadGen's index rule).")
    count: int = Field(description="Measured queries.")
    sample_count: int = Field(description="Measured samples (queries x samples per query).")
    duration_ns: int = Field(description="From the first issue to the last completion of the measured run.")
    throughput_per_s: float = Field(description="sample_count / duration.")
    queries_per_s: float = Field(description="count / duration.")
    first_inference_ns: int = Field(description="The very first call after load (cold), not in the statistics.")
    load_ns: int = Field(description="Adapter load/compile time.")
    warmup_queries: int = Field(description="Untimed warmup calls made before the measurement.")
    stop_reason: str = Field(
        description="Why the measurement stopped: min_duration_and_query_count | max_query_count | max_duration."
    )
    headline: Headline = Field(description="The scenario's headline figure.")
    achieved_flops_per_s: float | None = Field(None, description="workload.flops x throughput_per_s.")
    fraction_of_peak: float | None = Field(
        None, description="achieved_flops_per_s / backend.peak_flops_per_s (roofline y over the flat roof)."
    )
    extra: dict[str, Any] = Field(default_factory=dict, description="Scenario-specific figures (e.g. issue lateness).")
    early_stopping: EarlyStopping | None = Field(
        None, description="LoadGen's early-stopping check (SingleStream, MultiStream, Server); part of validity."
    )
    issue_lateness_ns: LatencyStats | None = Field(
        None, description="Server: actual minus scheduled issue time per query; shows a scheduler falling behind."
    )
    stage_ns: LatencyStats | None = Field(
        None, description="The untimed stage() calls: every input of the pool and every never-seen audit query "
        "(what the timed region leaves out is measured too)."
    )
    tokens: TokenMetrics | None = Field(
        None, description="Generative scenarios: TTFT, TPOT, inter-token latency, tokens/s (absent otherwise).")
    fetch_ns: LatencyStats | None = Field(
        None, description="The untimed fetch() calls: the measured loop's captured queries and the never-seen audit "
        "queries."
    )
    in_flight: InFlight | None = Field(
        None, description="Offline with `concurrency` above 1: the calls kept in flight, asked and achieved; with "
        "throughput_per_s and latency_ns, one point of a throughput-vs-latency curve."
    )


class InFlight(_Model):
    """Calls kept in flight in a closed loop (Offline's ``concurrency``, perf_analyzer's ``--concurrency-range``)."""

    concurrency: int = Field(description="Calls the loop kept outstanding: each completion issued the next.")
    achieved_mean: float = Field(
        description="Mean calls actually in flight over the run (Little's law: summed latency / duration); well "
        "below `concurrency`, the harness or client could not keep up.")
    issue_mode: Literal["async", "threads"] = Field(
        description="async: the adapter's submit() from one issuing thread; threads: one thread per call in flight.")


class TokenMetrics(_Model):
    """A generative run judged by tokens (docs/rules.md, "Generative scenarios"). Request latency (scheduled time to
    last token) is ``metrics.latency_ns`` and its raw values ``samples_ns``; the token figures are here."""

    mode: Literal["offline", "server"] = Field(description="offline: every request issued at once; server: Poisson.")
    requests: int = Field(description="Measured requests.")
    input_tokens: int = Field(description="Prompt tokens over every request.")
    output_tokens: int = Field(description="Generated tokens over every request (each request's first included).")
    output_tokens_per_s: float = Field(description="output_tokens / duration: the headline.")
    requests_per_s: float = Field(description="requests / duration.")
    ttft_ns: LatencyStats = Field(description="Time to first token: scheduled time (Offline: the run's start) to the "
                                  "first generated token on the host.")
    tpot_ns: LatencyStats | None = Field(
        None, description="Time per output token of each request with two or more: (last token - first token) / "
        "(output tokens - 1). Null when every request asked for one token.")
    itl_ns: LatencyStats | None = Field(None, description="Inter-token latency: every gap between consecutive tokens.")
    ttft_samples_ns: list[int] | None = Field(None, description="Raw TTFT per request, request order; null if not kept.")
    tpot_samples_ns: list[int] | None = Field(
        None, description="Raw TPOT per request with two or more output tokens, request order; null if not kept.")
    input_lengths: list[int] | None = Field(None, description="Each request's prompt length, request order.")
    output_lengths: list[int] | None = Field(None, description="Each request's output length, request order.")
    target_ttft_ns: int | None = Field(None, description="server: the p99 TTFT bound.")
    target_tpot_ns: int | None = Field(None, description="server: the p99 TPOT bound.")
    early_stopping_ttft: EarlyStopping | None = Field(None, description="server: LoadGen's check on TTFT.")
    early_stopping_tpot: EarlyStopping | None = Field(None, description="server: LoadGen's check on TPOT.")


class TokenAgreement(_Model):
    """Generation accuracy: the measured tokens against the reference runtime's greedy tokens of the same prompts."""

    passed: bool = Field(description="mean_agreement >= min_agreement.")
    reference: str = Field(description="What produced the reference tokens.")
    requests: int = Field(description="Requests compared.")
    tokens: int = Field(description="First tokens compared per request (fewer for a shorter request).")
    mean_agreement: float = Field(description="Mean over the requests of (agreeing prefix length / tokens compared).")
    min_agreement: float = Field(description="Lowest passing mean_agreement (the scenario's min_token_agreement).")
    exact_requests: int = Field(description="Requests whose compared tokens all agree.")
    positions: list[int] = Field(default_factory=list, description="Which requests (request order) were compared.")


class EarlyStopping(_Model):
    """MLPerf LoadGen's early-stopping check at 99% confidence, reported beside the plain percentile.

    SingleStream / MultiStream: ``estimate_ns`` is the percentile estimate (a
    sample, never below the plain percentile); it exists once ``count`` reaches
    ``queries_needed``. Server: the ``overlatency_count`` samples above
    ``target_latency_ns`` must be outweighed: passed when ``count >= queries_needed``.
    See :mod:`benchkit.stats` for the derivation.
    """

    percentile: float = Field(description="Percentile checked, in percent.")
    confidence: float = Field(description="Confidence of the check (LoadGen: 0.99).")
    count: int = Field(description="Queries the check saw.")
    queries_needed: int = Field(description="Fewest queries with which the check passes (given the overlatency ones).")
    passed: bool = Field(description="Whether the early-stopping criterion is met; False makes the record INVALID.")
    estimate_ns: int | None = Field(None, description="SingleStream/MultiStream: early-stopping percentile estimate.")
    overlatency_allowed: int | None = Field(
        None, description="SingleStream/MultiStream: overlatency queries the estimate absorbs (LoadGen's t)."
    )
    target_latency_ns: int | None = Field(None, description="Server: the latency bound.")
    overlatency_count: int | None = Field(None, description="Server: samples strictly above the bound.")
    reason: str | None = Field(None, description="Why the check failed; None when passed.")


class Probe(_Model):
    """One step of a ``benchkit run --find-peak`` search for the highest VALID Server QPS."""

    search: str = Field(description="Cell id the search belongs to (every probe of one search shares it).")
    index: int = Field(ge=0, description="0 for the first probe of the search.")
    target_qps: float = Field(gt=0, description="Arrival rate this probe ran at.")
    phase: Literal["grow", "shrink", "bisect"] = Field(
        description="grow: doubling from a VALID rate; shrink: halving from an INVALID one; bisect: between the two."
    )
    lower_qps: float | None = Field(None, description="Highest VALID rate known before this probe.")
    upper_qps: float | None = Field(None, description="Lowest INVALID rate known before this probe.")


class Finding(_Model):
    """One check's word on a record: a reason (the record is INVALID) or a warning, and which check said it."""

    check: str = Field(description="The check that spoke: stop_rule | precision | outputs | engine | latency | "
                       "accuracy | audit | stability | division | error | close | transfer ... (benchkit.checks).")
    severity: Literal["reason", "warning"] = Field(description="reason: makes the record INVALID; warning: a doubt.")
    message: str = Field(description="What the check found, in one line (as in reasons or warnings).")


class Validity(_Model):
    """VALID or INVALID, with every reason, and warnings that do not invalidate.

    Written only by :mod:`benchkit.checks.verdict` from the checks' typed findings; ``reasons`` and
    ``warnings`` are the findings' messages, kept as plain lists for the clients that read them."""

    valid: bool = Field(description="True when no rule was broken (reasons is empty).")
    reasons: list[str] = Field(default_factory=list, description="Why the result is INVALID (empty when valid).")
    warnings: list[str] = Field(default_factory=list, description="Doubts that do not invalidate (e.g. high CV).")
    findings: list[Finding] = Field(
        default_factory=list, description="The same reasons and warnings, each with the check that found it "
        "(absent in records written before schema 1.9).")


class ErrorInfo(_Model):
    """Why a cell failed: before its measurement (no metrics), or after it (the metrics are kept, INVALID)."""

    type: str = Field(description="Exception type, or WorkerCrash | Timeout.")
    message: str = Field(description="What went wrong, in one line.")
    phase: str = Field(description="resolve | load | stage | first_inference | warmup | measure (no measurement), "
                       "or check | accuracy | audit | record (after the measurement: the metrics are kept), "
                       "worker | close ...")
    detail: str = Field("", description="Traceback or worker stderr tail, for the developer.")


class Memory(_Model):
    """Peak memory of the cell (``benchkit.machine.memory``): what the process doing the work held at most."""

    peak_rss_bytes: int | None = Field(None, description="Peak resident memory of the process that ran the cell.")
    rss_at_start_bytes: int | None = Field(
        None, description="Its resident memory when the cell started (interpreter, numpy, onnx: before the model)."
    )
    scope: Literal["cell", "process"] = Field(
        description="cell: the peak was reset when the cell started; process: it covers the process's whole life."
    )
    source: str = Field(description="Where the peak was read: VmHWM (/proc/self/status) | ru_maxrss | unavailable.")
    peak_device_bytes: int | None = Field(
        None, description="Peak device memory the adapter reports (Backend.peak_device_memory_bytes); null: none."
    )


class PlacementRecord(_Model):
    """Where and how the executor ran the cell: which node, with which resources, on which attempt."""

    executor: str = Field(description="Executor that ran the cell: local | ray.")
    node_id: str | None = Field(None, description="Ray node id of the node that ran the cell (null for local runs).")
    node_address: str | None = Field(None, description="IP address of that node as the cluster knows it.")
    requested: dict[str, float] = Field(
        default_factory=dict, description="Resources the cell asked for (Ray names: CPU, GPU, memory, custom)."
    )
    cpu_set: list[int] | None = Field(None, description="Cores the worker process was pinned to (null: not pinned).")
    attempt: int = Field(1, ge=1, description="1 for the first try; more when a lost node's cell was retried.")
    lost_nodes: list[str] = Field(default_factory=list, description="Nodes of earlier attempts, lost while running it.")
    submitted_at: datetime | None = Field(None, description="When the submitting machine handed the cell over (UTC).")
    dispatched_at: datetime | None = Field(
        None, description="When the executor began the cell on its node, before the worker process started (UTC)."
    )


class PowerDomain(_Model):
    """One meter domain's figures (a RAPL package, an NVIDIA GPU, an external meter)."""

    meter: str = Field(description="Power meter plugin that read it: rapl | nvml | external ...")
    domain: str = Field(description="What it measures, as the meter names it (a CPU package, DRAM, a GPU).")
    read_as: Literal["energy_j", "power_w"] = Field(description="Cumulative energy counter, or sampled power.")
    avg_power_w: float = Field(description="Mean power over the measured window.")
    idle_power_w: float | None = Field(None, description="Mean power over the idle baseline before the run.")
    readings: int = Field(description="Readings taken within the measured window.")


class Power(_Model):
    """Power and energy over the measured window, or why there are none: figures are measured, never invented."""

    available: bool = Field(description="True when a meter measured the run; false: no power figure at all.")
    reason: str | None = Field(None, description="Why no figure could be given (available: false).")
    window_ns: int | None = Field(None, description="Length of the sampled window (the measured run).")
    avg_power_w: float | None = Field(None, description="Sum over the domains of their mean power while measuring.")
    idle_power_w: float | None = Field(None, description="Same sum over the idle baseline measured before the run.")
    energy_j: float | None = Field(None, description="avg_power_w x metrics.duration_ns.")
    energy_per_inference_j: float | None = Field(None, description="energy_j / metrics.sample_count.")
    samples_per_s_per_w: float | None = Field(
        None, description="Performance per watt: metrics.throughput_per_s / avg_power_w (= inferences per joule)."
    )
    domains: list[PowerDomain] = Field(default_factory=list, description="Each measured domain's figures.")
    unavailable: list[str] = Field(default_factory=list, description="Configured meters that could not be read, why.")


class Stability(_Model):
    """Machine state read just before and just after the measured run, and what changed."""

    before: dict[str, Any] = Field(default_factory=dict, description="benchkit.machine.stability.read_state() as JSON.")
    after: dict[str, Any] = Field(default_factory=dict, description="The same, read just after the measurement.")
    flags: list[str] = Field(default_factory=list, description="Throttling or drift seen (warnings; INVALID under certify).")
    unreadable: list[str] = Field(default_factory=list, description="What could not be read here, and why.")


class SessionSpread(_Model):
    """The headline over every repetition of a cell (each a fresh process): the between-session spread."""

    metric: str = Field(description="Headline metric compared between sessions.")
    unit: str = Field(description="Its unit.")
    values: list[float | None] = Field(description="Headline of each session in repetition order; null: it failed.")
    mean: float | None = Field(None, description="Mean of the sessions' headlines.")
    stdev: float | None = Field(None, description="Sample standard deviation of the sessions' headlines.")
    cv: float | None = Field(None, description="stdev / mean between sessions.")
    min: float | None = Field(None, description="Lowest session headline.")
    max: float | None = Field(None, description="Highest session headline.")
    within_run_cv: list[float | None] = Field(
        default_factory=list, description="Each session's own latency CV (the within-run spread), for comparison."
    )


class RepeatInfo(_Model):
    """This record's place among the run.repeats sessions of its cell, and their spread."""

    index: int = Field(description="1-based session number of this record.")
    count: int = Field(description="run.repeats: sessions of this cell in the run.")
    between: SessionSpread | None = Field(None, description="Filled in once every session of the cell has a record.")


class OutputAccuracy(_Model):
    """How one graph output compared with the reference, over every sample of the accuracy set."""

    name: str = Field(description="Graph output name.")
    max_abs_error: float | None = Field(description="max |out - ref| over all elements; null: not comparable.")
    max_rel_error: float | None = Field(
        description="max_abs_error / max |ref|: error relative to the output's scale (an all-zero reference: "
        "the absolute error); null: not comparable."
    )
    cosine_similarity: float | None = Field(None, description="Lowest per-call cosine similarity (float outputs).")
    top1_agreement: float | None = Field(
        None, description="Share of samples whose arg-max class matches the reference's (classifier outputs)."
    )
    top5_agreement: float | None = Field(
        None, description="Share of samples whose reference top-1 class is in the output's top 5 (>= 10 classes)."
    )
    not_comparable: str | None = Field(
        None, description="Why the output was not compared (it has no numeric form: neither a tensor, a sequence of "
        "maps nor a sequence of tensors); null: compared."
    )


class TaskMetric(_Model):
    """The workload's own quality metric (e.g. top-1 on a labelled evaluation set), where it has one."""

    name: str = Field(description="Metric name, e.g. top1.")
    value: float = Field(description="Measured backend's score.")
    reference_value: float = Field(description="The reference backend's score on the fp32 model.")
    min_value: float = Field(description="Lowest passing score (a fraction of reference_value).")
    passed: bool = Field(description="value >= min_value.")
    samples: int = Field(description="Labelled samples scored.")


class OutputArray(_Model):
    """One array kept in ``StoredOutputs.data``: which call and output it is, and how much of it is kept."""

    call: int = Field(ge=0, description="Index of the gate's call (0-based, in the order of its inputs).")
    output: int = Field(ge=0, description="Index of the graph output.")
    dtype: str = Field(description="numpy dtype string of the values, e.g. <f4.")
    shape: list[int] = Field(description="Shape of the whole output of that call.")
    elements: int = Field(ge=0, description="Values kept: every element, or a seeded sample when `sampled`.")


class StoredOutputs(_Model):
    """The measured backend's outputs on the accuracy gate's inputs, kept so a reviewer can re-check the gate.

    ``benchkit check-bundle`` regenerates the inputs from the seed (their
    digest must be ``inputs_sha256``), computes reference outputs itself from
    benchkit's own build of the workload, and compares them with these.
    """

    inputs_sha256: str = Field(description="SHA-256 of the gate's inputs (names, dtypes, shapes, bytes).")
    sha256: str = Field(description="SHA-256 of the kept values (data, decoded): a damaged copy is evident.")
    sampled: bool = Field(
        description="false: every element is kept; true: the outputs exceed 1 MiB, so each array keeps `elements` "
        "values at positions drawn by benchkit.checks.accuracy.sample_positions."
    )
    arrays: list[OutputArray] = Field(description="What data holds, in order.")
    data: str = Field(description="The kept values, C order, concatenated in `arrays` order; zlib, then base64.")


class Accuracy(_Model):
    """The accuracy gate: the measured backend's outputs on a fixed sample set vs reference outputs.

    Computed outside the timed region. ``passed: false`` makes the record
    INVALID; ``passed: null`` means nothing could be compared (``skipped`` says
    why), which is a warning, and INVALID under the certify profile or --audit.
    """

    passed: bool | None = Field(description="true: every output within tolerance; false: INVALID; null: nothing compared.")
    reference: str = Field(description="What produced the reference outputs: backend, version, device, precision.")
    reference_model_sha256: str | None = Field(
        None, description="Model the reference ran: the fp32 variant of a catalog entry for its fp16/int8 variants."
    )
    precision: str = Field(description="Precision whose tolerances applied.")
    tolerance: dict[str, float] = Field(default_factory=dict, description="abs, rel, min_cosine, min_top1_agreement.")
    tolerance_source: str | None = Field(
        None, description="Where the tolerance came from: 'derived: ...' (below fp32: a margin times the error of the "
        "catalog's own build at that precision under the reference runtime, on the gate's inputs) or 'constant: why'; "
        "null: the gate compared nothing, or a record from before schema 1.12 (constants throughout).")
    samples: int = Field(0, description="Inference calls compared (distinct seeded inputs).")
    seed: int = Field(0, description="Seed of the sample inputs.")
    pool_positions: list[int] | None = Field(
        None, description="Positions in the cell's seeded input pool of the inputs compared, in order (null: the "
        "first `samples` inputs of the pool, as before schema 1.11).")
    max_abs_error: float | None = Field(None, description="Largest max_abs_error over the outputs; null: not comparable.")
    max_rel_error: float | None = Field(None, description="Largest max_rel_error over the outputs; null: not comparable.")
    min_cosine_similarity: float | None = Field(None, description="Lowest cosine similarity over the float outputs.")
    top1_agreement: float | None = Field(None, description="Lowest top-1 agreement over the classifier outputs.")
    outputs: list[OutputAccuracy] = Field(default_factory=list, description="Each graph output's figures.")
    task_metric: TaskMetric | None = Field(None, description="The workload's own quality metric, where it has one.")
    failures: list[str] = Field(default_factory=list, description="Each tolerance exceeded, with its figures.")
    skipped: str | None = Field(None, description="Why nothing was compared (passed is null).")
    measured_outputs: StoredOutputs | None = Field(
        None, description="The measured backend's outputs on the gate's inputs, for check-bundle to re-check."
    )
    token_agreement: TokenAgreement | None = Field(
        None, description="Generative scenarios: the measured tokens against the reference runtime's greedy tokens.")


class Audit(_Model):
    """One compliance audit's verdict and the figures it was based on."""

    passed: bool = Field(description="false makes the record INVALID.")
    summary: str = Field(description="One line: what was compared and the outcome.")
    figures: dict[str, Any] = Field(default_factory=dict, description="Measured values, units in the key names.")


class Audits(_Model):
    """Compliance audits run after the measurement, outside its timed region; any failure makes the record INVALID."""

    timed_outputs: Audit | None = Field(
        None, description="Outputs of queries of the measured loop itself, fetched after their timed region, match the "
        "reference runtime's outputs of the same inputs (MLPerf TEST01). Every cell."
    )
    repeated_input: Audit | None = Field(
        None, description="One input repeated runs no more than 10% faster than never-seen inputs (MLPerf TEST04)."
    )
    alternate_seed: Audit | None = Field(
        None, description="A second measurement with another seed lands within 5% of the headline."
    )
    boundary: Audit | None = Field(
        None, description="Never-seen queries timed end to end (stage, run + synchronize, fetch): the untimed "
        "phases carry no more than a transfer-plausible share, and the end-to-end latency agrees with the timed one "
        "(benchkit.checks.boundary). Every cell."
    )


class Division(_Model):
    """Closed or open (docs/rules.md, "Divisions"): decided by benchkit from the record, never by the submitter.

    ``closed``: the standard catalog graph, byte for byte as benchkit builds it,
    with the catalog's inputs, at a permitted precision, accuracy gate passed
    where one ran. ``open``: anything else, each departure listed in ``reasons``.
    """

    name: Literal["closed", "open"] = Field(description="The division the result belongs to.")
    requested: Literal["auto", "closed", "open"] = Field(
        "auto", description="What the spec asked for (run.division); a failed request for closed makes the record INVALID."
    )
    reasons: list[str] = Field(default_factory=list, description="Why the result is open (empty when closed).")
    standard_workload: str | None = Field(
        None, description="Catalog entry and variant the model was compared with, e.g. 'resnet50-v1.5 int8'."
    )
    standard_sha256: str | None = Field(
        None, description="SHA-256 of benchkit's deterministic build of that entry at default params; null: not built."
    )
    rules_version: str = Field(description="Version of the evaluation rules (docs/rules.md) the decision follows.")


class ResultRecord(_Model):
    """One cell's result: workload x backend x scenario, with provenance, raw samples and validity."""

    # strict: a version given as the string "1" is refused by every reader alike (the fast path would coerce it,
    # the version policy would not)
    schema_version: int = Field(
        strict=True,
        description="Major version of this format (records.SCHEMA_VERSION): a reader refuses a newer one.",
    )
    # Default 0 is what a file without the field means (written before 1.8). A record built in this process is
    # written by this benchkit and gets SCHEMA_MINOR from _writer_minor instead; the readers (parse, parse_json_fast)
    # say they are reading through the validation context.
    schema_minor: int = Field(
        0,
        ge=0,
        strict=True,
        description="Minor version of this format (records.SCHEMA_MINOR): fields added within the major. "
        "Absent in records written before 1.8. A reader of an older minor ignores, with a warning, the fields "
        "it does not know.",
    )
    benchkit_version: str = Field(description="Version of benchkit that wrote the record.")
    engine: str = Field("benchkit", description="What drove the measurement: benchkit | mlperf (MLPerf LoadGen).")
    run_id: str = Field(description="Suite run: UTC start time and a random suffix; shared by the run's records.")
    cell_id: str = Field(description="workload__backend__scenario: the file name of the record.")
    started_at: datetime = Field(description="Start of the cell (UTC).")
    finished_at: datetime = Field(description="End of the cell (UTC).")
    spec_name: str = Field(description="Name of the suite.")
    spec_sha256: str = Field(description="SHA-256 of the spec file's text.")
    spec: dict[str, Any] = Field(description="The resolved cell: seed, profile, workload, backend, scenario entries.")
    workload: WorkloadRecord | None = Field(description="The model that ran; null if the cell failed before resolving it.")
    backend: BackendRecord | None = Field(description="The runtime that ran; null if the cell failed before loading.")
    system: SystemRecord = Field(description="The machine.")
    scenario: ScenarioRecord = Field(description="The scenario and its effective settings.")
    metrics: Metrics | None = Field(description="The measurement; null when the cell failed.")
    power: Power | None = Field(None, description="Power and energy (absent on error records and older records).")
    stability: Stability | None = Field(None, description="Machine state around the measurement.")
    repeat: RepeatInfo | None = Field(None, description="Present when run.repeats > 1.")
    samples_ns: list[int] | None = Field(description="Raw per-query latencies, issue order; null if not kept.")
    validity: Validity = Field(description="VALID or INVALID, and why.")
    error: ErrorInfo | None = Field(None, description="Why the cell failed (null when it ran).")
    accuracy: Accuracy | None = Field(None, description="The accuracy gate (absent on error records).")
    audits: Audits | None = Field(None, description="Compliance audits, when run (--audit, certify profile).")
    probe: Probe | None = Field(None, description="Set on the records of a --find-peak search.")
    division: Division | None = Field(None, description="Closed or open division, and why (absent on error records).")
    placement: PlacementRecord | None = Field(None, description="Which executor and node ran the cell.")
    memory: Memory | None = Field(None, description="Peak host (and, where reported, device) memory of the cell.")

    @model_validator(mode="before")
    @classmethod
    def _writer_minor(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict) and "schema_minor" not in data:
            reading = bool(info.context and info.context.get(_READING_KEY))
            data = {**data, "schema_minor": 0 if reading else SCHEMA_MINOR}
        return data

    def to_json(self) -> str:
        return self.model_dump_json(indent=1)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def record_json_schema() -> dict[str, Any]:
    schema = ResultRecord.model_json_schema()
    schema["$comment"] = f"benchkit result record, schema {SCHEMA_VERSION}.{SCHEMA_MINOR}"
    return schema


def save(record: ResultRecord, path: Path) -> Path:
    write_atomic(path, record.to_json() + "\n")
    return path


# ------------------------------------------------------------------------------------------------ reading
# Every reader of record files goes through parse (or parse_json_fast, which defers to it for anything unusual):
# ResultRecord.model_validate alone would skip the version policy below.

_READING_KEY = "benchkit_reading_record"
_READING = {_READING_KEY: True}
MAX_RECORD_BYTES = 512 << 20  # 10^7 raw samples take about 100 MB; half a gigabyte is no record


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Bring a record of an older major up to SCHEMA_VERSION. Each major step is one block here (none yet)."""
    return data


def _path(loc: tuple[Any, ...], items: bool = True) -> str:
    """('accuracy', 'outputs', 0, 'name') -> accuracy.outputs[0].name (items=False: accuracy.outputs[].name)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]" if items else "[]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _without(node: Any, loc: tuple[Any, ...]) -> Any:
    """`node` less the field at `loc`; copies only the containers on the way (samples_ns stays shared)."""
    head, rest = loc[0], loc[1:]
    copy: Any = dict(node) if isinstance(node, dict) else list(node)
    if rest:
        copy[head] = _without(node[head], rest)
    else:
        del copy[head]
    return copy


def _validate(data: dict[str, Any]) -> ResultRecord:
    return ResultRecord.model_validate(data, context=_READING)


def _invalid(source: str, e: ValidationError, schema: tuple[int, int]) -> RecordError:
    errors = e.errors(include_url=False)
    unknown = [_path(err["loc"]) for err in errors if err["type"] == "extra_forbidden"]
    if unknown:
        return RecordError(
            f"{source}: unknown field(s) {', '.join(unknown)}: a schema {schema[0]}.{schema[1]} record has no such "
            f"field, and this benchkit ({SCHEMA_VERSION}.{SCHEMA_MINOR}) knows every field of that version "
            "(a typo, or an edited record?)"
        )
    first = errors[0]
    newer = ""
    if schema[0] == SCHEMA_VERSION and schema[1] > SCHEMA_MINOR:
        newer = f"; written by a newer benchkit (schema {schema[0]}.{schema[1]}): upgrading benchkit may help"
    return RecordError(
        f"{source}: invalid record at {_path(first['loc'])}: {first['msg']} ({e.error_count()} problem(s)){newer}"
    )


def record_version(data: Any, source: str) -> tuple[int, int]:
    """(major, minor) of a parsed record file, or RecordError: not a record, a bad version, a newer major."""
    if not isinstance(data, dict) or "schema_version" not in data:
        raise RecordError(f"{source}: not a benchkit result record (no schema_version)")
    major = data["schema_version"]
    if not _is_count(major) or major < 1:
        hint = f" (a JSON number, {major}, not a string)" if isinstance(major, str) and major.isdigit() else ""
        raise RecordError(f"{source}: schema_version must be a positive integer, got {major!r}{hint}")
    if major > SCHEMA_VERSION:
        raise RecordError(
            f"{source}: written by a newer benchkit (schema {major}); upgrade benchkit "
            f"(this one reads schema {SCHEMA_VERSION} records)"
        )
    minor = data.get("schema_minor", 0)
    if not _is_count(minor):
        raise RecordError(f"{source}: schema_minor must be a non-negative integer, got {minor!r}")
    return major, minor


def parse(data: Any, source: str) -> ResultRecord:
    """The record in `data` (a parsed JSON document) under the version policy (see SCHEMA_HISTORY).

    A newer major, an unknown field in a record of this or an older minor, or an invalid value raises
    RecordError naming the field. A record of a newer minor loses the fields this benchkit does not know, at any
    depth, and a RecordWarning names them.
    """
    schema = record_version(data, source)
    data = _migrate(data)
    try:
        return _validate(data)
    except ValidationError as e:
        newer_minor = schema[0] == SCHEMA_VERSION and schema[1] > SCHEMA_MINOR
        unknown = [err["loc"] for err in e.errors(include_url=False) if err["type"] == "extra_forbidden"]
        if not (newer_minor and unknown):
            raise _invalid(source, e, schema) from None
    for loc in unknown:
        data = _without(data, loc)
    try:
        rec = _validate(data)
    except ValidationError as e:
        raise _invalid(source, e, schema) from None
    fields = tuple(dict.fromkeys(_path(loc, items=False) for loc in unknown))
    warnings.warn(RecordWarning(source, schema, fields), stacklevel=2)
    return rec


def parse_json_fast(text: str | bytes) -> ResultRecord | None:
    """The record in `text` when it validates as it stands at this major; None when it needs :func:`parse`.

    For readers of thousands of records (benchkit.results.recordio): one pass in pydantic's JSON parser. A record
    that needs the policy (an older major to migrate, a newer major, a newer minor's unknown fields, an invalid
    value) gives None, and the caller reads it again with parse, for the warning or the precise error.
    """
    try:
        rec = ResultRecord.model_validate_json(text, context=_READING)
    except (ValidationError, ValueError):
        return None
    return rec if rec.schema_version == SCHEMA_VERSION else None


def load(path: str | Path, within: str | Path | None = None) -> ResultRecord:
    """The record in the file at `path`, read by :func:`parse` (RecordError, RecordWarning as there).

    Only a regular file of at most :data:`MAX_RECORD_BYTES` is read, JSON nested at most
    :data:`benchkit._fsutil.MAX_JSON_DEPTH` deep; ``within``: a folder the file, symbolic links resolved, must
    lie in."""
    p = Path(path)
    try:
        data = read_json(p, MAX_RECORD_BYTES, within=within, error=RecordError, what="record")
    except FileNotFoundError:
        raise RecordError(f"{p}: no such record file") from None
    return parse(data, str(p))


def find(paths: list[str | Path]) -> list[Path]:
    """Record files among `paths` (files, or directories searched recursively).

    In a directory, a symbolic link that leads out of it is refused (RecordError naming it): a results folder
    speaks for the files in it, not for any file on the machine."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.rglob("*.json") if not q.name.startswith("."))
            for q in found:
                if q.is_symlink() and not inside(q, p):
                    raise RecordError(f"{q}: a symbolic link that leads out of {p} (to {q.resolve()}); not "
                                      "following it")
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise RecordError(f"{p}: no such file or directory")
    return out
