"""RAPL energy counters through the Linux powercap interface (``/sys/class/powercap``).

Reads each CPU package zone (``intel-rapl:N``, named ``package-N``; AMD CPUs
appear under the same driver) and its DRAM subzone (``intel-rapl:N:M`` named
``dram``). The ``psys`` zone is skipped: it contains the packages and would
count them twice; the ``core``/``uncore`` subzones are parts of their package.

``energy_uj`` is a counter in microjoules that wraps to zero after
``max_energy_range_uj``; the meter unwraps it, which needs at least one
reading per wrap period (minutes at full load; the sampler reads every
100 ms by default).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchkit._fsutil import read_bounded
from benchkit.errors import PowerMeterError
from benchkit.power import PowerMeter, _check_options

_TOP = re.compile(r"^intel-rapl:(\d+)$")
_SUB = re.compile(r"^intel-rapl:(\d+):(\d+)$")


class RaplMeter(PowerMeter):
    """CPU package and DRAM energy. Options: ``root`` (default /sys/class/powercap), ``domains`` [package, dram]."""

    name = "rapl"

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        _check_options(options, {"root", "domains"}, self.name)
        self.root = Path(options.get("root", "/sys/class/powercap"))
        wanted = options.get("domains", ["package", "dram"])
        if not isinstance(wanted, list) or not set(wanted) <= {"package", "dram"} or not wanted:
            raise PowerMeterError(f"power meter 'rapl': domains must be a list of package, dram; got {wanted!r}")
        self.wanted = set(wanted)
        self.read_as = "energy_j"
        self._zones: dict[str, tuple[Path, int]] = {}  # domain -> (energy_uj file, wrap range in µJ)
        self._last: dict[str, int] = {}
        self._total_uj: dict[str, int] = {}

    def _zone_list(self) -> list[tuple[str, Path]]:
        try:
            entries = sorted(p for p in self.root.iterdir() if p.name.startswith("intel-rapl:"))
        except OSError as e:
            raise PowerMeterError(f"no powercap interface at {self.root} ({e.strerror}): no RAPL on this machine "
                                  "or kernel (module intel_rapl_common)") from None
        zones = []
        for p in entries:
            label = _read_text(p / "name")
            if label is None:
                continue
            if _TOP.match(p.name) and re.fullmatch(r"package-\d{1,4}", label) and "package" in self.wanted:
                zones.append((label, p))  # package-0, package-1
            elif (m := _SUB.match(p.name)) and label == "dram" and "dram" in self.wanted:
                zones.append((f"dram-{m.group(1)}", p))
        return zones

    def open(self) -> None:
        zones = self._zone_list()
        if not zones:
            raise PowerMeterError(f"no {' or '.join(sorted(self.wanted))} zone under {self.root}")
        for domain, path in zones:
            energy = path / "energy_uj"
            try:
                raw = _read_int(energy)
                wrap = _read_int(path / "max_energy_range_uj")
            except PermissionError:
                raise PowerMeterError(
                    f"{energy}: permission denied (RAPL counters are readable by root only since Linux 5.10; "
                    "run as root, or let this user read them)") from None
            except OSError as e:
                raise PowerMeterError(f"{energy}: unreadable ({e.strerror or type(e).__name__})") from None
            except (ValueError, PowerMeterError):  # the content is not quoted: `root` may point anywhere
                raise PowerMeterError(f"{energy}: not a RAPL counter (expected a whole number of microjoules)") \
                    from None
            if wrap <= 0:
                raise PowerMeterError(f"{path / 'max_energy_range_uj'}: expected a positive range, got {wrap}")
            self._zones[domain] = (energy, wrap)
            self._last[domain] = raw
            self._total_uj[domain] = 0
        self.domains = list(self._zones)

    def read(self) -> dict[str, float]:
        out = {}
        for domain, (energy, wrap) in self._zones.items():
            try:
                raw = _read_int(energy)
            except (OSError, ValueError):
                raise PowerMeterError(f"{energy}: not a RAPL counter reading") from None
            last = self._last[domain]
            # The counter runs from 0 to max_energy_range_uj and starts again at 0.
            delta = raw - last if raw >= last else raw + wrap - last
            self._total_uj[domain] += delta
            self._last[domain] = raw
            out[domain] = self._total_uj[domain] / 1e6
        return out


def _read_text(path: Path) -> str | None:
    try:
        return read_bounded(path, 256, error=PowerMeterError, what="powercap attribute").decode().strip()
    except (OSError, ValueError, PowerMeterError):
        return None


def _read_int(path: Path) -> int:
    """A counter file: sysfs attributes are regular files of a few bytes; anything else is refused unread."""
    try:
        text = read_bounded(path, 64, error=PowerMeterError, what="powercap attribute").decode("ascii")
    except PowerMeterError as e:
        if "Permission denied" in str(e):
            raise PermissionError(str(e)) from None
        raise
    return int(text.strip())
