"""FLOP, MAC and byte accounting for any ONNX graph, at given values of its dynamic dims.

``analyze(model, dims)`` fixes the named dynamic dims on a copy of the graph,
runs ONNX shape inference (``strict_mode=True, data_prop=True``) and applies a
per-op formula to every node. ``per_sample()`` divides the result by a batch.

Why this is written on ONNX shape inference rather than on a library
---------------------------------------------------------------------
``onnx-tool`` 1.0.1 (MIT, depends on onnx, numpy and tabulate) was evaluated
and not adopted:

* its counts are x86 instruction-cost estimates, not FLOPs: Exp counts 32,
  Div 4, Sqrt 24 "MACs", and elementwise work is added to the same ``macs``
  figure as matrix work, so FLOPs = 2 x MACs cannot be recovered from it;
* it carries its own shape engine, re-implemented per op, instead of the one
  maintained with the ONNX opsets; an op it does not know (any custom-domain
  op) stops the whole analysis with ``NotImplementedError`` instead of being
  reported, and an invalid file makes it call ``exit(-1)`` in the library;
* it warns and prints while it works and is maintained by one person.

``onnx.shape_inference.infer_shapes(..., data_prop=True)`` is already a core
dependency, follows every opset onnx ships (Attention and RMSNormalization of
opset 23 included), propagates shape arithmetic (Shape -> Gather -> Concat ->
Reshape), and in strict mode raises on a real shape conflict while leaving
unknown ops untyped. The formulas below are then a few hundred lines that
benchkit owns, with stated conventions. Shape inference serialises the model,
so large weights are replaced by typed graph inputs on the copy first: a
ResNet-50-sized graph is analysed in tens of milliseconds instead of seconds.

Conventions (all counts are per call at the given dims)
-------------------------------------------------------
* **MAC ops** (Conv, ConvTranspose, MatMul, Gemm, Einsum, Attention, RNN/GRU/LSTM
  and their integer / QLinear forms): ``macs`` = multiply-accumulates of the
  dense computation (no sparsity, causal masking or padding skipped), and each
  contributes ``2 * macs`` flops. int8 MACs count as MACs.
  Conv: ``macs = |Y| * (C_in / group) * prod(kernel)``, so grouped and depthwise
  convolutions are exact. ConvTranspose: ``|X| * (C_out / group) * prod(kernel)``.
  MatMul: ``|Y| * K`` with broadcast batch dims. Gemm: ``M * N * K``; alpha != 1
  adds ``M * N`` flops, a bias C adds ``M * N`` (and ``M * N`` more if beta != 1).
  Conv/ConvTranspose bias adds ``|Y|`` flops. QLinearConv/QLinearMatMul add 2
  flops per output element for requantisation.
* **Elementwise**: 1 flop per output element for arithmetic, comparison,
  logical and bitwise ops and for transcendental primitives (Exp, Log, Erf,
  Tanh, Sigmoid, Sqrt, trigonometric): an accelerator evaluates those in one
  special-function pass. Relu = 1, Where = 1, Clip = one per bound given.
  Variadic Sum/Max/Min = ``n - 1`` per element, Mean = ``n``. Composite
  activations count the arithmetic of their ONNX definition with each
  transcendental as 1 (see ``_ELEMENTWISE``): LeakyRelu 2, HardSigmoid 4,
  HardSwish 5, Gelu 5 (``approximate="tanh"``: 9), Softplus 3, Mish 5.
* **Softmax / LogSoftmax**: 5 flops per element (max, subtract, exp, sum, divide).
* **Normalisation**: LayerNormalization ``5 + scale + bias`` flops per element
  (mean sum, subtract, square, variance sum, multiply by 1/sigma) plus 4 per
  normalised row (two divisions, epsilon add, reciprocal square root);
  InstanceNormalization and GroupNormalization the same with scale and bias;
  RMSNormalization 4 per element + 3 per row; BatchNormalization 2 per element
  (a runtime folds the statistics into one scale and one shift per channel) +
  4 per channel for that folding.
* **Pooling**: MaxPool/AveragePool = ``prod(kernel)`` comparisons or adds per
  output element (padding cells included); LpPool twice that; global pools one
  per input element.
* **Reductions**: one flop per input element (ReduceSumSquare/ReduceL1/ReduceL2/
  ReduceLogSumExp two), plus one per output element for ReduceMean, ReduceL2,
  ReduceLogSum and ReduceLogSumExp. ArgMax/ArgMin/TopK one per input element.
* **Quantisation**: QuantizeLinear and DequantizeLinear 2 flops per element
  (scale and zero point; rounding and saturation are conversions, like Cast).
* **Resize**: nearest 0; linear ``2 * 2**d`` and cubic ``2 * 4**d`` flops per
  output element (a weighted sum of the neighbours), d = number of resized axes.
* **Data movement** (Reshape, Transpose, Concat, Gather, Slice, Cast, Pad, ...):
  0 flops, not listed as unknown; their bytes are counted.

Anything else counts 0 flops and is listed in ``unknown_ops`` by op type
(``domain:op`` outside the default domain); so is control flow (If, Loop, Scan),
whose subgraphs are not descended into. A known op with a tensor whose shape
inference could not determine (data-dependent shapes, outputs of unknown ops)
is listed as ``"<op> (shape unknown)"``: the bytes of that tensor count 0, and
so do the node's flops if its formula needed that shape. Calls of model-local
functions are inlined first, so their bodies are counted op by op.

Traffic model of ``activation_bytes``: every node reads each of its inputs and
writes each of its outputs once, in full, and no tensor stays in cache between
nodes; tensors that are weights (initializers, Constant nodes' outputs) are
excluded, their bytes being ``weight_bytes``. A tensor written once and read by
two nodes counts three times. No fusion is assumed, so data-movement ops count
too: this is an upper bound on unfused DRAM traffic, not a prediction.
Sequence/optional values and string tensors count 0 bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import shape_inference
from pydantic import BaseModel, ConfigDict, Field

from benchkit.errors import WorkloadError

__all__ = ["GraphCost", "OpCost", "analyze", "per_sample"]


class OpCost(BaseModel):
    """Cost of all nodes of one op type."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    op_type: str = Field(description="ONNX op type; 'domain:op' outside the default domain.")
    count: int = Field(ge=0, description="Number of nodes of this op type.")
    flops: int = Field(ge=0, description="Flops of these nodes per call.")
    macs: int = Field(ge=0, description="Multiply-accumulates of these nodes per call (MAC ops only).")


