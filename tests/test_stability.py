"""The stability gate on synthetic before/after states: cpufreq in a fabricated sysfs tree, accelerators through
the fake NVML module; flags are warnings, and INVALID under the certify profile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchkit.results import records
from benchkit.machine import stability
from benchkit.runner.plan import expand
from benchkit.runner.session import SuiteSession
from benchkit.spec import parse_spec

from conftest import ROOT, fake_nvml

GOLDEN = ROOT / "tests" / "data" / "record_v1.json"


def make_cpufreq(sys_root: Path, cur_khz: list[int], governor: str = "performance", max_khz: int = 3_500_000) -> Path:
    for i, khz in enumerate(cur_khz):
        f = sys_root / "devices" / "system" / "cpu" / f"cpu{i}" / "cpufreq"
        f.mkdir(parents=True, exist_ok=True)
        (f / "scaling_governor").write_text(governor + "\n")
        (f / "scaling_cur_freq").write_text(f"{khz}\n")
        (f / "scaling_max_freq").write_text(f"{max_khz}\n")
    return sys_root


def test_cpu_state_from_sysfs(tmp_path):
    root = make_cpufreq(tmp_path / "sys", [3_000_000, 1_200_000, 2_400_000])
    state, why = stability.read_cpu_state(root)
    assert why is None
    assert state == {"governors": ["performance"], "cur_freq_mhz_max": 3000.0, "cur_freq_mhz_min": 1200.0,
                     "cur_freq_mhz_mean": 2200.0, "max_freq_mhz_min": 3500.0}
    (tmp_path / "empty" / "devices" / "system" / "cpu" / "cpu0").mkdir(parents=True)
    state, why = stability.read_cpu_state(tmp_path / "empty")
    assert state is None and "no cpufreq" in why


CPU = {"governors": ["performance"], "cur_freq_mhz_max": 3000.0, "max_freq_mhz_min": 3500.0}
GPU = {"index": 0, "name": "NVIDIA H200", "sm_clock_mhz": 1980, "clock_event_reasons": [], "temperature_c": 60}


@pytest.mark.parametrize("after, flag", [
    ({"cpu": CPU, "accelerators": [GPU]}, None),
    ({"cpu": {**CPU, "cur_freq_mhz_max": 2800.0}}, None),  # -6.7 %: within CLOCK_DROP
    ({"cpu": {**CPU, "cur_freq_mhz_max": 2500.0}}, "CPU frequency fell 17% during the run: 3000 -> 2500 MHz"),
    ({"cpu": {**CPU, "governors": ["powersave"]}}, "governor changed during the run: ['performance'] -> ['powersave']"),
    ({"cpu": {**CPU, "max_freq_mhz_min": 2000.0}}, "frequency ceiling was lowered during the run"),
    ({"accelerators": [{**GPU, "sm_clock_mhz": 1500}]}, "accelerator 0 (NVIDIA H200): SM clock fell 24%"),
    ({"accelerators": [{**GPU, "clock_event_reasons": ["hw_thermal_slowdown"], "temperature_c": 91}]},
     "accelerator 0 (NVIDIA H200): throttling at the end of the run (hw_thermal_slowdown; 91 °C)"),
    ({"accelerators": [{**GPU, "clock_event_reasons": ["sw_power_cap"]}]}, None),  # running at the power limit
    # as read on an H200 across 6 s of bf16 GEMMs: the clock fell from boost to the power-limited steady state
    ({"accelerators": [{**GPU, "sm_clock_mhz": 1455, "clock_event_reasons": ["sw_power_cap"]}]},
     "SM clock fell 27% during the run: 1980 -> 1455 MHz (the board reached its power limit, sw_power_cap"),
])
def test_compare_flags_what_changed(after, flag):
    flags = stability.compare({"cpu": CPU, "accelerators": [GPU]}, after)
    if flag is None:
        assert flags == []
    else:
        assert len(flags) == 1 and flag in flags[0]


def test_probe_reads_cpu_and_accelerators_and_says_what_it_cannot(tmp_path):
    gpu = fake_nvml.FakeGpu(reasons=0x4 | 0x40)  # power cap + hardware thermal slowdown
    nv = fake_nvml.make([gpu])
    probe = stability.StabilityProbe(make_cpufreq(tmp_path / "sys", [2_000_000]), nvml=nv)
    state, unreadable = probe.read()
    assert unreadable == [] and state["cpu"]["cur_freq_mhz_max"] == 2000.0
    (acc,) = state["accelerators"]
    assert acc == {"index": 0, "name": "NVIDIA H200", "sm_clock_mhz": 1980, "mem_clock_mhz": 3201,
                   "temperature_c": 45, "slowdown_temperature_c": 90,
                   "clock_event_reasons": ["sw_power_cap", "hw_thermal_slowdown"]}
    probe.close()
    assert nv.state.inits == 0

    bare = stability.StabilityProbe(tmp_path / "nothing", nvml=fake_nvml.make([], fail_init=True))
    state, unreadable = bare.read()
    assert state == {} and len(unreadable) == 2
    assert unreadable[0].startswith("cpu: ") and "Driver Not Loaded" in unreadable[1]


SPEC = """
name: gate
workloads: [{name: tiny-add}]
backends: [{name: onnxruntime}]
scenarios: [{kind: single_stream}]
run: {power: {meters: []}}
"""


def _finish(tmp_path: Path, profile: str, throttle: bool) -> records.ResultRecord:
    """Drive one CellWatch over synthetic machine states and complete the golden record with it."""
    loaded = parse_spec(SPEC, "gate.yaml", tmp_path)
    cells = expand(loaded, profile=profile)
    sys_root = make_cpufreq(tmp_path / f"sys-{profile}-{throttle}", [3_000_000, 3_000_000])
    gpu = fake_nvml.FakeGpu()
    session = SuiteSession.open(loaded, tmp_path / "out", cells, new_run_id=lambda: f"run-{profile}-{throttle}",
                                sys_root=sys_root, nvml=fake_nvml.make([gpu]))
    with session:
        watch = session.watch(cells[0], 1)
        watch.progress(cells[0].cell_id, "measure")
        if throttle:  # the chip heats up while measuring
            gpu.sm_clock_mhz, gpu.reasons, gpu.temperature_c = 1400, 0x40, 92
            make_cpufreq(sys_root, [2_000_000, 2_000_000])
        watch.progress(cells[0].cell_id, "check")
        return watch.finish(records.load(GOLDEN))


def test_flags_warn_normally_and_invalidate_under_certify(tmp_path):
    steady = _finish(tmp_path, "standard", throttle=False)
    assert steady.stability.flags == [] and steady.validity.valid
    assert steady.stability.before["accelerators"][0]["sm_clock_mhz"] == 1980

    hot = _finish(tmp_path, "standard", throttle=True)
    assert hot.validity.valid  # a warning, not a verdict, outside certify
    assert len(hot.stability.flags) == 3
    assert sum(w.startswith("stability: ") for w in hot.validity.warnings) == 3
    assert hot.stability.after["accelerators"][0]["clock_event_reasons"] == ["hw_thermal_slowdown"]

    cert = _finish(tmp_path, "certify", throttle=True)
    assert not cert.validity.valid
    assert sum(r.startswith("stability (certify profile): ") for r in cert.validity.reasons) == 3
    assert [f.check for f in cert.validity.findings if f.severity == "reason"] == ["stability"] * 3

    # The latency spread is judged with the measurement, in the cell (checks.measurement.spread), not here:
    # the session adds what it saw of the machine and leaves the cell's findings as they were.
    calm_cert = _finish(tmp_path, "certify", throttle=False)
    assert calm_cert.validity.valid and calm_cert.validity.warnings == records.load(GOLDEN).validity.warnings


def test_spread_warns_and_the_headline_interval_decides_under_certify():
    from benchkit import stats
    from benchkit.checks import measurement
    from benchkit.results.records import Headline
    from scenario_factory import scenario

    # the CV only ever warns: a few stalls in a heavy tail say nothing about the headline
    wide = np.array([1_000] * 90 + [1_000_000] * 10, dtype=np.int64)
    assert [f.severity for f in measurement.spread(stats.summarize(wide), "certify")] == ["warning"]
    assert measurement.spread(stats.summarize(np.full(100, 1_000, dtype=np.int64)), "certify") == []
    # a headline the run cannot pin down is a reason under certify, a warning elsewhere
    head = Headline(name="latency_p90_ns", value=1.0, unit="ns", higher_is_better=False)
    few = np.random.default_rng(1).lognormal(10, 1.0, 40).astype(np.int64)
    ss = scenario("single_stream")
    assert [f.severity for f in measurement.headline_stability(few, head, ss, "certify")] == ["reason"]
    assert [f.severity for f in measurement.headline_stability(few, head, ss, "standard")] == ["warning"]
    steady = np.random.default_rng(2).lognormal(10, 0.02, 20_000).astype(np.int64)
    assert measurement.headline_stability(steady, head, ss, "certify") == []


def test_certify_is_a_profile_with_the_standard_minimums():
    loaded = parse_spec(SPEC.replace("run: {", "run: {profile: certify, "), "gate.yaml", Path("."))
    (cell,) = expand(loaded)
    assert cell.profile == "certify"
    assert cell.scenario.min_duration_ms == 10_000 and cell.scenario.min_query_count == 1024
