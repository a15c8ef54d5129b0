"""Power meters: pluggable through the ``benchkit.power_meters`` entry-point group, like backends.

benchkit's own meters are registered in that group too (see ``pyproject.toml``):

========  ==============================================================  ==========
name      reads                                                           needs
========  ==============================================================  ==========
rapl      CPU package and DRAM energy counters, /sys/class/powercap       root (*)
nvml      NVIDIA GPU energy counter, else sampled board power (NVML)      nvidia-ml-py
external  a lab meter's watts or joules from a file or an HTTP endpoint   options
========  ==============================================================  ==========

(*) Linux makes ``energy_uj`` readable by root only since 5.10; a meter that
cannot be read is reported as unavailable with that reason, never estimated.

A vendor's meter is a :class:`PowerMeter` subclass registered in a package's
metadata::

    [project.entry-points."benchkit.power_meters"]
    acme-pdu = "acme_benchkit.pdu:PduMeter"

Meters are read by :class:`benchkit.power.sampler.PowerSampler` in a
background thread of the benchkit process, never inside a worker's timed loop.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any, ClassVar, Literal

from benchkit.errors import BenchkitError, PowerMeterError

GROUP = "benchkit.power_meters"

ReadAs = Literal["energy_j", "power_w"]


class PowerMeter(abc.ABC):
    """One source of power readings, with one or more domains (a CPU package, a GPU, a wall socket)."""

    #: Entry-point name.
    name: ClassVar[str] = ""
    #: True for meters that cannot work without options (an external meter's address): ``meters: auto`` skips them.
    needs_options: ClassVar[bool] = False

    def __init__(self, options: Mapping[str, Any]) -> None:
        """Validate ``options``; raise :class:`PowerMeterError` naming a bad one. Touch no device here."""
        self.options = dict(options)
        #: What :meth:`read` returns per domain: a cumulative energy counter in joules, or power in watts.
        self.read_as: ReadAs = "energy_j"
        #: Domain names, set by :meth:`open`.
        self.domains: list[str] = []

    @abc.abstractmethod
    def open(self) -> None:
        """Find the domains and read each once; raise :class:`PowerMeterError` saying why it cannot be read here."""

    @abc.abstractmethod
    def read(self) -> dict[str, float]:
        """One reading per domain: cumulative joules (monotonic: the meter unwraps its counters) or watts.

        Called from one thread at a time, every ``sample_interval_ms``; an exception marks the meter failed for
        the rest of the run.
        """

    def close(self) -> None:
        """Release what :meth:`open` took. Called once, also after a failure."""


def _check_options(options: Mapping[str, Any], allowed: set[str], meter: str) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise PowerMeterError(f"power meter {meter!r}: unknown option(s) {', '.join(unknown)}; "
                              f"expected {', '.join(sorted(allowed)) or 'none'}")


def _entry_points() -> dict[str, EntryPoint]:
    eps: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        eps.setdefault(ep.name, ep)
    return eps


def names() -> list[str]:
    """Registered meters (nothing imported)."""
    return sorted(_entry_points())


def load_meter_class(name: str) -> type[PowerMeter]:
    eps = _entry_points()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none (is benchkit installed? `pip install -e .`)"
        raise PowerMeterError(f"unknown power meter {name!r}; installed meters: {known}")
    try:
        cls = eps[name].load()
    except Exception as e:  # a plugin's import-time bug must not become our traceback
        raise PowerMeterError(f"power meter {name!r} failed to import: {type(e).__name__}: {e}") from e
    if not (isinstance(cls, type) and issubclass(cls, PowerMeter)):
        raise PowerMeterError(f"power meter {name!r} ({eps[name].value}) is not a benchkit.power.PowerMeter subclass")
    return cls


def configured(meters: Any) -> list[tuple[str, dict[str, Any]]]:
    """(name, options) pairs for a spec's ``run.power.meters`` ('auto' or a list of PowerMeterSpec)."""
    if meters == "auto":
        out = []
        for n in names():
            try:
                if not load_meter_class(n).needs_options:
                    out.append((n, {}))
            except PowerMeterError:
                continue  # a broken plugin is not 'auto'-selected; naming it explicitly reports why
        return out
    return [(m.name, dict(m.options)) for m in meters]


def check(meters: Any) -> None:
    """Fail fast on a meter the spec names that is not installed or whose options are wrong."""
    if meters == "auto":
        return
    for name, options in configured(meters):
        load_meter_class(name)(options)


def open_meters(meters: Any) -> tuple[list[PowerMeter], list[str]]:
    """Open the configured meters: (readable ones, 'name: reason' for each that cannot be read here).

    An unknown meter or a bad option raises (the spec is wrong); a meter that is
    merely unreadable on this machine is reported, not fatal.
    """
    opened: list[PowerMeter] = []
    unavailable: list[str] = []
    for name, options in configured(meters):
        meter = load_meter_class(name)(options)
        try:
            meter.open()
        except BenchkitError as e:
            unavailable.append(f"{name}: {e}")
            meter.close()
            continue
        except Exception as e:  # noqa: BLE001 - a vendor meter's bug costs that meter, not the run
            unavailable.append(f"{name}: {type(e).__name__}: {e}")
            meter.close()
            continue
        opened.append(meter)
    return opened, unavailable


__all__ = ["GROUP", "PowerMeter", "PowerMeterError", "ReadAs", "names", "load_meter_class", "configured", "check",
           "open_meters"]
