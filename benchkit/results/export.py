"""Export records to other tools' formats. So far: pytest-benchmark's JSON.

``benchkit export pytest-benchmark RECORDS... -o out.json`` writes the file
``pytest --benchmark-save`` would have written, so ``pytest-benchmark
compare`` (and ``pytest --benchmark-compare`` with ``--storage``) work on
benchkit results:

* one ``benchmarks[]`` entry per record; ``stats`` are computed from the raw
  per-query latencies by pytest-benchmark's own ``Stats`` class (seconds,
  one round per query, ``iterations`` 1), so every figure means exactly what
  it means there. ``ops`` is therefore queries per second; samples per
  second and the scenario's headline metric are in ``extra_info``.
* ``group`` is workload and scenario, ``name`` adds backend, precision and
  batch: the same cell from two runs has the same name, which is how
  pytest-benchmark lines results up.
* ``machine_info`` describes the machine the records were measured on (from
  their ``system`` block), not the machine exporting them; ``commit_info``
  is that of the checkout the export runs in, as pytest-benchmark records
  it when saving.

Records without raw samples, and INVALID records unless asked, are left out
with a warning: pytest-benchmark has no notion of validity, and an exported
INVALID number would look like any other.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchkit.results import records
from benchkit.errors import BenchkitError
from benchkit.results.records import ResultRecord


class ExportError(BenchkitError):
    """Nothing exportable, or a bad destination."""


@dataclass(frozen=True)
class Export:
    document: dict[str, Any]
    warnings: tuple[str, ...]


def machine_info(r: ResultRecord) -> dict[str, Any]:
    """pytest-benchmark's machine_info fields, filled from a record's system block."""
    s = r.system
    system, _, release = s.os.partition(" ")
    info: dict[str, Any] = {
        "node": s.hostname,
        "processor": s.machine,
        "machine": s.machine,
        "python_compiler": "",
        "python_implementation": "CPython",
        "python_implementation_version": s.python,
        "python_version": s.python,
        "python_build": [],
        "release": release,
        "system": system,
        "cpu": {"brand_raw": s.cpu_model, "count": s.cpu_count, "arch": s.machine, "flags": list(s.cpu_flags)},
        "benchkit": {"packages": dict(s.packages), "memory_bytes": s.memory_bytes},
    }
    if r.backend is not None:
        info["benchkit"]["device"] = r.backend.device
    return info


def machine_id(info: dict[str, Any]) -> str:
    """pytest-benchmark's storage folder name (``Linux-CPython-3.11-64bit``) for that machine."""
    bits = "64bit" if re.search(r"64", info.get("machine", "")) else "32bit"
    major_minor = ".".join(str(info.get("python_version", "0.0")).split(".")[:2])
    return f"{info.get('system') or 'Unknown'}-{info['python_implementation']}-{major_minor}-{bits}"


def _entry(r: ResultRecord, samples_ns: Sequence[int], path: str | None, include_data: bool) -> dict[str, Any]:
    from pytest_benchmark.stats import Stats

    w, b, m, settings = r.workload, r.backend, r.metrics, r.scenario.settings
    batch = w.effective_batch_size or 1
    scen = r.scenario.kind
    if scen == "server" and settings.get("target_qps") is not None:
        scen += f" @ {settings['target_qps']:g} QPS"
    if scen == "offline" and settings.get("concurrency", 1) != 1:
        scen += f" @ concurrency {settings['concurrency']}"
    param = f"{b.id}-{b.precision}-b{batch}"
    st = Stats()
    st.data = [x / 1e9 for x in samples_ns]
    stats = st.as_dict()
    stats["iterations"] = 1
    if include_data:
        stats["data"] = st.data
    max_ms = settings.get("max_duration_ms")
    return {
        "group": f"{w.name} {scen}",
        "name": f"{w.name}[{param}]",
        "fullname": f"benchkit::{r.spec_name}::{r.cell_id}",
        "params": {"backend": b.id, "precision": b.precision, "batch": batch, "scenario": r.scenario.kind},
        "param": param,
        "extra_info": {
            "benchkit_record": path,
            "run_id": r.run_id,
            "valid": r.validity.valid,
            "validity_reasons": list(r.validity.reasons),
            "headline": m.headline.model_dump(),
            "throughput_per_s": m.throughput_per_s,
            "samples_per_query": m.sample_count // max(m.count, 1),
            "runtime": f"{b.name} {b.version}",
            "device": b.device,
            "unit": "seconds per query",
        },
        "options": {
            "disable_gc": False,
            "timer": "perf_counter_ns",
            "min_rounds": settings.get("min_query_count"),
            "max_time": max_ms / 1000 if max_ms else None,
            "min_time": (settings.get("min_duration_ms") or 0) / 1000,
            "warmup": bool(settings.get("warmup_queries")),
        },
        "stats": stats,
    }


