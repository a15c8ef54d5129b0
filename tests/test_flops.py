"""FLOP/byte accounting against figures computed by hand from each kernel's definition."""

from __future__ import annotations

import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from pydantic import ValidationError

from benchkit.errors import WorkloadError
from benchkit.workloads.flops import GraphCost, OpCost, analyze, per_sample

F32 = TensorProto.FLOAT


def _model(nodes, inputs, outputs, inits=(), opset=21, extra_opsets=(), ir_version=None):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, F32 if t is None else t, None) for n, t in outputs],
        list(inits),
    )
    opsets = [helper.make_opsetid("", opset), *(helper.make_opsetid(d, v) for d, v in extra_opsets)]
    m = helper.make_model(graph, opset_imports=opsets)
    if ir_version is not None:
        m.ir_version = ir_version
    return m


def _w(name, shape, dtype=np.float32):
    return numpy_helper.from_array(np.ones(shape, dtype), name)


def _op(cost: GraphCost, op_type: str) -> OpCost:
    return next(o for o in cost.by_op if o.op_type == op_type)


# --- MAC kernels ------------------------------------------------------------------------------


def test_batched_matmul_bkxkn():
    b, m, k, n = 2, 3, 4, 5
    model = _model(
        [helper.make_node("MatMul", ["x", "W"], ["y"])], [("x", F32, [b, m, k])], [("y", None)], [_w("W", (k, n))]
    )
    cost = analyze(model)
    assert cost.macs == b * m * k * n == 120
    assert cost.flops == 2 * 120
    assert cost.params == k * n and cost.weight_bytes == 4 * k * n
    # x read (2*3*4 floats) + y written (2*3*5 floats); the weight is not activation traffic.
    assert cost.activation_bytes == 4 * (b * m * k + b * m * n) == 216
    assert cost.arithmetic_intensity == pytest.approx(240 / (80 + 216))
    assert cost.by_op == (OpCost(op_type="MatMul", count=1, flops=240, macs=120),)
    assert cost.unknown_ops == ()


def test_matmul_broadcasts_batch_dims():
    # [2,1,3,4] x [5,4,6] -> [2,5,3,6]; every output element is a K=4 dot product.
    model = _model(
        [helper.make_node("MatMul", ["a", "b"], ["y"])],
        [("a", F32, [2, 1, 3, 4]), ("b", F32, [5, 4, 6])],
        [("y", None)],
    )
    assert analyze(model).macs == 2 * 5 * 3 * 6 * 4


@pytest.mark.parametrize(
    ("attrs", "a_shape", "extra_flops"),
    [
        ({}, [3, 4], 15),  # bias add: M*N
        ({"transA": 1}, [4, 3], 15),
        ({"alpha": 0.5, "beta": 2.0}, [3, 4], 15 + 15 + 15),  # alpha scale, bias add, beta scale
        ({"beta": 0.0}, [3, 4], 0),  # C is ignored
    ],
)
def test_gemm_with_bias(attrs, a_shape, extra_flops):
    # A [M=3, K=4] (or transposed), B stored [N=5, K=4] with transB, C [N].
    model = _model(
        [helper.make_node("Gemm", ["a", "B", "C"], ["y"], transB=1, **attrs)],
        [("a", F32, a_shape)],
        [("y", None)],
        [_w("B", (5, 4)), _w("C", (5,))],
    )
    cost = analyze(model)
    assert cost.macs == 3 * 5 * 4
    assert cost.flops == 2 * 60 + extra_flops
    assert cost.params == 25 and cost.weight_bytes == 100


def test_conv3x3_stride2_pad1_with_bias():
    # 8x8 input, 3x3 kernel, stride 2, pad 1 -> 4x4 output.
    model = _model(
        [helper.make_node("Conv", ["x", "W", "b"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])],
        [("x", F32, [1, 3, 8, 8])],
        [("y", None)],
        [_w("W", (16, 3, 3, 3)), _w("b", (16,))],
    )
    cost = analyze(model)
    out = 16 * 4 * 4
    assert cost.macs == out * 3 * 9 == 6912
    assert cost.flops == 2 * 6912 + out  # bias add once per output element
    assert cost.params == 16 * 27 + 16
    assert cost.weight_bytes == 4 * cost.params
    assert cost.activation_bytes == 4 * (3 * 64 + out)


