"""The records as the report reads them, and the small HTML helpers every section shares."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from benchkit.errors import BenchkitError
from benchkit.results.records import ResultRecord


class ReportError(BenchkitError):
    """No records to report, or an output path that cannot be written."""


@dataclass(frozen=True)
class View:
    """One record as the report needs it: the record, where it came from, and its raw samples in issue order."""

    rec: ResultRecord
    path: str
    samples_ns: np.ndarray | None  # issue order (the latency-over-time chart and the intervals need it)

    @cached_property
    def sorted_ns(self) -> np.ndarray | None:
        return None if self.samples_ns is None else np.sort(self.samples_ns)

    @property
    def measured(self) -> bool:
        return self.rec.metrics is not None and self.rec.workload is not None and self.rec.backend is not None

    @property
    def workload(self) -> str:
        r = self.rec
        return r.workload.name if r.workload else str(r.spec.get("workload", {}).get("name", "?"))

    @property
    def scenario(self) -> str:
        return self.rec.scenario.kind

    @property
    def backend(self) -> str:
        r = self.rec
        if r.backend:
            return r.backend.id
        b = r.spec.get("backend", {})
        return str(b.get("label") or b.get("name") or "?")

    @property
    def precision(self) -> str:
        r = self.rec
        return r.backend.precision if r.backend else str(r.spec.get("backend", {}).get("precision", "?"))

    @property
    def batch(self) -> int:
        r = self.rec
        return (r.workload.effective_batch_size or 1) if r.workload else 1

    @property
    def target_qps(self) -> float | None:
        settings = self.rec.scenario.settings
        server = self.scenario == "server" or (self.scenario == "generative" and settings.get("mode") == "server")
        q = settings.get("target_qps") if server else None
        return float(q) if q is not None else None

    @property
    def concurrency(self) -> int | None:
        """Offline's calls in flight, when more than one (None: the plain closed loop, or another scenario)."""
        c = self.rec.scenario.settings.get("concurrency", 1) if self.scenario == "offline" else 1
        return int(c) if c and int(c) > 1 else None

    @property
    def config(self) -> tuple:
        return (self.backend, self.precision, self.batch, self.target_qps) + \
            ((self.concurrency,) if self.concurrency is not None else ())

    def config_label(self, with_batch: bool = True) -> str:
        s = f"{self.backend} {self.precision}"
        if with_batch:
            s += f" b{self.batch}"
        if self.target_qps is not None:
            s += f" @{self.target_qps:g}qps"
        if self.concurrency is not None:
            s += f" c{self.concurrency}"
        return s

    @property
    def status(self) -> str:
        if self.rec.metrics is None:
            return "FAILED"
        return "VALID" if self.rec.validity.valid else "INVALID"


def backend_colors(views: Sequence[View]) -> dict[str, str]:
    """One colour per backend for the whole report (every chart), in the order of the backends' names."""
    from benchkit.results.report.svg import PALETTE

    return {b: PALETTE[i % len(PALETTE)] for i, b in enumerate(sorted({v.backend for v in views}))}


def device_label(rec: ResultRecord) -> str:
    """One spelling per device: adapters spell the same CPU differently ("cpu: AMD EPYC" from ONNX Runtime,
    "CPU: AMD EPYC" from OpenVINO), so a CPU is written ``cpu: <name>`` (the name as given, else the record's
    system CPU model), and spacing is normalised; other devices as the adapter wrote them."""
    dev = " ".join(str(rec.backend.device if rec.backend else "?").split())
    head, _, name = dev.partition(":")
    if head.strip().lower() == "cpu":
        return f"cpu: {name.strip() or rec.system.cpu_model}"
    return dev


def load_views(paths: Sequence[str | Path]) -> list[View]:
    from benchkit.results import records
    from benchkit.results.compare import load_with_samples

    files = records.find(list(paths))
    if not files:
        raise ReportError(f"no record files in {', '.join(map(str, paths))}")
    out = []
    for p in files:
        r, arr = load_with_samples(p)
        out.append(View(r, str(p), arr))
    return out


def views_of(recs: Sequence[ResultRecord]) -> list[View]:
    """Views of records already in memory (their own samples)."""
    return [View(r, r.cell_id, np.asarray(r.samples_ns, dtype=np.int64) if r.samples_ns else None) for r in recs]


def newest_per_config(views: Sequence[View]) -> tuple[list[View], dict[tuple, list[View]]]:
    """The newest record of each configuration, and every record (run or repeat) of each configuration."""
    newest: dict[tuple, View] = {}
    runs: dict[tuple, list[View]] = defaultdict(list)
    for v in views:
        k = v.config
        runs[k].append(v)
        if k not in newest or v.rec.started_at > newest[k].rec.started_at:
            newest[k] = v
    return list(newest.values()), runs


def slug(*parts: Any) -> str:
    return re.sub(r"[^a-z0-9]+", "-", "-".join(map(str, parts)).lower()).strip("-")


def nodata(kind: str, why: str) -> str:
    return f'<p class="nodata" data-kind="{escape(kind)}">no data: {escape(why)}</p>'


def td(text: str, sort: Any = None, cls: str = "", title: str = "") -> str:
    """A cell; ``text`` is HTML the caller has escaped, ``sort`` and ``title`` are escaped here."""
    attr = f' data-sort="{escape(str(sort))}"' if sort is not None else ""
    c = f' class="{cls}"' if cls else ""
    t = f' title="{escape(title)}"' if title else ""
    return f"<td{c}{attr}{t}>{text}</td>"


def fmt_flops(x: float) -> str:
    for unit, scale in (("PFLOP/s", 1e15), ("TFLOP/s", 1e12), ("GFLOP/s", 1e9), ("MFLOP/s", 1e6), ("kFLOP/s", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.3g} FLOP/s"


def fmt_count(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"
