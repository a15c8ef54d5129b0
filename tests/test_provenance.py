"""Observed provenance: the adapter's distribution and file hash, runtime claims, and the accelerator probe."""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import sys
from pathlib import Path

import pytest

from benchkit.checks import provenance
from benchkit.backends.base import BackendInfo
from benchkit.checks.provenance import (
    ProbedAccelerator,
    accelerators_with_claims,
    adapter_provenance,
    adapter_runtimes,
    check_device_claims,
    check_runtime_claims,
    probe_accelerators,
    provenance_findings,
)


def _info(name="x", version="1.0", device="cpu: Test CPU"):
    return BackendInfo(name=name, version=version, device=device, precision="fp32")


# --------------------------------------------------------------------------- the adapter's own code


def test_builtin_onnxruntime_adapter_is_benchkit_and_says_how_it_was_hashed():
    from importlib import metadata

    from benchkit.backends.registry import load_backend_class

    cls = load_backend_class("onnxruntime")
    p = adapter_provenance(cls)
    assert (p.adapter, p.entry_point, p.distribution) == (
        "benchkit.backends.onnxruntime:OnnxRuntimeBackend", "onnxruntime", "benchkit")
    assert p.version == metadata.version("benchkit")
    if provenance._editable(metadata.distribution("benchkit")):
        # An editable install's RECORD lists a .pth file: the sources that ran are hashed instead.
        assert p.editable and p.method == "editable-sources"
        assert Path(p.source_roots[0]) == Path(sys.modules["benchkit"].__file__).parent
        assert p.files_hashed > 50
        # benchkit's own checkout: what ran is in benchkit_version and the hash, no warning on every cell
        assert provenance_findings(p) == []
        vendor = p.model_copy(update={"distribution": "acme-npu", "adapter": "acme_npu:Adapter"})
        assert [f.check for f in provenance_findings(vendor)] == ["provenance.editable"]
    else:
        assert p.method == "record" and not p.files_modified
    assert len(p.files_sha256) == 64 and adapter_provenance(cls) is p  # cached per class


def test_fake_without_record_hashes_its_sources_and_those_of_the_adapter_it_wraps(fakes_on_path):
    from benchkit.backends.registry import load_backend_class

    p = adapter_provenance(load_backend_class("cheat-false-info"))
    assert (p.distribution, p.version, p.method) == ("benchkit-cheating-adapters", "0.0.0", "no-record-sources")
    roots = {Path(r).name for r in p.source_roots}
    assert roots == {"fakes", "benchkit"}  # the fake's module, and benchkit's (it subclasses OnnxRuntimeBackend)


def _write_dist(site: Path, pkg: str, version: str, body: str, requires: tuple[str, ...] = ()) -> Path:
    """A wheel-installed distribution as pip leaves it: the package, METADATA, entry points and a RECORD."""
    (site / pkg).mkdir(parents=True)
    (site / pkg / "__init__.py").write_text(body)
    (site / pkg / "helpers.py").write_text("X = 1\n")
    info = site / f"{pkg}-{version}.dist-info"
    info.mkdir()
    meta = [f"Metadata-Version: 2.1", f"Name: {pkg}", f"Version: {version}"] + [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(meta) + "\n")
    (info / "entry_points.txt").write_text(f"[benchkit.backends]\n{pkg} = {pkg}:Adapter\n")
    (info / "INSTALLER").write_text("pip\n")
    lines = []
    for f in sorted([site / pkg / "__init__.py", site / pkg / "helpers.py", info / "METADATA",
                     info / "entry_points.txt", info / "INSTALLER"]):
        digest = base64.urlsafe_b64encode(hashlib.sha256(f.read_bytes()).digest()).rstrip(b"=").decode()
        lines.append(f"{f.relative_to(site).as_posix()},sha256={digest},{f.stat().st_size}")
    lines.append(f"{pkg}-{version}.dist-info/RECORD,,")
    (info / "RECORD").write_text("\n".join(lines) + "\n")
    return site


ADAPTER = """
from benchkit.backends.base import Backend, BackendInfo


class Adapter(Backend):
    name = "{pkg}"
    {extra}

    def load(self, model_path, workload): ...
    def run(self, staged): ...
    def fetch(self, result): return []
    def info(self): return BackendInfo(name=self.name, version="1.0", device="cpu", precision="fp32")
"""


@pytest.fixture
def vendor(tmp_path, monkeypatch):
    """Install a vendor distribution into a fresh folder on sys.path; returns (class, site folder)."""
    made = []

    def make(pkg: str, requires=(), extra: str = ""):
        site = _write_dist(tmp_path / pkg, pkg, "2.5.0", ADAPTER.format(pkg=pkg, extra=extra), requires)
        monkeypatch.syspath_prepend(str(site))
        importlib.invalidate_caches()
        made.append(pkg)
        return importlib.import_module(pkg).Adapter, site

    yield make
    for pkg in made:
        sys.modules.pop(pkg, None)
    provenance._provenance.cache_clear()