def test_depthwise_conv():
    model = _model(
        [helper.make_node("Conv", ["x", "W"], ["y"], group=8, pads=[1, 1, 1, 1])],
        [("x", F32, [1, 8, 10, 10])],
        [("y", None)],
        [_w("W", (8, 1, 3, 3))],
    )
    cost = analyze(model)
    assert cost.macs == 8 * 10 * 10 * 9  # one input channel per output channel
    assert cost.flops == 2 * cost.macs


def test_conv_transpose():
    # Each of the 4*5*5 input elements is scattered through C_out * 3 * 3 = 18 weights.
    model = _model(
        [helper.make_node("ConvTranspose", ["x", "W", "b"], ["y"], strides=[2, 2])],
        [("x", F32, [1, 4, 5, 5])],
        [("y", None)],
        [_w("W", (4, 2, 3, 3)), _w("b", (2,))],
    )
    cost = analyze(model)
    assert cost.macs == 100 * 18
    assert cost.flops == 2 * 1800 + 2 * 11 * 11  # output is 2 x 11 x 11


def test_einsum_matches_matmul():
    model = _model(
        [
            helper.make_node("Einsum", ["a", "b"], ["y"], equation="bij,bjk->bik"),
            helper.make_node("Einsum", ["a", "b"], ["z"], equation="...ij,...jk"),  # implicit output
        ],
        [("a", F32, [2, 3, 4]), ("b", F32, [2, 4, 5])],
        [("y", None), ("z", None)],
    )
    cost = analyze(model)
    assert cost.macs == 2 * (2 * 3 * 4 * 5)
    assert cost.flops == 2 * cost.macs


def _mha(b, h, s, d):
    """Scaled dot-product attention from primitive ops: softmax(Q K^T * scale) V."""
    nodes = [
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", ["q", "kt"], ["scores"]),
        helper.make_node("Mul", ["scores", "scale"], ["scaled"]),
        helper.make_node("Softmax", ["scaled"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["y"]),
    ]
    inputs = [(n, F32, [b, h, s, d]) for n in ("q", "k", "v")]
    scale = numpy_helper.from_array(np.array(d**-0.5, np.float32), "scale")
    return _model(nodes, inputs, [("y", None)], [scale])


def test_multi_head_attention_from_matmul_and_softmax():
    b, h, s, d = 1, 2, 4, 8
    cost = analyze(_mha(b, h, s, d))
    scores = b * h * s * s
    assert cost.macs == scores * d + scores * d  # Q K^T, then P V
    assert cost.flops == 2 * cost.macs + scores + 5 * scores  # scale, softmax
    assert _op(cost, "Softmax").flops == 5 * scores
    assert _op(cost, "Transpose").flops == 0
    assert cost.unknown_ops == ()


def test_onnx_attention_op_agrees_with_its_decomposition():
    b, h, s, d = 1, 2, 4, 8
    fused = _model(
        [helper.make_node("Attention", ["q", "k", "v"], ["y"])],
        [(n, F32, [b, h, s, d]) for n in ("q", "k", "v")],
        [("y", None)],
        opset=23,
    )
    a, ref = analyze(fused), analyze(_mha(b, h, s, d))
    assert (a.macs, a.flops) == (ref.macs, ref.flops)


# --- normalisation, softmax, elementwise, pooling ------------------------------------------------


@pytest.mark.parametrize(("with_bias", "per_elem"), [(True, 7), (False, 6)])
def test_layer_norm(with_bias, per_elem):
    inputs = ["x", "s", "bias"] if with_bias else ["x", "s"]
    model = _model(
        [helper.make_node("LayerNormalization", inputs, ["y"], axis=-1)],
        [("x", F32, [2, 4, 16])],
        [("y", None)],
        [_w("s", (16,)), _w("bias", (16,))],
    )
    # per element: mean sum, subtract, square, variance sum, 1/sigma multiply, scale (, bias);
    # per row of 16: two divisions, epsilon add, reciprocal square root.
    assert analyze(model).flops == per_elem * 128 + 4 * 8


def test_softmax_five_flops_per_element():
    model = _model([helper.make_node("Softmax", ["x"], ["y"])], [("x", F32, [2, 3, 10])], [("y", None)])
    cost = analyze(model)
    assert cost.flops == 5 * 60 and cost.macs == 0


def test_elementwise_stream_kernel():
    n = 1024
    model = _model(
        [helper.make_node("Add", ["x", "y"], ["s"]), helper.make_node("Relu", ["s"], ["z"])],
        [("x", F32, [n]), ("y", F32, [n])],
        [("z", None)],
    )
    cost = analyze(model)
    assert cost.flops == n + n
    # Add reads two vectors and writes one; Relu reads one and writes one.
    assert cost.activation_bytes == 5 * 4 * n
    assert cost.arithmetic_intensity == pytest.approx(2 * n / (20 * n))
    assert cost.params == 0 and cost.weight_bytes == 0


def test_batch_norm_and_gelu_conventions():
    model = _model(
        [
            helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["bn"]),
            helper.make_node("Gelu", ["bn"], ["g"]),
            helper.make_node("Gelu", ["bn"], ["t"], approximate="tanh"),
            helper.make_node("Clip", ["bn", "", "hi"], ["c"]),  # upper bound only
        ],
        [("x", F32, [2, 3, 4, 4])],
        [("g", None), ("t", None), ("c", None)],
        [_w(n, (3,)) for n in "sbmv"] + [numpy_helper.from_array(np.array(6.0, np.float32), "hi")],
    )
    n = 2 * 3 * 16
    assert analyze(model).flops == (2 * n + 4 * 3) + 5 * n + 9 * n + 1 * n


