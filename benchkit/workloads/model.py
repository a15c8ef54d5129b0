"""A workload as the harness sees it: an ONNX file, its input signature, and seeded inputs.

Works the same for catalog models and for any third-party ONNX file,
including those of older exporters that list weights as graph inputs (an
input that also has an initializer is a weight, not something to feed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from benchkit.errors import WorkloadError

BATCH = "batch"

# ONNX TensorProto element types -> numpy dtypes benchkit can generate.
_ONNX_DTYPES = {
    1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64,
    9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64,
}


@dataclass(frozen=True)
class GraphInput:
    """One input to feed. `shape` items are ints (fixed), str (named dynamic) or None (unnamed dynamic)."""

    name: str
    dtype: np.dtype
    shape: tuple[int | str | None, ...]
    low: float | None = None
    high: float | None = None
    shape_override: tuple[int, ...] | None = None
    data: Any = field(default=None, compare=False, repr=False)  # workloads.data.InputData: real samples
    range_source: str | None = None  # where low/high came from when the spec does not say: metadata | gather


@dataclass(frozen=True)
class ResolvedWorkload:
    """Everything the runner needs about one workload, fixed before any timing starts."""

    name: str
    path: Path
    sha256: str
    source: str  # "catalog" | "file"
    inputs: tuple[GraphInput, ...]
    output_names: tuple[str, ...]
    dims: Mapping[str, int]  # resolved named dims, except the batch dim
    graph_precision: str
    catalog: str | None = None
    variant: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    origin: str = ""  # where it came from, for error messages ("spec.yaml: workloads[0]")

    def batch_dynamic(self) -> bool:
        """True when the leading dim of the batched inputs is free (symbolic or unknown)."""
        return any(
            i.shape and not isinstance(i.shape[0], int) and i.shape_override is None for i in self.inputs
        )

    def call_shapes(self, batch_size: int) -> tuple[dict[str, tuple[int, ...]], int]:
        """Shapes of one inference call asked to carry `batch_size` samples, and the batch it really carries.

        A model whose batch dimension is fixed runs at that batch, whatever was asked;
        the caller records the effective value.
        """
        shapes: dict[str, tuple[int, ...]] = {}
        effective: int | None = None
        for inp in self.inputs:
            if inp.shape_override is not None:
                shape = inp.shape_override
                if inp.shape and not isinstance(inp.shape[0], int) and shape:
                    effective = effective or shape[0]
            else:
                dims = []
                for axis, d in enumerate(inp.shape):
                    if isinstance(d, int):
                        dims.append(d)
                    elif axis == 0 and (d is None or d not in self.dims):
                        dims.append(batch_size)  # the free leading dim is the batch dim
                        effective = batch_size
                    else:
                        dims.append(self.dims[d])  # signature() guarantees presence
                shape = tuple(dims)
            shapes[inp.name] = shape
        if effective is None:
            # Every leading dim is fixed: the model runs at its own batch.
            lead = [s[0] for s in shapes.values() if s]
            effective = lead[0] if lead else 1
        return shapes, effective

    def make_feeds(self, batch_size: int, count: int, seed: int) -> tuple[list[dict[str, np.ndarray]], int]:
        """`count` distinct seeded input sets for calls of `batch_size`; returns (feeds, effective batch)."""
        shapes, effective = self.call_shapes(batch_size)
        return self.feeds_for_shapes(shapes, count, seed), effective

    def feeds_for_shapes(self, shapes: Mapping[str, tuple[int, ...]], count: int, seed: int) -> list[dict[str, np.ndarray]]:
        """`count` seeded input sets of the given per-input shapes (what a record's ``workload.inputs`` states).

        The pool is drawn from one generator, set after set, so the first k sets
        of a larger pool are the same as a pool of k: a reviewer regenerates the
        accuracy gate's inputs from the seed alone.
        """
        rng = np.random.default_rng(seed)
        feeds = []
        for call in range(count):
            feeds.append({inp.name: _generate(rng, inp, tuple(shapes[inp.name])) if inp.data is None
                          else inp.data.take(shapes[inp.name][0], call, seed) for inp in self.inputs})
        return feeds

    def bytes_per_call(self, batch_size: int) -> int:
        shapes, _ = self.call_shapes(batch_size)
        return sum(int(np.prod(shapes[i.name], dtype=np.int64)) * i.dtype.itemsize for i in self.inputs)


def _generate(rng: np.random.Generator, inp: GraphInput, shape: tuple[int, ...]) -> np.ndarray:
    dt = inp.dtype
    if dt == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dt, np.integer):
        low = int(inp.low) if inp.low is not None else 0
        high = int(inp.high) if inp.high is not None else 100
        info = np.iinfo(dt)
        low, high = max(low, info.min), min(high, int(info.max) + 1)
        return rng.integers(low, high, size=shape, dtype=dt)
    if inp.low is not None or inp.high is not None:
        low = inp.low if inp.low is not None else 0.0
        high = inp.high if inp.high is not None else 1.0
        return rng.uniform(low, high, size=shape).astype(dt)
    return rng.standard_normal(shape, dtype=np.float32).astype(dt, copy=False)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


MODEL_DIGEST_HEADER = "benchkit-model-digest 1"  # 1: first version (graph SHA-256, then each external-data file)


def external_data_files(model) -> dict[str, list[str]]:
    """Every external-data file a graph references: its location (as written in the graph) -> tensor names.

    Walks everything that can hold a tensor: initializers, sparse
    initializers, node attributes (``Constant`` values and the like) and the
    subgraphs of control-flow nodes and of local functions.
    """
    found: dict[str, list[str]] = {}

    def tensor(t) -> None:
        if t.data_location == 1:  # TensorProto.EXTERNAL
            entries = {e.key: e.value for e in t.external_data}
            found.setdefault(entries.get("location", ""), []).append(t.name)

    def graph(g) -> None:
        for t in g.initializer:
            tensor(t)
        for st in g.sparse_initializer:
            tensor(st.values)
            tensor(st.indices)
        nodes(g.node)

    def nodes(ns) -> None:
        for n in ns:
            for a in n.attribute:
                if a.HasField("t"):
                    tensor(a.t)
                if a.HasField("sparse_tensor"):
                    tensor(a.sparse_tensor.values)
                    tensor(a.sparse_tensor.indices)
                for t in a.tensors:
                    tensor(t)
                if a.HasField("g"):
                    graph(a.g)
                for g in a.graphs:
                    graph(g)

    graph(model.graph)
    for f in model.functions:
        nodes(f.node)
    return found


def model_sha256(path: Path, model=None, origin: str = "model") -> str:
    """The workload version: one SHA-256 over the graph file and every external-data file it references.

    A self-contained graph (every catalog build) has exactly the SHA-256 of
    its file, what ``sha256sum model.onnx`` prints. A graph that keeps weights
    in external-data files has the SHA-256 of this manifest (UTF-8, each line
    ending in a newline)::

        benchkit-model-digest 1
        <SHA-256 of the graph file>
        <SHA-256 of a data file>  <its location, as the graph writes it>
        ...                                  (one line per file, sorted by location)

    so editing, adding or swapping any weights file changes the digest. A
    location that leaves the model's folder, or a file that is missing, is an
    error: such a model cannot be identified, so it cannot be run.
    """
    path = Path(path)
    graph_digest = file_sha256(path)
    if model is None:
        import onnx

        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as e:  # protobuf DecodeError and friends
            raise WorkloadError(f"{origin}: {display_path(path)} is not a valid ONNX model ({type(e).__name__})") from None
    files = external_data_files(model)
    if not files:
        return graph_digest
    lines = [MODEL_DIGEST_HEADER, graph_digest]
    for location in sorted(files):
        tensors = ", ".join(sorted(set(files[location]))[:3])
        pure = PurePosixPath(location)
        if not location or "\\" in location or "\n" in location or pure.is_absolute() or ".." in pure.parts:
            raise WorkloadError(f"{origin}: tensor {tensors} of {display_path(path)} keeps its data at {location!r}: "
                                "an external-data location must be a relative path inside the model's folder")
        data = path.parent / location
        if not data.is_file():
            raise WorkloadError(f"{origin}: external-data file {location} (tensor {tensors}) of "
                                f"{display_path(path)} not found at {display_path(data)}")
        lines.append(f"{file_sha256(data)}  {location}")
    return hashlib.sha256(("\n".join(lines) + "\n").encode("utf-8")).hexdigest()


def display_path(path: Path) -> str:
    """A path as a user would type it: relative to the working directory when below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def not_a_file(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file, from its metadata alone (a FIFO is never opened: that would wait
    for a writer), or None when it is a regular file."""
    import stat

    try:
        mode = path.stat().st_mode  # through symlinks: what a read would reach
    except FileNotFoundError:
        return "file not found"
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    kind = next((k for test, k in kinds if test(mode)), "not a regular file")
    return f"is {kind}, not an ONNX file"


def read_model(path: Path, origin: str):
    """Parse an ONNX file (weights not needed) with an error that names the file."""
    import onnx

    shown = display_path(path)
    what = not_a_file(path)
    if what == "file not found":
        raise WorkloadError(f"{origin}.model: file not found: {shown}")
    if what is not None:
        raise WorkloadError(f"{origin}.model: {shown}: {what}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf DecodeError and friends
        raise WorkloadError(
            f"{origin}.model: {shown} is not a valid ONNX model (it does not parse as an ONNX protobuf: {type(e).__name__})"
        ) from None
    if not model.graph.node and not model.graph.output:
        raise WorkloadError(f"{origin}.model: {shown} is not a valid ONNX model (empty graph)")
    return model


def graph_precision(model) -> str:
    """The precision a graph computes in, judged from its weights and quantisation nodes."""
    ops = {n.op_type for n in model.graph.node}
    if ops & {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger"}:
        return "int8"
    sizes: dict[int, int] = {}
    for t in model.graph.initializer:
        n = 1
        for d in t.dims:
            n *= d
        sizes[t.data_type] = sizes.get(t.data_type, 0) + n
    floats = {k: v for k, v in sizes.items() if k in (1, 10, 11, 16)}
    if not floats:
        # No float weights: judge by the first float graph input.
        for i in model.graph.input:
            et = i.type.tensor_type.elem_type
            if et in (1, 10, 11, 16):
                floats = {et: 1}
                break
    if not floats:
        return "fp32"
    top = max(floats, key=floats.get)
    return {1: "fp32", 10: "fp16", 11: "fp64", 16: "bf16"}[top]


RANGES_METADATA_KEY = "benchkit.input_ranges"
"""metadata_props key under which benchkit's catalog builds (and so their exports) declare their integer inputs'
valid values: JSON ``{"input name": [low, high), ...}``."""

DIMS_METADATA_KEY = "benchkit.dims"
"""metadata_props key under which benchkit's catalog builds declare the defaults of their named dynamic dims (the
batch aside): JSON ``{"seq": 128, ...}``."""


def metadata_dims(model) -> dict[str, int]:
    """The named dims' defaults a model declares in its metadata (:data:`DIMS_METADATA_KEY`); {} when none."""
    import json

    for p in model.metadata_props:
        if p.key == DIMS_METADATA_KEY:
            try:
                data = json.loads(p.value)
                return {str(k): int(v) for k, v in data.items() if int(v) > 0 and k != BATCH}
            except (ValueError, TypeError, AttributeError):
                return {}
    return {}


# Ops an integer input may pass through on its way to a Gather's indices without changing its values.
_VALUE_PRESERVING = frozenset({"Cast", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Identity", "Expand", "Transpose"})


def metadata_ranges(model) -> dict[str, tuple[float, float]]:
    """The input ranges a model declares in its metadata (:data:`RANGES_METADATA_KEY`); {} when none or unreadable."""
    import json

    for p in model.metadata_props:
        if p.key == RANGES_METADATA_KEY:
            try:
                data = json.loads(p.value)
                return {str(k): (float(v[0]), float(v[1])) for k, v in data.items()
                        if isinstance(v, (list, tuple)) and len(v) == 2 and float(v[0]) < float(v[1])}
            except (ValueError, TypeError, AttributeError):
                return {}
    return {}


def gather_ranges(model) -> dict[str, tuple[float, float]]:
    """[0, rows) for each graph input that indexes a table: the indices of a Gather whose data is an initializer
    (an embedding), reached directly or through value-preserving ops; the smallest table when it indexes several."""
    inits = {t.name: t for t in model.graph.initializer}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    out: dict[str, tuple[float, float]] = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        seen, frontier, rows = set(), [vi.name], []
        while frontier:
            name = frontier.pop()
            if name in seen:
                continue
            seen.add(name)
            for n in consumers.get(name, ()):
                if n.op_type == "Gather" and len(n.input) > 1 and n.input[1] == name and n.input[0] in inits:
                    axis = next((a.i for a in n.attribute if a.name == "axis"), 0)
                    dims = inits[n.input[0]].dims
                    if -len(dims) <= axis < len(dims) and dims[axis] > 0:
                        rows.append(int(dims[axis]))
                elif n.op_type in _VALUE_PRESERVING and n.input and n.input[0] == name:
                    frontier.extend(n.output)
        if rows:
            out[vi.name] = (0.0, float(min(rows)))
    return out


def signature(
    model,
    origin: str,
    dims: Mapping[str, int],
    overrides: Mapping[str, Any],
    declared_ranges: Mapping[str, tuple[float, float]] | None = None,
    data: Mapping[str, Any] | None = None,
    inferred_ranges: Mapping[str, tuple[float, float]] | None = None,
) -> tuple[tuple[GraphInput, ...], tuple[str, ...], dict[str, int]]:
    """The inputs to feed (weights-as-inputs excluded), output names, and resolved named dims.

    An integer input's values come from the spec's low/high, else ``declared_ranges`` (the catalog manifest or
    the model's metadata), else ``inferred_ranges`` (the size of the table it indexes); ``data`` holds real
    samples by input name."""
    initializers = {t.name for t in model.graph.initializer}
    feeds: list[GraphInput] = []
    needed: dict[str, int] = {}
    known = {i.name for i in model.graph.input}
    for name in overrides:
        if name not in known or name in initializers:
            raise WorkloadError(
                f"{origin}.inputs.{name}: the graph has no input {name!r} to feed; "
                f"inputs: {', '.join(i.name for i in model.graph.input if i.name not in initializers)}"
            )
    for vi in model.graph.input:
        if vi.name in initializers:
            continue  # older exporters list weights as inputs; they are not fed
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type"):
            raise WorkloadError(f"{origin}: input {vi.name!r} is not a tensor; benchkit feeds tensors only")
        if tt.elem_type not in _ONNX_DTYPES:
            raise WorkloadError(f"{origin}: input {vi.name!r} has element type {tt.elem_type}, which benchkit cannot generate")
        shape = list(declared_shape(tt))
        ov = overrides.get(vi.name)
        override_shape = None
        if ov is not None and ov.shape is not None:
            override_shape = tuple(ov.shape)
            if len(override_shape) != len(shape):
                raise WorkloadError(
                    f"{origin}.inputs.{vi.name}.shape: {list(override_shape)} has rank {len(override_shape)}, "
                    f"but the graph declares rank {len(shape)} {_fmt(shape)}"
                )
            for axis, (want, got) in enumerate(zip(shape, override_shape)):
                if isinstance(want, int) and want != got:
                    raise WorkloadError(
                        f"{origin}.inputs.{vi.name}.shape: dimension {axis} is {got}, but the graph fixes it "
                        f"to {want} {_fmt(shape)}"
                    )
        else:
            for axis, d in enumerate(shape):
                if axis == 0 or isinstance(d, int):
                    continue  # the leading dim is the batch dim, set by the scenario
                if d is None:
                    raise WorkloadError(
                        f"{origin}: input {vi.name!r} dimension {axis} is dynamic and unnamed {_fmt(shape)}; "
                        f"give the full shape in inputs.{vi.name}.shape"
                    )
                if d not in dims:
                    raise WorkloadError(
                        f"{origin}.dims: input {vi.name!r} has the dynamic dimension {d!r} {_fmt(shape)}; "
                        f"give its value, e.g. dims: {{{d}: 128}}"
                    )
                needed[d] = dims[d]
            if shape and isinstance(shape[0], str) and shape[0] in dims and shape[0] != BATCH:
                needed[shape[0]] = dims[shape[0]]
        low = high = range_source = None
        if declared_ranges and vi.name in declared_ranges:
            low, high = declared_ranges[vi.name]
            range_source = "declared"
            if inferred_ranges and vi.name in inferred_ranges:  # never past the table it indexes
                high = min(high, inferred_ranges[vi.name][1])
        elif inferred_ranges and vi.name in inferred_ranges and np.issubdtype(_ONNX_DTYPES[tt.elem_type], np.integer):
            low, high = inferred_ranges[vi.name]
            range_source = "gather"
        if ov is not None:
            low = ov.low if ov.low is not None else low
            high = ov.high if ov.high is not None else high
        if ov is not None and (ov.low is not None or ov.high is not None):
            range_source = None  # the spec's own
        feeds.append(
            GraphInput(vi.name, np.dtype(_ONNX_DTYPES[tt.elem_type]), tuple(shape), low, high, override_shape,
                       (data or {}).get(vi.name), range_source)
        )
    if not feeds:
        raise WorkloadError(f"{origin}: the graph has no inputs to feed")
    outputs = tuple(o.name for o in model.graph.output)
    return tuple(feeds), outputs, needed


def declared_shape(tt) -> tuple[int | str | None, ...]:
    """A tensor type's declared shape: ints are fixed, str named dynamic (dim_param), None unnamed dynamic."""
    return tuple(
        int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0
        else (d.dim_param if d.HasField("dim_param") and d.dim_param else None)
        for d in tt.shape.dim
    )


def _fmt(shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
