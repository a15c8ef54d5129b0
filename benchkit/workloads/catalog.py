"""The standard workload catalog: manifests, deterministic builds, variants, cache.

Each standard workload is one YAML manifest in ``benchkit._resources.data_dir("workloads")``
naming a builder function, its default parameters, the graph inputs, and the
published figures the build is checked against. A builder is::

    def build(params: Mapping[str, Any], rng: np.random.Generator) -> onnx.ModelProto

called with the manifest's ``params`` (overridden by the caller) and
``np.random.default_rng(entry.weights_seed)``. It returns an fp32 graph whose
inputs match the manifest; the catalog derives the other precisions from it:

* ``"fp16"``: every float32 weight, constant and intermediate becomes float16;
  graph inputs and outputs stay float32, with a Cast at each edge, so the
  manifest's input declarations hold for every variant.
* ``"int8"``: QDQ static quantisation (int8 activations and per-channel int8
  weights, MinMax calibration) by ``onnxruntime.quantization.quantize_static``
  over seeded calibration inputs; graph inputs and outputs stay float32.

Input shapes in a manifest are ints (fixed), dim names (dynamic, with a default
in ``dims``; the leading dim of every input is ``batch``), or ``$param``
references to an integer parameter, resolved when the entry is loaded (with the
default params) or by :func:`input_decls` (with overrides).

Building is deterministic: the same manifest, params, variant and library
versions give byte-identical files in any process (see :func:`serialize`).
"""

from __future__ import annotations

import copy
import difflib
import functools
import hashlib
import importlib
import inspect
import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import onnx
import yaml
from onnx import TensorProto, helper, numpy_helper
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from benchkit._fsutil import write_atomic
from benchkit._resources import data_dir
from benchkit._version import __version__
from benchkit.errors import WorkloadError
from benchkit.workloads.builders._graph import finalize

BUILD_FORMAT = "2"  # 2: integer inputs' ranges and named dims' defaults in metadata_props; 1: first version
# (part of the cache key: a build of another format is another file)

VARIANTS = ("fp32", "fp16", "int8")
"""Precision variants a manifest may list; ``fp32`` is the reference and always present."""

CALIBRATION_SAMPLES = 4
"""Seeded calibration batches fed to the int8 quantiser (enough for MinMax on random data)."""

_INT_DTYPES = ("int64", "int32", "int8", "uint8")
_NAME_RE = r"^[a-z0-9][a-z0-9._-]*$"


# ---------------------------------------------------------------------------
# Public records


@dataclass(frozen=True)
class InputDecl:
    """One graph input as the manifest declares it."""

    name: str
    dtype: str
    """numpy dtype name: "float32", "int64", ..."""
    shape: tuple[int | str, ...]
    """ints are fixed; strings are named dynamic dims ("batch", "seq") with defaults in ``CatalogEntry.dims``."""
    range: tuple[float, float] | None = None
    """[low, high) of the values, for integer inputs (token ids, indices)."""


@dataclass(frozen=True)
class CatalogEntry:
    """A loaded, validated workload manifest."""

    name: str
    family: str
    task: str
    description: str
    builder: str
    """``"module.path:function"`` of the builder."""
    params: Mapping[str, Any]
    """Builder defaults, overridable per call."""
    dims: Mapping[str, int]
    """Default values of the named dynamic dims, e.g. ``{"batch": 1, "seq": 128}``."""
    inputs: tuple[InputDecl, ...]
    """Inputs for the default params (``$param`` shape references resolved)."""
    variants: tuple[str, ...]
    published: Mapping[str, Any]
    """``{"params": int, "macs": float, "source": str, ...}``; empty for micro-kernels."""
    mlperf_latency_bound_ms: float | None
    weights_seed: int
    manifest_path: Path

    def __hash__(self) -> int:
        # The generated hash would fail on the mapping fields; a name identifies an entry.
        return hash((self.name, self.manifest_path))


# ---------------------------------------------------------------------------
# Manifest schema (internal; the public view is CatalogEntry)


