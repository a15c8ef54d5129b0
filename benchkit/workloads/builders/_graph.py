"""Small helpers for writing workload builders with ``onnx.helper``.

A builder creates one :class:`GraphBuilder`, adds layers in order, and returns
``g.model(...)``. The helper owns the things every standard workload must get
the same way:

* fixed model metadata (``OPSET``, ``IR_VERSION``, producer name/version), so
  two builds give byte-identical files;
* stable, unique names: a layer called ``"layer1.0.conv1"`` produces a node of
  that name, an output tensor of that name, and initializers
  ``"layer1.0.conv1.weight"`` / ``".bias"``; a repeated name gets ``"_1"``,
  ``"_2"``... appended in creation order;
* weight initialisation scaled so activations stay finite and non-degenerate
  through deep graphs: He-normal (``gain=2``) in front of ReLU, Xavier-style
  (``gain=1``) otherwise, and BatchNormalization with running statistics
  close to what a He-initialised convolution produces (mean ~0, var ~1).

Weights are drawn from the ``np.random.Generator`` the catalog passes to the
builder, in the order layers are added, so the order of calls is part of a
workload's definition.

BatchNormalization initializers are named ``<layer>.scale``, ``<layer>.bias``,
``<layer>.mean`` and ``<layer>.var``; published parameter counts (torchvision,
Keras "trainable") include scale and bias but not the running statistics,
which end in :data:`BN_STAT_SUFFIXES`.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from benchkit._version import __version__

OPSET = 17
"""Default-domain opset of every standard workload (LayerNormalization needs 17)."""
IR_VERSION = 8
"""IR version written into every model; 8 keeps the files loadable by onnxruntime >= 1.11."""
PRODUCER_NAME = "benchkit"
BN_STAT_SUFFIXES = (".mean", ".var")
"""Initializer-name suffixes of BatchNormalization running statistics (not parameters)."""

_ONNX_DTYPE = {
    "float32": TensorProto.FLOAT,
    "float16": TensorProto.FLOAT16,
    "int64": TensorProto.INT64,
    "int32": TensorProto.INT32,
    "int8": TensorProto.INT8,
    "uint8": TensorProto.UINT8,
    "bool": TensorProto.BOOL,
}

Dim = int | str


def onnx_dtype(dtype: str) -> int:
    """Map a numpy dtype name ("float32", "int64", ...) to its ``TensorProto`` enum."""
    try:
        return _ONNX_DTYPE[dtype]
    except KeyError:
        raise ValueError(f"unsupported dtype {dtype!r}; expected one of {sorted(_ONNX_DTYPE)}") from None


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    a, b = v
    return (int(a), int(b))


class GraphBuilder:
    """Accumulates the inputs, nodes, initializers and outputs of one graph.

    Every layer method takes the name of its input tensor and returns the
    name of its output tensor, so a network reads top to bottom::

        g = GraphBuilder("mlp", rng)
        x = g.input("input", ["batch", 784])
        x = g.relu(g.gemm(x, 784, 512, name="fc1"))
        y = g.gemm(x, 512, 10, name="fc2", gain=1.0, out="logits")
        g.output(y, ["batch", 10])
        model = g.model("A three-layer perceptron.")
    """

    def __init__(self, name: str, rng: np.random.Generator) -> None:
        self.name = name
        self.rng = rng
        self._inputs: list[onnx.ValueInfoProto] = []
        self._outputs: list[onnx.ValueInfoProto] = []
        self._nodes: list[onnx.NodeProto] = []
        self._inits: list[onnx.TensorProto] = []
        self._used: set[str] = set()

    # -- names ---------------------------------------------------------------

    def fresh(self, base: str) -> str:
        """Return ``base`` if no tensor/node/initializer uses it yet, else ``base_<n>``."""
        name, n = base, 0
        while name in self._used:
            n += 1
            name = f"{base}_{n}"
        self._used.add(name)
        return name

    # -- graph edges -----------------------------------------------------------

    def input(self, name: str, shape: Sequence[Dim], dtype: str = "float32") -> str:
        """Declare a graph input; string dims become ``dim_param`` (dynamic) dims."""
        if name in self._used:
            raise ValueError(f"input name {name!r} is already used in graph {self.name!r}")
        self._used.add(name)
        self._inputs.append(helper.make_tensor_value_info(name, onnx_dtype(dtype), list(shape)))
        return name

    def output(self, tensor: str, shape: Sequence[Dim] | None, dtype: str = "float32") -> None:
        """Declare ``tensor`` a graph output (``shape=None`` leaves the shape to inference)."""
        self._outputs.append(
            helper.make_tensor_value_info(tensor, onnx_dtype(dtype), None if shape is None else list(shape))
        )

    # -- initializers ----------------------------------------------------------

    def const(self, name: str, value: np.ndarray | float | int | Sequence[Any], dtype: str | None = None) -> str:
        """Add an initializer holding ``value`` (as ``dtype`` if given) and return its name."""
        arr = np.asarray(value, dtype=dtype) if dtype is not None else np.asarray(value)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)  # never ship double weights by accident
        name = self.fresh(name)
        self._inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def weight(self, name: str, shape: Sequence[int], fan_in: int, gain: float = 2.0) -> str:
        """Add a normal(0, sqrt(gain / fan_in)) float32 initializer.

        ``gain=2`` is He init (keeps the second moment through ReLU),
        ``gain=1`` is LeCun/Xavier-style (keeps it through a linear layer).
        """
        if _SHAPES_ONLY.get():
            return self._placeholder(name, shape)
        std = np.float32(np.sqrt(gain / fan_in))
        w = self.rng.standard_normal(tuple(shape), dtype=np.float32) * std
        return self.const(name, w)

    def small(self, name: str, shape: Sequence[int], std: float = 0.02) -> str:
        """Add a normal(0, std) float32 initializer (biases, embeddings)."""
        if _SHAPES_ONLY.get():
            return self._placeholder(name, shape)
        return self.const(name, self.rng.standard_normal(tuple(shape), dtype=np.float32) * np.float32(std))

    def _placeholder(self, name: str, shape: Sequence[int]) -> str:
        """A float32 initializer with its dims and no values (:func:`shapes_only`): counts, never runs."""
        name = self.fresh(name)
        t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(shape))
        t.data_location = TensorProto.EXTERNAL
        t.external_data.add(key="location", value=_NOT_BUILT)
        self._inits.append(t)
        return name

    # -- generic node ----------------------------------------------------------

    def node(
        self,
        op_type: str,
        inputs: Sequence[str],
        *,
        name: str | None = None,
        out: str | None = None,
        n_out: int = 1,
        **attrs: Any,
    ) -> str:
        """Add one node and return its (first) output name.

        The node is named ``name`` (default: ``op_type``), made unique; its
        output is named ``out`` if given, else after the node. With
        ``n_out > 1`` the extra outputs are ``<node>:1``... and can be read back
        with :meth:`outputs_of`.
        """
        node_name = self.fresh(name or op_type)
        first = self.fresh(out) if out is not None else node_name
        outs = [first] + [self.fresh(f"{node_name}:{i}") for i in range(1, n_out)]
        self._nodes.append(helper.make_node(op_type, list(inputs), outs, name=node_name, **attrs))
        return first

    def outputs_of(self, tensor: str) -> list[str]:
        """All output names of the node whose first output is ``tensor``."""
        for n in self._nodes:
            if n.output and n.output[0] == tensor:
                return list(n.output)
        raise KeyError(tensor)

    # -- layers ----------------------------------------------------------------

    def conv(
        self,
        x: str,
        in_ch: int,
        out_ch: int,
        kernel: int | Sequence[int],
        *,
        name: str,
        stride: int | Sequence[int] = 1,
        pads: Sequence[int] | None = None,
        group: int = 1,
        bias: bool = False,
        gain: float = 2.0,
        out: str | None = None,
    ) -> str:
        """2-D convolution, weight ``[out_ch, in_ch/group, kh, kw]``, He-initialised.

        ``pads`` is ONNX order ``[top, left, bottom, right]``; the default pads
        ``(k-1)//2`` on every side (PyTorch-style "same" for odd kernels).
        """
        kh, kw = _pair(kernel)
        if in_ch % group or out_ch % group:
            raise ValueError(f"{name}: channels {in_ch}->{out_ch} not divisible by group {group}")
        if pads is None:
            pads = [(kh - 1) // 2, (kw - 1) // 2, (kh - 1) // 2, (kw - 1) // 2]
        fan_in = (in_ch // group) * kh * kw
        w = self.weight(f"{name}.weight", (out_ch, in_ch // group, kh, kw), fan_in, gain)
        ins = [x, w]
        if bias:
            ins.append(self.small(f"{name}.bias", (out_ch,)))
        return self.node(
            "Conv",
            ins,
            name=name,
            out=out,
            kernel_shape=[kh, kw],
            strides=list(_pair(stride)),
            pads=list(pads),
            group=group,
        )

    def batchnorm(self, x: str, channels: int, *, name: str, gamma: float = 1.0, eps: float = 1e-5) -> str:
        """Inference-mode BatchNormalization with plausible trained statistics.

        scale ~ gamma * U(0.9, 1.1), bias ~ N(0, 0.05), running mean ~ N(0, 0.05),
        running var ~ U(0.8, 1.2): close to the statistics of a He-initialised
        convolution's output, so the layer neither explodes nor collapses
        activations. A residual branch can pass ``gamma < 1`` to keep the sum
        of many blocks bounded.
        """
        c = (channels,)
        scale = self.const(f"{name}.scale", gamma * self.rng.uniform(0.9, 1.1, c).astype(np.float32))
        b = self.const(f"{name}.bias", 0.05 * self.rng.standard_normal(c, dtype=np.float32))
        mean = self.const(f"{name}.mean", 0.05 * self.rng.standard_normal(c, dtype=np.float32))
        var = self.const(f"{name}.var", self.rng.uniform(0.8, 1.2, c).astype(np.float32))
        return self.node("BatchNormalization", [x, scale, b, mean, var], name=name, epsilon=eps)

    def relu(self, x: str, *, name: str | None = None) -> str:
        return self.node("Relu", [x], name=name or f"{x}.relu")

    def relu6(self, x: str, *, name: str | None = None) -> str:
        """ReLU6 as ``Clip(x, 0, 6)`` (opset >= 11 takes the bounds as inputs)."""
        lo = self._scalar_f32(0.0)
        hi = self._scalar_f32(6.0)
        return self.node("Clip", [x, lo, hi], name=name or f"{x}.relu6")

    def conv_bn(
        self,
        x: str,
        in_ch: int,
        out_ch: int,
        kernel: int | Sequence[int],
        *,
        name: str,
        act: str | None = "relu",
        bn_gamma: float = 1.0,
        **conv_kw: Any,
    ) -> str:
        """Conv (no bias) -> BatchNormalization -> activation (``"relu"``, ``"relu6"`` or None).

        Layers are named ``<name>.conv`` and ``<name>.bn``.
        """
        gain = 2.0 if act else 1.0
        y = self.conv(x, in_ch, out_ch, kernel, name=f"{name}.conv", gain=gain, **conv_kw)
        y = self.batchnorm(y, out_ch, name=f"{name}.bn", gamma=bn_gamma)
        if act == "relu":
            return self.relu(y)
        if act == "relu6":
            return self.relu6(y)
        if act is None:
            return y
        raise ValueError(f"{name}: unknown activation {act!r}")

    def gemm(
        self,
        x: str,
        in_features: int,
        out_features: int,
        *,
        name: str,
        bias: bool = True,
        gain: float = 2.0,
        out: str | None = None,
    ) -> str:
        """Fully-connected layer on a 2-D input: ``Gemm(x, W^T, b)``, W stored ``[out, in]``."""
        w = self.weight(f"{name}.weight", (out_features, in_features), in_features, gain)
        ins = [x, w]
        if bias:
            ins.append(self.small(f"{name}.bias", (out_features,)))
        return self.node("Gemm", ins, name=name, out=out, transB=1)

    def linear(
        self,
        x: str,
        in_features: int,
        out_features: int,
        *,
        name: str,
        bias: bool = True,
        gain: float = 1.0,
        out: str | None = None,
    ) -> str:
        """Fully-connected layer on an N-D input: ``MatMul(x, W)`` (+ ``Add(b)``), W stored ``[in, out]``."""
        w = self.weight(f"{name}.weight", (in_features, out_features), in_features, gain)
        if not bias:
            return self.node("MatMul", [x, w], name=name, out=out)
        y = self.node("MatMul", [x, w], name=f"{name}.matmul")
        b = self.small(f"{name}.bias", (out_features,))
        return self.node("Add", [y, b], name=name, out=out)

    def _scalar_f32(self, v: float) -> str:
        # Shared scalar constants keep the file small and the node list readable.
        key = f"const.f32.{v!r}"
        if key not in self._used:
            self._used.add(key)
            self._inits.append(numpy_helper.from_array(np.array(v, dtype=np.float32), key))
        return key

    def scalar(self, v: float) -> str:
        """Name of a shared float32 scalar initializer with value ``v``."""
        return self._scalar_f32(float(v))

    # -- finish ----------------------------------------------------------------

    def model(self, doc: str, *, check: bool = True) -> onnx.ModelProto:
        """Assemble the model with benchkit's fixed metadata; ``doc`` becomes the graph doc string."""
        if not self._outputs:
            raise ValueError(f"graph {self.name!r} declares no outputs")
        graph = helper.make_graph(
            self._nodes, self.name, self._inputs, self._outputs, initializer=self._inits, doc_string=doc
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        return finalize(model, check=check)


_SHAPES_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("benchkit_shapes_only", default=False)
_NOT_BUILT = "benchkit-shapes-only-not-built"


@contextlib.contextmanager
def shapes_only() -> Iterator[None]:
    """Within this block, builders' random weights (``weight``, ``small``) are placeholders: the graph, its
    shapes and its parameter counts are exact, no weight is drawn or held. For ``workloads --details`` (FLOPs,
    params, bytes come from dims alone); such a model cannot run, and is never written to the cache."""
    token = _SHAPES_ONLY.set(True)
    try:
        yield
    finally:
        _SHAPES_ONLY.reset(token)


def finalize(model: onnx.ModelProto, *, check: bool = True) -> onnx.ModelProto:
    """Stamp benchkit's fixed metadata on ``model`` (in place) and return it.

    Sets ``ir_version``, producer name/version, clears the model doc string,
    domain, model_version and metadata, drops opset imports of domains no
    node uses (optimisers add a dozen; a stricter runtime may reject one it
    does not know), and (if ``check``) runs the ONNX checker. Used by
    :meth:`GraphBuilder.model` and by the variant passes, which start from
    models other tools have stamped.
    """
    model.ir_version = IR_VERSION
    model.producer_name = PRODUCER_NAME
    model.producer_version = __version__
    model.doc_string = ""
    model.domain = ""
    model.model_version = 0
    del model.metadata_props[:]
    used = {n.domain for n in model.graph.node}
    keep = [o for o in model.opset_import if o.domain in ("", "ai.onnx") or o.domain in used]
    if len(keep) != len(model.opset_import):
        del model.opset_import[:]
        model.opset_import.extend(keep)
    if check and not _SHAPES_ONLY.get():  # placeholders hold no data for the checker to find
        onnx.checker.check_model(model)
    return model