def test_pooling():
    model = _model(
        [
            helper.make_node("MaxPool", ["x"], ["mp"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
            helper.make_node("AveragePool", ["x"], ["ap"], kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("GlobalAveragePool", ["x"], ["gp"]),
        ],
        [("x", F32, [1, 4, 8, 8])],
        [("mp", None), ("ap", None), ("gp", None)],
    )
    cost = analyze(model)
    assert _op(cost, "MaxPool").flops == 4 * 4 * 4 * 9  # 9 comparisons per output
    assert _op(cost, "AveragePool").flops == 4 * 4 * 4 * 4
    assert _op(cost, "GlobalAveragePool").flops == 4 * 64  # one add per input element


def test_reductions_and_gather():
    model = _model(
        [
            helper.make_node("ReduceMean", ["x", "ax"], ["m"]),
            helper.make_node("ReduceSum", ["x", "ax"], ["s"]),
            helper.make_node("Gather", ["table", "ids"], ["e"], axis=0),
        ],
        [("x", F32, [4, 10]), ("ids", TensorProto.INT64, [6])],
        [("m", None), ("s", None), ("e", None)],
        [numpy_helper.from_array(np.array([1], np.int64), "ax"), _w("table", (100, 8))],
    )
    cost = analyze(model)
    assert _op(cost, "ReduceMean").flops == 40 + 4  # sum, then one division per output
    assert _op(cost, "ReduceSum").flops == 40
    assert _op(cost, "Gather").flops == 0
    # Gather moves bytes: reads 6 int64 ids, writes 6 x 8 floats (the table is a weight).
    reduce_bytes = 2 * (4 * 40 + 4 * 4)
    assert cost.activation_bytes == reduce_bytes + 8 * 6 + 4 * 48
    assert cost.unknown_ops == ()


def test_integer_and_quantized_ops_count_int8_macs():
    u8 = TensorProto.UINT8
    model = _model(
        [
            helper.make_node("MatMulInteger", ["a", "Wq"], ["acc"]),
            helper.make_node("DequantizeLinear", ["Wq", "sc", "zp"], ["wf"]),
            helper.make_node("QuantizeLinear", ["xf", "sc", "zp"], ["xq"]),
        ],
        [("a", u8, [3, 4]), ("xf", F32, [3, 4])],
        [("acc", TensorProto.INT32), ("wf", F32), ("xq", u8)],
        [
            numpy_helper.from_array(np.ones((4, 5), np.uint8), "Wq"),
            numpy_helper.from_array(np.array(0.1, np.float32), "sc"),
            numpy_helper.from_array(np.array(128, np.uint8), "zp"),
        ],
    )
    cost = analyze(model)
    assert _op(cost, "MatMulInteger").macs == 3 * 4 * 5
    assert _op(cost, "DequantizeLinear").flops == 2 * 20
    assert _op(cost, "QuantizeLinear").flops == 2 * 12
    assert cost.weight_bytes == 20 + 4 + 1


# --- weights, dims, unknowns ---------------------------------------------------------------------


def test_params_and_weight_bytes_by_dtype():
    const_w = helper.make_tensor("cw", F32, [4], [1.0, 2.0, 3.0, 4.0])
    const_shape = helper.make_tensor("cs", TensorProto.INT64, [1], [4])
    model = _model(
        [
            helper.make_node("Constant", [], ["c"], value=const_w),  # a weight
            helper.make_node("Constant", [], ["shape"], value=const_shape),  # a shape, not a weight
            helper.make_node("Reshape", ["x", "shape"], ["xr"]),
            helper.make_node("Add", ["xr", "c"], ["y"]),
        ],
        [("x", F32, [2, 2])],
        [("y", None)],
        [
            _w("f32", (3, 4)),  # 12 elements, 48 bytes
            _w("f16", (10,), np.float16),  # 10, 20
            _w("i8", (7,), np.int8),  # 7, 7
            helper.make_tensor("i4", TensorProto.INT4, [5], [1, 2, 3, 4, 5]),  # 5, packed into 3 bytes
        ],
    )
    cost = analyze(model)
    assert cost.params == 12 + 10 + 7 + 5 + 4
    assert cost.weight_bytes == 48 + 20 + 7 + 3 + 16
    assert cost.flops == 4
    assert _op(cost, "Constant").count == 2


def test_weights_listed_as_graph_inputs_by_older_exporters():
    # IR 3: every initializer is also a graph input; its declared shape may even be symbolic.
    model = _model(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        [("x", F32, [2, 4]), ("W", F32, ["rows", "cols"])],
        [("y", None)],
        [_w("W", (4, 3))],
        opset=8,
        ir_version=3,
    )
    cost = analyze(model)  # no dims needed for W: its shape is the initializer's
    assert cost.params == 12 and cost.weight_bytes == 48
    assert cost.macs == 2 * 4 * 3
    assert cost.activation_bytes == 4 * (8 + 6)  # W is not traffic


def test_large_weights_as_constants_and_external_data(tmp_path):
    # A big Constant weight is replaced by a typed input before inference; still counted.
    big = numpy_helper.from_array(np.ones((64, 32), np.float32), "Wc")
    model = _model(
        [helper.make_node("Constant", [], ["W"], value=big), helper.make_node("MatMul", ["x", "W"], ["y"])],
        [("x", F32, [5, 64])],
        [("y", None)],
        [_w("unused", (300,))],
    )
    in_memory = analyze(model)
    assert in_memory.params == 64 * 32 + 300 and in_memory.macs == 5 * 64 * 32
    assert _op(in_memory, "Constant").count == 1
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, size_threshold=0)
    assert analyze(path) == in_memory == analyze(str(path))


def test_dynamic_dims_fixed_from_mapping():
    model = _model(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        [("x", F32, ["batch", "seq", 16])],
        [("y", None)],
        [_w("W", (16, 8))],
    )
    cost = analyze(model, {"batch": 3, "seq": 7, "unused_elsewhere": 2})
    assert cost.macs == 3 * 7 * 16 * 8
    # The caller's model is untouched.
    assert [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim[:2]] == ["batch", "seq"]


def test_missing_dynamic_dim_names_input_and_dim():
    model = _model([helper.make_node("Relu", ["tokens"], ["y"])], [("tokens", F32, ["batch", "seq"])], [("y", None)])
    with pytest.raises(WorkloadError, match=r"'tokens'.*'seq'"):
        analyze(model, {"batch": 1})
    with pytest.raises(WorkloadError, match="positive integer"):
        analyze(model, {"batch": 0, "seq": 4})


def test_dims_inconsistent_with_graph_raise():
    model = _model(
        [helper.make_node("MatMul", ["x", "W"], ["y"])], [("x", F32, [2, "k"])], [("y", None)], [_w("W", (16, 8))]
    )
    with pytest.raises(WorkloadError, match="shape inference failed"):
        analyze(model, {"k": 15})


def test_wrong_declared_output_shape_does_not_block_the_count():
    # The exporter declared y as [2, 99]; the graph computes [2, 8]. Counts follow the graph.
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", F32, [2, 16])],
        [helper.make_tensor_value_info("y", F32, [2, 99])],
        [_w("W", (16, 8))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    assert analyze(model).macs == 2 * 16 * 8


def test_unreadable_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff\xfe not a protobuf")
    with pytest.raises(WorkloadError, match="bad.onnx"):
        analyze(bad)
    with pytest.raises(WorkloadError, match="no such ONNX file"):
        analyze(tmp_path / "missing.onnx")


def test_unknown_op_is_listed_not_silent():
    model = _model(
        [
            helper.make_node("Mystery", ["x"], ["m"], domain="vendor.ops"),
            helper.make_node("Relu", ["m"], ["r"]),  # its shape depends on the unknown op
            helper.make_node("Relu", ["x"], ["ok"]),
        ],
        [("x", F32, [3, 5])],
        [("r", None), ("ok", None)],
        extra_opsets=[("vendor.ops", 1)],
    )
    cost = analyze(model)
    assert cost.unknown_ops == ("Relu (shape unknown)", "vendor.ops:Mystery")
    assert cost.flops == 15  # only the Relu whose shape is known
    assert _op(cost, "vendor.ops:Mystery").count == 1


def test_shape_arithmetic_is_propagated():
    # Shape -> Gather -> Concat -> Reshape, as exporters emit: the Reshape target is computed in-graph.
    model = _model(
        [
            helper.make_node("Shape", ["x"], ["s"]),
            helper.make_node("Gather", ["s", "zero"], ["b"], axis=0),
            helper.make_node("Unsqueeze", ["b", "zero1"], ["bu"]),
            helper.make_node("Concat", ["bu", "minus1"], ["target"], axis=0),
            helper.make_node("Reshape", ["x", "target"], ["flat"]),
            helper.make_node("MatMul", ["flat", "W"], ["y"]),
        ],
        [("x", F32, ["batch", 4, 16])],
        [("y", None)],
        [
            numpy_helper.from_array(np.array(0, np.int64), "zero"),
            numpy_helper.from_array(np.array([0], np.int64), "zero1"),
            numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
            _w("W", (64, 10)),
        ],
    )
    cost = analyze(model, {"batch": 3})
    assert cost.macs == 3 * 64 * 10
    assert cost.unknown_ops == ()


def test_data_movement_ops_are_free_but_not_unknown():
    i64 = TensorProto.INT64
    model = _model(
        [
            helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0]),
            helper.make_node("Reshape", ["t", "shape"], ["r"]),
            helper.make_node("Concat", ["r", "r"], ["c"], axis=0),
            helper.make_node("Cast", ["c"], ["h"], to=TensorProto.FLOAT16),
            helper.make_node("Identity", ["h"], ["i"]),
            helper.make_node("Unsqueeze", ["i", "axes"], ["u"]),
            helper.make_node("Squeeze", ["u", "axes"], ["s"]),
            helper.make_node("Flatten", ["s"], ["f"]),
            helper.make_node("Slice", ["f", "starts", "ends"], ["y"]),
            helper.make_node("Shape", ["y"], ["shape_out"]),
        ],
        [("x", F32, [3, 4])],
        [("y", TensorProto.FLOAT16), ("shape_out", i64)],
        [
            numpy_helper.from_array(np.array([12], np.int64), "shape"),
            numpy_helper.from_array(np.array([0], np.int64), "axes"),
            numpy_helper.from_array(np.array([0], np.int64), "starts"),
            numpy_helper.from_array(np.array([1], np.int64), "ends"),
        ],
    )
    cost = analyze(model)
    assert cost.flops == 0 and cost.unknown_ops == ()
    assert _op(cost, "Concat").count == 1
    f32, f16 = 4, 2
    per_node_bytes = [
        f32 * (12 + 12),  # Transpose
        f32 * (12 + 12),  # Reshape (its shape input is an initializer, not traffic)
        f32 * (12 + 12 + 24),  # Concat reads r twice
        f32 * 24 + f16 * 24,  # Cast
        f16 * (24 + 24),  # Identity
        f16 * (24 + 24),  # Unsqueeze -> [1, 24]
        f16 * (24 + 24),  # Squeeze -> [24]
        f16 * (24 + 24),  # Flatten -> [24, 1]
        f16 * (24 + 1),  # Slice of the first row -> [1, 1]
        f16 * 1 + 8 * 2,  # Shape writes two int64
    ]
    assert cost.activation_bytes == sum(per_node_bytes) == 980


def test_lstm_and_resize():
    seq, batch, inp, hidden = 5, 2, 3, 4
    model = _model(
        [
            helper.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=hidden),
            helper.make_node("Resize", ["img", "", "scales"], ["big"], mode="linear"),
        ],
        [("x", F32, [seq, batch, inp]), ("img", F32, [1, 1, 4, 4])],
        [("y", None), ("big", None)],
        [
            _w("W", (1, 4 * hidden, inp)),
            _w("R", (1, 4 * hidden, hidden)),
            numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
        ],
    )
    cost = analyze(model)
    lstm = _op(cost, "LSTM")
    assert lstm.macs == seq * batch * 4 * hidden * (inp + hidden)  # four gates over [x, h]
    assert lstm.flops == 2 * lstm.macs + seq * batch * hidden * 17
    # Bilinear: each of the 8x8 outputs is a weighted sum of 4 neighbours, 2 flops per tap.
    assert _op(cost, "Resize").flops == 2 * 4 * 64


