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

What the meter may be: ``url`` an ``http://`` or ``https://`` address, read
with GET exactly there: redirects are not followed (a 3xx is an error) and
proxy settings in the environment are not used; ``file`` a regular file (a
FIFO or a device is refused). At most 4 KiB of a reply is read, and only the
number is kept: a reply that is not a valid reading is reported as such,
without its content, so a spec cannot copy a file or a web page into a
record.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from benchkit._fsutil import open_regular
from benchkit.errors import PowerMeterError
from benchkit.power import PowerMeter, _check_options

_MAX_BYTES = 4096


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 - urllib's signature
        return None  # urllib then raises HTTPError with the 3xx status


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


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
            fd = open_regular(self.file, error=PowerMeterError)  # a FIFO or a device never blocks nor streams
            with os.fdopen(fd, "rb") as f:
                return f.read(_MAX_BYTES)
        # Only the address the spec gave: no redirect is followed and no proxy from the environment is used.
        with _OPENER.open(self.url, timeout=self.timeout_s) as resp:
            return resp.read(_MAX_BYTES)

    def _value(self) -> float:
        # What the source returned is never quoted, in a message or a record: the spec may point the meter at a file
        # or a service that is not a meter (/etc/passwd, an internal web page), and the reason ends up in a record.
        try:
            raw = self._fetch()
        except FileNotFoundError:
            raise PowerMeterError(f"{self.source}: cannot read (no such file)") from None
        except urllib.error.HTTPError as e:
            raise PowerMeterError(f"{self.source}: cannot read (HTTP status {e.code}"
                                  + (", a redirect, which is not followed" if 300 <= e.code < 400 else "")
                                  + ")") from None
        except urllib.error.URLError as e:
            reason = e.reason.strerror if isinstance(e.reason, OSError) and e.reason.strerror else type(e.reason).__name__
            raise PowerMeterError(f"{self.source}: cannot read ({reason})") from None
        except (OSError, ValueError, http.client.HTTPException) as e:
            raise PowerMeterError(f"{self.source}: cannot read ({getattr(e, 'strerror', None) or type(e).__name__})") \
                from None
        bad = PowerMeterError(f"{self.source}: not a valid reading ({len(raw):,} bytes): expected a bare number or a "
                              f"JSON object with a number under {self.read_as!r}, at least 0")
        try:
            data = json.loads(raw.decode("utf-8").strip())
        except (ValueError, RecursionError):
            raise bad from None
        if isinstance(data, dict):
            data = data.get(self.read_as)
        if isinstance(data, bool) or not isinstance(data, (int, float)) or not math.isfinite(data) or data < 0:
            raise bad
        return float(data)

    def open(self) -> None:
        self._value()
        self.domains = [self.domain]

    def read(self) -> dict[str, float]:
        return {self.domain: self._value()}