def test_wheel_install_is_hashed_from_its_record_and_edits_are_found(vendor):
    cls, site = vendor("vendor_npu_a")
    p = adapter_provenance(cls)
    assert (p.entry_point, p.distribution, p.version, p.method, p.editable) == (
        "vendor_npu_a", "vendor_npu_a", "2.5.0", "record", False)
    # __init__.py, helpers.py, METADATA, entry_points.txt; INSTALLER and RECORD change with every install.
    assert p.files_hashed == 4 and p.files_modified == () and p.files_missing == 0
    assert provenance_findings(p) == []

    (site / "vendor_npu_a" / "helpers.py").write_text("X = 2  # patched after install\n")
    provenance._provenance.cache_clear()
    edited = adapter_provenance(cls)
    assert edited.files_modified == ("vendor_npu_a/helpers.py",) and edited.files_sha256 != p.files_sha256
    [f] = provenance_findings(edited)
    assert f.severity == "reason" and "not that release" in f.message


def test_a_class_no_distribution_claims_is_hashed_from_its_sources(tmp_path, monkeypatch):
    (tmp_path / "loose_adapter.py").write_text(ADAPTER.format(pkg="loose", extra=""))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        cls = importlib.import_module("loose_adapter").Adapter
        p = adapter_provenance(cls)
        assert (p.distribution, p.method, p.files_hashed) == (None, "no-distribution-sources", 1)
        assert provenance_findings(p)[0].check == "provenance.no_distribution"
        expected = hashlib.sha256(
            f"loose_adapter.py\0{hashlib.sha256((tmp_path / 'loose_adapter.py').read_bytes()).hexdigest()}\n".encode())
        assert p.files_sha256 == expected.hexdigest()  # a subclass of Backend alone: benchkit is not hashed
    finally:
        sys.modules.pop("loose_adapter", None)
        provenance._provenance.cache_clear()


# --------------------------------------------------------------------------- runtime claims


def test_false_runtime_version_of_the_fake_is_a_reason(fakes_on_path):
    import onnxruntime

    from benchkit.backends.registry import load_backend_class

    cls = load_backend_class("cheat-false-info")
    claims = adapter_runtimes(cls, "benchkit-cheating-adapters")
    assert [(c.runtime, c.basis) for c in claims] == [("onnxruntime", "inherited")]
    [f] = check_runtime_claims(_info("cheat-false-info", cls.claimed_version), "benchkit-cheating-adapters", cls)
    assert f.severity == "reason" and f.check == "provenance.runtime_version"
    assert f.message.startswith(f"adapter cheat-false-info reports onnxruntime 9.9.0 but {onnxruntime.__version__}")


def test_honest_builtin_adapters_report_what_is_installed():
    import onnx
    import onnxruntime

    from benchkit import __version__
    from benchkit.backends.registry import load_backend_class

    for name, version in (("onnxruntime", onnxruntime.__version__), ("onnx-reference", onnx.__version__),
                          ("null", __version__)):
        assert check_runtime_claims(_info(name, version), "benchkit", load_backend_class(name)) == [], name


def test_runtime_named_only_in_requirements_is_checked_as_a_warning(vendor):
    import onnxruntime

    cls, _ = vendor("vendor_npu_b", requires=("onnxruntime>=1.17", "openvino>=2024; extra == 'ov'"))
    [claim] = adapter_runtimes(cls, "vendor_npu_b")
    assert (claim.runtime, claim.basis) == ("onnxruntime", "required")  # the extra's openvino is not a claim
    assert check_runtime_claims(_info("vendor_npu_b", onnxruntime.__version__), "vendor_npu_b", cls) == []
    [f] = check_runtime_claims(_info("vendor_npu_b", "3.1"), "vendor_npu_b", cls)
    assert f.severity == "warning"  # it may use onnxruntime for something else and run its own runtime


def test_declared_runtime_distribution_is_checked_as_a_reason(vendor):
    cls, _ = vendor("vendor_npu_c", extra='runtime_distributions = ("no-such-runtime-dist",)')
    [claim] = adapter_runtimes(cls, "vendor_npu_c")
    assert claim.basis == "declared"
    [f] = check_runtime_claims(_info("vendor_npu_c", "3.1"), "vendor_npu_c", cls)
    assert f.severity == "reason" and "no no-such-runtime-dist distribution is installed" in f.message


def test_unknown_runtime_is_a_warning():
    [f] = check_runtime_claims(_info("mystery", "7"), None, None)
    assert f.severity == "warning" and "not cross-checked" in f.message


@pytest.mark.parametrize("reported, installed, same", [
    ("1.32.0", "1.32.0", True), ("1.32", "1.32.0", True), ("2024.0", "2024.0.0", True),
    ("2026.4.1-22982-e213a147257-releases/2026/4", "2026.4.1", True), ("2.13.0+cpu", "2.13.0+cpu", True),
    ("2.13.0", "2.13.0+cpu", True), ("2.13.0+cu121", "2.13.0+cpu", False), ("9.9", "1.32.0", False),
    ("1.3", "1.32.0", False), ("", "1.0", False),
])
def test_version_comparison(reported, installed, same):
    assert provenance._same_version(reported, installed) is same


