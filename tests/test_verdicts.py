"""Refusals and acceptances under the certify profile: every dishonest adapter of tests/fakes is INVALID with the
check that targets its class named; the honest adapters are VALID under the same rules.

One suite run serves every assertion (all adapters, one cell each). The figures over many rounds, and under
background load, come from ``tests/benchmarks/bench_verdicts.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchkit.results.records import ResultRecord
from benchkit.runner.suite import RunOptions, plan_cells, run_suite
from benchkit.spec import parse_spec

# Heavy enough that the computation a cheat moves out of run() (0.2-0.5 ms here, by ONNX Runtime or numpy) clearly
# exceeds the boundary audit's transfer allowance (about 73 µs for this call's two tensors): work below that
# allowance is within the audit's tolerance by design. (m: 64 was too light: on an idle runner ONNX Runtime computes
# it in 45 µs and numpy in 70-110 µs, and the stage cheat behind a 1 ms spin sat at the allowance.)
WORKLOAD = "{name: gemm, params: {m: 256, n: 256, k: 256}}"

# Each cheat and the checks that target its class: the record must be INVALID and at least one of them must have
# said so. (Other checks may refuse it too: a cheat rarely breaks one rule only.)
CHEATS = {
    "cheat-stage": {"audit.boundary", "plausibility.peak"},  # work in stage()
    "cheat-stage-spin": {"audit.boundary"},  # work in stage() behind a steady 1 ms spin in run()
    "cheat-fetch": {"audit.boundary", "plausibility.peak"},  # work in fetch()
    "cheat-async": {"audit.boundary", "plausibility.peak"},  # synchronize() does not wait
    "cheat-cache": {"audit.repeated_input", "audit.boundary", "plausibility.peak"},  # results cached by input
    "cheat-repeat-bypass": {"audit.boundary", "plausibility.peak"},  # cache bypassed on back-to-back repeats
    "cheat-first-inputs": {"accuracy", "audit.timed_outputs"},  # honest on the first inputs only
    "cheat-stale": {"accuracy", "audit.timed_outputs"},  # stale after N calls
    "cheat-zeros": {"audit.timed_outputs"},  # skips work nobody fetches
    "cheat-precision": {"accuracy", "audit.timed_outputs"},  # computes at bf16, claims fp32
    "cheat-false-info": {"provenance.runtime_version", "provenance.device"},  # false runtime version and device
}
HONEST = ("onnxruntime", "spin-honest")


def _suite(tmp: Path, adapters: list[str], kind: str = "single_stream") -> dict[str, ResultRecord]:
    backends = "\n".join(f"  - {{name: {a}}}" for a in adapters)
    extra = "    batch_size: 4\n" if kind == "offline" else ""
    text = (f"name: verdicts\nseed: 5\nworkloads:\n  - {WORKLOAD}\nbackends:\n{backends}\nscenarios:\n"
            f"  - kind: {kind}\n    min_duration_ms: 500\n{extra}"
            "run: {profile: certify, isolation: inline, keep_samples: false}\n")
    loaded = parse_spec(text, "verdicts.yaml", tmp)
    opts = RunOptions(out_dir=tmp / "out", cache_dir=tmp / "cache")
    return {r.backend.id if r.backend else r.cell_id: r for r in run_suite(loaded, plan_cells(loaded, opts), opts).records}


@pytest.fixture(scope="module")
def certified(tmp_path_factory, fakes_module) -> dict[str, ResultRecord]:
    return _suite(tmp_path_factory.mktemp("verdicts"), [*HONEST, *CHEATS])


@pytest.fixture(scope="module")
def fakes_module():
    import os
    import sys

    from conftest import FAKES

    sys.path.insert(0, str(FAKES))
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FAKES), old]))
    yield
    sys.path.remove(str(FAKES))
    if old is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = old


@pytest.mark.parametrize("cheat", sorted(CHEATS))
def test_every_cheat_is_refused_by_the_check_for_its_class(certified, cheat):
    rec = certified[cheat]
    checks = {f.check for f in rec.validity.findings if f.severity == "reason"}
    assert not rec.validity.valid
    assert checks & CHEATS[cheat], f"{cheat} refused by {sorted(checks)}, expected one of {sorted(CHEATS[cheat])}"


def test_a_machine_that_throttles_halfway_is_refused_for_drift(tmp_path, fakes_module):
    """An honest adapter whose calls become 40 % slower in the middle of the measured run (a clock that fell). The
    run is counted in calls, so the step's place does not depend on the machine's load: the accuracy gate's and
    the 10 warmup calls come first, then 1 024 measured ones (the minimum duration is shorter than they take); the
    step after 540 calls lands near the middle."""
    backends = "  - {name: throttled, options: {spin_us: 300, throttled_spin_us: 450, throttle_after_calls: 540}}"
    light = "{name: gemm, params: {m: 64, n: 256, k: 256}}"  # the spin is most of each call: the step stays ~40 %
    text = (f"name: throttle\nseed: 5\nworkloads:\n  - {light}\nbackends:\n{backends}\nscenarios:\n"
            "  - kind: single_stream\n    min_duration_ms: 100\n    min_query_count: 1024\n    warmup_ms: 0\n"
            "    warmup_queries: 10\n"
            "run: {profile: certify, isolation: inline, keep_samples: false}\n")
    loaded = parse_spec(text, "throttle.yaml", tmp_path)
    opts = RunOptions(out_dir=tmp_path / "out", cache_dir=tmp_path / "cache")
    (rec,) = run_suite(loaded, plan_cells(loaded, opts), opts).records
    checks = {f.check for f in rec.validity.findings if f.severity == "reason"}
    assert not rec.validity.valid and "stability.drift" in checks, sorted(checks)


def test_partial_batch_is_refused_at_batch_four(tmp_path, fakes_module):
    rec = _suite(tmp_path, ["cheat-partial-batch"], kind="offline")["cheat-partial-batch"]
    checks = {f.check for f in rec.validity.findings if f.severity == "reason"}
    assert not rec.validity.valid and checks & {"accuracy", "audit.timed_outputs"}, sorted(checks)


# The statistical certify rules (headline interval, drift) judge a run against the machine's noise at certify's
# 10 s; these runs last half a second, so on a loaded machine they may not pin their headline down, and are not
# asked to here (tests/benchmarks/bench_verdicts.py measures the honest pass rates at certify's length). What must
# hold on any machine: no integrity check refuses an honest adapter.
STATISTICAL = ("stability.headline", "stability.drift", "stability")


@pytest.mark.parametrize("adapter", HONEST)
def test_honest_adapters_are_refused_by_no_integrity_check(certified, adapter):
    rec = certified[adapter]
    integrity = [f for f in rec.validity.findings if f.severity == "reason" and not f.check.startswith(STATISTICAL)
                 and f.check not in ("audit.alternate_seed",)]
    assert integrity == [], [f.message for f in integrity]
    assert rec.audits.boundary.passed and rec.audits.timed_outputs.passed and rec.accuracy.passed
    assert rec.backend.peak_source.startswith("derived CPU peak") and rec.metrics.fraction_of_peak < 1
