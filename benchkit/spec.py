"""The evaluation spec: what to run, and under which rules.

A spec file (YAML, or JSON) describes a *suite*: workloads x backends x
scenarios, run rules and a seed. Every model here is frozen and rejects
unknown keys, so a typo is an error rather than a silently ignored setting.
Durations carry their unit in the name (``min_duration_ms``,
``target_latency_ns``). Paths are relative to the spec file.

Scenario fields left unset (``None``) take their value from the run profile
(``quick``, ``standard``, ``mlperf``); :meth:`ScenarioBase.effective` resolves
them and the result record stores the effective values.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from typing_extensions import Self
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from benchkit._fsutil import read_bounded
from benchkit.errors import SpecError

Precision = Literal["fp32", "fp16", "bf16", "int8", "mixed"]
Profile = Literal["quick", "standard", "mlperf", "certify"]
AccuracyReference = Literal["onnxruntime", "onnx-reference"]
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"

# Upper bounds of every duration, count and rate a spec may give (docs/reference/spec.md gives each field's). Each
# is far above any real run and far below what would overflow a counter, a timer or memory: a value past one is a
# typo (a stray exponent), never a setting.
MAX_DURATION_MS = 7 * 24 * 3_600_000
"""Longest duration a spec may give (min/max_duration_ms, warmup_ms): 7 days."""
MAX_QUERY_COUNT = 1_000_000_000
"""Most queries (or Offline samples) a spec may ask for: 10^9."""
MAX_BATCH = 1 << 20
"""Largest batch_size or samples_per_query: 1,048,576 samples in one call."""
MAX_QPS = 1e9
"""Highest Server arrival rate, queries per second."""
MAX_LATENCY_NS = 3_600 * 10**9
"""Longest latency bound (target_latency_ns): one hour."""
MAX_WORKERS = 1024
"""Most Server worker threads, and most Offline calls in flight (concurrency)."""
MAX_CELL_TIMEOUT_S = 7 * 24 * 3_600.0
"""Longest cell_timeout_s: 7 days."""
MAX_DIM = 2**31 - 1
"""Largest tensor dimension (dims, inputs.shape)."""
MAX_TOKENS = 1 << 20
"""Longest prompt or generation a generative scenario may ask for, in tokens (far above any model's context)."""
MAX_SEED = 2**63 - 1
"""Largest seed."""
MAX_MEMORY_BYTES = 1 << 50
"""Largest run.max_memory_bytes: 1 PiB."""


class _Frozen(BaseModel):
    # Numbers are finite (NaN and infinity are refused wherever a float is read); integer fields are declared
    # strict one by one (a bool, a float or a string is not a count).
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class InputOverride(_Frozen):
    """How to generate one graph input, where the graph alone does not say."""

    shape: tuple[Annotated[int, Field(ge=0, le=MAX_DIM, strict=True)], ...] | None = Field(
        None, max_length=32, description="Full shape of the input for one inference call; must agree with the graph's fixed dims."
    )
    low: float | None = Field(None, strict=True, description="Lower bound (inclusive) of generated values. Default: 0 for integers.")
    high: float | None = Field(
        None, strict=True, description="Upper bound (exclusive) of generated values. Default for integers: the range the model "
        "declares (benchkit's exports carry it in their metadata), else the size of the table an integer input "
        "indexes (Gather), else 100; floats are N(0, 1)."
    )
    data: Path | None = Field(
        None, description="Real samples instead of generated values, relative to the spec: a .npy file "
        "([samples, ...]), a .npz archive (the array named like the input) or a folder of .npy files (one sample "
        "each). Cycled through the input pool; its SHA-256 goes into the record."
    )

    @model_validator(mode="after")
    def _data_or_range(self) -> InputOverride:
        if self.data is not None and (self.low is not None or self.high is not None):
            raise ValueError("give either `data` (real samples) or `low`/`high` (generated values), not both")
        return self

    @model_validator(mode="after")
    def _ordered(self) -> InputOverride:
        if self.low is not None and self.high is not None and not self.low < self.high:
            raise ValueError(f"low must be below high, got low={self.low:g}, high={self.high:g}")
        return self


class DeviceDescriptor(_Frozen):
    """A device's published peaks, for roofline figures. Units in the names; one file per device."""

    name: str = Field(description="Device model, e.g. 'NVIDIA H200 SXM'.")
    peak_flops_per_s: dict[Precision, float] = Field(
        description="Dense peak per precision, e.g. {fp32: 6.7e13, bf16: 9.9e14}."
    )
    memory_bandwidth_bytes_per_s: float | None = Field(None, gt=0, description="Peak memory bandwidth.")
    source: str = Field("", description="Where the figures come from (datasheet URL or document).")


def load_device_file(path: Path, origin: str) -> DeviceDescriptor:
    """Read a device descriptor; errors name the file and field."""
    # The file's values are never quoted back: device_file may name any file (/etc/passwd), and the message may end
    # up in a log or a record. Errors say where and what was expected, not what was found.
    try:
        text = read_bounded(path, 1 << 20, error=SpecError, what="device file").decode("utf-8")
        data = yaml.safe_load(text)
    except FileNotFoundError:
        raise SpecError(f"{origin}: device file not found: {path}") from None
    except SpecError as e:
        raise SpecError(f"{origin}: device file: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{origin}: cannot read device file {path}: {getattr(e, 'strerror', None) or 'not UTF-8 text'}") from None
    except (yaml.YAMLError, RecursionError, ValueError, OverflowError):
        raise SpecError(f"{origin}: device file {path} is not valid YAML (expected a mapping with name and "
                        "peak_flops_per_s)") from None
    if not isinstance(data, dict):
        raise SpecError(f"{origin}: device file {path} is not a device descriptor (expected a mapping with name and "
                        f"peak_flops_per_s; got {type(data).__name__})")
    try:
        return DeviceDescriptor.model_validate(data)
    except ValidationError as e:
        # Field paths are named (short identifiers only), values never: pydantic's msg does not hold the input.
        where = "; ".join(".".join(str(k) if re.fullmatch(r"[A-Za-z0-9_]{1,40}", str(k)) else "…"
                                   for k in err["loc"] if k != "[key]") + f": {err['msg']}" for err in e.errors()[:3])
        raise SpecError(f"{origin}: invalid device file {path}: {where}") from None


class WorkloadSpec(_Frozen):
    """One workload: a catalog model (by name) or any ONNX file (by path)."""

    name: str = Field(pattern=_NAME, description="Name used in records and on the command line.")
    model: Path | None = Field(
        None, description="ONNX file, relative to the spec file. Unset: `catalog` (or `name`) names a catalog workload."
    )
    catalog: str | None = Field(None, description="Catalog workload to build. Default: `name`, when `model` is unset.")
    variant: Literal["fp32", "fp16", "int8"] = Field("fp32", description="Catalog precision variant to build.")
    params: dict[str, Any] = Field(default_factory=dict, description="Catalog builder overrides (e.g. layers).")
    sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="Pin of the model's SHA-256 as records give it (workload.model_sha256: covers the graph and every "
        "external-data file it references); a mismatch is an error.",
    )
    dims: dict[str, Annotated[int, Field(le=MAX_DIM, strict=True)]] = Field(
        default_factory=dict,
        description="Values of named dynamic dimensions (dim_param), e.g. {seq: 128}. The batch dim comes from the scenario.",
    )
    inputs: dict[str, InputOverride] = Field(default_factory=dict, description="Per-input generation overrides.")

    @field_validator("dims")
    @classmethod
    def _positive_dims(cls, v: dict[str, int]) -> dict[str, int]:
        for k, n in v.items():
            if n <= 0:
                raise ValueError(f"dimension {k!r} must be a positive integer, got {n}")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> WorkloadSpec:
        if self.model is not None and self.catalog is not None:
            raise ValueError("give either `model` (an ONNX file) or `catalog` (a catalog name), not both")
        if self.model is not None and (self.params or self.variant != "fp32"):
            raise ValueError("`params` and `variant` apply to catalog workloads only, not to a `model` file")
        return self

    @property
    def catalog_name(self) -> str | None:
        """The catalog entry this workload builds, or None for an external file."""
        return None if self.model is not None else (self.catalog or self.name)


