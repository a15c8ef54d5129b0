"""Compare result records: candidate / base, per metric, matched by what makes results comparable.

Records are matched by workload (name and model SHA-256), scenario kind,
effective batch size and precision; the backend may differ (that is the point
of comparing vendors). Reads records only; never touches a backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import records
from .records import ResultRecord

Key = tuple[str, str, str, int, str]


@dataclass(frozen=True)
class Row:
    workload: str
    scenario: str
    batch: int
    precision: str
    metric: str
    unit: str
    base: float
    cand: float
    higher_is_better: bool

    @property
    def ratio(self) -> float:
        return self.cand / self.base if self.base else float("inf")

    @property
    def change_pct(self) -> float:
        return (self.ratio - 1.0) * 100.0

    @property
    def better(self) -> bool | None:
        if self.cand == self.base:
            return None
        return (self.cand > self.base) == self.higher_is_better


def key(r: ResultRecord) -> Key | None:
    if r.metrics is None or r.workload is None or r.backend is None:
        return None
    return (r.workload.name, r.workload.model_sha256, r.scenario.kind, r.workload.effective_batch_size or 1,
            r.backend.precision)


def _index(recs: Sequence[ResultRecord], side: str, warnings: list[str]) -> dict[Key, ResultRecord]:
    out: dict[Key, ResultRecord] = {}
    for r in recs:
        k = key(r)
        if k is None:
            warnings.append(f"{side}: {r.cell_id} (run {r.run_id}) has no measurement; skipped")
            continue
        if k in out:
            warnings.append(f"{side}: several records for {k[0]}/{k[2]}/batch {k[3]}/{k[4]}; using the newest")
            if r.started_at <= out[k].started_at:
                continue
        out[k] = r
    return out


def metrics_of(r: ResultRecord) -> list[tuple[str, str, float, bool]]:
    m = r.metrics
    assert m is not None
    rows = [
        ("p50", "ns", float(m.latency_ns.p50), False),
        ("p90", "ns", float(m.latency_ns.p90), False),
        ("p99", "ns", float(m.latency_ns.p99), False),
        ("throughput", "samples/s", m.throughput_per_s, True),
    ]
    h = m.headline
    if h.name not in ("throughput_per_s", "latency_p90_ns", "latency_p99_ns"):
        rows.append((h.name, h.unit, h.value, h.higher_is_better))
    return rows


def compare(base: Sequence[ResultRecord], cand: Sequence[ResultRecord]) -> tuple[list[Row], list[str]]:
    warnings: list[str] = []
    bi, ci = _index(base, "base", warnings), _index(cand, "cand", warnings)
    rows = []
    for k in sorted(bi.keys() & ci.keys()):
        b, c = bi[k], ci[k]
        if b.system.cpu_model != c.system.cpu_model or b.system.cpu_count != c.system.cpu_count:
            warnings.append(
                f"{k[0]}/{k[2]}: systems differ ({b.system.cpu_model} x{b.system.cpu_count} vs "
                f"{c.system.cpu_model} x{c.system.cpu_count})"
            )
        for (name, unit, bv, hib), (_, _, cv, _) in zip(metrics_of(b), metrics_of(c)):
            rows.append(Row(k[0], k[2], k[3], k[4], name, unit, bv, cv, hib))
    for side, only in (("base", bi.keys() - ci.keys()), ("cand", ci.keys() - bi.keys())):
        for k in sorted(only):
            warnings.append(f"only in {side}: {k[0]}/{k[2]}/batch {k[3]}/{k[4]}")
    return rows, warnings


def compare_paths(base: Sequence[str | Path], cand: Sequence[str | Path]) -> tuple[list[Row], list[str]]:
    return compare([records.load(p) for p in records.find(list(base))],
                   [records.load(p) for p in records.find(list(cand))])
