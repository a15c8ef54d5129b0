"""The shipped table of standard-build SHA-256s (workloads/hashes.json) is what benchkit builds."""

from __future__ import annotations

import pytest

from benchkit.workloads import catalog, hashes

# Cheap to build (well under a second each, int8 included): rebuilt on every run. The others are rebuilt by
# `python -m benchkit.workloads.hashes` (minutes, gigabytes) and checked here only for being current.
CHEAP = [("tiny-add", "fp32"), ("tiny-add", "fp16"), ("tiny-add", "int8"), ("gemm", "fp32"), ("softmax", "fp16"),
         ("layernorm", "fp32")]


def test_the_table_covers_every_catalog_build_and_is_current():
    stale, missing = [], []
    for name, entry in catalog.entries().items():
        for variant in entry.variants:
            if hashes.recorded(name, variant) is None:
                missing.append(f"{name} {variant}")
            elif hashes.known(name, variant) is None:
                stale.append(f"{name} {variant}")
    assert not missing and not stale, (
        f"workloads/hashes.json lacks {missing} and is stale for {stale}: "
        "run python -m benchkit.workloads.hashes [NAME ...]")


@pytest.mark.parametrize("name, variant", CHEAP, ids=lambda x: x)
def test_the_table_holds_what_a_fresh_build_hashes_to(tmp_path, name, variant):
    got = hashes.measure(name, variant, cache_dir=tmp_path)
    want = hashes.recorded(name, variant)
    assert (got["sha256"], got["size"], got["structure"]) == (want.sha256, want.size, want.structure)


@pytest.mark.slow
def test_every_cheap_build_matches_the_table(tmp_path):
    for name, entry in catalog.entries().items():
        if entry.family != "micro" and name not in ("mlp", "digits-mlp", "ds-cnn"):
            continue
        for variant in entry.variants:
            got = hashes.measure(name, variant, cache_dir=tmp_path)
            assert got["sha256"] == hashes.recorded(name, variant).sha256, (name, variant)
