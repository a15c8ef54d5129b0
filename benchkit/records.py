"""Result records: one versioned JSON document per cell (workload x backend x scenario).

Clients rely on the field paths below; fields may be added, never renamed.
A cell that failed still gets a record (``validity.valid: false``, the error
in ``validity.reasons``), so a suite never silently loses a cell. Every
reported percentile can be recomputed from ``samples_ns`` with
:func:`benchkit.stats.summarize` (nearest-rank).
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .backends.base import BackendInfo
from .errors import RecordError
from .stats import LatencyStats

SCHEMA_VERSION = 1  # 1: first version (core harness: latency stats, raw samples, provenance, validity)
# 1: optional blocks and fields added since, absent (null/empty) in older version-1 records:
#    accuracy (the accuracy gate: outputs vs a reference backend), audits (compliance audits, --audit / certify);
#    metrics.early_stopping (LoadGen's early-stopping check), metrics.issue_lateness_ns (Server),
#    probe (one step of a --find-peak search); engine "mlperf" for records measured through LoadGen;
#    system: MLPerf-style description (cpu_sockets, cpu_cores, cpu_frequency_mhz, cpu_caches, kernel, os_release,
#    accelerators, submitter, system_name, status, cooling, notes); power (meters, idle baseline, energy per
#    inference, performance per watt); stability (machine state before/after the measurement, flags);
#    repeat (index of this session among run.repeats, spread between sessions).
#    placement (which executor and node ran the cell, resources asked, CPU set, attempt).


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InputInfo(_Model):
    name: str
    dtype: str
    shape: list[int] = Field(description="Shape of one inference call's input.")


class WorkloadRecord(_Model):
    name: str
    source: Literal["catalog", "file"]
    catalog: str | None = None
    variant: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    model_sha256: str
    model_file: str = Field(description="File name of the model (not its path: records travel between machines).")
    graph_precision: str
    dims: dict[str, int] = Field(default_factory=dict)
    inputs: list[InputInfo] = Field(default_factory=list)
    effective_batch_size: int | None = Field(None, description="Samples per inference call actually used.")
    flops: int | None = Field(None, description="FLOPs per sample (benchkit.workloads.flops conventions), where known.")
    macs: int | None = Field(None, description="Multiply-accumulates per sample, where known.")
    param_count: int | None = Field(None, description="Parameter elements (weights) of the graph.")
    bytes_per_sample: int | None = Field(
        None, description="Weight bytes plus unfused activation traffic per sample: the roofline's byte count."
    )
    arithmetic_intensity: float | None = Field(None, description="flops / bytes_per_sample (FLOP/byte).")
    unknown_ops: list[str] = Field(default_factory=list, description="Ops counted as zero FLOPs (no formula).")


class BackendRecord(BackendInfo):
    id: str = Field(description="Backend label in the spec (defaults to name).")
    claimed_precision: str = Field(description="Precision the spec claims for this result.")
    memory_bandwidth_bytes_per_s: float | None = Field(None, description="Device memory bandwidth, if known.")
    peak_source: str | None = Field(None, description="Where the peak figures came from: adapter | device file path.")


class CacheInfo(_Model):
    level: int
    type: str = Field(description="Data | Instruction | Unified.")
    size_bytes: int = Field(description="Size of one instance.")
    instances: int | None = Field(None, description="How many of this cache the host has (from shared_cpu_list).")


class AcceleratorInfo(_Model):
    model: str
    memory_bytes: int | None = None
    driver: str | None = None
    index: int | None = Field(None, description="Device index as the source numbers it.")
    source: str = Field(description="Where the description came from: nvml | adapter <name>.")


class SystemRecord(_Model):
    hostname: str
    cpu_model: str
    cpu_count: int
    cpu_affinity: int | None = None
    cpu_flags: list[str] = Field(default_factory=list)
    memory_bytes: int
    os: str
    machine: str
    python: str
    packages: dict[str, str]
    # MLPerf-style system description; fields absent in older records, null where unreadable.
    cpu_sockets: int | None = Field(None, description="Physical processor packages.")
    cpu_cores: int | None = Field(None, description="Physical cores over all sockets (cpu_count counts threads).")
    cpu_frequency_mhz: float | None = Field(None, description="Maximum frequency (cpufreq cpuinfo_max_freq), else nominal.")
    cpu_caches: list[CacheInfo] = Field(default_factory=list)
    kernel: str | None = Field(None, description="Kernel release and build (uname -r -v).")
    os_release: str | None = Field(None, description="Distribution, from /etc/os-release PRETTY_NAME.")
    accelerators: list[AcceleratorInfo] = Field(default_factory=list)
    submitter: str | None = Field(None, description="From the system file: who submits the result.")
    system_name: str | None = Field(None, description="From the system file: the system's marketed name.")
    status: Literal["available", "preview", "rdi"] | None = Field(
        None, description="From the system file: available | preview | rdi (research, development, internal)."
    )
    cooling: str | None = Field(None, description="From the system file, e.g. air, liquid.")
    notes: str | None = Field(None, description="From the system file: anything else a reader must know.")


class ScenarioRecord(_Model):
    kind: Literal["single_stream", "multi_stream", "server", "offline"]
    settings: dict[str, Any] = Field(description="Effective settings, profile defaults filled in.")


class Headline(_Model):
    name: str
    value: float
    unit: str
    higher_is_better: bool


class Metrics(_Model):
    latency_ns: LatencyStats = Field(description="Per-query latency statistics (nearest-rank percentiles).")
    count: int = Field(description="Measured queries.")
    sample_count: int = Field(description="Measured samples (queries x samples per query).")
    duration_ns: int = Field(description="From the first issue to the last completion of the measured run.")
    throughput_per_s: float = Field(description="sample_count / duration.")
    queries_per_s: float
    first_inference_ns: int = Field(description="The very first call after load (cold), not in the statistics.")
    load_ns: int = Field(description="Adapter load/compile time.")
    warmup_queries: int
    stop_reason: str
    headline: Headline
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


class Validity(_Model):
    valid: bool
    reasons: list[str] = Field(default_factory=list, description="Why the result is INVALID (empty when valid).")
    warnings: list[str] = Field(default_factory=list, description="Doubts that do not invalidate (e.g. high CV).")


class ErrorInfo(_Model):
    type: str
    message: str
    phase: str = Field(description="load | stage | warmup | measure | worker | resolve ...")
    detail: str = Field("", description="Traceback or worker stderr tail, for the developer.")


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

    meter: str
    domain: str
    read_as: Literal["energy_j", "power_w"] = Field(description="Cumulative energy counter, or sampled power.")
    avg_power_w: float = Field(description="Mean power over the measured window.")
    idle_power_w: float | None = Field(None, description="Mean power over the idle baseline before the run.")
    readings: int = Field(description="Readings taken within the measured window.")


class Power(_Model):
    """Power and energy over the measured window, or why there are none: figures are measured, never invented."""

    available: bool
    reason: str | None = Field(None, description="Why no figure could be given (available: false).")
    window_ns: int | None = Field(None, description="Length of the sampled window (the measured run).")
    avg_power_w: float | None = Field(None, description="Sum over the domains of their mean power while measuring.")
    idle_power_w: float | None = Field(None, description="Same sum over the idle baseline measured before the run.")
    energy_j: float | None = Field(None, description="avg_power_w x metrics.duration_ns.")
    energy_per_inference_j: float | None = Field(None, description="energy_j / metrics.sample_count.")
    samples_per_s_per_w: float | None = Field(
        None, description="Performance per watt: metrics.throughput_per_s / avg_power_w (= inferences per joule)."
    )
    domains: list[PowerDomain] = Field(default_factory=list)
    unavailable: list[str] = Field(default_factory=list, description="Configured meters that could not be read, why.")


class Stability(_Model):
    """Machine state read just before and just after the measured run, and what changed."""

    before: dict[str, Any] = Field(default_factory=dict, description="benchkit.stability.read_state() as JSON.")
    after: dict[str, Any] = Field(default_factory=dict)
    flags: list[str] = Field(default_factory=list, description="Throttling or drift seen (warnings; INVALID under certify).")
    unreadable: list[str] = Field(default_factory=list, description="What could not be read here, and why.")


class SessionSpread(_Model):
    """The headline over every repetition of a cell (each a fresh process): the between-session spread."""

    metric: str
    unit: str
    values: list[float | None] = Field(description="Headline of each session in repetition order; null: it failed.")
    mean: float | None = None
    stdev: float | None = None
    cv: float | None = Field(None, description="stdev / mean between sessions.")
    min: float | None = None
    max: float | None = None
    within_run_cv: list[float | None] = Field(
        default_factory=list, description="Each session's own latency CV (the within-run spread), for comparison."
    )


class RepeatInfo(_Model):
    index: int = Field(description="1-based session number of this record.")
    count: int = Field(description="run.repeats: sessions of this cell in the run.")
    between: SessionSpread | None = Field(None, description="Filled in once every session of the cell has a record.")
class OutputAccuracy(_Model):
    """How one graph output compared with the reference, over every sample of the accuracy set."""

    name: str
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


class TaskMetric(_Model):
    """The workload's own quality metric (e.g. top-1 on a labelled evaluation set), where it has one."""

    name: str
    value: float = Field(description="Measured backend's score.")
    reference_value: float = Field(description="The reference backend's score on the fp32 model.")
    min_value: float = Field(description="Lowest passing score (a fraction of reference_value).")
    passed: bool
    samples: int = Field(description="Labelled samples scored.")


