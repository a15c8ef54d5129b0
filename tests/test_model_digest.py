"""The workload version covers the whole model: the graph and every external-data file it references."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from benchkit.errors import WorkloadError
from benchkit.spec import parse_spec
from benchkit.workloads import file_sha256, model_sha256, resolve
from benchkit.workloads.model import MODEL_DIGEST_HEADER, external_data_files


def _external_model(folder: Path) -> Path:
    """y = x @ W + b with W (64x64) and b kept in one external-data file, weights.bin."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((64, 64)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal((64,)).astype(np.float32), "b")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 64])
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
                          "ext", [x], [y], [w, b])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ext.onnx"
    onnx.save_model(m, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin",
                    size_threshold=0)
    return path


def _spec(folder: Path, pin: str | None = None):
    text = "name: digest\nworkloads:\n  - name: ext\n    model: ext.onnx\n"
    if pin:
        text += f"    sha256: {pin}\n"
    text += "backends: [{name: onnxruntime}]\nscenarios: [{kind: single_stream}]\n"
    return parse_spec(text, "digest.yaml", folder).spec.workloads[0]


def test_self_contained_model_digest_is_the_file_sha256(tiny_model):
    assert model_sha256(tiny_model) == file_sha256(tiny_model) == hashlib.sha256(tiny_model.read_bytes()).hexdigest()


def test_digest_is_the_documented_manifest(tmp_path):
    path = _external_model(tmp_path / "m")
    import onnx

    assert external_data_files(onnx.load(str(path), load_external_data=False)) == {"weights.bin": ["W", "b"]}
    manifest = (f"{MODEL_DIGEST_HEADER}\n{file_sha256(path)}\n"
                f"{file_sha256(path.parent / 'weights.bin')}  weights.bin\n")
    assert model_sha256(path) == hashlib.sha256(manifest.encode()).hexdigest()
    assert model_sha256(path) != file_sha256(path)


def test_weights_times_1000_change_the_digest_and_break_the_pin(tmp_path):
    folder = tmp_path / "m"
    path = _external_model(folder)
    wl = resolve(_spec(folder), folder, "digest.yaml: workloads[0] (ext)")
    honest = wl.sha256
    assert honest == model_sha256(path)
    assert resolve(_spec(folder, honest), folder, "x").sha256 == honest  # the pin holds on the honest model

    # The cheat: every weight multiplied by 1000, the graph file untouched.
    data = folder / "weights.bin"
    graph_bytes = path.read_bytes()
    data.write_bytes((np.frombuffer(data.read_bytes(), np.float32) * 1000).astype(np.float32).tobytes())
    assert path.read_bytes() == graph_bytes and model_sha256(path) != honest
    with pytest.raises(WorkloadError) as e:
        resolve(_spec(folder, honest), folder, "digest.yaml: workloads[0] (ext)")
    msg = str(e.value)
    assert msg.startswith("digest.yaml: workloads[0] (ext).sha256: model ext.onnx has SHA-256 ")
    assert "over the graph and its 1 external-data file" in msg and f"the spec pins {honest}" in msg


def test_missing_or_escaping_external_data_is_an_error(tmp_path):
    import onnx

    folder = tmp_path / "m"
    path = _external_model(folder)
    (folder / "weights.bin").unlink()
    with pytest.raises(WorkloadError, match=r"external-data file weights\.bin \(tensor W, b\) .* not found"):
        model_sha256(path, origin="w")
    model = onnx.load(str(path), load_external_data=False)
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../outside.bin"
    onnx.save_model(model, str(path))
    with pytest.raises(WorkloadError, match="must be a relative path inside the model's folder"):
        model_sha256(path, origin="w")