class GraphCost(BaseModel):
    """Work and traffic of one graph per call, at fixed dims; conventions in the module docstring."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    params: int = Field(
        ge=0,
        description="Parameter elements: every initializer, plus Constant nodes' tensors that are weights "
        "(floating point or <= 8-bit integer, more than one element).",
    )
    weight_bytes: int = Field(ge=0, description="Bytes of those parameters as stored (4-bit types packed).")
    flops: int = Field(ge=0, description="Flops per call: 2 * macs plus all non-MAC flops.")
    macs: int = Field(ge=0, description="Multiply-accumulates per call of the MAC ops.")
    activation_bytes: int = Field(
        ge=0, description="Bytes read plus written of non-weight tensors, each node reading and writing in full."
    )
    arithmetic_intensity: float = Field(ge=0, description="flops / (weight_bytes + activation_bytes); 0 if no bytes.")
    by_op: tuple[OpCost, ...] = Field(description="One entry per op type, by flops descending then op type.")
    unknown_ops: tuple[str, ...] = Field(
        description="Op types counted as 0 flops for want of a formula, and '<op> (shape unknown)' "
        "for nodes whose shapes could not be inferred; sorted."
    )


# ---------------------------------------------------------------------------
# Element sizes

_BITS_BY_NAME = {
    "FLOAT": 32, "UINT8": 8, "INT8": 8, "UINT16": 16, "INT16": 16, "INT32": 32, "INT64": 64,
    "BOOL": 8, "FLOAT16": 16, "DOUBLE": 64, "UINT32": 32, "UINT64": 64, "COMPLEX64": 64,
    "COMPLEX128": 128, "BFLOAT16": 16, "FLOAT8E4M3FN": 8, "FLOAT8E4M3FNUZ": 8, "FLOAT8E5M2": 8,
    "FLOAT8E5M2FNUZ": 8, "UINT4": 4, "INT4": 4, "FLOAT4E2M1": 4, "FLOAT8E8M0": 8, "UINT2": 2,
    "INT2": 2, "FLOAT6E2M3": 6, "FLOAT6E3M2": 6,
}  # fmt: skip
# Built from names so an onnx release without some of these types still imports.
_BITS = {
    onnx.TensorProto.DataType.Value(name): bits
    for name, bits in _BITS_BY_NAME.items()
    if name in onnx.TensorProto.DataType.keys()  # noqa: SIM118 (an EnumTypeWrapper, not a dict)
}
_FLOAT_TYPES = {
    onnx.TensorProto.DataType.Value(n)
    for n in onnx.TensorProto.DataType.keys()  # noqa: SIM118
    if n.startswith(("FLOAT", "DOUBLE", "BFLOAT"))
}
# Constant nodes holding these are weights (quantised weights included); int32/int64/bool ones are shapes or indices.
_WEIGHT_TYPES = _FLOAT_TYPES | {t for t, bits in _BITS.items() if bits <= 8 and t != onnx.TensorProto.BOOL}

# Tensors kept with their values on the copy given to shape inference: shape inference only reads values
# for shape arithmetic (Reshape targets, Slice bounds, Resize scales), which are small integer tensors
# or a handful of floats. Everything larger becomes a typed graph input, so inference does not serialise it.
_KEEP_INT_ELEMENTS = 1024
_KEEP_ANY_ELEMENTS = 16
_SHAPE_INT_TYPES = {onnx.TensorProto.INT64, onnx.TensorProto.INT32}


def _nbytes(n_elements: int, elem_type: int) -> int:
    bits = _BITS.get(elem_type, 0)  # strings and undefined types count 0
    return (n_elements * bits + 7) // 8


def _tensor_elements(t: onnx.TensorProto) -> int:
    return math.prod(t.dims)


def _tensor_bytes(t: onnx.TensorProto) -> int:
    if t.data_type == onnx.TensorProto.STRING:
        return sum(len(s) for s in t.string_data)
    return _nbytes(_tensor_elements(t), t.data_type)


def _is_external(t: onnx.TensorProto) -> bool:
    return t.data_location == onnx.TensorProto.EXTERNAL


def _value_info_of(name: str, t: onnx.TensorProto) -> onnx.ValueInfoProto:
    return onnx.helper.make_tensor_value_info(name, t.data_type, list(t.dims))


def _keep_values(t: onnx.TensorProto) -> bool:
    if _is_external(t):
        return False
    n = _tensor_elements(t)
    return n <= _KEEP_ANY_ELEMENTS or (t.data_type in _SHAPE_INT_TYPES and n <= _KEEP_INT_ELEMENTS)


# ---------------------------------------------------------------------------
# Loading and preparing the copy for shape inference


def _load(model: onnx.ModelProto | str | Path) -> tuple[onnx.ModelProto, str]:
    if isinstance(model, onnx.ModelProto):
        return model, f"model {model.graph.name or '(unnamed graph)'}"
    path = Path(model)
    try:
        # Weights in external files are never needed: sizes come from the tensors' dims.
        return onnx.load(str(path), load_external_data=False), str(path)
    except FileNotFoundError:
        raise WorkloadError(f"{path}: no such ONNX file") from None
    except (OSError, ValueError, DecodeError) as e:
        raise WorkloadError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from None


def _check_dims(dims: Mapping[str, int] | None, where: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, value in (dims or {}).items():
        if not isinstance(name, str) or isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise WorkloadError(f"{where}: dims[{name!r}] must be a positive integer, got {value!r}")
        out[name] = value
    return out


def _fix_type(tt: onnx.TypeProto.Tensor, dims: dict[str, int]) -> None:
    for d in tt.shape.dim:
        if d.HasField("dim_param") and d.dim_param in dims:
            d.dim_value = dims[d.dim_param]  # setting the value clears the param (oneof)


def _slim_copy(src: onnx.ModelProto, dims: dict[str, int], where: str) -> tuple[onnx.ModelProto, int]:
    """A copy of ``src`` with dims fixed and large constant tensors replaced by typed graph inputs.

    Also returns how many Constant nodes were replaced that way, so they are still counted.
    """
    g = src.graph
    m = onnx.ModelProto()
    m.ir_version = src.ir_version
    m.opset_import.extend(src.opset_import)
    m.functions.extend(src.functions)
    sg = m.graph
    sg.name = g.name

    inits = {t.name: t for t in g.initializer}
    sparse = {s.values.name: s for s in g.sparse_initializer}
    for vi in g.input:
        new = sg.input.add()
        new.CopyFrom(vi)
        if vi.name in inits:  # an older exporter's weight listed as an input: its type is the initializer's
            new.CopyFrom(_value_info_of(vi.name, inits[vi.name]))
            continue
        if vi.name in sparse:
            continue
        if not vi.type.HasField("tensor_type"):
            continue
        if not vi.type.tensor_type.HasField("shape"):
            raise WorkloadError(
                f"{where}: input {vi.name!r} declares no shape (not even a rank), so dims cannot fix it"
            )
        _fix_type(new.type.tensor_type, dims)
        for i, d in enumerate(new.type.tensor_type.shape.dim):
            if d.HasField("dim_value"):
                continue
            if d.HasField("dim_param"):
                raise WorkloadError(
                    f"{where}: input {vi.name!r} has dynamic dim {d.dim_param!r} (axis {i}) "
                    f"and dims gives it no value; pass dims={{{d.dim_param!r}: <int>}}"
                )
            raise WorkloadError(
                f"{where}: input {vi.name!r} axis {i} has no size and no name, so dims cannot set it; "
                "give the model a named or fixed dim there"
            )
    listed = {vi.name for vi in g.input}
    for t in g.initializer:
        if _keep_values(t):
            sg.initializer.append(t)
        elif t.name not in listed:
            sg.input.append(_value_info_of(t.name, t))
    for s in g.sparse_initializer:
        if s.values.name not in listed:
            sg.input.append(onnx.helper.make_tensor_value_info(s.values.name, s.values.data_type, list(s.dims)))
    replaced = 0
    for node in g.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None and not _keep_values(value):
                sg.input.append(_value_info_of(node.output[0], value))
                replaced += 1
                continue
        sg.node.append(node)
    # Declared output and intermediate types carry the same dim names; fixing them too keeps them
    # consistent with the inputs, so strict inference does not see a false conflict.
    for src_list, dst_list in ((g.output, sg.output), (g.value_info, sg.value_info)):
        for vi in src_list:
            new = dst_list.add()
            new.CopyFrom(vi)
            if new.type.HasField("tensor_type"):
                _fix_type(new.type.tensor_type, dims)
    return m, replaced


def _infer(m: onnx.ModelProto, where: str, dims: dict[str, int]) -> onnx.ModelProto:
    if len(m.functions):
        try:
            from onnx import inliner  # onnx >= 1.16

            m = inliner.inline_local_functions(m)
        except ImportError:
            pass  # without the inliner, calls to local functions are reported as unknown ops
    errors = (shape_inference.InferenceError, onnx.checker.ValidationError, RuntimeError)
    try:
        return shape_inference.infer_shapes(m, check_type=False, strict_mode=True, data_prop=True)
    except errors as e:
        first = str(e).strip()
    # Exporters sometimes declare output or intermediate shapes that disagree with what the graph
    # computes. The counts only use inferred shapes, so drop the declarations and try once more;
    # a conflict inside the graph itself (dims that do not fit the weights) fails again.
    for vi in list(m.graph.output) + list(m.graph.value_info):
        if vi.type.HasField("tensor_type"):
            vi.type.tensor_type.ClearField("shape")
    try:
        return shape_inference.infer_shapes(m, check_type=False, strict_mode=True, data_prop=True)
    except errors:
        raise WorkloadError(
            f"{where}: shape inference failed with dims {dims or {}}: {first}. "
            "Check that dims match what the model expects."
        ) from None


# ---------------------------------------------------------------------------
# Per-op formulas


class _NoShape(Exception):
    """A formula needed a tensor whose shape shape inference did not determine."""


Shape = tuple[int, ...]


class _Node:
    """What a formula sees of one node: attributes and the inferred shapes of its tensors."""

    __slots__ = ("_attrs", "node", "opset", "shapes")

    def __init__(self, node: onnx.NodeProto, shapes: Mapping[str, tuple[Shape | None, int]], opset: int):
        self.node = node
        self.shapes = shapes
        self.opset = opset  # of the default domain: some ops changed meaning across opsets (Clip)
        self._attrs: dict | None = None

    def has_attr(self, name: str) -> bool:
        return any(a.name == name for a in self.node.attribute)

    def attr(self, name: str, default=None):
        if self._attrs is None:
            self._attrs = {a.name: onnx.helper.get_attribute_value(a) for a in self.node.attribute}
        value = self._attrs.get(name, default)
        return value.decode() if isinstance(value, bytes) else value

    def has_input(self, i: int) -> bool:
        return len(self.node.input) > i and self.node.input[i] != ""

    def n_inputs(self) -> int:
        return sum(1 for n in self.node.input if n)

    def _shape(self, name: str) -> Shape:
        shape = self.shapes.get(name, (None, 0))[0]
        if shape is None:
            raise _NoShape(name)
        return shape

    def inp(self, i: int) -> Shape:
        return self._shape(self.node.input[i])

    def out(self, i: int = 0) -> Shape:
        return self._shape(self.node.output[i])


Formula = Callable[[_Node], tuple[int, int]]  # -> (flops, macs)


def _vol(shape: Shape) -> int:
    return math.prod(shape)


def _per_out(k: int) -> Formula:
    return lambda n: (k * _vol(n.out()), 0)


def _per_in(k: int) -> Formula:
    return lambda n: (k * _vol(n.inp(0)), 0)


def _mac(macs: int, extra_flops: int = 0) -> tuple[int, int]:
    return 2 * macs + extra_flops, macs


def _conv(w_index: int, bias_index: int | None, requant: bool) -> Formula:
    def f(n: _Node) -> tuple[int, int]:
        y = _vol(n.out())
        macs = y * _vol(n.inp(w_index)[1:])
        extra = (y if bias_index is not None and n.has_input(bias_index) else 0) + (2 * y if requant else 0)
        return _mac(macs, extra)

    return f


def _conv_transpose(n: _Node) -> tuple[int, int]:
    # Each input element is scattered through the (C_out / group) x kernel slice of the weight.
    macs = _vol(n.inp(0)) * _vol(n.inp(1)[1:])
    return _mac(macs, _vol(n.out()) if n.has_input(2) else 0)


def _matmul(a_index: int, requant: bool) -> Formula:
    def f(n: _Node) -> tuple[int, int]:
        y = _vol(n.out())
        return _mac(y * n.inp(a_index)[-1], 2 * y if requant else 0)

    return f


def _gemm(n: _Node) -> tuple[int, int]:
    a = n.inp(0)
    k = a[0] if n.attr("transA", 0) else a[1]
    mn = _vol(n.out())
    extra = 0
    if n.attr("alpha", 1.0) != 1.0:
        extra += mn
    beta = n.attr("beta", 1.0)
    if n.has_input(2) and beta != 0.0:
        extra += mn + (mn if beta != 1.0 else 0)
    return _mac(mn * k, extra)


def _einsum(n: _Node) -> tuple[int, int]:
    eq = n.attr("equation").replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    sizes: dict[str, int] = {}
    for i, term in enumerate(terms):
        shape = n.inp(i)
        labels = list(term.replace("...", ""))
        n_ell = len(shape) - len(labels) if "..." in term else 0
        # Broadcast dims under "..." are right-aligned across operands: label them by distance from the right.
        expanded = []
        for part_i, part in enumerate(term.split("...")):
            if part_i == 1:
                expanded += [f"...{n_ell - j}" for j in range(n_ell)]
            expanded += list(part)
        for label, size in zip(expanded, shape):
            sizes[label] = max(sizes.get(label, 1), size)
    if arrow:
        out_labels = set(rhs.replace("...", "")) | (
            {k for k in sizes if k.startswith("...")} if "..." in rhs else set()
        )
    else:  # implicit output: labels that appear once, plus the broadcast dims
        counts = {c: lhs.count(c) for c in set(lhs.replace("...", "").replace(",", ""))}
        out_labels = {c for c, k in counts.items() if k == 1} | {k for k in sizes if k.startswith("...")}
    total = math.prod(sizes.values())
    contracted = any(label not in out_labels for label in sizes)
    if len(terms) == 1:
        return (total - _vol(n.out()) if contracted else 0), 0
    if not contracted:  # outer or elementwise product: multiplies only
        return (len(terms) - 1) * total, 0
    return _mac((len(terms) - 1) * total)


def _attention(n: _Node) -> tuple[int, int]:
    # ONNX Attention (opset 23): Q, K, V as [B, H, L, E] or [B, L, H*E]; past_key extends the key length.
    q, k, v = n.inp(0), n.inp(1), n.inp(2)
    if len(q) == 4:
        batch, heads, q_len, head_dim = q
    else:
        heads = n.attr("q_num_heads")
        batch, q_len, head_dim = q[0], q[1], q[2] // heads
    kv_len = k[2] if len(k) == 4 else k[1]
    v_dim = v[3] if len(v) == 4 else v[2] // n.attr("kv_num_heads")
    if n.has_input(4):
        kv_len += n.inp(4)[2]
    scores = batch * heads * q_len * kv_len
    extra = scores * (1 + 5)  # scale, softmax
    if n.has_input(3):
        extra += scores  # mask add
    if n.attr("softcap", 0.0):
        extra += 3 * scores  # divide, tanh, multiply
    return _mac(scores * (head_dim + v_dim), extra)


def _recurrent(gates: int, per_unit: int) -> Formula:
    def f(n: _Node) -> tuple[int, int]:
        x, w = n.inp(0), n.inp(1)  # W: [directions, gates * hidden, input]
        seq, batch = (x[1], x[0]) if n.attr("layout", 0) else (x[0], x[1])
        directions, hidden = w[0], w[1] // gates
        steps = directions * seq * batch
        macs = steps * gates * hidden * (w[2] + hidden)
        return _mac(macs, steps * hidden * per_unit)

    return f


def _softmax(n: _Node) -> tuple[int, int]:
    return 5 * _vol(n.out()), 0


def _rows(shape: Shape, axis: int) -> int:
    return _vol(shape[: axis % len(shape)]) if shape else 1


def _layer_norm(n: _Node) -> tuple[int, int]:
    x = n.inp(0)
    per_elem = 5 + 1 + (1 if n.has_input(2) else 0)
    return per_elem * _vol(x) + 4 * _rows(x, n.attr("axis", -1)), 0


def _rms_norm(n: _Node) -> tuple[int, int]:
    x = n.inp(0)
    return 4 * _vol(x) + 3 * _rows(x, n.attr("axis", -1)), 0


def _instance_norm(n: _Node) -> tuple[int, int]:
    x = n.inp(0)
    return 7 * _vol(x) + 4 * x[0] * x[1], 0


def _group_norm(n: _Node) -> tuple[int, int]:
    x = n.inp(0)
    return 7 * _vol(x) + 4 * x[0] * n.attr("num_groups"), 0


def _batch_norm(n: _Node) -> tuple[int, int]:
    x = n.inp(0)
    return 2 * _vol(x) + 4 * (x[1] if len(x) > 1 else 1), 0


def _pool(factor: int) -> Formula:
    return lambda n: (factor * _vol(n.out()) * _vol(n.attr("kernel_shape")), 0)


def _reduce(per_in: int, per_out: int) -> Formula:
    return lambda n: (per_in * _vol(n.inp(0)) + per_out * _vol(n.out()), 0)


def _variadic(extra: int) -> Formula:
    return lambda n: ((n.n_inputs() - 1 + extra) * _vol(n.out()), 0)


def _clip(n: _Node) -> tuple[int, int]:
    # Bounds are optional inputs from opset 11, attributes before; an absent bound does no work.
    if n.opset >= 11:
        bounds = n.has_input(1) + n.has_input(2)
    else:
        bounds = n.has_attr("min") + n.has_attr("max")
    return bounds * _vol(n.out()), 0


def _gelu(n: _Node) -> tuple[int, int]:
    return (9 if n.attr("approximate", "none") == "tanh" else 5) * _vol(n.out()), 0


def _resize(n: _Node) -> tuple[int, int]:
    mode = n.attr("mode", "nearest")
    if mode == "nearest":
        return 0, 0
    x, y = n.inp(0), n.out()
    d = sum(1 for a, b in zip(x, y) if a != b)
    if d == 0:
        return 0, 0
    taps = (4 if mode == "cubic" else 2) ** d
    return 2 * taps * _vol(y), 0


def _zero(n: _Node) -> tuple[int, int]:
    return 0, 0


# Flops per output element of single-pass elementwise ops.
_ELEMENTWISE = {
    **dict.fromkeys(
        "Add Sub Mul Div Pow Mod BitShift Equal Greater Less GreaterOrEqual LessOrEqual And Or Xor "
        "BitwiseAnd BitwiseOr BitwiseXor BitwiseNot Not Where Neg Abs Reciprocal Sqrt Exp Log Erf Tanh "
        "Sigmoid Relu Sin Cos Tan Asin Acos Atan Sinh Cosh Asinh Acosh Atanh Floor Ceil Round Sign "
        "IsNaN IsInf CumSum ThresholdedRelu Hardmax".split(),
        1,
    ),
    "LeakyRelu": 2,  # compare, multiply
    "PRelu": 2,  # compare, multiply
    "Shrink": 3,  # two compares, add
    "Softplus": 3,  # log(exp(x) + 1)
    "Softsign": 3,  # x / (1 + |x|)
    "Swish": 3,  # x * sigmoid(alpha * x)
    "Elu": 4,  # compare, exp, subtract, multiply
    "HardSigmoid": 4,  # max(0, min(1, alpha * x + beta))
    "Selu": 5,  # compare, exp, subtract, two multiplies
    "HardSwish": 5,  # x * HardSigmoid(x)
    "Mish": 5,  # x * tanh(log(1 + exp(x)))
    "Celu": 7,  # max(0, x) + min(0, alpha * (exp(x / alpha) - 1))
    "QuantizeLinear": 2,  # scale, zero point
    "DequantizeLinear": 2,  # zero point, scale
    "DynamicQuantizeLinear": 4,  # min and max over the tensor, then scale and zero point
    "LpNormalization": 3,  # |x| or x^2, sum, divide
    "MeanVarianceNormalization": 5,  # as LayerNormalization without scale and bias
}

_ZERO = set(
    "Reshape Transpose Concat Split Shape Size Cast CastLike Identity Flatten Squeeze Unsqueeze Slice "
    "Gather GatherElements GatherND Scatter ScatterElements ScatterND Expand Tile Pad Constant "
    "ConstantOfShape DepthToSpace SpaceToDepth Dropout Trilu Compress ReverseSequence EyeLike OneHot "
    "Range NonZero SequenceConstruct SequenceEmpty SequenceAt SequenceInsert SequenceErase "
    "SequenceLength SplitToSequence ConcatFromSequence Optional OptionalGetElement OptionalHasElement "
    "BlackmanWindow HannWindow HammingWindow".split()
)

_FORMULAS: dict[str, Formula] = {
    **{op: _per_out(k) for op, k in _ELEMENTWISE.items()},
    **dict.fromkeys(_ZERO, _zero),
    "Conv": _conv(1, 2, requant=False),
    "ConvInteger": _conv(1, None, requant=False),
    "QLinearConv": _conv(3, 8, requant=True),
    "ConvTranspose": _conv_transpose,
    "MatMul": _matmul(0, requant=False),
    "MatMulInteger": _matmul(0, requant=False),
    "QLinearMatMul": _matmul(0, requant=True),
    "Gemm": _gemm,
    "Einsum": _einsum,
    "Attention": _attention,
    "RNN": _recurrent(1, 3),  # two bias adds, activation
    "GRU": _recurrent(3, 13),  # six bias adds, three activations, reset multiply, (1-z)*n + z*h
    "LSTM": _recurrent(4, 17),  # eight bias adds, five activations, c = f*c + i*g, h = o*tanh(c)
    "Softmax": _softmax,
    "LogSoftmax": _softmax,
    "LayerNormalization": _layer_norm,
    "RMSNormalization": _rms_norm,
    "InstanceNormalization": _instance_norm,
    "GroupNormalization": _group_norm,
    "BatchNormalization": _batch_norm,
    "LRN": lambda n: ((2 * n.attr("size") + 3) * _vol(n.out()), 0),  # windowed sum of squares, pow, scale
    "MaxPool": _pool(1),
    "AveragePool": _pool(1),
    "LpPool": _pool(2),
    "GlobalMaxPool": _per_in(1),
    "GlobalAveragePool": _per_in(1),
    "GlobalLpPool": _per_in(2),
    "ReduceSum": _reduce(1, 0),
    "ReduceMax": _reduce(1, 0),
    "ReduceMin": _reduce(1, 0),
    "ReduceProd": _reduce(1, 0),
    "ReduceMean": _reduce(1, 1),
    "ReduceL1": _reduce(2, 0),
    "ReduceL2": _reduce(2, 1),
    "ReduceSumSquare": _reduce(2, 0),
    "ReduceLogSum": _reduce(1, 1),
    "ReduceLogSumExp": _reduce(2, 1),
    "ArgMax": _per_in(1),
    "ArgMin": _per_in(1),
    "TopK": _per_in(1),
    "Sum": _variadic(0),
    "Max": _variadic(0),
    "Min": _variadic(0),
    "Mean": _variadic(1),
    "Clip": _clip,
    "Gelu": _gelu,
    "Resize": _resize,
    "Upsample": _resize,
}


# ---------------------------------------------------------------------------
# The analysis


def _shape_table(inferred: onnx.ModelProto) -> dict[str, tuple[Shape | None, int]]:
    """name -> (static shape or None, elem type); non-tensor values get (None, -1) so they are not flagged."""
    table: dict[str, tuple[Shape | None, int]] = {}
    g = inferred.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        if not vi.type.HasField("tensor_type"):
            if vi.type.WhichOneof("value") is not None:
                table[vi.name] = (None, -1)
            continue
        tt = vi.type.tensor_type
        shape: Shape | None = None
        if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            shape = tuple(d.dim_value for d in tt.shape.dim)
        table[vi.name] = (shape, tt.elem_type)
    for t in g.initializer:
        table[t.name] = (tuple(t.dims), t.data_type)
    return table


def _op_name(node: onnx.NodeProto) -> str:
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}:{node.op_type}"


def analyze(model: onnx.ModelProto | str | Path, dims: Mapping[str, int] | None = None) -> GraphCost:
    """Count params, weight bytes, flops, MACs and activation traffic of ``model`` per call.

    ``dims`` gives values to named dynamic dims (``dim_param``), e.g. ``{"batch": 1, "seq": 128}``;
    names no input uses are ignored, so one mapping can serve several models. The model itself is
    not modified. Raises :class:`WorkloadError` when the file cannot be read, when an input has a
    dynamic dim without a value, or when shape inference finds the dims inconsistent with the graph.
    """
    src, where = _load(model)
    fixed = _check_dims(dims, where)
    g = src.graph

    # Weights: every initializer (also those an older exporter lists as graph inputs) and Constant
    # nodes' tensors that look like weights. Other Constant outputs (shapes, scalars) are neither
    # weights nor traffic.
    params = sum(_tensor_elements(t) for t in g.initializer)
    weight_bytes = sum(_tensor_bytes(t) for t in g.initializer)
    for s in g.sparse_initializer:  # stored values (and indices), not the dense size
        params += _tensor_elements(s.values)
        weight_bytes += _tensor_bytes(s.values) + _tensor_bytes(s.indices)
    constants = {t.name for t in g.initializer} | {s.values.name for s in g.sparse_initializer}
    for node in g.node:
        if node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
            continue
        constants.update(node.output)
        value = next((a.t for a in node.attribute if a.name == "value"), None)
        if value is not None and value.data_type in _WEIGHT_TYPES and _tensor_elements(value) > 1:
            params += _tensor_elements(value)
            weight_bytes += _tensor_bytes(value)

    slim, replaced_constants = _slim_copy(src, fixed, where)
    inferred = _infer(slim, where, fixed)
    table = _shape_table(inferred)
    opset = next((o.version for o in inferred.opset_import if o.domain in ("", "ai.onnx")), 0)

    flops_total = macs_total = activation_bytes = 0
    per_op: dict[str, list[int]] = {}
    if replaced_constants:
        per_op["Constant"] = [replaced_constants, 0, 0]
    unknown: set[str] = set()
    for node in inferred.graph.node:
        name = _op_name(node)
        shape_missing = False
        for tensor in list(node.input) + list(node.output):
            if not tensor or tensor in constants:
                continue
            shape, elem_type = table.get(tensor, (None, 0))
            if shape is None:
                shape_missing |= elem_type != -1
                continue
            activation_bytes += _nbytes(_vol(shape), elem_type)
        formula = _FORMULAS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        flops = macs = 0
        if formula is None:
            unknown.add(name)
        else:
            try:
                flops, macs = formula(_Node(node, table, opset))
            except _NoShape:
                shape_missing = True
        if shape_missing and formula is not None:  # an unknown op is already listed by name
            unknown.add(f"{name} (shape unknown)")
        entry = per_op.setdefault(name, [0, 0, 0])
        entry[0] += 1
        entry[1] += flops
        entry[2] += macs
        flops_total += flops
        macs_total += macs

    by_op = tuple(
        OpCost(op_type=op, count=c, flops=f, macs=m)
        for op, (c, f, m) in sorted(per_op.items(), key=lambda kv: (-kv[1][1], kv[0]))
    )
    return GraphCost(
        params=params,
        weight_bytes=weight_bytes,
        flops=flops_total,
        macs=macs_total,
        activation_bytes=activation_bytes,
        arithmetic_intensity=_intensity(flops_total, weight_bytes + activation_bytes),
        by_op=by_op,
        unknown_ops=tuple(sorted(unknown)),
    )


def _intensity(flops: int, nbytes: int) -> float:
    return flops / nbytes if nbytes else 0.0


def per_sample(cost: GraphCost, batch: int) -> GraphCost:
    """``cost`` of one batch divided by ``batch``: flops, MACs and activation bytes; weights stay.

    Integer division rounds to nearest. Exact when all work scales with the batch; work that does
    not (e.g. DequantizeLinear of a weight) is divided too, so for such graphs analyze at batch 1.
    ``arithmetic_intensity`` is recomputed from the divided figures.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise WorkloadError(f"per_sample: batch must be a positive integer, got {batch!r}")

    def div(x: int) -> int:
        return (x + batch // 2) // batch

    flops, activation = div(cost.flops), div(cost.activation_bytes)
    return cost.model_copy(
        update={
            "flops": flops,
            "macs": div(cost.macs),
            "activation_bytes": activation,
            "arithmetic_intensity": _intensity(flops, cost.weight_bytes + activation),
            "by_op": tuple(o.model_copy(update={"flops": div(o.flops), "macs": div(o.macs)}) for o in cost.by_op),
        }
    )
