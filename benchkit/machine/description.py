"""The MLPerf-style system description: what a reader needs to reproduce or judge a result.

Auto-filled (host processor, its caches and frequency, memory, OS and kernel,
Python and framework versions, accelerators from NVML or from the adapter)
and user-supplied (submitter, system name, availability status, cooling,
notes) from a YAML file::

    # sys.yaml  (benchkit run SPEC --system-file sys.yaml, or run.system_file in the spec)
    submitter: Example Labs
    system_name: Example 1U server, 1x H200
    status: available        # available | preview | rdi
    cooling: air
    notes: BIOS performance profile; SMT on.

Every probe reads files and never fails a run: what cannot be read is left
out (null), never guessed. Roots are parameters so tests can point the probes
at a fabricated tree.
"""

from __future__ import annotations

import platform
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from benchkit.errors import SpecError

_SIZE_SUFFIX = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


class SystemFile(BaseModel):
    """The user-supplied part of the system description (MLPerf's system_desc fields of the same names)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    submitter: str | None = Field(None, description="Organisation submitting the result.")
    system_name: str | None = Field(None, description="The system's name as it is sold or known.")
    status: Literal["available", "preview", "rdi"] | None = Field(
        None, description="available (can be bought now) | preview (soon) | rdi (research, development, internal)."
    )
    cooling: str | None = Field(None, description="e.g. air, liquid, immersion.")
    notes: str | None = Field(None, description="Anything else that matters: BIOS settings, power limits, ...")


def load_system_file(path: Path, origin: str) -> SystemFile:
    """Read a system file; errors name the file and the field (SpecError)."""
    import yaml

    from benchkit.spec import MAX_SPEC_BYTES, _load_yaml

    from benchkit._fsutil import read_bounded

    try:
        raw = read_bounded(path, MAX_SPEC_BYTES, error=SpecError, what="system file")
        data = _load_yaml(raw.decode("utf-8"), str(path))
    except FileNotFoundError:
        raise SpecError(f"{origin}: system file not found: {path}") from None
    except SpecError as e:
        raise SpecError(f"{origin}: system file: {e}") from None
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as e:
        raise SpecError(f"{origin}: cannot read system file {path}: {e}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a system file is a mapping (submitter, system_name, status, cooling, notes); "
                        f"got {type(data).__name__}")
    try:
        return SystemFile.model_validate(data)
    except ValidationError as e:
        lines = [f"{path}: invalid system file ({e.error_count()} problem(s))"]
        for err in e.errors(include_url=False):
            where = ".".join(map(str, err["loc"])) or "(top level)"
            msg = "unknown key; allowed: submitter, system_name, status, cooling, notes" \
                if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"  {where}: {msg}")
        raise SpecError("\n".join(lines)) from None


# --------------------------------------------------------------------------- host probes


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def _cpu_dirs(sys_root: Path) -> list[Path]:
    base = sys_root / "devices" / "system" / "cpu"
    try:
        return sorted((p for p in base.iterdir() if re.fullmatch(r"cpu[0-9]+", p.name)),
                      key=lambda p: int(p.name[3:]))
    except OSError:
        return []


def cpuinfo_blocks(proc_root: Path) -> list[dict[str, str]]:
    """/proc/cpuinfo as one dict per block (processor); arm puts the Features in every processor block."""
    text = _read(proc_root / "cpuinfo") or ""
    blocks, cur = [], {}
    for line in text.splitlines():
        if not line.strip():
            if cur:
                blocks.append(cur)
            cur = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            cur.setdefault(key.strip(), value.strip())
    if cur:
        blocks.append(cur)
    return blocks


def _topology(sys_root: Path, proc_root: Path) -> tuple[int | None, int | None]:
    """(sockets, physical cores) from sysfs topology, else /proc/cpuinfo's physical id / core id."""
    pairs = set()
    for d in _cpu_dirs(sys_root):
        pkg, core = _read(d / "topology" / "physical_package_id"), _read(d / "topology" / "core_id")
        if pkg is None or core is None:
            pairs = set()
            break
        pairs.add((pkg, core))
    if not pairs:
        for b in cpuinfo_blocks(proc_root):
            if "physical id" in b and "core id" in b:
                pairs.add((b["physical id"], b["core id"]))
    if not pairs:
        return None, None
    return len({p for p, _ in pairs}), len(pairs)