class Accuracy(_Model):
    """The accuracy gate: the measured backend's outputs on a fixed sample set vs reference outputs.

    Computed outside the timed region. ``passed: false`` makes the record
    INVALID; ``passed: null`` means nothing could be compared (``skipped`` says
    why), which is a warning, and INVALID under the certify profile or --audit.
    """

    passed: bool | None
    reference: str = Field(description="What produced the reference outputs: backend, version, device, precision.")
    reference_model_sha256: str | None = Field(
        None, description="Model the reference ran: the fp32 variant of a catalog entry for its fp16/int8 variants."
    )
    precision: str = Field(description="Precision whose tolerances applied.")
    tolerance: dict[str, float] = Field(default_factory=dict, description="abs, rel, min_cosine, min_top1_agreement.")
    samples: int = Field(0, description="Inference calls compared (distinct seeded inputs).")
    seed: int = Field(0, description="Seed of the sample inputs.")
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    min_cosine_similarity: float | None = None
    top1_agreement: float | None = None
    outputs: list[OutputAccuracy] = Field(default_factory=list)
    task_metric: TaskMetric | None = None
    failures: list[str] = Field(default_factory=list, description="Each tolerance exceeded, with its figures.")
    skipped: str | None = Field(None, description="Why nothing was compared (passed is null).")


