"""The MLPerf-style system description: host probes on a fabricated /proc and /sys, the user's system file,
NVML accelerators (fake module), and the description in every record."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchkit.results import records
from benchkit.machine import description as sysdesc
from benchkit.cli import main
from benchkit.errors import SpecError

from conftest import fake_nvml

CPUINFO = """processor\t: 0
model name\t: Example CPU 9000 @ 2.40GHz
physical id\t: 0
core id\t\t: 0
cpu MHz\t\t: 1200.000

processor\t: 1
model name\t: Example CPU 9000 @ 2.40GHz
physical id\t: 0
core id\t\t: 0

processor\t: 2
model name\t: Example CPU 9000 @ 2.40GHz
physical id\t: 1
core id\t\t: 0

processor\t: 3
model name\t: Example CPU 9000 @ 2.40GHz
physical id\t: 1
core id\t\t: 1
"""


def _fabricate(root: Path, with_sysfs: bool) -> tuple[Path, Path, Path]:
    proc, sys_root, etc = root / "proc", root / "sys", root / "etc"
    proc.mkdir(parents=True)
    (proc / "cpuinfo").write_text(CPUINFO)
    etc.mkdir()
    (etc / "os-release").write_text('NAME="Example"\nPRETTY_NAME="Example Linux 12 (frozen)"\n')
    cpus = sys_root / "devices" / "system" / "cpu"
    cpus.mkdir(parents=True)
    if with_sysfs:
        for i in range(4):
            c = cpus / f"cpu{i}"
            (c / "topology").mkdir(parents=True)
            (c / "topology" / "physical_package_id").write_text(f"{i // 2}\n")
            (c / "topology" / "core_id").write_text(f"{i % 2}\n")
            for ix, (level, kind, size, shared) in enumerate([(1, "Data", "48K", f"{i}"),
                                                              (2, "Unified", "2048K", f"{i}"),
                                                              (3, "Unified", "32M", "0-1" if i < 2 else "2-3")]):
                d = c / "cache" / f"index{ix}"
                d.mkdir(parents=True)
                for name, value in (("level", level), ("type", kind), ("size", size), ("shared_cpu_list", shared)):
                    (d / name).write_text(f"{value}\n")
        (cpus / "cpu0" / "cpufreq").mkdir()
        (cpus / "cpu0" / "cpufreq" / "cpuinfo_max_freq").write_text("3700000\n")
    return proc, sys_root, etc


def test_host_details_from_sysfs(tmp_path):
    proc, sys_root, etc = _fabricate(tmp_path, with_sysfs=True)
    d = sysdesc.host_details(sys_root, proc, etc, cpu_model="Example CPU 9000 @ 2.40GHz")
    assert d["cpu_sockets"] == 2 and d["cpu_cores"] == 4
    assert d["cpu_frequency_mhz"] == 3700.0  # cpufreq's maximum beats the nominal figure in the name
    assert d["cpu_caches"] == [
        {"level": 1, "type": "Data", "size_bytes": 48 << 10, "instances": 4},
        {"level": 2, "type": "Unified", "size_bytes": 2 << 20, "instances": 4},
        {"level": 3, "type": "Unified", "size_bytes": 32 << 20, "instances": 2},
    ]
    assert d["os_release"] == "Example Linux 12 (frozen)" and d["kernel"]
    records.SystemRecord(hostname="h", cpu_model="m", cpu_count=4, memory_bytes=1, os="o", machine="x",
                         python="3", packages={}, **d)  # fits the record


def test_host_details_fall_back_to_cpuinfo_and_leave_the_unknown_out(tmp_path):
    proc, sys_root, etc = _fabricate(tmp_path, with_sysfs=False)
    d = sysdesc.host_details(sys_root, proc, etc, cpu_model="Example CPU 9000 @ 2.40GHz")
    assert (d["cpu_sockets"], d["cpu_cores"]) == (2, 3)  # from physical id / core id pairs
    assert d["cpu_frequency_mhz"] == 2400.0 and d["cpu_caches"] == []
    bare = sysdesc.host_details(tmp_path / "none", tmp_path / "none", tmp_path / "none", cpu_model="x")
    assert bare["cpu_sockets"] is None and bare["cpu_frequency_mhz"] is None and bare["os_release"] is None


def test_nvml_accelerators_with_the_fake_module():
    nv = fake_nvml.make([fake_nvml.FakeGpu(), fake_nvml.FakeGpu(name="NVIDIA H100", memory_bytes=80 << 30)],
                        driver="580.159.03")
    accels, why = sysdesc.nvml_accelerators(nv)
    assert why is None and nv.state.inits == 0
    assert accels[1] == {"model": "NVIDIA H100", "index": 1, "source": "nvml", "memory_bytes": 80 << 30,
                         "driver": "580.159.03"}
    accels, why = sysdesc.nvml_accelerators(fake_nvml.make([], fail_init=True))
    assert accels == [] and "Driver Not Loaded" in why


@pytest.mark.parametrize("text, match", [
    ("submitter: Acme\nsystem_nmae: X\n", r"system_nmae: unknown key; allowed: submitter, system_name"),
    ("status: shipping\n", r"status: Input should be 'available', 'preview' or 'rdi'"),
    ("submitter: 42\n", r"submitter: Input should be a valid string"),
    ("- a list\n", r"a system file is a mapping"),
    ("notes: [unclosed\n", r"cannot read system file"),
])
def test_system_file_is_strict(tmp_path, text, match):
    f = tmp_path / "sys.yaml"
    f.write_text(text)
    with pytest.raises(SpecError, match=match):
        sysdesc.load_system_file(f, "--system-file")


SPEC = """
name: described
workloads: [{{name: tiny, model: {model}}}]
backends: [{{name: onnxruntime, options: {{providers: [CPUExecutionProvider]}}}}]
scenarios: [{{kind: single_stream, min_duration_ms: 50, min_query_count: 10}}]
run: {{profile: quick, power: {{meters: []}}{extra}}}
"""


def test_system_description_in_every_record(tmp_path, tiny_model, capsys):
    user = tmp_path / "sys.yaml"
    user.write_text("submitter: Example Labs\nsystem_name: Example 1U\nstatus: preview\ncooling: air\n"
                    "notes: SMT on\n")
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC.format(model=tiny_model, extra=""))
    assert main(["run", str(spec), "--inline", "--out", str(tmp_path / "o"), "--system-file", str(user)]) == 0
    rec = records.load(next((tmp_path / "o").rglob("*.json")))
    s = rec.system
    assert (s.submitter, s.system_name, s.status, s.cooling, s.notes) == ("Example Labs", "Example 1U", "preview",
                                                                          "air", "SMT on")
    assert s.cpu_cores and s.kernel and s.packages["onnxruntime"]

    other = tmp_path / "other.yaml"  # run.system_file in the spec, relative to it
    other.write_text("system_name: From the spec\n")
    spec.write_text(SPEC.format(model=tiny_model, extra=", system_file: other.yaml"))
    assert main(["run", str(spec), "--inline", "--out", str(tmp_path / "o2")]) == 0
    assert records.load(next((tmp_path / "o2").rglob("*.json"))).system.system_name == "From the spec"

    user.write_text("status: sold-out\n")
    capsys.readouterr()
    assert main(["run", str(spec), "--inline", "--out", str(tmp_path / "o3"), "--system-file", str(user)]) == 2
    assert "invalid system file" in capsys.readouterr().err
    assert not (tmp_path / "o3").exists()  # refused before any run directory was made