def _frequency_mhz(sys_root: Path, proc_root: Path, model: str) -> float | None:
    khz = _read(sys_root / "devices" / "system" / "cpu" / "cpu0" / "cpufreq" / "cpuinfo_max_freq")
    if khz and khz.isdigit():
        return int(khz) / 1000
    m = re.search(r"@\s*([0-9.]+)\s*GHz", model)
    if m:
        return float(m.group(1)) * 1000
    mhz = [b.get("cpu MHz") for b in cpuinfo_blocks(proc_root)]
    values = [float(v) for v in mhz if v and re.fullmatch(r"[0-9.]+", v)]
    return max(values) if values else None


def _size_bytes(text: str) -> int | None:
    m = re.fullmatch(r"([0-9]+)\s*([KMG]?)B?", text.strip())
    if not m:
        return None
    return int(m.group(1)) * _SIZE_SUFFIX.get(m.group(2), 1)


def _caches(sys_root: Path) -> list[dict[str, Any]]:
    """Each cache level/type once, with its size and how many instances the host has."""
    seen: dict[tuple[int, str, int], set[str]] = {}
    for d in _cpu_dirs(sys_root):
        cache = d / "cache"
        try:
            indexes = sorted(p for p in cache.iterdir() if p.name.startswith("index"))
        except OSError:
            continue
        for ix in indexes:
            level, ctype, size = _read(ix / "level"), _read(ix / "type"), _read(ix / "size")
            if not (level and level.isdigit() and ctype and size):
                continue
            nbytes = _size_bytes(size)
            if nbytes is None:
                continue
            shared = _read(ix / "shared_cpu_list") or d.name
            seen.setdefault((int(level), ctype, nbytes), set()).add(shared)
    return [{"level": lv, "type": ty, "size_bytes": sz, "instances": len(sh)}
            for (lv, ty, sz), sh in sorted(seen.items())]


def _os_release(etc_root: Path) -> str | None:
    text = _read(etc_root / "os-release")
    if not text:
        return None
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"') or None
    return None


def host_details(sys_root: Path = Path("/sys"), proc_root: Path = Path("/proc"),
                 etc_root: Path = Path("/etc"), cpu_model: str = "") -> dict[str, Any]:
    """The host half of the system description, as optional SystemRecord fields."""
    sockets, cores = _topology(sys_root, proc_root)
    uname = platform.uname()
    return {
        "cpu_sockets": sockets,
        "cpu_cores": cores,
        "cpu_frequency_mhz": _frequency_mhz(sys_root, proc_root, cpu_model),
        "cpu_caches": _caches(sys_root),
        "kernel": f"{uname.release} {uname.version}".strip() or None,
        "os_release": _os_release(etc_root),
    }


# --------------------------------------------------------------------------- accelerators


def nvml_accelerators(nvml: Any = None) -> tuple[list[dict[str, Any]], str | None]:
    """NVIDIA devices as AcceleratorInfo dicts, from NVML; ([], why) where NVML cannot be read."""
    from benchkit.machine.nvml import NvmlUnavailable, nvml_session, text

    try:
        with nvml_session(nvml) as nv:
            driver = text(nv.nvmlSystemGetDriverVersion())
            out = []
            for i in range(nv.nvmlDeviceGetCount()):
                h = nv.nvmlDeviceGetHandleByIndex(i)
                out.append({"model": text(nv.nvmlDeviceGetName(h)), "index": i, "source": "nvml",
                            "memory_bytes": int(nv.nvmlDeviceGetMemoryInfo(h).total), "driver": driver})
            return out, None
    except NvmlUnavailable as e:
        return [], str(e)


def suite_fields(user: SystemFile | None, nvml: Any = None) -> dict[str, Any]:
    """SystemRecord fields the benchkit process adds to every record: user fields and NVML accelerators."""
    fields: dict[str, Any] = {}
    if user is not None:
        fields.update({k: v for k, v in user.model_dump().items() if v is not None})
    accels, _why = nvml_accelerators(nvml)
    if accels:
        fields["accelerators"] = accels
    return fields

