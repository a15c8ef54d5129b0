"""The derived CPU peak, read from fabricated /proc and /sys trees, and the plausibility rule built on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchkit.checks.measurement import check_achieved_flops
from benchkit.machine.cpu_peak import DEFAULT_MAX_FREQUENCY_MHZ, TURBO_ALLOWANCE, cpu_peak_flops_per_s

X86_AVX512 = ("fpu sse sse2 avx fma avx2 avx512f avx512dq avx512bw avx512vl avx512_vnni avx512_bf16 amx_bf16 "
              "amx_int8 amx_tile")
X86_AVX2 = "fpu sse sse2 ssse3 avx fma avx2 f16c"
ARM_NEON = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"


def fake_tree(root: Path, *, cpus: int, flags: str, arm: bool = False, max_khz: int | None = None,
              cpu_mhz: float | None = None, model: str = "Test CPU", threads_per_core: int = 1) -> Path:
    blocks = []
    for n in range(cpus):
        lines = [f"processor\t: {n}"]
        if arm:
            lines += [f"Features\t: {flags}", "CPU implementer\t: 0x41", "CPU part\t: 0xd40"]
        else:
            lines += ["vendor_id\t: GenuineIntel", f"model name\t: {model}", f"physical id\t: 0",
                      f"core id\t\t: {n // threads_per_core}", f"flags\t\t: {flags}"]
            if cpu_mhz is not None:
                lines.append(f"cpu MHz\t\t: {cpu_mhz:.3f}")
        blocks.append("\n".join(lines))
        d = root / "sys" / "devices" / "system" / "cpu" / f"cpu{n}"
        (d / "topology").mkdir(parents=True)
        (d / "topology" / "physical_package_id").write_text("0\n")
        (d / "topology" / "core_id").write_text(f"{n // threads_per_core}\n")
        if max_khz is not None:
            (d / "cpufreq").mkdir()
            (d / "cpufreq" / "cpuinfo_max_freq").write_text(f"{max_khz}\n")
    (root / "proc").mkdir(parents=True)
    (root / "proc" / "cpuinfo").write_text("\n\n".join(blocks) + "\n")
    return root


def test_x86_avx512_with_cpufreq(tmp_path):
    root = fake_tree(tmp_path, cpus=4, flags=X86_AVX512, max_khz=3_800_000, threads_per_core=2)
    e = cpu_peak_flops_per_s("fp32", root=root)
    assert (e.cores, e.physical_cores, e.max_frequency_mhz, e.frequency_source) == (4, 2, 3800.0, "cpufreq")
    assert (e.isa, e.vector_width_bits, e.fma_units, e.flops_per_cycle_per_core) == ("avx512f", 512, 2, 64)
    assert e.peak_flops_per_s == pytest.approx(4 * 3.8e9 * 64)
    assert "cpufreq" in e.source and "upper bound" in e.source
    # The matrix engines raise bf16 and int8 by an order of magnitude; fp16 falls back to the fp32 rate.
    assert cpu_peak_flops_per_s("bf16", root=root).flops_per_cycle_per_core == 1024
    assert cpu_peak_flops_per_s("int8", root=root).isa == "amx_int8"
    assert cpu_peak_flops_per_s("fp16", root=root).flops_per_cycle_per_core == 64
    assert cpu_peak_flops_per_s("mixed", root=root).flops_per_cycle_per_core == 1024


def test_x86_avx2_without_cpufreq_uses_cpuinfo_clock_with_turbo_allowance(tmp_path):
    root = fake_tree(tmp_path, cpus=2, flags=X86_AVX2, cpu_mhz=2596.1)
    e = cpu_peak_flops_per_s("fp32", root=root)
    assert e.frequency_source == "cpuinfo"
    assert e.max_frequency_mhz == pytest.approx(2596.1 * TURBO_ALLOWANCE)
    assert (e.isa, e.flops_per_cycle_per_core) == ("avx2+fma", 32)
    assert e.peak_flops_per_s == pytest.approx(2 * 2596.1e6 * TURBO_ALLOWANCE * 32)
    assert cpu_peak_flops_per_s("int8", root=root).flops_per_cycle_per_core == 128
    assert cpu_peak_flops_per_s("bf16", root=root).flops_per_cycle_per_core == 32  # converted to fp32


def test_model_name_clock_is_used_when_it_is_the_higher_reading(tmp_path):
    root = fake_tree(tmp_path, cpus=1, flags=X86_AVX2, cpu_mhz=1200.0, model="Xeon(R) Gold 6230 CPU @ 2.10GHz")
    assert cpu_peak_flops_per_s("fp32", root=root).max_frequency_mhz == pytest.approx(2100 * TURBO_ALLOWANCE)


def test_aarch64_neon_without_any_clock_uses_the_default(tmp_path):
    root = fake_tree(tmp_path, cpus=8, flags=ARM_NEON, arm=True)
    e = cpu_peak_flops_per_s("fp32", root=root)
    assert (e.isa, e.fma_units, e.vector_width_bits, e.flops_per_cycle_per_core) == ("asimd", 4, 128, 32)
    assert (e.frequency_source, e.max_frequency_mhz) == ("default", DEFAULT_MAX_FREQUENCY_MHZ)
    assert e.peak_flops_per_s == pytest.approx(8 * DEFAULT_MAX_FREQUENCY_MHZ * 1e6 * 32)
    assert cpu_peak_flops_per_s("fp16", root=root).isa == "asimdhp"


def test_aarch64_with_cpufreq(tmp_path):
    root = fake_tree(tmp_path, cpus=2, flags=ARM_NEON + " sve i8mm bf16", arm=True, max_khz=2_600_000)
    e = cpu_peak_flops_per_s("int8", root=root)
    assert e.frequency_source == "cpufreq" and e.max_frequency_mhz == 2600.0
    assert e.flops_per_cycle_per_core == 256 and e.isa in ("sve", "i8mm")  # both rows give 256
    assert cpu_peak_flops_per_s("fp32", root=root).isa == "sve"


def test_cpus_restrict_the_count_and_the_frequency(tmp_path):
    root = fake_tree(tmp_path, cpus=4, flags=X86_AVX2, max_khz=3_000_000)
    (root / "sys/devices/system/cpu/cpu3/cpufreq/cpuinfo_max_freq").write_text("5000000\n")
    assert cpu_peak_flops_per_s("fp32", root=root, cpus={0, 1}).peak_flops_per_s == pytest.approx(2 * 3e9 * 32)
    assert cpu_peak_flops_per_s("fp32", root=root, cpus={2, 3}).max_frequency_mhz == 5000.0


def test_nothing_readable_is_still_an_upper_bound(tmp_path):
    e = cpu_peak_flops_per_s("fp32", root=tmp_path)
    assert e.isa == "unknown" and e.frequency_source == "default" and e.cores == 1
    assert e.flops_per_cycle_per_core == max(64, 32)  # the widest fp32 row of the table
    assert "unreadable" in e.source


def test_unknown_precision_gets_the_highest_rate(tmp_path):
    root = fake_tree(tmp_path, cpus=1, flags=X86_AVX2, max_khz=3_000_000)
    assert cpu_peak_flops_per_s("fp8", root=root).flops_per_cycle_per_core == 128


def test_this_machine():
    e = cpu_peak_flops_per_s("fp32")
    assert e.peak_flops_per_s > 0 and e.cores >= 1
    # The stage cheat of issue 13 reported 1.6e16 FLOP/s on 2 cores: far above any CPU's bound.
    assert e.peak_flops_per_s / e.cores < 1.6e16 / 2 / 100


def test_check_achieved_flops():
    assert check_achieved_flops(1e11, 6e11, "derived", require_peak=True) == []
    [f] = check_achieved_flops(1.6e16, 6e11, "derived CPU peak", require_peak=False)
    assert f.severity == "reason" and f.check == "plausibility.peak" and "impossible" in f.message
    assert check_achieved_flops(1e11, None, None, require_peak=False)[0].severity == "warning"
    assert check_achieved_flops(1e11, None, None, require_peak=True)[0].severity == "reason"
    assert check_achieved_flops(None, 6e11, "x", require_peak=True)[0].severity == "reason"
    assert check_achieved_flops(None, 6e11, "x", require_peak=False)[0].severity == "warning"


@pytest.mark.parametrize("name, impossible", [("onnxruntime", False), ("spin-honest", False),
                                              ("cheat-stage", True), ("cheat-fetch", True)])
def test_measured_flops_against_this_machines_peak(name, impossible, fakes_on_path, tmp_path):
    """Achieved FLOP/s as the record computes it (graph FLOPs / timed p50), judged against the derived peak.

    A timed call of 0.1-0.2 µs doing 34 MFLOP is 1.7e14-3.4e14 FLOP/s: above the fp32 bound of any CPU
    with fewer than about 400 logical CPUs. (cheat-async's few microseconds are not, on a large machine: the boundary audit
    catches it.)
    """
    from time import perf_counter_ns

    import numpy as np

    from benchkit.backends.base import WorkloadInfo
    from benchkit.backends.registry import load_backend_class
    from benchkit.spec import WorkloadSpec
    from benchkit.workloads import resolve
    from benchkit.workloads.flops import analyze

    wl = resolve(WorkloadSpec(name="gemm", params={"m": 256, "n": 256, "k": 256}), Path("."), "test", tmp_path)
    flops = analyze(wl.path, {"batch": 1}).flops
    shapes, batch = wl.call_shapes(1)
    backend = load_backend_class(name)({})
    backend.load(wl.path, WorkloadInfo(name=wl.name, inputs=shapes, input_dtypes={i.name: i.dtype for i in wl.inputs},
                                       output_names=wl.output_names, batch_size=batch,
                                       extra={"graph_precision": "fp32", "claimed_precision": "fp32"}))
    try:
        feeds, _ = wl.make_feeds(1, 4, 1)
        staged = [backend.stage(f) for f in feeds]
        lat = []
        for i in range(40):
            t0 = perf_counter_ns()
            backend.run(staged[i % 4])
            backend.synchronize()
            lat.append(perf_counter_ns() - t0)
    finally:
        backend.close()
    achieved = flops / (float(np.median(lat)) / 1e9)
    peak = cpu_peak_flops_per_s("fp32")
    findings = check_achieved_flops(achieved, peak.peak_flops_per_s, peak.source, require_peak=True)
    assert bool(findings) is impossible, (achieved, peak.peak_flops_per_s)
