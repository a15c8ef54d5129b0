"""NVIDIA GPU power through NVML (the ``nvml`` extra, which brings nvidia-ml-py).

Each GPU is read through its total-energy counter
(``nvmlDeviceGetTotalEnergyConsumption``, millijoules since the driver
loaded; Volta and newer) where the device supports it, else through sampled
board power (``nvmlDeviceGetPowerUsage``, milliwatts), which the sampler
integrates over time. Domains are named ``gpu0``, ``gpu1``, ... in NVML's
numbering.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchkit.machine.nvml import NvmlUnavailable, import_nvml, init, shutdown
from benchkit.errors import PowerMeterError
from benchkit.power import PowerMeter, _check_options


class NvmlMeter(PowerMeter):
    """Options: ``devices`` (indices; default all), ``method``: auto | energy | power (default auto)."""

    name = "nvml"

    def __init__(self, options: Mapping[str, Any], nvml: Any = None) -> None:
        """``nvml``: the binding module to use instead of ``pynvml`` (tests pass a fake one)."""
        super().__init__(options)
        _check_options(options, {"devices", "method"}, self.name)
        devices = options.get("devices")
        if devices is not None and not (isinstance(devices, list) and all(isinstance(d, int) and d >= 0
                                                                           for d in devices)):
            raise PowerMeterError(f"power meter 'nvml': devices must be a list of device indices, got {devices!r}")
        self.devices = devices
        self.method = options.get("method", "auto")
        if self.method not in ("auto", "energy", "power"):
            raise PowerMeterError(f"power meter 'nvml': method must be auto, energy or power; got {self.method!r}")
        self._module = nvml
        self._nv: Any = None
        self._handles: dict[str, Any] = {}

    def open(self) -> None:
        try:
            nv = import_nvml(self._module)
            init(nv)
        except NvmlUnavailable as e:
            raise PowerMeterError(str(e)) from None
        self._nv = nv
        try:
            count = nv.nvmlDeviceGetCount()
            indices = self.devices if self.devices is not None else list(range(count))
            missing = [i for i in indices if i >= count]
            if missing:
                raise PowerMeterError(f"no NVIDIA device {missing} (NVML sees {count})")
            if not indices:
                raise PowerMeterError("NVML sees no NVIDIA device")
            self._handles = {f"gpu{i}": nv.nvmlDeviceGetHandleByIndex(i) for i in indices}
            self.read_as = self._pick_method()
        except PowerMeterError:
            raise
        except Exception as e:  # NVMLError
            raise PowerMeterError(f"NVML query failed: {e}") from None
        self.domains = list(self._handles)

    def _pick_method(self) -> str:
        nv = self._nv
        if self.method in ("auto", "energy"):
            try:
                for h in self._handles.values():
                    nv.nvmlDeviceGetTotalEnergyConsumption(h)
                return "energy_j"
            except Exception as e:  # NVMLError_NotSupported on pre-Volta boards
                if self.method == "energy":
                    raise PowerMeterError(f"the total-energy counter is not supported here ({e}); use method: power")
        for h in self._handles.values():
            nv.nvmlDeviceGetPowerUsage(h)
        return "power_w"

    def read(self) -> dict[str, float]:
        nv = self._nv
        if self.read_as == "energy_j":
            return {d: nv.nvmlDeviceGetTotalEnergyConsumption(h) / 1e3 for d, h in self._handles.items()}
        return {d: nv.nvmlDeviceGetPowerUsage(h) / 1e3 for d, h in self._handles.items()}

    def close(self) -> None:
        if self._nv is not None:
            shutdown(self._nv)
            self._nv = None