class BackendSpec(_Frozen):
    """One backend adapter and its options."""

    name: str = Field(description="Adapter name as registered in the `benchkit.backends` entry-point group.")
    label: str | None = Field(
        None, pattern=_NAME, description="Distinct name for this configuration in records. Default: `name`."
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Adapter options, validated by the adapter.")
    precision: Precision = Field("fp32", description="Precision the result claims; the adapter reports what ran.")
    allow_precision_mismatch: bool = Field(
        False, description="Accept a record whose effective precision differs from the claimed one."
    )
    device_file: Path | None = Field(
        None,
        description="YAML device descriptor (peak FLOP/s per precision, memory bandwidth), relative to the spec; "
        "used for the roofline when the adapter does not report a peak.",
    )

    @property
    def id(self) -> str:
        return self.label or self.name


# Profile defaults for unset scenario fields: `_PROFILE_DEFAULTS` for every
# scenario, `_SCENARIO_PROFILE_DEFAULTS` where a scenario needs its own.
#
# `mlperf` follows MLPerf Inference as LoadGen 6.0 applies it (its built-in
# mlperf.conf over TestSettings' defaults): every scenario runs at least
# 600 s; min_query_count is LoadGen's default of 100 for SingleStream and
# Server, 662 for MultiStream (mlperf.conf), and 24,576 samples for Offline
# (mlperf.conf's value for the vision and recommendation models; benchkit, like
# LoadGen, counts Offline's minimum in samples).
#
# `quick` (CI, seconds) and `standard` keep each latency scenario at or above
# the fewest queries LoadGen's early stopping can ever accept (SingleStream p90:
# 64; MultiStream p99: 662; Server p99: 662 allows one query over the bound),
# so a short run is not INVALID for its length alone.
_PROFILE_DEFAULTS: dict[str, dict[str, int]] = {
    "quick": {"min_duration_ms": 500, "min_query_count": 50, "warmup_ms": 50, "warmup_queries": 5},
    "standard": {"min_duration_ms": 10_000, "min_query_count": 1024, "warmup_ms": 200, "warmup_queries": 10},
    # `certify`: the standard minimums, the compliance audits always run (see benchkit.checks.audits), and stability
    # flags, a headline not pinned down or a drift make a record INVALID (benchkit.checks.measurement; the rules:
    # docs/rules.md, "The certify rules for a noisy machine").
    "certify": {"min_duration_ms": 10_000, "min_query_count": 1024, "warmup_ms": 200, "warmup_queries": 10},
    "mlperf": {"min_duration_ms": 600_000, "min_query_count": 100, "warmup_ms": 2_000, "warmup_queries": 10},
}
_SCENARIO_PROFILE_DEFAULTS: dict[str, dict[str, dict[str, int]]] = {
    "quick": {"single_stream": {"min_query_count": 64}, "multi_stream": {"min_query_count": 662},
              "server": {"min_query_count": 662}},
    "standard": {},
    "mlperf": {"multi_stream": {"min_query_count": 662}, "offline": {"min_query_count": 24_576}},
    "certify": {},
}


def profile_defaults(profile: Profile, kind: str) -> dict[str, int]:
    """The values a profile gives a scenario kind's unset fields."""
    return {**_PROFILE_DEFAULTS[profile], **_SCENARIO_PROFILE_DEFAULTS[profile].get(kind, {})}


def format_number(x: float) -> str:
    """A rate or size as it appears in cell ids: 1000, 2.5, 1250000 (never 1e+06)."""
    return str(int(x)) if float(x).is_integer() else f"{x:.6g}".replace("+", "")

AUDITED_PROFILES = frozenset({"certify"})
"""Profiles under which every cell runs the compliance audits, as ``benchkit run --audit`` does."""


class ScenarioBase(_Frozen):
    """Stop rules shared by every scenario (LoadGen's semantics).

    The run continues until BOTH ``min_duration_ms`` AND ``min_query_count``
    are met, and stops early as soon as EITHER ``max_duration_ms`` OR
    ``max_query_count`` is reached. Unset fields take the profile's value.
    """

    min_duration_ms: int | None = Field(None, gt=0, le=MAX_DURATION_MS, strict=True,
                                        description="Minimum timed duration. Profile default.")
    min_query_count: int | None = Field(None, gt=0, le=MAX_QUERY_COUNT, strict=True,
                                        description="Minimum number of queries. Profile default.")
    max_duration_ms: int | None = Field(None, gt=0, le=MAX_DURATION_MS, strict=True,
                                        description="Stop when this duration is reached. Default: none.")
    max_query_count: int | None = Field(None, gt=0, le=MAX_QUERY_COUNT, strict=True,
                                        description="Stop when this many queries ran. Default: none.")
    warmup_ms: int | None = Field(None, ge=0, le=MAX_DURATION_MS, strict=True,
                                  description="Untimed run-in: at least this long... Profile default.")
    warmup_queries: int | None = Field(None, ge=0, le=MAX_QUERY_COUNT, strict=True,
                                       description="...and at least this many queries. Profile default.")

    @model_validator(mode="after")
    def _bounds(self) -> ScenarioBase:
        if self.max_duration_ms is not None and self.min_duration_ms is not None:
            if self.max_duration_ms < self.min_duration_ms:
                raise ValueError("max_duration_ms must be >= min_duration_ms")
        if self.max_query_count is not None and self.min_query_count is not None:
            if self.max_query_count < self.min_query_count:
                raise ValueError("max_query_count must be >= min_query_count")
        return self

    def sweep(self) -> list[tuple[str, dict[str, Any]]]:
        """The points of a sweep: (cell id suffix, settings override) each; one point with no suffix if none."""
        return [("", {})]

    def effective(self, profile: Profile) -> Self:
        """This scenario with every unset field filled from the profile: what a cell runs and the record stores.

        A swept field keeps its list here; :meth:`points` gives each point resolved.
        """
        values: dict[str, Any] = {}
        for key, default in profile_defaults(profile, getattr(self, "kind", "")).items():
            if getattr(self, key) is None:
                values[key] = default
        min_ms = values.get("min_duration_ms", self.min_duration_ms)
        min_q = values.get("min_query_count", self.min_query_count)
        # A max below a profile-filled min would never let the run finish honestly.
        if self.max_duration_ms is not None:
            values["min_duration_ms"] = min(min_ms, self.max_duration_ms)
        if self.max_query_count is not None:
            values["min_query_count"] = min(min_q, self.max_query_count)
        return self.model_copy(update=values)

    def points(self, profile: Profile) -> list[tuple[str, Self]]:
        """One resolved scenario per sweep point, with its cell-id suffix ("" when nothing is swept)."""
        base = self.effective(profile)
        return [(suffix, base.model_copy(update=override)) for suffix, override in self.sweep()]

    def settings(self) -> dict[str, Any]:
        """The record's ``scenario.settings``: every field by name, as JSON."""
        return self.model_dump(mode="json")

    @property
    def samples_per_call(self) -> int:
        """Samples per inference call the scenario asks for (the model may fix another)."""
        return 1

    @property
    def latency_percentile(self) -> float | None:
        """The percentile the scenario's latency is judged at; None where latency is not bounded (Offline)."""
        return getattr(self, "target_latency_percentile", None)


class SingleStream(ScenarioBase):
    """One sample per query; the next query is issued when the previous completes. Metric: p90 latency."""

    kind: Literal["single_stream"]
    target_latency_percentile: float = Field(90.0, gt=0, lt=100, strict=True, description="Percentile reported as the metric.")


class MultiStream(ScenarioBase):
    """`samples_per_query` samples per query, closed loop. Metric: p99 per-query latency."""

    kind: Literal["multi_stream"]
    samples_per_query: int = Field(8, gt=0, le=MAX_BATCH, strict=True, description="Samples in each query (one inference call).")
    target_latency_percentile: float = Field(99.0, gt=0, lt=100, strict=True, description="Percentile reported as the metric.")

    @property
    def samples_per_call(self) -> int:
        return self.samples_per_query


class Server(ScenarioBase):
    """Poisson arrivals at `target_qps`; latency runs from each query's scheduled time. Metric: samples/s."""

    kind: Literal["server"]
    target_qps: PositiveFloat | tuple[PositiveFloat, ...] = Field(  # bounds: _check_sweep
        description="Mean arrival rate, queries per second. A list is a load sweep: one cell per rate."
    )
    target_latency_ns: int = Field(gt=0, le=MAX_LATENCY_NS, strict=True, description="Latency bound at `target_latency_percentile`.")
    target_latency_percentile: float = Field(99.0, gt=0, lt=100, strict=True, description="Percentile held to the bound.")
    workers: int = Field(
        2, gt=0, le=MAX_WORKERS, strict=True, description="Threads running queries concurrently when the adapter offers no asynchronous submit()."
    )

    @field_validator("target_qps", mode="before")
    @classmethod
    def _sweep_values(cls, v: Any) -> Any:
        return _check_sweep(v, "target_qps", "a positive number", float, MAX_QPS)

    def sweep(self) -> list[tuple[str, dict[str, Any]]]:
        if isinstance(self.target_qps, tuple):
            return [(f"-q{format_number(q)}", {"target_qps": q}) for q in self.target_qps]
        return [("", {})]


class Offline(ScenarioBase):
    """All samples available at once, issued in calls of `batch_size`. Metric: samples/s."""

    kind: Literal["offline"]
    batch_size: PositiveInt | tuple[PositiveInt, ...] = Field(
        1, description="Samples per inference call, where the model's batch dim allows it. "
        "A list is a batch sweep: one cell per size."
    )
    min_query_count: int | None = Field(
        None, gt=0, le=MAX_QUERY_COUNT, strict=True, description="Minimum number of samples (LoadGen counts Offline's minimum in samples). Profile default."
    )
    max_query_count: int | None = Field(None, gt=0, le=MAX_QUERY_COUNT, strict=True,
                                        description="Stop when this many samples ran. Default: none.")
    concurrency: PositiveInt | tuple[PositiveInt, ...] = Field(
        1, description="Calls kept in flight, closed loop: each completion issues the next (perf_analyzer's "
        "--concurrency-range). 1: one call at a time, or on an adapter that runs several at once (`max_in_flight`, "
        "OpenVINO) as many as it runs. A list is a concurrency sweep: one cell per value."
    )

    @field_validator("batch_size", mode="before")
    @classmethod
    def _sweep_values(cls, v: Any) -> Any:
        return _check_sweep(v, "batch_size", "a positive integer", int, MAX_BATCH)

    @field_validator("concurrency", mode="before")
    @classmethod
    def _concurrency_values(cls, v: Any) -> Any:
        return _check_sweep(v, "concurrency", "a positive integer", int, MAX_WORKERS)

    def sweep(self) -> list[tuple[str, dict[str, Any]]]:
        batches = [(f"-b{b}", {"batch_size": b}) for b in self.batch_size] if isinstance(self.batch_size, tuple) \
            else [("", {})]
        if not isinstance(self.concurrency, tuple):
            return batches
        # batch x concurrency: every batch size at every concurrency, batch first in the cell id
        return [(f"{bs}-c{c}", {**bo, "concurrency": c}) for bs, bo in batches for c in self.concurrency]

    @property
    def samples_per_call(self) -> int:
        if isinstance(self.batch_size, tuple):
            raise ValueError("a batch sweep has no one batch size: use points()")
        return self.batch_size


class Generative(ScenarioBase):
    """Requests that generate tokens (a language model's prefill, then one decode step per further token).

    Each request has an input (prompt) length and an output length drawn, seeded,
    from ``input_tokens`` and ``output_tokens`` (or from ``lengths_file``);
    generation stops at exactly the drawn output length (an end-of-sequence token
    is not a stop). ``mode: offline`` issues every request at once (headline:
    output tokens/s); ``mode: server`` issues them at Poisson arrivals of
    ``target_qps`` and is VALID only when the p99 time to first token and the p99
    time per output token are within ``target_ttft_ns`` and ``target_tpot_ns``
    (MLPerf's LLM rules), with early stopping on both. ``min_query_count`` and
    ``max_query_count`` count requests. See docs/rules.md, "Generative scenarios".
    """

    kind: Literal["generative"]
    mode: Literal["offline", "server"] = Field("offline", description="offline: every request issued at once; "
                                                "server: Poisson arrivals at target_qps.")
    input_tokens: int | tuple[int, int] | None = Field(  # checked by _length: strict, bounded
        None, description="Prompt length: a number (fixed) or [low, high] (uniform, both included). "
        "Default: 32, or the lengths file.")
    output_tokens: int | tuple[int, int] | None = Field(
        None, description="Tokens generated per request, the first included: a number or [low, high]. "
        "Default: 16, or the lengths file.")
    lengths_file: Path | None = Field(
        None, description="File of (input_tokens, output_tokens) pairs, one 'input,output' line each (a header "
        "line and # comments allowed), relative to the spec; requests draw pairs from it, seeded, with "
        "replacement. Excludes input_tokens and output_tokens.")
    target_qps: PositiveFloat | tuple[PositiveFloat, ...] | None = Field(  # bounds: _check_sweep
        None, description="server: mean request arrival rate per second (a list is a load sweep). Required there.")
    target_ttft_ns: int | None = Field(
        None, gt=0, le=MAX_LATENCY_NS, strict=True, description="server: bound on the p99 time to first token. Required there "
        "(MLPerf Llama-2-70B: 2 s).")
    target_tpot_ns: int | None = Field(
        None, gt=0, le=MAX_LATENCY_NS, strict=True, description="server: bound on the p99 time per output token. Required there "
        "(MLPerf Llama-2-70B: 200 ms).")
    target_latency_percentile: float = Field(99.0, gt=0, lt=100, strict=True, description="Percentile held to both bounds.")
    max_batch_size: int = Field(
        8, gt=0, le=MAX_BATCH, strict=True, description="Most requests one prefill or decode call carries (requests of equal length run together).")
    agreement_tokens: int = Field(
        16, gt=0, le=MAX_TOKENS, strict=True, description="Accuracy: the first N tokens of each checked request are compared with the reference "
        "runtime's greedy tokens.")
    agreement_requests: int = Field(16, gt=0, le=MAX_QUERY_COUNT, strict=True, description="Accuracy: requests checked (seeded positions).")
    min_token_agreement: float = Field(
        0.95, gt=0, le=1, strict=True, description="Accuracy: lowest passing mean share of those tokens that agree (each "
        "request scores its longest agreeing prefix, since one wrong token changes every later one).")

    @field_validator("input_tokens", "output_tokens", mode="before")
    @classmethod
    def _length(cls, v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            if len(v) != 2 or any(isinstance(x, bool) or not isinstance(x, int) or not 0 < x <= MAX_TOKENS
                                  for x in v):
                raise ValueError(f"expected a positive integer or [low, high] of positive integers (at most "
                                 f"{MAX_TOKENS:,}), got {v!r}")
            if v[0] > v[1]:
                raise ValueError(f"[low, high] needs low <= high, got {list(v)}")
            return tuple(v)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= MAX_TOKENS):
            raise ValueError(f"expected a positive integer (at most {MAX_TOKENS:,}) or [low, high] of them, got {v!r}")
        return v

    @field_validator("target_qps", mode="before")
    @classmethod
    def _sweep_values(cls, v: Any) -> Any:
        return None if v is None else _check_sweep(v, "target_qps", "a positive number", float, MAX_QPS)

    @model_validator(mode="after")
    def _consistent(self) -> Generative:
        if self.lengths_file is not None and (self.input_tokens is not None or self.output_tokens is not None):
            raise ValueError("give either lengths_file or input_tokens/output_tokens, not both")
        if self.mode == "server":
            missing = [k for k in ("target_qps", "target_ttft_ns", "target_tpot_ns") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"mode server needs {', '.join(missing)}")
        else:
            extra = [k for k in ("target_qps", "target_ttft_ns", "target_tpot_ns") if getattr(self, k) is not None]
            if extra:
                raise ValueError(f"{', '.join(extra)} apply to mode server only")
        return self

    def effective(self, profile: Profile) -> Self:
        # The profile's values for the form it takes: server's floor is early stopping's (662 at p99).
        base = super().effective(profile)
        filled = {}
        for key, default in profile_defaults(profile, self.mode).items():
            if getattr(self, key) is None:
                filled[key] = default
        if self.lengths_file is None:
            filled["input_tokens"] = 32 if self.input_tokens is None else self.input_tokens
            filled["output_tokens"] = 16 if self.output_tokens is None else self.output_tokens
        if self.max_query_count is not None and "min_query_count" in filled:
            filled["min_query_count"] = min(filled["min_query_count"], self.max_query_count)
        if self.max_duration_ms is not None and "min_duration_ms" in filled:
            filled["min_duration_ms"] = min(filled["min_duration_ms"], self.max_duration_ms)
        return base.model_copy(update=filled)

    def sweep(self) -> list[tuple[str, dict[str, Any]]]:
        if isinstance(self.target_qps, tuple):
            return [(f"-q{format_number(q)}", {"target_qps": q}) for q in self.target_qps]
        return [("", {})]

    @property
    def latency_percentile(self) -> float | None:
        return self.target_latency_percentile if self.mode == "server" else None


def _check_sweep(v: Any, name: str, what: str, kind: type, most: float) -> Any:
    """One value or a list of distinct values, each `what` up to `most`; checked here so an error names the bad
    item plainly."""
    what = f"{what} (at most {format_number(most)})"

    def ok(x: Any) -> bool:
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            return False
        if kind is int and not isinstance(x, int):  # strict, as every count: 8.0 is not a batch size
            return False
        return math.isfinite(x) and 0 < x <= most

    if isinstance(v, (list, tuple)):
        if not v:
            raise ValueError(f"a {name} sweep must list at least one value")
        bad = [x for x in v if not ok(x)]
        if bad:
            raise ValueError(f"each {name} in the sweep must be {what}, got {bad[0]!r}")
        dupes = sorted({x for x in v if list(v).count(x) > 1})
        if dupes:
            raise ValueError(f"{name} sweep values must be distinct, repeated: {', '.join(map(format_number, dupes))}")
        return tuple(kind(x) for x in v)
    if not ok(v):
        raise ValueError(f"{name} must be {what} or a list of them (a sweep), got {v!r}")
    return v


Scenario = Annotated[Union[SingleStream, MultiStream, Server, Offline, Generative], Field(discriminator="kind")]


class PowerMeterSpec(_Frozen):
    """One power meter and its options; a plain name (``rapl``) stands for ``{name: rapl}``."""

    name: str = Field(
        description="Meter as registered in the `benchkit.power_meters` entry-point group: rapl, nvml, external, "
        "or a vendor's."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Meter options, validated by the meter (rapl: root; external: url or file)."
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v


class PowerRules(_Frozen):
    """Power meters sampled in a background thread of the benchkit process, outside every timed path."""

    meters: Literal["auto"] | tuple[PowerMeterSpec, ...] = Field(
        "auto",
        description="'auto': every installed meter that needs no options (rapl, nvml), each used where readable; "
        "a list: exactly these (each unreadable one is reported with its reason); []: no power measurement.",
    )
    idle_ms: int = Field(
        2000, ge=0, le=600_000, strict=True,
        description="Idle baseline measured before the first cell, reported beside the loaded figures.",
    )
    sample_interval_ms: int = Field(100, ge=10, le=10_000, strict=True, description="Period of the background sampling.")


class RunRules(_Frozen):
    """How cells are executed."""

    profile: Profile = Field(
        "standard",
        description="Defaults for unset scenario fields: quick | standard | mlperf | certify "
        "(standard's minimums; the compliance audits always run; throttling or a high CV is INVALID).",
    )
    isolation: Literal["process", "inline"] = Field(
        "process", description="Run each cell in a fresh worker process (default) or in the benchkit process."
    )
    cell_timeout_s: float = Field(
        900.0, gt=0, le=MAX_CELL_TIMEOUT_S, strict=True,
        description="Wall-clock limit for one cell (load + warmup + measurement); then it is killed, with every "
        "process it started. Also the deadline (at most 120 s) of each adapter's start-up check before the suite.",
    )
    max_memory_bytes: int | Literal["auto"] | None = Field(
        "auto",
        description="Memory limit of each cell's worker and every process it starts, in bytes or as a size such "
        "as '8GiB' (at most 1 PiB); 'auto': 3/4 of physical memory; null: none. Counted as the kernel counts it: "
        "a cgroup v2 memory.max where benchkit can make one, else RLIMIT_DATA in the worker plus a monitor of the "
        "anonymous and shared memory (MAP_SHARED included) of its whole process tree (docs/rules.md, 'Worker "
        "processes'). A cell going past it ends with an error record naming the limit instead of waking the "
        "machine's out-of-memory killer. Not applied with isolation: inline.",
    )
    repeats: int = Field(
        1, ge=1, le=100, strict=True,
        description="Run every cell this many times, each in a fresh process (rounds over the whole suite); "
        "records carry a `repeat` block and the spread between sessions beside the spread within each run.",
    )
    system_file: Path | None = Field(
        None,
        description="YAML system description (submitter, system_name, status, cooling, notes), relative to the "
        "spec; stored in every record's system block. `benchkit run --system-file` overrides it.",
    )
    power: PowerRules = Field(default_factory=PowerRules, description="Power and energy measurement.")

    @field_validator("max_memory_bytes", mode="before")
    @classmethod
    def _memory_size(cls, v: Any) -> Any:
        from benchkit.runner.limits import MIN_MEMORY_BYTES, parse_size

        if v is None or v == "auto":
            return v
        n = parse_size(v)
        if n < MIN_MEMORY_BYTES:
            raise ValueError(f"must be at least {MIN_MEMORY_BYTES} bytes (64 MiB), 'auto' or null; got {v!r}")
        if n > MAX_MEMORY_BYTES:
            raise ValueError(f"must be at most {MAX_MEMORY_BYTES} bytes (1 PiB), 'auto' or null; got {v!r}")
        return n
    keep_samples: bool = Field(True, description="Store raw per-query latencies (`samples_ns`) in each record.")
    audit: bool = Field(
        False,
        description="Run the compliance audits (timed outputs, repeated input, alternate seed) after each cell's "
        "measurement; always on under the certify profile. `benchkit run --audit` sets it too.",
    )
    accuracy_reference: AccuracyReference = Field(
        "onnxruntime",
        description="Backend computing the reference outputs of the accuracy gate: onnxruntime (CPU, fp32) "
        "or onnx-reference (onnx.reference, pure Python: slow, but independent of any runtime).",
    )
    accuracy_samples: int | None = Field(
        None, ge=1, le=16, strict=True, description="Inputs of the cell's pool the accuracy gate compares (seeded positions "
        "across the pool). Default: every input of the pool (up to 16 distinct inputs). Under --audit and the "
        "certify profile the gate always compares the whole pool."
    )
    division: Literal["auto", "closed", "open"] = Field(
        "auto",
        description="Division to file the results under (docs/rules.md): auto (benchkit decides), closed (a result "
        "that breaks a closed rule is INVALID, with the reasons) or open (labelled open whatever it qualifies for).",
    )


class Spec(_Frozen):
    """A suite: every workload x backend x scenario combination is one cell."""

    name: str = Field(pattern=_NAME, description="Suite name; records are filed under it.")
    seed: int = Field(0, ge=0, le=MAX_SEED, strict=True, description="Seed of every random input and arrival schedule.")
    description: str = Field("", description="Free text.")
    workloads: tuple[WorkloadSpec, ...] = Field(description="Workloads to run (at least one).")
    backends: tuple[BackendSpec, ...] = Field(description="Backend configurations to run (at least one).")
    scenarios: tuple[Scenario, ...] = Field(description="Scenarios to run each pair under (at least one).")
    run: RunRules = Field(default_factory=RunRules, description="Execution rules.")

    @field_validator("workloads", "backends", "scenarios")
    @classmethod
    def _not_empty(cls, v: tuple) -> tuple:
        # A field validator (not min_length) so it runs only when every item is valid:
        # an invalid item must not also be reported as "empty list".
        if not v:
            raise ValueError("must list at least one entry")
        return v

    @model_validator(mode="after")
    def _unique(self) -> Spec:
        for what, ids in (
            ("workloads", [w.name for w in self.workloads]),
            ("backends", [b.id for b in self.backends]),
        ):
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            if dupes:
                hint = " (give each a distinct `label`)" if what == "backends" else ""
                raise ValueError(f"{what}: names must be unique, repeated: {', '.join(dupes)}{hint}")
        return self


class LoadedSpec:
    """A validated spec with where it came from (paths resolve against `base_dir`)."""

    __slots__ = ("spec", "path", "base_dir", "sha256")

    def __init__(self, spec: Spec, path: Path | None, base_dir: Path, sha256: str) -> None:
        self.spec, self.path, self.base_dir, self.sha256 = spec, path, base_dir, sha256

    def resolve_model(self, workload: WorkloadSpec) -> Path | None:
        if workload.model is None:
            return None
        return (self.base_dir / workload.model).resolve()


def _format_loc(loc: tuple[Any, ...], data: Any) -> str:
    """Turn a pydantic location into `scenarios[1].min_duration_ms`, naming list items usefully."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            label = ""
            if isinstance(node, list) and 0 <= part < len(node) and isinstance(node[part], dict):
                tag = node[part].get("name") or node[part].get("kind")
                label = f" ({tag})" if isinstance(tag, str) else ""
            out += f"[{part}]{label}"
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
        elif part in ("single_stream", "multi_stream", "server", "offline", "generative", "function-after"):
            continue  # union tag / validator names add nothing for the reader
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "(top level)"


def format_validation_error(source: str, err: ValidationError, data: Any) -> str:
    lines = [f"{source}: invalid spec ({err.error_count()} problem{'s' if err.error_count() > 1 else ''})"]
    for e in err.errors(include_url=False):
        where = _format_loc(tuple(e["loc"]), data)
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; `benchkit schema spec` lists every field)"
        elif e["type"] == "union_tag_invalid":
            msg = f"unknown scenario kind {e.get('input', {}).get('kind')!r}; expected one of single_stream, multi_stream, server, offline, generative"
        elif e["type"] == "union_tag_not_found":
            msg = "missing `kind`; expected one of single_stream, multi_stream, server, offline, generative"
        elif e["type"] == "string_type" and e.get("input") is None:
            msg = ("no value: YAML reads an unquoted null, ~ or an empty value as nothing; a name spelled so must be "
                   'quoted (name: "null")')
        elif ("input" in e and e["type"] not in ("missing",) and not isinstance(e["input"], (dict, list))
              and "got " not in msg):
            msg = f"{msg} (got {e['input']!r})"
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


MAX_SPEC_BYTES = 1 << 20
"""Largest spec file read (1 MiB): a real spec is a few kilobytes; anything bigger is a mistake or an attack."""
MAX_YAML_NODES = 100_000
"""Most YAML nodes a spec may expand to, every alias counted at each use (defeats "billion laughs")."""
MAX_YAML_DEPTH = 64
"""Deepest nesting of mappings and lists a spec may have."""


def _yaml_children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_yaml_extent(root: yaml.Node, source: str) -> None:
    """Refuse a composed YAML graph whose expansion is too big, too deep, or cyclic, before anything expands it.

    Composing and constructing share aliased nodes, so both stay cheap even for an
    alias bomb; the blow-up would come later, when validation walks the data. The
    walk here visits each distinct node once (memoised), counting what it expands to.
    """
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            on_path.discard(key)
            kids = _yaml_children(node)
            size[key] = min(1 + sum(size[id(k)] for k in kids), MAX_YAML_NODES + 1)
            height[key] = 1 + max((height[id(k)] for k in kids), default=0)
            continue
        if key in size:
            continue
        if key in on_path:
            raise SpecError(f"{source}: YAML alias refers to itself (a recursive structure); a spec is a tree")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in _yaml_children(node) if id(k) not in size)
    if size[id(root)] > MAX_YAML_NODES:
        raise SpecError(f"{source}: YAML expands to more than {MAX_YAML_NODES:,} nodes (aliases counted at each "
                        "use); a spec is a few hundred nodes: refusing what looks like an alias bomb")
    if height[id(root)] > MAX_YAML_DEPTH:
        raise SpecError(f"{source}: YAML nesting is {height[id(root)]} levels deep; at most {MAX_YAML_DEPTH} allowed")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (YAML says keys are unique; PyYAML keeps the last
    silently, so a repeated setting would hide the first). Keys brought in by a merge (``<<: *base``) may be
    overridden: that is what a merge is for."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, _value in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:
                    continue  # an unhashable key: construct_mapping reports it
                if first is not key_node:
                    raise _DuplicateKey(key, first, key_node)
        return super().construct_mapping(node, deep=deep)


class _DuplicateKey(Exception):
    def __init__(self, key: Any, first: yaml.Node, again: yaml.Node) -> None:
        super().__init__(f"key {key!r} is given twice, at line {first.start_mark.line + 1} and at line "
                         f"{again.start_mark.line + 1}; give each key once")


def _load_yaml(text: str, source: str) -> Any:
    """Like ``yaml.safe_load`` (SafeLoader: a spec is data, it never constructs Python objects), with bounds,
    and a key given twice refused."""
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError(f"{source}: spec is {len(text):,} characters; at most {MAX_SPEC_BYTES:,} allowed")
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_yaml_extent(node, source)
        return loader.construct_document(node)
    except _DuplicateKey as e:
        raise SpecError(f"{source}: {e}") from None
    finally:
        loader.dispose()


def parse_spec(text: str, source: str, base_dir: Path, path: Path | None = None) -> LoadedSpec:
    """Validate spec text (YAML or JSON); `source` names it in errors."""
    try:
        data = _load_yaml(text, source)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"{source}: not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise SpecError(f"{source}: YAML nesting too deep") from None
    except (ValueError, OverflowError) as e:
        # SafeLoader's scalar constructors: a 5000-digit integer, a timestamp such as 2024-13-45.
        raise SpecError(f"{source}: not valid YAML: a value cannot be read: {e}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping with keys name, workloads, backends, scenarios; got {type(data).__name__}")
    try:
        spec = Spec.model_validate(data)
    except ValidationError as e:
        raise SpecError(format_validation_error(source, e, data)) from None
    except RecursionError:
        raise SpecError(f"{source}: spec nesting too deep") from None
    digest = hashlib.sha256(text.encode()).hexdigest()
    return LoadedSpec(spec, path, base_dir, digest)


def spec_path(name: str | Path) -> Path:
    """The file a spec argument names: a file that exists, else, for a bare name (``ci-smoke``: no folder, no
    suffix), the standard spec shipped with benchkit. A path that does not exist is an error, never quietly
    another spec: ``/nonexistent/dir/ci-smoke.yaml`` is not ``ci-smoke``."""
    p = Path(name)
    if os.path.lexists(p):
        return p
    text = str(name)
    bare = "/" not in text and os.sep not in text and (os.altsep is None or os.altsep not in text) \
        and not re.search(r"\.(ya?ml|json)$", text, re.IGNORECASE)
    bundled = find_bundled_spec(text)
    if bare and bundled is not None:
        return bundled
    hint = f" (the standard spec of that name is given by its bare name: {bundled.stem})" if bundled else ""
    raise SpecError(f"{name}: spec file not found{hint}")


def load_spec(path: str | Path) -> LoadedSpec:
    """Read and validate a spec file (or a standard spec by bare name, :func:`spec_path`). Raises
    :class:`SpecError` naming the file and field."""
    p = spec_path(path)
    try:  # a regular file only, read bounded: the path may be a device or a FIFO that never ends
        raw = read_bounded(p, MAX_SPEC_BYTES, error=SpecError, what="spec (a spec is a few kilobytes)")
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{p}: cannot read spec: {e}") from None
    return parse_spec(text, str(path), p.resolve().parent, p)


def find_bundled_spec(name: str) -> Path | None:
    """The standard spec shipped with benchkit whose file name is that of ``name`` (`ci-smoke`,
    `specs/ci-smoke.yaml`): use :func:`spec_path` to resolve what a user typed."""
    from benchkit._resources import data_dir

    stem = re.sub(r"\.(ya?ml|json)$", "", Path(name).name)
    for ext in (".yaml", ".yml", ".json"):
        cand = data_dir("specs") / f"{stem}{ext}"
        if cand.is_file():
            return cand
    return None


def spec_json_schema() -> dict[str, Any]:
    return Spec.model_json_schema()


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces) used for hashing and signatures."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
