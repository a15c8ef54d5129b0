"""Shared fixtures. The fault-injection adapters register through a real entry point (see tests/fakes/)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FAKES = Path(__file__).resolve().parent / "fakes"
SPECS = ROOT / "specs"


@pytest.fixture
def fakes_on_path(monkeypatch):
    """Make the fault-injection adapters discoverable here and in worker processes."""
    monkeypatch.syspath_prepend(str(FAKES))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(FAKES), os.environ.get("PYTHONPATH")])))
    yield


@pytest.fixture
def tiny_model(tmp_path) -> Path:
    """An external ONNX file (not from the catalog): y = x + 1 on [N, 16] float32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    import numpy as np

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])
    one = numpy_helper.from_array(np.ones((16,), np.float32), "one")
    g = helper.make_graph([helper.make_node("Add", ["x", "one"], ["y"])], "tiny", [x], [y], [one])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    path = tmp_path / "models" / "tiny.onnx"
    path.parent.mkdir()
    onnx.save(m, str(path))
    return path


def write_spec(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


sys.path.insert(0, str(Path(__file__).resolve().parent))