# --------------------------------------------------------------------------- accelerators


def _pci(root: Path, addr: str, vendor: str, cls: str) -> None:
    d = root / "sys" / "bus" / "pci" / "devices" / addr
    d.mkdir(parents=True)
    (d / "vendor").write_text(vendor + "\n")
    (d / "class").write_text(cls + "\n")


def test_probe_reads_pci_and_nvidia_model_names(tmp_path):
    _pci(tmp_path, "0000:18:00.0", "0x10de", "0x030200")  # NVIDIA 3D controller
    _pci(tmp_path, "0000:00:02.0", "0x1234", "0x030000")  # QEMU standard VGA: not an accelerator
    _pci(tmp_path, "0000:00:03.0", "0x8086", "0x020000")  # Intel NIC: not a display/accelerator class
    _pci(tmp_path, "0000:3b:00.0", "0x1da3", "0x120000")  # Habana processing accelerator
    info = tmp_path / "proc" / "driver" / "nvidia" / "gpus" / "0000:18:00.0"
    info.mkdir(parents=True)
    (info / "information").write_text("Model: \t\t NVIDIA H200\nIRQ:   \t\t 42\nBus Location: \t 0000:18:00.0\n")
    probed = probe_accelerators(tmp_path)
    assert probed == [ProbedAccelerator("NVIDIA", "NVIDIA H200", "0000:18:00.0", "pci+proc"),
                      ProbedAccelerator("Habana", None, "0000:3b:00.0", "pci")]
    assert probed[0].as_accelerator_info()["source"] == "probe pci+proc"


def test_probe_falls_back_to_device_nodes_and_reads_drm_and_accel(tmp_path):
    (tmp_path / "dev").mkdir()
    for n in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"):
        (tmp_path / "dev" / n).write_text("")
    for kind, card, driver in (("drm", "card0", "panfrost"), ("drm", "card1", "virtio_gpu"), ("accel", "accel0", "intel_vpu")):
        dev = tmp_path / "platform" / f"{card}-dev"
        dev.mkdir(parents=True)
        (dev / "uevent").write_text(f"DRIVER={driver}\n")
        link = tmp_path / "sys" / "class" / kind / card
        link.mkdir(parents=True)
        (link / "device").symlink_to(dev)
    probed = probe_accelerators(tmp_path)
    assert [(a.vendor, a.address, a.source) for a in probed] == [
        ("NVIDIA", "/dev/nvidia0", "dev"), ("NVIDIA", "/dev/nvidia1", "dev"),
        ("panfrost", "/sys/class/drm/card0", "drm"), ("intel_vpu", "/sys/class/accel/accel0", "accel")]


def test_probe_of_an_empty_tree_finds_nothing(tmp_path):
    assert probe_accelerators(tmp_path) == []
    assert isinstance(probe_accelerators(), list)  # this machine: never raises


H200 = [ProbedAccelerator("NVIDIA", "NVIDIA H200", "0000:18:00.0", "pci+proc")]


@pytest.mark.parametrize("device, probed, expected", [
    ("cuda:0 NVIDIA H100 80GB HBM3", [], ["reason"]),
    ("cuda:0 NVIDIA H200", H200, []),
    ("cuda:0", H200, []),  # names no model: nothing to compare
    ("cuda:0: NVIDIA H100 80GB HBM3", H200, ["warning"]),
    ("tensorrt:0", [], ["reason"]),
    ("cuda:0: AMD Instinct MI300X", H200, ["reason"]),  # a ROCm build of PyTorch calls its devices cuda
    ("cpu: AMD EPYC", [], []),
    ("CPU: Intel(R) Xeon(R); GPU.0: Intel(R) Arc(TM) A770", [], ["reason"]),
    ("npu0", [], ["warning"]),
    ("npu0", H200, []),
    ("none", [], []),
])
def test_device_claims(device, probed, expected):
    assert [f.severity for f in check_device_claims(_info(device=device), probed)] == expected


def test_false_device_of_the_fake_is_a_reason_and_marked_as_a_claim(fakes_on_path, tmp_path):
    from benchkit.backends.registry import load_backend_class

    cls = load_backend_class("cheat-false-info")
    info = _info("cheat-false-info", cls.claimed_version, cls.claimed_device)
    [f] = check_device_claims(info, probe_accelerators(tmp_path))
    assert f.severity == "reason" and "no NVIDIA device is present" in f.message
    assert accelerators_with_claims([], info) == [
        {"model": cls.claimed_device, "memory_bytes": None, "driver": None, "index": None,
         "source": "claim adapter cheat-false-info (not observed)"}]
    listed = accelerators_with_claims(H200, _info("onnxruntime", device="cuda:0 NVIDIA H200"))
    assert [a["source"] for a in listed] == ["probe pci+proc", "claim adapter onnxruntime (observed)"]
    assert json.dumps(listed)
