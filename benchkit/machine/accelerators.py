"""Accelerators the machine shows, read from sysfs and device nodes (never from an adapter's word)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any



# PCI vendor ids of accelerator makers; display adapters of hypervisors and BMCs are not accelerators.
PCI_VENDORS = {"0x10de": "NVIDIA", "0x1002": "AMD", "0x8086": "Intel", "0x1da3": "Habana", "0x1e52": "Tenstorrent",
               "0x1d0f": "Amazon", "0x17cb": "Qualcomm", "0x1e3e": "Graphcore", "0x1eb1": "Cerebras",
               "0x1f0f": "SambaNova", "0x1ed5": "Groq", "0x1d22": "Baidu", "0x1e2d": "Furiosa", "0x1ec0": "Rebellions"}
_VIRTUAL_DISPLAY = {"0x1234", "0x1b36", "0x15ad", "0x1013", "0x1414", "0x80ee", "0x102b", "0x1a03", "0x1af4"}
# PCI classes: 0x0300 VGA, 0x0302 3D controller, 0x0380 other display, 0x1200 processing accelerator,
# 0x0b40 co-processor.
_ACCEL_CLASSES = ("0x0300", "0x0302", "0x0380", "0x1200", "0x0b40")
_VIRTUAL_DRM = {"virtio_gpu", "virtio-pci", "vkms", "simpledrm", "bochs-drm", "bochs", "qxl", "vmwgfx", "cirrus",
                "cirrus-qemu", "hyperv_drm", "ast", "mgag200", "vboxvideo"}
VENDOR_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # Vendor names first: ROCm builds of PyTorch also call their devices "cuda".
    ("NVIDIA", ("nvidia", "geforce", "quadro", "tesla")),
    ("AMD", ("amd", "radeon", "instinct", "rocm", "migraphx")),
    ("Intel", ("intel", "xpu", "arc ", "gaudi", "habana")),
    ("NVIDIA", ("cuda", "tensorrt")),
)


@dataclass(frozen=True)
class ProbedAccelerator:
    """One accelerator the machine shows, read from files (never from the adapter)."""

    vendor: str  # "NVIDIA", "AMD", ..., or the PCI vendor id / kernel driver when unknown
    model: str | None  # the driver's model name where a file gives it (/proc/driver/nvidia), else None
    address: str  # PCI address (0000:18:00.0) or device path (/dev/nvidia0, /sys/class/accel/accel0)
    source: str  # pci | dev | drm | accel, "+proc" where the model name came from /proc/driver/nvidia

    def as_accelerator_info(self) -> dict[str, Any]:
        """An AcceleratorInfo-shaped dict for ``system.accelerators``."""
        model = self.model or f"{self.vendor} device at {self.address}"
        return {"model": model, "memory_bytes": None, "driver": None, "index": None, "source": f"probe {self.source}"}


def probe_accelerators(root: Path = Path("/")) -> list[ProbedAccelerator]:
    """Accelerators present, from sysfs and device nodes under ``root``. Never raises; quick (file reads only)."""
    out: list[ProbedAccelerator] = []
    nvidia_names = _nvidia_proc_models(root)
    pci_seen: set[str] = set()
    for dev in list_dir(root / "sys" / "bus" / "pci" / "devices"):
        vendor, cls = _read(dev / "vendor"), _read(dev / "class")
        if not vendor or not cls or not cls.lower().startswith(_ACCEL_CLASSES):
            continue
        vendor = vendor.lower()
        if vendor in _VIRTUAL_DISPLAY:
            continue
        addr = dev.name.lower()
        pci_seen.add(addr)
        name = nvidia_names.get(addr)
        out.append(ProbedAccelerator(PCI_VENDORS.get(vendor, vendor), name, addr, "pci+proc" if name else "pci"))
    if not any(a.vendor == "NVIDIA" for a in out):
        # Containers often hide sysfs PCI but pass the device nodes through.
        nodes = sorted((p for p in list_dir(root / "dev") if re.fullmatch(r"nvidia[0-9]+", p.name)),
                       key=lambda p: int(p.name[6:]))
        names = list(nvidia_names.values())
        for i, p in enumerate(nodes):
            name = names[i] if i < len(names) else None
            out.append(ProbedAccelerator("NVIDIA", name, f"/dev/{p.name}", "dev+proc" if name else "dev"))
    for kind, base in (("drm", root / "sys" / "class" / "drm"), ("accel", root / "sys" / "class" / "accel")):
        for card in list_dir(base):
            if not re.fullmatch(r"(card|accel)[0-9]+", card.name):
                continue
            device = card / "device"
            try:
                addr = device.resolve().name.lower()
            except OSError:
                continue
            if addr in pci_seen:
                continue
            driver = _uevent(device).get("DRIVER", "")
            if driver in _VIRTUAL_DRM or (kind == "drm" and not driver):
                continue
            vendor = PCI_VENDORS.get((_read(device / "vendor") or "").lower(), driver or "unknown")
            out.append(ProbedAccelerator(vendor, None, f"/sys/class/{kind}/{card.name}", kind))
            pci_seen.add(addr)
    return out



def list_dir(path: Path) -> list[Path]:
    try:
        return sorted(path.iterdir())
    except OSError:
        return []


def _uevent(device: Path) -> dict[str, str]:
    out = {}
    for line in (_read(device / "uevent") or "").splitlines():
        k, sep, v = line.partition("=")
        if sep:
            out[k.strip()] = v.strip()
    return out


def _nvidia_proc_models(root: Path) -> dict[str, str]:
    """PCI address -> model name, from the NVIDIA driver's /proc/driver/nvidia/gpus/<address>/information."""
    out = {}
    for d in list_dir(root / "proc" / "driver" / "nvidia" / "gpus"):
        for line in (_read(d / "information") or "").splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() == "Model":
                out[d.name.lower()] = value.strip()
    return out


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


__all__ = ["PCI_VENDORS", "VENDOR_WORDS", "ProbedAccelerator", "probe_accelerators", "list_dir"]
