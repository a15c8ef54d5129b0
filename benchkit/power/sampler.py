"""Background sampling of power meters, and the figures of a window (the idle baseline, a measured run).

The sampler runs in a daemon thread of the benchkit process; cells run in
worker processes, so nothing here touches a timed loop (with ``isolation:
inline`` the thread shares the interpreter with the measurement: a few file
reads per interval). Meters are read continuously, windows or not, because
counters must be seen often enough to unwrap them. A window's first and last
readings are taken synchronously when it opens and closes, so its edges are
exact whatever the interval.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from benchkit.power import PowerMeter


@dataclass(frozen=True)
class DomainFigures:
    meter_index: int  # position among the sampler's meters: two meters may share a name
    meter: str
    domain: str
    read_as: str
    energy_j: float
    avg_power_w: float
    readings: int


@dataclass
class WindowFigures:
    duration_ns: int
    domains: list[DomainFigures]
    failed: list[str] = field(default_factory=list)  # "meter: reason" for meters that failed in or before it

    @property
    def avg_power_w(self) -> float | None:
        return sum(d.avg_power_w for d in self.domains) if self.domains else None


@dataclass
class _Series:
    times_ns: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


def integrate(read_as: str, times_ns: list[int], values: list[float]) -> float:
    """Joules over a series: a counter's difference, or the trapezoid integral of sampled watts."""
    if len(values) < 2:
        return 0.0
    if read_as == "energy_j":
        return values[-1] - values[0]
    total = 0.0
    for i in range(1, len(values)):
        total += (values[i] + values[i - 1]) / 2 * (times_ns[i] - times_ns[i - 1]) / 1e9
    return total


class PowerSampler:
    """Reads every meter each ``interval_s`` in a background thread; :meth:`begin`/:meth:`end` bracket a window."""

    def __init__(self, meters: list[PowerMeter], interval_s: float = 0.1, clock=time.perf_counter_ns) -> None:
        self.meters = list(meters)
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._window: dict[tuple[int, str], _Series] | None = None
        self._window_start_ns = 0
        self._failed: dict[int, str] = {}  # id(meter) -> reason

    @property
    def failed(self) -> list[str]:
        return [f"{m.name}: {self._failed[id(m)]}" for m in self.meters if id(m) in self._failed]

    def start(self) -> None:
        if self._thread is None and self.meters:
            self._thread = threading.Thread(target=self._loop, name="benchkit-power", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            with self._lock:
                self._sample()

    def _sample(self) -> None:
        for i, m in enumerate(self.meters):
            if id(m) in self._failed:
                continue
            try:
                values = m.read()
            except Exception as e:  # noqa: BLE001 - a meter failing mid-run costs its figures, never the run
                self._failed[id(m)] = f"read failed: {type(e).__name__}: {e}"
                continue
            t = self._clock()
            if self._window is not None:
                for domain, v in values.items():
                    s = self._window.setdefault((i, domain), _Series())
                    s.times_ns.append(t)
                    s.values.append(float(v))

    def begin(self) -> None:
        """Open a window and take its first readings now."""
        with self._lock:
            self._window = {}
            self._window_start_ns = self._clock()
            self._sample()

    def end(self) -> WindowFigures:
        """Take the last readings now, close the window, and return its figures."""
        with self._lock:
            self._sample()
            window, self._window = self._window or {}, None
            duration = self._clock() - self._window_start_ns
        out = []
        for (i, domain), s in window.items():
            m = self.meters[i]
            if id(m) in self._failed or len(s.values) < 2:
                continue
            span_ns = s.times_ns[-1] - s.times_ns[0]
            if span_ns <= 0:
                continue
            energy = integrate(m.read_as, s.times_ns, s.values)
            out.append(DomainFigures(i, m.name, domain, m.read_as, energy, energy / (span_ns / 1e9), len(s.values)))
        return WindowFigures(duration, out, self.failed)

    def measure_idle(self, duration_s: float) -> WindowFigures:
        """The idle baseline: a window over ``duration_s`` of doing nothing."""
        self.begin()
        time.sleep(duration_s)
        return self.end()

    def close(self) -> None:
        self.stop()
        for m in self.meters:
            try:
                m.close()
            except Exception:  # noqa: BLE001 - closing a meter must not hide the results
                pass