class _InputModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="Graph input name, as the builder declares it.")
    dtype: Literal["float32", "float16", "int64", "int32", "int8", "uint8", "bool"] = Field(
        description="numpy dtype name of the input."
    )
    shape: tuple[int | str, ...] = Field(
        min_length=1, description="Dims: int (fixed), dim name (dynamic), or '$param' (an integer parameter)."
    )
    range: tuple[float, float] | None = Field(
        None, description="[low, high) of the values; required for integer inputs."
    )

    @field_validator("shape")
    @classmethod
    def _dims_positive(cls, v: tuple[int | str, ...]) -> tuple[int | str, ...]:
        for d in v:
            if isinstance(d, int) and d <= 0:
                raise ValueError(f"fixed dims must be positive, got {d}")
            if isinstance(d, str) and not re.fullmatch(r"\$?[A-Za-z_][A-Za-z0-9_]*", d):
                raise ValueError(f"dim {d!r} is neither a dim name nor a '$param' reference")
        return v

    @model_validator(mode="after")
    def _range_for_ints(self) -> _InputModel:
        if self.dtype in _INT_DTYPES and self.range is None:
            raise ValueError(f"integer input {self.name!r} needs a range: [low, high)")
        if self.range is not None and not self.range[0] < self.range[1]:
            raise ValueError(f"range of {self.name!r} must have low < high, got {list(self.range)}")
        return self


class _PublishedModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    params: int | None = Field(None, gt=0, description="Published parameter count (trainable weights).")
    macs: float | None = Field(None, gt=0, description="Published multiply-accumulates per sample.")
    source: str | None = Field(None, min_length=1, description="Where the figures come from (paper, model card).")
    notes: str | None = Field(None, description="How the published figures are counted, if not obvious.")

    @model_validator(mode="after")
    def _cited(self) -> _PublishedModel:
        if (self.params is not None or self.macs is not None) and not self.source:
            raise ValueError("published figures need a source")
        return self