# --- per_sample, model shape, speed --------------------------------------------------------------


def test_per_sample_matches_batch_one():
    model = _model(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        [("x", F32, ["batch", 16])],
        [("y", None)],
        [_w("W", (16, 8))],
    )
    one, four = analyze(model, {"batch": 1}), analyze(model, {"batch": 4})
    ps = per_sample(four, 4)
    assert (ps.flops, ps.macs, ps.activation_bytes) == (one.flops, one.macs, one.activation_bytes)
    assert (ps.params, ps.weight_bytes) == (four.params, four.weight_bytes)
    assert ps.by_op == one.by_op
    assert ps.arithmetic_intensity == pytest.approx(one.arithmetic_intensity)
    with pytest.raises(WorkloadError, match="batch"):
        per_sample(four, 0)


def test_graph_cost_is_frozen_and_strict():
    cost = analyze(_mha(1, 1, 2, 2))
    with pytest.raises(ValidationError):
        cost.flops = 0  # type: ignore[misc]
    with pytest.raises(ValidationError):
        GraphCost(**cost.model_dump(), extra_field=1)
    flops = [o.flops for o in cost.by_op]
    assert flops == sorted(flops, reverse=True)


def _resnet50_sized(batch_dim="batch"):
    """53 conv+BN+ReLU layers of 256 channels, ~31 M parameters (about ResNet-50's 25 M)."""
    nodes, inits, x, c = [], [], "x", 256
    zeros = np.zeros((c, c, 3, 3), np.float32)
    for i in range(53):
        inits += [numpy_helper.from_array(zeros, f"w{i}"), _w(f"b{i}", (c,))]
        inits += [_w(f"bn{i}_{p}", (c,)) for p in "sbmv"]
        nodes += [
            helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
            helper.make_node("BatchNormalization", [f"c{i}"] + [f"bn{i}_{p}" for p in "sbmv"], [f"n{i}"]),
            helper.make_node("Relu", [f"n{i}"], [f"r{i}"]),
        ]
        x = f"r{i}"
    return _model(nodes, [("x", F32, [batch_dim, c, 14, 14])], [(x, None)], inits)


def test_resnet50_sized_graph_is_fast():
    model = _resnet50_sized()
    t0 = time.perf_counter()
    cost = analyze(model, {"batch": 1})
    elapsed_s = time.perf_counter() - t0
    per_layer_macs = 256 * 14 * 14 * 256 * 9
    assert cost.macs == 53 * per_layer_macs
    assert cost.params == 53 * (256 * 256 * 9 + 5 * 256)
    assert elapsed_s < 2.0, f"analyze took {elapsed_s:.2f} s"
