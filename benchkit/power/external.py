"""A lab power meter benchkit cannot talk to directly, read through a file or a small HTTP endpoint.

Whatever logs the meter (a PDU poller, a SPEC PTDaemon client, a script)
writes its latest value to a file, or serves it over HTTP; each read takes
that value. The value is a bare number, or a JSON object holding the number
under ``power_w`` or ``energy_j``::

    run:
      power:
        meters:
          - {name: external, options: {url: "http://127.0.0.1:8765/power", read_as: power_w}}
          - {name: external, options: {file: /run/pdu/outlet3.txt, domain: wall}}

``read_as: power_w`` (default) samples watts and integrates them over time;
``energy_j`` reads a cumulative counter in joules. Readings are taken every
``sample_interval_ms``, so a meter that updates once a second needs a
measured run of many seconds to be worth quoting.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchkit.errors import PowerMeterError
from benchkit.power import PowerMeter, _check_options

_MAX_BYTES = 4096


class ExternalMeter(PowerMeter):
    """Options: ``url`` (http/https) or ``file``; ``read_as`` power_w | energy_j; ``domain``; ``timeout_s``."""

    name = "external"
    needs_options = True

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        _check_options(options, {"url", "file", "read_as", "domain", "timeout_s"}, self.name)
        self.url = options.get("url")
        self.file = options.get("file")
        if (self.url is None) == (self.file is None):
            raise PowerMeterError("power meter 'external': give exactly one of url or file")
        if self.url is not None and not (isinstance(self.url, str) and self.url.startswith(("http://", "https://"))):
            raise PowerMeterError(f"power meter 'external': url must be an http:// or https:// URL, got {self.url!r}")
        self.read_as = options.get("read_as", "power_w")
        if self.read_as not in ("power_w", "energy_j"):
            raise PowerMeterError(f"power meter 'external': read_as must be power_w or energy_j, got {self.read_as!r}")
        self.domain = str(options.get("domain", "external"))
        timeout = options.get("timeout_s", 1.0)
        if not isinstance(timeout, (int, float)) or not 0 < timeout <= 60:
            raise PowerMeterError(f"power meter 'external': timeout_s must be in (0, 60], got {timeout!r}")
        self.timeout_s = float(timeout)
        self.source = self.url or str(self.file)

    def _fetch(self) -> bytes:
        if self.file is not None:
            with open(Path(self.file), "rb") as f:
                return f.read(_MAX_BYTES)
        with urllib.request.urlopen(self.url, timeout=self.timeout_s) as resp:  # noqa: S310 - scheme checked
            return resp.read(_MAX_BYTES)

    def _value(self) -> float:
        try:
            raw = self._fetch()
        except (OSError, urllib.error.URLError) as e:
            raise PowerMeterError(f"{self.source}: cannot read ({e})") from None
        text = raw.decode("utf-8", errors="replace").strip()
        try:
            data = json.loads(text)
        except ValueError:
            raise PowerMeterError(f"{self.source}: expected a number or a JSON object, got {text[:60]!r}") from None
        if isinstance(data, dict):
            data = data.get(self.read_as)
        if isinstance(data, bool) or not isinstance(data, (int, float)) or not math.isfinite(data) or data < 0:
            raise PowerMeterError(f"{self.source}: expected a non-negative number ({self.read_as}), got {text[:60]!r}")
        return float(data)

    def open(self) -> None:
        self._value()
        self.domains = [self.domain]

    def read(self) -> dict[str, float]:
        return {self.domain: self._value()}
