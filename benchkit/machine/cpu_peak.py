"""A derived upper bound on what this machine's CPU cores can compute: the peak behind the plausibility check.

``cpu_peak_flops_per_s(precision)`` multiplies three things read from the
machine::

    peak = cores x max frequency x FLOPs per cycle per core (of the best vector ISA, at that precision)

* **cores**: the logical CPUs this process may run on (``os.sched_getaffinity``),
  counted as if each were a full core. Simultaneous multithreading shares one
  core's FMA units between two logical CPUs, so this may double the true peak;
  it never lowers it. Physical cores are reported beside it where the topology
  is readable.
* **max frequency**: ``cpuinfo_max_freq`` of ``/sys/devices/system/cpu/cpuN/cpufreq``
  (the highest turbo the kernel knows), the largest over the allowed CPUs.
  Without cpufreq (most virtual machines), the largest ``cpu MHz`` of
  ``/proc/cpuinfo`` or the ``@ x GHz`` of the model name, which are current or
  nominal clocks, times :data:`TURBO_ALLOWANCE`. Without either,
  :data:`DEFAULT_MAX_FREQUENCY_MHZ`.
* **FLOPs per cycle per core**: from the ISA flags of ``/proc/cpuinfo`` and the
  table :data:`ISA_RATES` below; the highest rate among the ISAs the flags
  show, at the precision asked. An FMA counts 2 FLOPs, an int8 multiply-add 2
  ops, as ``benchkit.workloads.flops`` counts them.

Every choice errs high: this is not an estimate of what a runtime reaches (an
honest run is typically 5-60% of it) but the figure nothing can exceed, so a
result above it is impossible, not merely good. A stage cheat that reported
1.6e16 FLOP/s on a 2-core CPU is 2,000x over this bound.

The figure and every input that went into it travel in :class:`PeakEstimate`,
whose ``source`` is one line for the record (``backend.peak_source``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from benchkit.machine.description import cpuinfo_blocks


TURBO_ALLOWANCE = 2.0
"""Factor applied to a ``/proc/cpuinfo`` clock when cpufreq is absent.

``cpu MHz`` in a virtual machine is the nominal clock (often the base clock),
and on bare metal the current one. The largest single-core turbo over base
among current server parts is about 1.9 (Xeon Platinum 8480+: 2.0 -> 3.8 GHz;
EPYC 9654: 2.4 -> 3.7 GHz is 1.54), so 2.0 covers them.
"""

DEFAULT_MAX_FREQUENCY_MHZ = 6200.0
"""Frequency assumed when nothing can be read: the fastest shipping CPU turbo (Core i9-14900KS, 6.2 GHz)."""

PRECISIONS = ("fp32", "fp16", "bf16", "int8", "mixed")


@dataclass(frozen=True)
class IsaRate:
    """One row of :data:`ISA_RATES`: the peak of one vector ISA, per core and cycle."""

    isa: str  # name as reported in PeakEstimate.isa
    arch: Literal["x86", "arm"]
    flags: frozenset[str]  # all must be present in /proc/cpuinfo's flags (x86) or Features (arm)
    vector_width_bits: int
    fma_units: int  # FMA-capable vector pipes per core assumed (the most any core with this ISA has)
    flops_per_cycle: dict[str, int]  # per precision; "mixed" is derived (the best float rate)


def _row(isa: str, arch: Literal["x86", "arm"], flags: str, bits: int, units: int, **rates: int) -> IsaRate:
    return IsaRate(isa, arch, frozenset(flags.split()), bits, units, rates)


# FLOPs (int8: ops) per cycle per core. A vector FMA of W bits on fp32 does W/32 lanes x 2 FLOPs, times the FMA
# units. Where a core converts a narrower type to fp32 to compute (fp16 through F16C, bf16 without a dot-product
# instruction), its rate is the fp32 rate, which the lookup takes as a floor. int8 without a dot-product
# instruction is counted at 4x fp32 (four int8 lanes per fp32 lane), an upper bound on the multi-instruction
# sequences it needs. Sources: Intel 64 and IA-32 Optimization Reference Manual (port counts; AMX TMUL 1024 bf16
# FLOP and 2048 int8 op per cycle per core), Arm Neoverse V1/V2/N2 software optimization guides (4 x 128-bit
# FP/ASIMD pipes; BFMMLA and SMMLA/UMMLA 4x and 8x the FMLA work per instruction), Fujitsu A64FX (2 x 512-bit SVE).
ISA_RATES: tuple[IsaRate, ...] = (
    # x86: without FMA, one add and one multiply port count as one FMA-equivalent unit.
    _row("sse2", "x86", "sse2", 128, 1, fp32=8, int8=32),
    _row("avx", "x86", "avx", 256, 1, fp32=16, int8=64),
    _row("avx2+fma", "x86", "avx2 fma", 256, 2, fp32=32, int8=128),
    _row("avx512f", "x86", "avx512f", 512, 2, fp32=64, int8=256),
    _row("avx512_fp16", "x86", "avx512_fp16", 512, 2, fp16=128),
    _row("avx512_bf16", "x86", "avx512_bf16", 512, 2, bf16=128),
    _row("amx_bf16", "x86", "amx_bf16", 8192, 1, bf16=1024),
    _row("amx_fp16", "x86", "amx_fp16", 8192, 1, fp16=1024),
    _row("amx_int8", "x86", "amx_int8", 8192, 1, int8=2048),
    # arm: /proc/cpuinfo says "asimd" on aarch64 and "neon" on 32-bit arm; 4 pipes is the most any core has.
    _row("neon", "arm", "neon", 128, 4, fp32=32, int8=128),
    _row("asimd", "arm", "asimd", 128, 4, fp32=32, int8=128),
    _row("asimdhp", "arm", "asimdhp", 128, 4, fp16=64),
    _row("bf16", "arm", "bf16", 128, 4, bf16=128),
    _row("i8mm", "arm", "i8mm", 128, 4, int8=256),
    # SVE's vector length is not in the flags: 512 bits (A64FX, the widest shipped) with 2 pipes.
    _row("sve", "arm", "sve", 512, 2, fp32=64, fp16=128, int8=256),
    _row("svebf16", "arm", "svebf16", 512, 2, bf16=256),
    _row("svei8mm", "arm", "svei8mm", 512, 2, int8=512),
)


class PeakEstimate(BaseModel):
    """A derived CPU peak at one precision and everything it was derived from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    precision: str = Field(description="Precision the peak is for (fp32, fp16, bf16, int8, mixed).")
    peak_flops_per_s: float = Field(
        description="Upper bound: cores x max_frequency_mhz x 1e6 x flops_per_cycle_per_core.")
    cores: int = Field(description="Logical CPUs this process may run on, each counted as a full core.")
    physical_cores: int | None = Field(
        None, description="Distinct physical cores among them, where the topology is readable.")
    max_frequency_mhz: float = Field(description="Frequency used, after any turbo allowance.")
    frequency_source: Literal["cpufreq", "cpuinfo", "default"] = Field(
        description="cpufreq: cpuinfo_max_freq; cpuinfo: a /proc/cpuinfo clock x TURBO_ALLOWANCE; "
                    "default: no clock readable."
    )
    isa: str = Field(description="The ISA whose rate was used (a row of ISA_RATES), or 'unknown'.")
    vector_width_bits: int = Field(description="Register width of that ISA.")
    fma_units: int = Field(description="FMA-capable vector pipes per core assumed for it.")
    flops_per_cycle_per_core: int = Field(description="FLOPs (int8: ops) per cycle per core at this precision.")
    source: str = Field(description="One line for the record: how the figure was derived.")


