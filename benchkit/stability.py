"""The stability gate: was the machine in the same state at the end of a measurement as at its start?

Read just before and just after each cell's measured run, where readable:
the CPU frequency governors and frequencies (cpufreq in sysfs) and each
NVIDIA accelerator's SM and memory clocks, temperature and clock-event
(throttle) reasons (NVML). A cell is flagged when

* a CPU governor changed, or a CPU's frequency ceiling (``scaling_max_freq``) was lowered (thermal capping);
* the highest current CPU frequency fell by more than :data:`CLOCK_DROP` (the busy core slowed down);
* an accelerator's SM clock fell by more than :data:`CLOCK_DROP`, whatever the cause; when the board
  reports only power capping the flag says so: the measurement began before the power-limited steady
  state (on an H200 under a bf16 GEMM load the SM clock falls from 1980 to about 1455 MHz within
  seconds), and a longer ``warmup_ms`` lets it start there;
* an accelerator reported thermal or hardware slowdown at the end of the run (power capping alone,
  with a steady clock, is how a board runs at its limit and is not flagged);
* the run was too short for its spread: :func:`benchkit.stats.stability_warning` (a CV above
  :data:`~benchkit.stats.STABILITY_CV` that leaves the mean latency uncertain by more than about ±5 %).

Flags are warnings; under the ``certify`` profile they make the record INVALID.
Nothing unreadable is guessed: it is listed under ``unreadable``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._nvml import NvmlUnavailable, import_nvml, init, shutdown, text

CLOCK_DROP = 0.10
"""Largest tolerated fall of a clock between the start and the end of a measured run (10 %)."""

FLAGGED_PROFILES = frozenset({"certify"})
"""Profiles under which stability flags (and a high CV) make a record INVALID instead of warning."""

# NVML clock-event (formerly "clocks throttle") reason bits; stable across NVML versions.
_REASONS = {
    0x1: "gpu_idle", 0x2: "applications_clocks_setting", 0x4: "sw_power_cap", 0x8: "hw_slowdown",
    0x10: "sync_boost", 0x20: "sw_thermal_slowdown", 0x40: "hw_thermal_slowdown", 0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
THROTTLE_REASONS = frozenset({"hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown"})
_NVML_CLOCK_SM, _NVML_CLOCK_MEM, _NVML_TEMPERATURE_GPU = 1, 2, 0


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def read_cpu_state(sys_root: Path = Path("/sys")) -> tuple[dict[str, Any] | None, str | None]:
    """Governors and frequencies of every CPU from cpufreq: (state, None), or (None, why not)."""
    base = sys_root / "devices" / "system" / "cpu"
    try:
        cpus = sorted(p for p in base.iterdir() if p.name.startswith("cpu") and p.name[3:].isdigit())
    except OSError:
        return None, f"{base}: not readable"
    governors, cur, ceiling = set(), [], []
    for c in cpus:
        f = c / "cpufreq"
        g, khz, mx = _read(f / "scaling_governor"), _read(f / "scaling_cur_freq"), _read(f / "scaling_max_freq")
        if g:
            governors.add(g)
        if khz and khz.isdigit():
            cur.append(int(khz) / 1000)
        if mx and mx.isdigit():
            ceiling.append(int(mx) / 1000)
    if not governors and not cur:
        return None, "no cpufreq in sysfs (virtual machine, or frequency scaling not exposed)"
    state: dict[str, Any] = {"governors": sorted(governors)}
    if cur:
        state.update(cur_freq_mhz_max=max(cur), cur_freq_mhz_min=min(cur), cur_freq_mhz_mean=sum(cur) / len(cur))
    if ceiling:
        state["max_freq_mhz_min"] = min(ceiling)
    return state, None


class StabilityProbe:
    """Reads the machine state; holds NVML open for the suite so each reading costs microseconds."""

    def __init__(self, sys_root: Path = Path("/sys"), nvml: Any = None, use_nvml: bool = True) -> None:
        self.sys_root = Path(sys_root)
        self._nv: Any = None
        self._handles: list[Any] = []
        self._slowdown_c: list[int | None] = []
        self.nvml_reason: str | None = None
        if not use_nvml:
            self.nvml_reason = "NVML not used"
            return
        try:
            nv = import_nvml(nvml)
            init(nv)
        except NvmlUnavailable as e:
            self.nvml_reason = str(e)
            return
        self._nv = nv
        try:
            self._handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(nv.nvmlDeviceGetCount())]
        except Exception as e:  # noqa: BLE001
            self.nvml_reason = f"NVML query failed: {e}"
            self.close()
            return
        for h in self._handles:
            try:
                self._slowdown_c.append(int(nv.nvmlDeviceGetTemperatureThreshold(h, 1)))  # 1: SLOWDOWN
            except Exception:  # noqa: BLE001 - not every board reports it
                self._slowdown_c.append(None)

    def read(self) -> tuple[dict[str, Any], list[str]]:
        """(state, unreadable reasons)."""
        state: dict[str, Any] = {}
        unreadable: list[str] = []
        cpu, why = read_cpu_state(self.sys_root)
        if cpu is None:
            unreadable.append(f"cpu: {why}")
        else:
            state["cpu"] = cpu
        if self._nv is None:
            if self.nvml_reason and self.nvml_reason != "NVML not used":
                unreadable.append(f"accelerators: {self.nvml_reason}")
            return state, unreadable
        accels = []
        nv = self._nv
        for i, h in enumerate(self._handles):
            a: dict[str, Any] = {"index": i}
            try:
                a["name"] = text(nv.nvmlDeviceGetName(h))
                a["sm_clock_mhz"] = int(nv.nvmlDeviceGetClockInfo(h, _NVML_CLOCK_SM))
                a["mem_clock_mhz"] = int(nv.nvmlDeviceGetClockInfo(h, _NVML_CLOCK_MEM))
                a["temperature_c"] = int(nv.nvmlDeviceGetTemperature(h, _NVML_TEMPERATURE_GPU))
                a["slowdown_temperature_c"] = self._slowdown_c[i]
                get = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
                    nv.nvmlDeviceGetCurrentClocksThrottleReasons
                bits = int(get(h))
                a["clock_event_reasons"] = [name for bit, name in _REASONS.items() if bits & bit]
            except Exception as e:  # noqa: BLE001 - a partial reading is still worth keeping
                unreadable.append(f"accelerator {i}: {e}")
            accels.append(a)
        state["accelerators"] = accels
        return state, unreadable

    def close(self) -> None:
        if self._nv is not None:
            shutdown(self._nv)
            self._nv = None


def compare(before: dict[str, Any], after: dict[str, Any], clock_drop: float = CLOCK_DROP) -> list[str]:
    """Flags for what changed between two states from :meth:`StabilityProbe.read`."""
    flags = []
    cb, ca = before.get("cpu"), after.get("cpu")
    if cb and ca:
        if cb.get("governors") != ca.get("governors"):
            flags.append(f"CPU frequency governor changed during the run: {cb.get('governors')} -> {ca.get('governors')}")
        mb, ma = cb.get("max_freq_mhz_min"), ca.get("max_freq_mhz_min")
        if mb is not None and ma is not None and ma < mb:
            flags.append(f"a CPU frequency ceiling was lowered during the run (thermal capping?): "
                         f"scaling_max_freq {mb:.0f} -> {ma:.0f} MHz")
        fb, fa = cb.get("cur_freq_mhz_max"), ca.get("cur_freq_mhz_max")
        if fb and fa is not None and fa < fb * (1 - clock_drop):
            flags.append(f"CPU frequency fell {1 - fa / fb:.0%} during the run: {fb:.0f} -> {fa:.0f} MHz (busiest core)")
    before_acc = {a["index"]: a for a in before.get("accelerators", [])}
    for a in after.get("accelerators", []):
        b = before_acc.get(a["index"], {})
        label = f"accelerator {a['index']}" + (f" ({a['name']})" if a.get("name") else "")
        sb, sa = b.get("sm_clock_mhz"), a.get("sm_clock_mhz")
        if sb and sa is not None and sa < sb * (1 - clock_drop):
            why = ""
            reasons = set(a.get("clock_event_reasons", []))
            if "sw_power_cap" in reasons and not reasons & THROTTLE_REASONS:
                why = (" (the board reached its power limit, sw_power_cap: the run began before the power-limited "
                       "steady state; a longer warmup_ms starts it there)")
            flags.append(f"{label}: SM clock fell {1 - sa / sb:.0%} during the run: {sb} -> {sa} MHz{why}")
        throttled = sorted(THROTTLE_REASONS & set(a.get("clock_event_reasons", [])))
        if throttled:
            flags.append(f"{label}: throttling at the end of the run ({', '.join(throttled)}; "
                         f"{a.get('temperature_c')} °C)")
    return flags
