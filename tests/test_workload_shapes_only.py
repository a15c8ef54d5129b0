"""Catalog models built under `shapes_only` (no weights drawn) count exactly what their full builds count."""

from __future__ import annotations

import pytest

from benchkit.workloads import catalog
from benchkit.workloads.builders._graph import shapes_only
from benchkit.workloads.flops import analyze, per_sample


@pytest.mark.parametrize("name", ["tiny-add", "ds-cnn", "mlp", "attention", "conv2d"])
def test_shapes_only_counts_equal_the_full_build(name, tmp_path):
    dims = {**catalog.get(name).dims, "batch": 1}
    with shapes_only():
        light = catalog.build(name)
    assert all(t.data_location == t.EXTERNAL for t in light.graph.initializer if len(t.dims) > 1)
    assert per_sample(analyze(light, dims), 1) == per_sample(analyze(catalog.build(name), dims), 1)


def test_full_builds_are_unchanged_outside_the_block():
    with shapes_only():
        catalog.build("tiny-add")
    model = catalog.build("tiny-add")
    assert all(t.data_location != t.EXTERNAL for t in model.graph.initializer)