def cpu_peak_flops_per_s(precision: str, root: Path = Path("/"), cpus: Collection[int] | None = None) -> PeakEstimate:
    """The derived upper bound on this machine's CPU FLOP/s at ``precision`` (see the module docstring).

    ``root`` is where ``proc/`` and ``sys/`` are read (tests pass a fabricated
    tree). ``cpus`` are the logical CPU numbers to count; None means those this
    process may run on (``os.sched_getaffinity``) when ``root`` is the real
    root, else every processor the tree's ``/proc/cpuinfo`` lists. An unknown
    precision gets the highest rate of any precision (still an upper bound).
    Never raises for what cannot be read: it falls back to higher figures.
    """
    blocks = cpuinfo_blocks(root / "proc")
    allowed = sorted(_allowed_cpus(root, blocks, cpus))
    arch, flags = _flags(blocks)
    mhz, freq_source, freq_detail = _max_frequency_mhz(root, blocks, allowed)
    row, rate = _rate(arch, flags, precision)
    cores = max(1, len(allowed))
    physical = _physical_cores(root, blocks, allowed)
    peak = cores * mhz * 1e6 * rate
    isa = row.isa if row else "unknown"
    isa_detail = (f"{isa}: {row.fma_units} FMA unit(s) x {row.vector_width_bits}-bit" if row
                  else "ISA flags unreadable: the highest rate in the table")
    source = (f"derived CPU peak (upper bound): {cores} logical CPU(s) x {mhz:.0f} MHz ({freq_detail}) x "
              f"{rate} {precision} FLOP/cycle/core ({isa_detail})")
    return PeakEstimate(
        precision=precision,
        peak_flops_per_s=float(peak),
        cores=cores,
        physical_cores=physical,
        max_frequency_mhz=mhz,
        frequency_source=freq_source,
        isa=isa,
        vector_width_bits=row.vector_width_bits if row else 0,
        fma_units=row.fma_units if row else 0,
        flops_per_cycle_per_core=rate,
        source=source,
    )