def to_pytest_benchmark(
    recs: Sequence[tuple[ResultRecord, Sequence[int] | None, str | None]],
    include_data: bool = False,
    include_invalid: bool = False,
) -> Export:
    """A pytest-benchmark JSON document from (record, samples, path) triples."""
    from datetime import timezone

    from pytest_benchmark import __version__ as pb_version
    from pytest_benchmark.utils import get_commit_info

    warnings: list[str] = []
    kept = []
    for r, samples, path in recs:
        where = path or r.cell_id
        if r.metrics is None or r.workload is None or r.backend is None:
            warnings.append(f"{where}: no measurement ({r.validity.reasons[0] if r.validity.reasons else 'failed'}); "
                            "left out")
        elif samples is None or len(samples) == 0:
            warnings.append(f"{where}: no raw samples (run.keep_samples was false); left out")
        elif not r.validity.valid and not include_invalid:
            warnings.append(f"{where}: INVALID ({'; '.join(r.validity.reasons)}); left out "
                            "(--include-invalid to export it, marked valid: false in extra_info)")
        else:
            kept.append((r, samples, path))
    if not kept:
        raise ExportError("nothing to export: " + ("; ".join(warnings) if warnings else "no records given"))
    first = kept[0][0]
    info = machine_info(first)
    from benchkit.results.compare import fingerprint

    others = {fingerprint(r)["cpu"] + f" x{r.system.cpu_count}" for r, _, _ in kept}
    if len(others) > 1:
        warnings.append(f"records come from {len(others)} different systems ({', '.join(sorted(others))}); "
                        f"machine_info describes the first ({first.system.hostname})")
    when = max(r.finished_at for r, _, _ in kept).astimezone(timezone.utc)
    doc = {
        "machine_info": info,
        "commit_info": get_commit_info(first.spec_name),
        "benchmarks": [_entry(r, s, p, include_data) for r, s, p in kept],
        "datetime": when.isoformat(),
        "version": pb_version,
    }
    return Export(doc, tuple(warnings))


def export_pytest_benchmark(paths: Sequence[str | Path], include_data: bool = False,
                            include_invalid: bool = False) -> Export:
    """Read record files (or directories) and build the pytest-benchmark document."""
    from benchkit.results.compare import load_with_samples

    triples = []
    for p in records.find(list(paths)):
        r, arr = load_with_samples(p)
        triples.append((r, None if arr is None else arr.tolist(), str(p)))
    return to_pytest_benchmark(triples, include_data, include_invalid)


def save_to_storage(doc: dict[str, Any], storage: str | Path, name: str) -> Path:
    """Save into a pytest-benchmark storage folder (``<storage>/<machine id>/NNNN_<name>.json``)."""
    from pytest_benchmark.logger import Logger
    from pytest_benchmark.storage.file import FileStorage

    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ExportError(f"--name {name!r}: use letters, digits, '.', '_' and '-' only")
    fs = FileStorage(storage, logger=Logger(Logger.QUIET), default_machine_id=machine_id(doc["machine_info"]))
    before = set(fs.query("[0-9][0-9][0-9][0-9]_*"))
    try:
        fs.save(doc, name)
    except OSError as e:
        # pytest-benchmark writes in place: a full disk leaves a cut-off file, which its readers would choke on.
        from benchkit._fsutil import write_error

        for partial in set(fs.query("[0-9][0-9][0-9][0-9]_*")) - before:
            Path(partial).unlink(missing_ok=True)
        raise write_error(storage, e) from None
    (path,) = set(fs.query("[0-9][0-9][0-9][0-9]_*")) - before
    return Path(path)


__all__ = ["Export", "ExportError", "export_pytest_benchmark", "machine_id", "machine_info", "save_to_storage",
           "to_pytest_benchmark"]