class _ManifestModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=_NAME_RE, description="Catalog name; must equal the manifest file's stem.")
    family: str = Field(min_length=1, description='"cnn", "transformer", "recommender", "micro", ...')
    task: str = Field(min_length=1, description='"image-classification", "keyword-spotting", ...')
    description: str = Field(min_length=1)
    builder: str = Field(
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", description='"package.module:function" of the builder.'
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Builder defaults.")
    dims: dict[str, int] = Field(default_factory=dict, description="Defaults of the dynamic dims.")
    inputs: tuple[_InputModel, ...] = Field(min_length=1)
    variants: tuple[Literal["fp32", "fp16", "int8"], ...] = Field(("fp32",), min_length=1)
    published: _PublishedModel = Field(default_factory=_PublishedModel)
    mlperf_latency_bound_ms: float | None = Field(
        None, gt=0, description="MLPerf server-scenario latency constraint, if MLPerf defines one."
    )
    weights_seed: int = Field(ge=0, description="Seed of the builder's weight generator.")

    @field_validator("dims")
    @classmethod
    def _dims_positive(cls, v: dict[str, int]) -> dict[str, int]:
        for k, d in v.items():
            if d <= 0:
                raise ValueError(f"dim {k!r} default must be positive, got {d}")
        return v

    @field_validator("variants")
    @classmethod
    def _fp32_present(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if "fp32" not in v:
            raise ValueError("must include 'fp32' (the reference every other variant derives from)")
        if len(set(v)) != len(v):
            raise ValueError("lists a variant twice")
        return v

    @model_validator(mode="after")
    def _shapes_resolve(self) -> _ManifestModel:
        names = [i.name for i in self.inputs]
        if len(set(names)) != len(names):
            raise ValueError(f"inputs: duplicate input names {names}")
        for inp in self.inputs:
            if inp.shape[0] != "batch":
                raise ValueError(f"inputs.{inp.name}.shape: the leading dim must be 'batch', got {inp.shape[0]!r}")
            for d in inp.shape:
                if isinstance(d, str) and d.startswith("$"):
                    p = self.params.get(d[1:])
                    if not isinstance(p, int) or isinstance(p, bool):
                        raise ValueError(f"inputs.{inp.name}.shape: {d} must name an integer param")
                elif isinstance(d, str) and d not in self.dims:
                    raise ValueError(f"inputs.{inp.name}.shape: dynamic dim {d!r} has no default in dims")
        return self


# ---------------------------------------------------------------------------
# Loading


def _freeze(v: Any) -> Any:
    if isinstance(v, Mapping):
        return MappingProxyType({k: _freeze(x) for k, x in v.items()})
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    return v


def _thaw(v: Any) -> Any:
    """JSON-able plain copy of a (frozen) parameter value."""
    if isinstance(v, Mapping):
        return {k: _thaw(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_thaw(x) for x in v]
    return v


def _resolve_shape(shape: tuple[int | str, ...], params: Mapping[str, Any]) -> tuple[int | str, ...]:
    return tuple(params[d[1:]] if isinstance(d, str) and d.startswith("$") else d for d in shape)


def _load_manifest(path: Path) -> tuple[CatalogEntry, _ManifestModel]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise WorkloadError(f"workload manifest {path}: cannot read YAML: {e}") from e
    if not isinstance(raw, dict):
        raise WorkloadError(f"workload manifest {path}: expected a mapping at the top level")
    try:
        m = _ManifestModel.model_validate(raw)
    except ValidationError as e:
        lines = [
            f"  {'.'.join(str(p) for p in err['loc']) or '<top>'}: {err['msg']}" for err in e.errors()
        ]
        raise WorkloadError(f"workload manifest {path}: invalid:\n" + "\n".join(lines)) from None
    if m.name != path.stem:
        raise WorkloadError(f"workload manifest {path}: name {m.name!r} must equal the file stem {path.stem!r}")
    params = _freeze(m.params)
    entry = CatalogEntry(
        name=m.name,
        family=m.family,
        task=m.task,
        description=m.description.strip(),
        builder=m.builder,
        params=params,
        dims=MappingProxyType(dict(m.dims)),
        inputs=tuple(
            InputDecl(i.name, i.dtype, _resolve_shape(i.shape, params), i.range) for i in m.inputs
        ),
        variants=tuple(m.variants),
        published=MappingProxyType(m.published.model_dump(exclude_none=True)),
        mlperf_latency_bound_ms=m.mlperf_latency_bound_ms,
        weights_seed=m.weights_seed,
        manifest_path=path,
    )
    return entry, m


@functools.lru_cache(maxsize=1)
def _load_all() -> tuple[dict[str, CatalogEntry], dict[str, _ManifestModel]]:
    folder = data_dir("workloads")
    if not folder.is_dir():
        raise WorkloadError(f"workload manifest folder {folder} does not exist")
    entries_: dict[str, CatalogEntry] = {}
    models: dict[str, _ManifestModel] = {}
    for path in sorted(folder.glob("*.yaml")):
        entry, model = _load_manifest(path)
        entries_[entry.name] = entry
        models[entry.name] = model
    return dict(sorted(entries_.items())), models


def entries() -> dict[str, CatalogEntry]:
    """All standard workloads by name, sorted; manifests are read and validated once per process."""
    return dict(_load_all()[0])


def get(name: str) -> CatalogEntry:
    """The catalog entry called ``name``; WorkloadError names close matches if there is none."""
    all_ = _load_all()[0]
    try:
        return all_[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(all_), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(all_)}"
        raise WorkloadError(f"unknown workload {name!r}{hint}") from None


MAX_PARAM = 2**31 - 1
"""Largest integer a catalog param may be given (counts and sizes: what one tensor dimension holds)."""


def resolve_params(name: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The manifest defaults of ``name`` overridden by ``params``, checked key by key.

    An unknown key, or a value whose type differs from the default's (an int
    is accepted where the default is a float), raises WorkloadError.
    """
    entry = get(name)
    out = {k: _thaw(v) for k, v in entry.params.items()}
    for k, v in (params or {}).items():
        if k not in entry.params:
            allowed = ", ".join(sorted(entry.params)) or "(none)"
            raise WorkloadError(f"workload {name!r}: unknown param {k!r}; allowed: {allowed}")
        default = entry.params[k]
        ok = (
            type(v) is type(default)
            or (type(default) is float and type(v) is int)
            or (isinstance(default, tuple) and isinstance(v, (list, tuple)))
        )
        if not ok:
            raise WorkloadError(
                f"workload {name!r}: param {k!r} must be {type(default).__name__} like its default "
                f"{_thaw(default)!r}, got {v!r}"
            )
        for x in (v if isinstance(v, (list, tuple)) else (v,)):
            # a count or size past 2^31 - 1 (what a tensor dim holds), a NaN or an infinity is a typo
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                continue
            if (isinstance(x, int) and not 0 <= x <= MAX_PARAM) or (isinstance(x, float) and not math.isfinite(x)):
                raise WorkloadError(f"workload {name!r}: param {k!r} must be finite and, for an integer, between 0 "
                                    f"and {MAX_PARAM:,}; got {x!r}")
        out[k] = _thaw(v)
    return out


def input_decls(name: str, params: Mapping[str, Any] | None = None) -> tuple[InputDecl, ...]:
    """The input declarations of ``name`` with ``$param`` dims resolved for ``params`` overrides."""
    resolved = resolve_params(name, params)
    m = _load_all()[1][name]
    return tuple(InputDecl(i.name, i.dtype, _resolve_shape(i.shape, resolved), i.range) for i in m.inputs)


# ---------------------------------------------------------------------------
# Building


def _builder(entry: CatalogEntry) -> Callable[[Mapping[str, Any], np.random.Generator], onnx.ModelProto]:
    module, _, attr = entry.builder.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise WorkloadError(
            f"workload manifest {entry.manifest_path}: builder {entry.builder!r} cannot be imported: {e}"
        ) from e
    return fn


_TENSOR_DTYPE = {
    TensorProto.FLOAT: "float32",
    TensorProto.FLOAT16: "float16",
    TensorProto.INT64: "int64",
    TensorProto.INT32: "int32",
    TensorProto.INT8: "int8",
    TensorProto.UINT8: "uint8",
    TensorProto.BOOL: "bool",
}


def _check_inputs(entry: CatalogEntry, model: onnx.ModelProto, decls: tuple[InputDecl, ...]) -> None:
    """The builder's graph inputs must be exactly the manifest's, dim for dim."""
    inits = {i.name for i in model.graph.initializer}
    got = [i for i in model.graph.input if i.name not in inits]
    where = f"workload {entry.name!r} (builder {entry.builder})"
    if [i.name for i in got] != [d.name for d in decls]:
        raise WorkloadError(
            f"{where}: graph inputs {[i.name for i in got]} differ from manifest {[d.name for d in decls]}"
        )
    for vi, d in zip(got, decls):
        t = vi.type.tensor_type
        dtype = _TENSOR_DTYPE.get(t.elem_type, str(t.elem_type))
        shape = tuple(x.dim_param if x.HasField("dim_param") else x.dim_value for x in t.shape.dim)
        if dtype != d.dtype or shape != d.shape:
            raise WorkloadError(
                f"{where}: input {d.name!r} is {dtype}{list(shape)} in the graph but "
                f"{d.dtype}{list(d.shape)} in {entry.manifest_path.name}"
            )


def _check_variant(entry: CatalogEntry, variant: str) -> None:
    if variant not in entry.variants:
        raise WorkloadError(
            f"workload {entry.name!r} has no variant {variant!r}; available: {', '.join(entry.variants)}"
        )


def build(name: str, params: Mapping[str, Any] | None = None, variant: str = "fp32") -> onnx.ModelProto:
    """Build workload ``name`` in precision ``variant`` with ``params`` overriding the defaults."""
    entry = get(name)
    _check_variant(entry, variant)
    resolved = resolve_params(name, params)
    decls = input_decls(name, resolved)
    fn = _builder(entry)
    try:
        model = fn(MappingProxyType(resolved), np.random.default_rng(entry.weights_seed))
    except (ValueError, KeyError, TypeError) as e:
        raise WorkloadError(f"workload {name!r}: builder rejected params {resolved}: {e}") from e
    _check_inputs(entry, model, decls)
    if variant == "fp16":
        model = to_fp16(model)
    elif variant == "int8":
        model = quantize_int8(model, decls, entry.dims, seed=entry.weights_seed)
    return _stamp_inputs(model, decls, entry.dims)


def _stamp_inputs(model: onnx.ModelProto, decls: tuple[InputDecl, ...], dims: Mapping[str, int]) -> onnx.ModelProto:
    """Declare the integer inputs' valid values and the named dims' defaults in the model's metadata, so the graph
    carries them wherever it goes (``benchkit workloads export``, then ``benchkit run FILE``): token ids or indices
    out of range fail inside the graph, and a sequence length must come from somewhere. Graphs with float inputs
    and no named dim but the batch are left as they are."""
    from benchkit.workloads.model import DIMS_METADATA_KEY, RANGES_METADATA_KEY

    ranges = {d.name: [d.range[0], d.range[1]] for d in decls if d.range is not None and d.dtype in _INT_DTYPES}
    named = {k: int(v) for k, v in dims.items() if k != "batch"}
    for key, value in ((RANGES_METADATA_KEY, ranges), (DIMS_METADATA_KEY, named)):
        if value:
            prop = model.metadata_props.add()
            prop.key, prop.value = key, json.dumps(value, sort_keys=True, separators=(",", ":"))
    return model


def serialize(model: onnx.ModelProto) -> bytes:
    """The model's bytes, deterministic for a given model (no maps, no timestamps, no paths)."""
    return model.SerializeToString(deterministic=True)


def cache_dir() -> Path:
    """Where :func:`materialize` keeps built files: ``$BENCHKIT_CACHE_DIR`` or ``~/.cache/benchkit/workloads``."""
    return _default_cache_dir()


def _default_cache_dir() -> Path:
    env = os.environ.get("BENCHKIT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "benchkit" / "workloads"


def cache_key(name: str, params: Mapping[str, Any] | None = None, variant: str = "fp32") -> str:
    """Hex SHA-256 identifying the bytes :func:`build` would produce.

    Covers the manifest file's bytes, the builder, the resolved params (as
    canonical JSON), the variant, and the versions of benchkit and of the
    libraries that shape the bytes (numpy draws the weights, onnx serialises,
    onnxruntime quantises the int8 variant).
    """
    entry = get(name)
    resolved = resolve_params(name, params)
    h = hashlib.sha256()
    for part in (
        entry.manifest_path.read_bytes(),
        entry.builder.encode(),
        json.dumps(resolved, sort_keys=True, separators=(",", ":")).encode(),
        variant.encode(),
        BUILD_FORMAT.encode(),
        __version__.encode(),
        _library_versions(variant).encode(),
    ):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def _library_versions(variant: str) -> str:
    v = f"numpy={np.__version__};onnx={onnx.__version__}"
    if variant == "int8":
        import onnxruntime

        v += f";onnxruntime={onnxruntime.__version__}"
    return v


def materialize(
    name: str,
    params: Mapping[str, Any] | None = None,
    variant: str = "fp32",
    cache_dir: Path | None = None,
) -> Path:
    """Path of the built model file, building it only on a cache miss.

    The file is ``<cache>/<name>-<variant>-<key[:16]>.onnx`` with the key from
    :func:`cache_key`; it is written to a temporary file in the same folder and
    renamed into place, so concurrent callers never see a partial file.
    """
    folder = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    _check_variant(get(name), variant)  # bad names/variants fail before touching the disk
    key = cache_key(name, params, variant)
    path = folder / f"{name}-{variant}-{key[:16]}.onnx"
    if path.is_file():
        return path
    data = serialize(build(name, params, variant))
    try:
        write_atomic(path, data)
    except OSError as e:
        raise WorkloadError(f"cannot write workload {name!r} to cache {folder}: {e}") from e
    return path


# ---------------------------------------------------------------------------
# Variants

# (op_type, input index) slots that the ONNX spec types as tensor(float) whatever
# the data type of the node; initializers feeding them must stay float32.
_FLOAT32_ONLY_SLOTS = frozenset({("Resize", 1), ("Resize", 2), ("Upsample", 1)})


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """A float16 copy of an fp32 model, with float32 graph inputs/outputs.

    Float32 initializers, Constant/ConstantOfShape values and Cast targets
    become float16; each float32 graph input gets a ``Cast`` to float16 in
    front of its consumers and each float32 graph output a ``Cast`` back, so
    the interface (and the manifest's input declarations) are unchanged.
    Inferred ``value_info`` is dropped. Raises WorkloadError if the result does
    not type-check.
    """
    m = copy.deepcopy(model)
    g = m.graph
    f32, f16 = TensorProto.FLOAT, TensorProto.FLOAT16

    keep32 = {n.input[i] for n in g.node for i in range(len(n.input)) if (n.op_type, i) in _FLOAT32_ONLY_SLOTS}
    for k, init in enumerate(g.initializer):
        if init.data_type == f32 and init.name not in keep32:
            arr = numpy_helper.to_array(init).astype(np.float16)
            g.initializer[k].CopyFrom(numpy_helper.from_array(arr, init.name))

    for n in g.node:
        for a in n.attribute:
            if n.op_type == "Cast" and a.name == "to" and a.i == f32:
                a.i = f16
            elif a.type == onnx.AttributeProto.TENSOR and a.t.data_type == f32:
                arr = numpy_helper.to_array(a.t).astype(np.float16)
                a.t.CopyFrom(numpy_helper.from_array(arr, a.t.name))

    def rename_uses(old: str, new: str) -> None:
        for n in g.node:
            for i, x in enumerate(n.input):
                if x == old:
                    n.input[i] = new

    head: list[onnx.NodeProto] = []
    inits = {i.name for i in g.initializer}
    for vi in g.input:
        if vi.name in inits or vi.type.tensor_type.elem_type != f32:
            continue
        cast_out = f"{vi.name}.fp16"
        rename_uses(vi.name, cast_out)
        head.append(helper.make_node("Cast", [vi.name], [cast_out], name=f"{vi.name}.to_fp16", to=f16))

    tail: list[onnx.NodeProto] = []
    for vi in g.output:
        if vi.type.tensor_type.elem_type != f32:
            continue
        inner = f"{vi.name}.fp16"
        for n in g.node:
            for i, x in enumerate(n.output):
                if x == vi.name:
                    n.output[i] = inner
        rename_uses(vi.name, inner)
        tail.append(helper.make_node("Cast", [inner], [vi.name], name=f"{vi.name}.to_fp32", to=f32))

    nodes = head + list(g.node) + tail
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    finalize(m, check=False)
    try:
        onnx.checker.check_model(m)
        onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise WorkloadError(f"fp16 conversion of graph {g.name!r} does not type-check: {e}") from e
    return m


def calibration_feeds(
    decls: tuple[InputDecl, ...], dims: Mapping[str, int], seed: int, count: int = CALIBRATION_SAMPLES
) -> list[dict[str, np.ndarray]]:
    """``count`` seeded feeds for ``decls`` at the default ``dims``.

    Floats are standard normal (the builders' weights are scaled for unit
    inputs); integers are uniform over the declared ``[low, high)`` range.
    """
    rng = np.random.default_rng([seed, 0xCA11B])
    feeds = []
    for _ in range(count):
        feed = {}
        for d in decls:
            shape = tuple(dims[x] if isinstance(x, str) else x for x in d.shape)
            if d.dtype in _INT_DTYPES:
                lo, hi = d.range  # type: ignore[misc]  # manifest validation guarantees a range
                feed[d.name] = rng.integers(math.ceil(lo), math.ceil(hi), size=shape).astype(d.dtype)
            elif d.dtype == "bool":
                feed[d.name] = rng.random(shape) < 0.5
            else:
                feed[d.name] = rng.standard_normal(shape, dtype=np.float32).astype(d.dtype)
        feeds.append(feed)
    return feeds


def quantize_int8(
    model: onnx.ModelProto, decls: tuple[InputDecl, ...], dims: Mapping[str, int], seed: int
) -> onnx.ModelProto:
    """QDQ int8 copy of an fp32 model, calibrated (MinMax) on :func:`calibration_feeds`.

    BatchNormalization that follows a Conv is first folded into it (as a
    deployed int8 model has it; see :func:`fold_batchnorm`). Weights are then
    quantised per output channel, activations per tensor, both signed int8.
    An embedding lookup whose table is shared with another node is left
    unquantised (see :func:`_shared_gathers`).

    The bytes must not depend on the machine that builds them, but the
    calibration ranges come from running the model, and onnxruntime's kernels
    round differently on different instruction sets. So each range is widened
    to a coarse grid (:func:`_snap_range`, 1/64 to 1/128 of its magnitude)
    before the quantiser sees it: an ulp-level difference then changes nothing unless it
    straddles a grid line. Only numpy computes the rest (folding, scales).
    This needs a quantiser that takes precomputed ranges
    (``quantize_static(calibration_cache_path=...)``, onnxruntime 2026
    releases); an older one calibrates itself, unsnapped. The quantiser works in a private temporary folder, so nothing is left
    behind and no path ends up in the model.
    """
    try:
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            create_calibrator,
            quantize_static,
        )
    except ImportError as e:  # pragma: no cover - onnxruntime is a core dependency
        raise WorkloadError(f"int8 variants need onnxruntime's quantisation tools: {e}") from e

    folded = fold_batchnorm(model)
    feeds = calibration_feeds(decls, dims, seed)
    options: dict[str, Any] = dict(
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        calibrate_method=CalibrationMethod.MinMax,
        nodes_to_exclude=_shared_gathers(folded),
    )
    with tempfile.TemporaryDirectory(prefix="benchkit-int8-") as td:
        src, dst, cache = Path(td) / "fp32.onnx", Path(td) / "int8.onnx", Path(td) / "ranges.json"
        src.write_bytes(serialize(folded))
        try:
            with _QuietPreprocessAdvice():
                if "calibration_cache_path" in inspect.signature(quantize_static).parameters:
                    _snapped_ranges(src, feeds, cache, create_calibrator, CalibrationMethod.MinMax)
                    quantize_static(str(src), str(dst), None, calibration_cache_path=str(cache), **options)
                else:
                    # onnxruntime before calibration caches (2026): the quantiser calibrates
                    # itself, so the ranges cannot be snapped and the bytes may vary between
                    # instruction sets. Still a valid int8 model.
                    quantize_static(str(src), str(dst), _ListReader(feeds), **options)
        except Exception as e:  # the quantiser raises bare Exceptions and ORT errors
            raise WorkloadError(f"int8 quantisation of graph {model.graph.name!r} failed: {e}") from e
        q = onnx.load(str(dst))
    return finalize(q)


def _snapped_ranges(
    src: Path, feeds: list[dict[str, np.ndarray]], cache: Path, create_calibrator: Any, method: Any
) -> None:
    """Calibrate ``src`` on ``feeds`` and write the snapped MinMax ranges to ``cache`` for the quantiser."""
    from onnxruntime.quantization.calibrate import TensorData, save_tensors_data

    calibrator = create_calibrator(
        src,
        None,
        augmented_model_path=str(src.with_name("augmented.onnx")),
        calibrate_method=method,
        providers=["CPUExecutionProvider"],
    )
    calibrator.collect_data(_ListReader(feeds))
    ranges = calibrator.compute_data()
    del calibrator
    for name in list(ranges.keys()):
        lo, hi = _snap_range(*ranges[name].range_value)
        ranges[name] = TensorData(lowest=lo, highest=hi)
    save_tensors_data(ranges, cache)


def _shared_gathers(model: onnx.ModelProto) -> list[str]:
    """Gather nodes whose table is also read by another node (a tied embedding / LM head).

    The quantiser gives such a table per-channel parameters for the MatMul and
    then reuses them for the Gather's output, which onnxruntime rejects at run
    time; excluded, the lookup reads the dequantised table and yields float32.
    """
    readers: dict[str, int] = {}
    for n in model.graph.node:
        for x in set(n.input):
            readers[x] = readers.get(x, 0) + 1
    inits = {i.name for i in model.graph.initializer}
    return [
        n.name
        for n in model.graph.node
        if n.op_type == "Gather" and n.input[0] in inits and readers.get(n.input[0], 0) > 1
    ]


def _snap_range(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Widen ``[lo, hi]`` outward to multiples of 2**(e - 7), e the binary exponent of max(|lo|, |hi|).

    Works elementwise and keeps the float32 arrays' shape (the calibrator
    returns shape-(1,) arrays); zero and non-finite ranges are left as they are.
    """
    lo64, hi64 = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    mag = np.maximum(np.abs(lo64), np.abs(hi64))
    ok = np.isfinite(mag) & (mag > 0)
    step = np.ldexp(1.0, np.frexp(np.where(ok, mag, 1.0))[1] - 7)
    new_lo = np.where(ok, np.floor(lo64 / step) * step, lo64)
    new_hi = np.where(ok, np.ceil(hi64 / step) * step, hi64)
    return new_lo.astype(np.float32), new_hi.astype(np.float32)


def fold_batchnorm(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with each BatchNormalization that alone consumes a Conv folded into it.

    ``W' = W * s`` and ``b' = (b - mean) * s + beta`` with
    ``s = gamma / sqrt(var + eps)`` per output channel, computed in float32
    numpy (IEEE-exact on every machine). Convs whose weights are shared, or
    BNs whose parameters are not initializers, are left alone.
    """
    m = copy.deepcopy(model)
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    uses: dict[str, int] = {}
    for n in g.node:
        for x in n.input:
            uses[x] = uses.get(x, 0) + 1
    graph_outputs = {o.name for o in g.output}
    producer = {n.output[0]: n for n in g.node if n.output}
    drop: list[onnx.NodeProto] = []
    new_inits: dict[str, onnx.TensorProto] = {}
    for bn in g.node:
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1:
            continue
        conv = producer.get(bn.input[0])
        if conv is None or conv.op_type != "Conv" or uses.get(bn.input[0]) != 1 or bn.input[0] in graph_outputs:
            continue
        names = [conv.input[1], *bn.input[1:5]] + ([conv.input[2]] if len(conv.input) > 2 else [])
        if not all(x in inits and uses.get(x) == 1 for x in names):
            continue
        w = numpy_helper.to_array(inits[conv.input[1]])
        gamma, beta, mean, var = (numpy_helper.to_array(inits[x]) for x in bn.input[1:5])
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        if w.dtype != np.float32:
            continue
        scale = gamma / np.sqrt(var + np.float32(eps))
        b = numpy_helper.to_array(inits[conv.input[2]]) if len(conv.input) > 2 else np.zeros_like(mean)
        new_inits[conv.input[1]] = numpy_helper.from_array(w * scale[:, None, None, None], conv.input[1])
        bias_name = conv.input[2] if len(conv.input) > 2 else f"{conv.input[1].rsplit('.', 1)[0]}.bias"
        while bias_name in inits and len(conv.input) < 3:
            bias_name += "_"
        new_inits[bias_name] = numpy_helper.from_array((b - mean) * scale + beta, bias_name)
        if len(conv.input) > 2:
            conv.input[2] = bias_name
        else:
            conv.input.append(bias_name)
        conv.output[0] = bn.output[0]
        drop.append(bn)
        for x in bn.input[1:5]:
            del inits[x]
    if not drop:
        return m
    kept = [n for n in g.node if all(n is not d for d in drop)]
    del g.node[:]
    g.node.extend(kept)
    order = [i.name for i in g.initializer]
    final = []
    for name in order:
        if name in new_inits:
            final.append(new_inits.pop(name))
        elif name in inits:
            final.append(inits[name])
    final.extend(new_inits[k] for k in sorted(new_inits))  # biases the convs did not have
    del g.initializer[:]
    g.initializer.extend(final)
    del g.value_info[:]
    return m


def _ListReader(feeds: list[dict[str, np.ndarray]]) -> Any:
    """A ``CalibrationDataReader`` over a list of feeds (defined here so onnxruntime is imported lazily)."""
    from onnxruntime.quantization import CalibrationDataReader

    class ListReader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    return ListReader()


class _QuietPreprocessAdvice(logging.Filter):
    """Drops the quantiser's "consider pre-processing" advice, logged on the root logger each call.

    The advice is about accuracy of real calibration data; benchkit's int8
    variants are performance workloads on seeded inputs, so it is noise.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()

    def __enter__(self) -> None:
        logging.getLogger().addFilter(self)

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().removeFilter(self)