def peak_from_system(precision: str, system: object) -> float | None:
    """The same upper bound from a record's ``system`` block (its CPU flags, logical CPUs and maximum frequency),
    for records that carry no peak: reports draw a CPU roof for any record, measured here or elsewhere.
    None when the block says too little (no flags)."""
    flags = set(getattr(system, "cpu_flags", None) or ())
    if not flags:
        return None
    machine = str(getattr(system, "machine", "")).lower()
    arch = "arm" if machine.startswith(("aarch64", "arm")) else "x86"
    cores = getattr(system, "cpu_affinity", None) or getattr(system, "cpu_count", None) or 1
    mhz = getattr(system, "cpu_frequency_mhz", None) or DEFAULT_MAX_FREQUENCY_MHZ
    _, rate = _rate(arch, flags, precision)
    return float(cores * mhz * 1e6 * rate)


# --------------------------------------------------------------------------- readers


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None




def _processor_ids(blocks: list[dict[str, str]]) -> list[int]:
    return [int(b["processor"]) for b in blocks if b.get("processor", "").isdigit()]


def _allowed_cpus(root: Path, blocks: list[dict[str, str]], cpus: Collection[int] | None) -> set[int]:
    if cpus is not None:
        return set(cpus)
    if root == Path("/") and hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    ids = _processor_ids(blocks)
    if ids:
        return set(ids)
    return set(range(os.cpu_count() or 1)) if root == Path("/") else {0}


def _flags(blocks: list[dict[str, str]]) -> tuple[str | None, set[str]]:
    """(arch, flags): x86 lists ``flags``, arm ``Features``; (None, empty) when neither is readable."""
    for b in blocks:
        if "flags" in b:
            return "x86", set(b["flags"].split())
        if "Features" in b:
            return "arm", set(b["Features"].split())
    return None, set()


def _rate(arch: str | None, flags: set[str], precision: str) -> tuple[IsaRate | None, int]:
    """The best matching row and its FLOPs/cycle/core at ``precision``; (None, the table's highest) when unknown."""
    wanted = (("fp32", "fp16", "bf16") if precision == "mixed"
              else (precision,) if precision in PRECISIONS else PRECISIONS[:4])
    wanted = (*wanted, "fp32")  # a narrower type converted to fp32 computes at least at the fp32 rate

    def rate(r: IsaRate) -> int:
        return max(r.flops_per_cycle.get(p, 0) for p in wanted)

    rows = [r for r in ISA_RATES if arch is not None and r.arch == arch and r.flags <= flags]
    if not rows:
        # Flags unreadable, or an architecture the table lacks: any row could apply, so take the highest.
        return None, max(rate(r) for r in ISA_RATES)
    best = max(rows, key=rate)
    return best, rate(best)


def _max_frequency_mhz(root: Path, blocks: list[dict[str, str]], allowed: list[int]) -> tuple[float, str, str]:
    """(MHz, source kind, source text) with the turbo allowance applied where the reading is not a maximum."""
    cpu_dir = root / "sys" / "devices" / "system" / "cpu"
    khz = []
    for n in allowed:
        text = (_read(cpu_dir / f"cpu{n}" / "cpufreq" / "cpuinfo_max_freq") or "").strip()
        if text.isdigit():
            khz.append(int(text))
    if khz:
        return max(khz) / 1000, "cpufreq", "cpufreq cpuinfo_max_freq"
    allowed_set = set(allowed)
    readings = []
    for b in blocks:
        pid = b.get("processor", "")
        if pid.isdigit() and int(pid) not in allowed_set:
            continue
        mhz = b.get("cpu MHz", "")
        if re.fullmatch(r"[0-9]+(\.[0-9]+)?", mhz):
            readings.append(float(mhz))
        m = re.search(r"@\s*([0-9.]+)\s*GHz", b.get("model name", ""))
        if m:
            readings.append(float(m.group(1)) * 1000)
    if readings:
        return max(readings) * TURBO_ALLOWANCE, "cpuinfo", \
            f"/proc/cpuinfo {max(readings):.0f} MHz x {TURBO_ALLOWANCE:g} turbo allowance, no cpufreq"
    return DEFAULT_MAX_FREQUENCY_MHZ, "default", "no clock readable: default maximum"


def _physical_cores(root: Path, blocks: list[dict[str, str]], allowed: list[int]) -> int | None:
    cpu_dir = root / "sys" / "devices" / "system" / "cpu"
    pairs = set()
    for n in allowed:
        topo = cpu_dir / f"cpu{n}" / "topology"
        pkg, core = _read(topo / "physical_package_id"), _read(topo / "core_id")
        if pkg is None or core is None:
            pairs = set()
            break
        pairs.add((pkg.strip(), core.strip()))
    if not pairs:
        allowed_set = set(allowed)
        for b in blocks:
            pid = b.get("processor", "")
            if pid.isdigit() and int(pid) in allowed_set and "physical id" in b and "core id" in b:
                pairs.add((b["physical id"], b["core id"]))
    return len(pairs) or None


__all__ = ["PeakEstimate", "IsaRate", "ISA_RATES", "TURBO_ALLOWANCE", "DEFAULT_MAX_FREQUENCY_MHZ",
           "cpu_peak_flops_per_s"]
