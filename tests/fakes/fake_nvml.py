"""TEST FAKE: a stand-in for nvidia-ml-py's ``pynvml`` module, for machines without an NVIDIA GPU.

It implements only the calls benchkit makes, with the real names, units and
error behaviour (millijoules, milliwatts, MHz, °C; ``NVMLError`` for an
unsupported query). Tests build one with :func:`make` and pass it wherever
benchkit accepts an ``nvml`` module; it is never installed as ``pynvml``.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field


class NVMLError(Exception):
    def __init__(self, value: int, text: str = "") -> None:
        super().__init__(text or f"NVML error {value}")
        self.value = value


NVML_ERROR_NOT_SUPPORTED = 3
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_TEMPERATURE_GPU = 0
NVML_TEMPERATURE_THRESHOLD_SLOWDOWN = 1


@dataclass
class FakeGpu:
    name: str = "NVIDIA H200"
    memory_bytes: int = 141 << 30
    energy_mj: int | None = 1_000_000  # None: the total-energy counter is not supported (pre-Volta)
    power_mw: int = 300_000
    sm_clock_mhz: int = 1980
    mem_clock_mhz: int = 3201
    temperature_c: int = 45
    slowdown_c: int = 90
    reasons: int = 0
    energy_step_mj: int = 0  # added to the counter at every read: a GPU drawing steady power
    calls: list[str] = field(default_factory=list)


def make(gpus: list[FakeGpu], driver: str = "580.00.00", fail_init: bool = False) -> types.SimpleNamespace:
    """A module-like object with the pynvml API over ``gpus``; ``state.inits`` counts nvmlInit - nvmlShutdown."""
    state = types.SimpleNamespace(inits=0)

    def init():
        if fail_init:
            raise NVMLError(9, "Driver Not Loaded")
        state.inits += 1

    def shutdown():
        state.inits -= 1

    def handle(i):
        if not 0 <= i < len(gpus):
            raise NVMLError(2, "Invalid Argument")
        return gpus[i]

    def energy(g):
        g.calls.append("energy")
        if g.energy_mj is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED, "Not Supported")
        g.energy_mj += g.energy_step_mj
        return g.energy_mj

    def power(g):
        g.calls.append("power")
        return g.power_mw

    def clock(g, kind):
        return g.sm_clock_mhz if kind == NVML_CLOCK_SM else g.mem_clock_mhz

    return types.SimpleNamespace(
        state=state,
        NVMLError=NVMLError,
        nvmlInit=init,
        nvmlShutdown=shutdown,
        nvmlDeviceGetCount=lambda: len(gpus),
        nvmlDeviceGetHandleByIndex=handle,
        nvmlDeviceGetName=lambda g: g.name,
        nvmlDeviceGetMemoryInfo=lambda g: types.SimpleNamespace(total=g.memory_bytes, free=g.memory_bytes, used=0),
        nvmlSystemGetDriverVersion=lambda: driver,
        nvmlDeviceGetTotalEnergyConsumption=energy,
        nvmlDeviceGetPowerUsage=power,
        nvmlDeviceGetClockInfo=clock,
        nvmlDeviceGetTemperature=lambda g, sensor: g.temperature_c,
        nvmlDeviceGetTemperatureThreshold=lambda g, kind: g.slowdown_c,
        nvmlDeviceGetCurrentClocksEventReasons=lambda g: g.reasons,
    )