class Audit(_Model):
    """One compliance audit's verdict and the figures it was based on."""

    passed: bool
    summary: str = Field(description="One line: what was compared and the outcome.")
    figures: dict[str, Any] = Field(default_factory=dict, description="Measured values, units in the key names.")


class Audits(_Model):
    """Compliance audits run after the measurement, outside its timed region; any failure makes the record INVALID."""

    timed_outputs: Audit | None = Field(
        None, description="Outputs of calls timed like the measured loop match accuracy-mode outputs (MLPerf TEST01)."
    )
    repeated_input: Audit | None = Field(
        None, description="One input repeated runs no more than 10% faster than never-seen inputs (MLPerf TEST04)."
    )
    alternate_seed: Audit | None = Field(
        None, description="A second measurement with another seed lands within 5% of the headline."
    )


class ResultRecord(_Model):
    schema_version: int
    benchkit_version: str
    engine: str = Field("benchkit", description="What drove the measurement: benchkit | mlperf (MLPerf LoadGen).")
    run_id: str
    cell_id: str
    started_at: datetime
    finished_at: datetime
    spec_name: str
    spec_sha256: str
    spec: dict[str, Any] = Field(description="The resolved cell: seed, profile, workload, backend, scenario entries.")
    workload: WorkloadRecord | None
    backend: BackendRecord | None
    system: SystemRecord
    scenario: ScenarioRecord
    metrics: Metrics | None
    power: Power | None = Field(None, description="Power and energy (absent on error records and older records).")
    stability: Stability | None = Field(None, description="Machine state around the measurement.")
    repeat: RepeatInfo | None = Field(None, description="Present when run.repeats > 1.")
    samples_ns: list[int] | None = Field(description="Raw per-query latencies, issue order; null if not kept.")
    validity: Validity
    error: ErrorInfo | None = None
    accuracy: Accuracy | None = Field(None, description="The accuracy gate (absent on error records).")
    audits: Audits | None = Field(None, description="Compliance audits, when run (--audit, certify profile).")
    probe: Probe | None = Field(None, description="Set on the records of a --find-peak search.")
    placement: PlacementRecord | None = Field(None, description="Which executor and node ran the cell.")

    def to_json(self) -> str:
        return self.model_dump_json(indent=1)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def record_json_schema() -> dict[str, Any]:
    schema = ResultRecord.model_json_schema()
    schema["$comment"] = f"benchkit result record, schema_version {SCHEMA_VERSION}"
    return schema


def write_atomic(path: Path, text: str) -> None:
    """Write `text` so that a reader sees either nothing or the whole file, even after a crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def save(record: ResultRecord, path: Path) -> Path:
    write_atomic(path, record.to_json() + "\n")
    return path


def _migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Bring an older record up to SCHEMA_VERSION. Each version step is one block here."""
    return data


def parse(data: Any, source: str) -> ResultRecord:
    if not isinstance(data, dict) or "schema_version" not in data:
        raise RecordError(f"{source}: not a benchkit result record (no schema_version)")
    v = data["schema_version"]
    if not isinstance(v, int) or v < 1:
        raise RecordError(f"{source}: schema_version must be a positive integer, got {v!r}")
    if v > SCHEMA_VERSION:
        raise RecordError(
            f"{source}: record schema_version {v} is newer than this benchkit supports ({SCHEMA_VERSION}); upgrade benchkit"
        )
    try:
        return ResultRecord.model_validate(_migrate(data))
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RecordError(f"{source}: invalid record at {where}: {first['msg']} ({e.error_count()} problem(s))") from None


def load(path: str | Path) -> ResultRecord:
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordError(f"{p}: no such record file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RecordError(f"{p}: not readable JSON ({e})") from None
    return parse(data, str(p))


def find(paths: list[str | Path]) -> list[Path]:
    """Record files among `paths` (files, or directories searched recursively)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*.json") if not q.name.startswith(".")))
        elif p.exists():
            out.append(p)
        else:
            raise RecordError(f"{p}: no such file or directory")
    return out
