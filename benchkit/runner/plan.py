"""What a suite runs: its cells (typed, JSON-portable), what they share, and the checks made before any runs.

A :class:`Cell` is one workload x backend x resolved scenario. It travels to a
worker process, a Ray node and a run directory's manifest as JSON
(``model_dump`` / ``model_validate``), and the record's ``spec`` block is
written from it (:meth:`Cell.spec_block`), never read back by hand.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from benchkit.errors import SpecError
from benchkit.results.records import Probe, utcnow
from benchkit.spec import BackendSpec, LoadedSpec, Scenario, WorkloadSpec

Division = Literal["auto", "closed", "open"]
Progress = Callable[[str, str], None]  # (cell_id, phase): what a cell reports as it goes
AdapterFaults = Literal["raise", "record"]  # what preflight does with an adapter that hangs or crashes


class Cell(BaseModel):
    """One workload x backend x scenario combination, fully resolved."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cell_id: str
    workload: WorkloadSpec
    backend: BackendSpec  # device_file, when set, is an absolute path
    scenario: Scenario  # profile defaults filled in, one sweep point
    seed: int
    profile: str
    origin: str  # "spec.yaml: workloads[0] (name)" for error messages
    probe: Probe | None = None  # the step of a --find-peak search this cell is
    # Why preflight found this cell's adapter broken (it hung or crashed starting): the cell is not run, its record
    # is an error naming this. Not part of the cell's JSON: a run resumed once the adapter is fixed is the same run.
    preflight_error: str | None = Field(None, exclude=True)

    @property
    def kind(self) -> str:
        return self.scenario.kind

    @property
    def workload_name(self) -> str:
        return self.workload.name

    @property
    def backend_id(self) -> str:
        return self.backend.id

    def spec_block(self) -> dict:
        """The record's ``spec`` block: the resolved cell as JSON."""
        return {"seed": self.seed, "profile": self.profile,
                "workload": self.workload.model_dump(mode="json"),
                "backend": self.backend.model_dump(mode="json"),
                "scenario": self.scenario.settings()}


@dataclass(frozen=True)
class SuiteContext:
    """What every cell of one suite run shares: the spec's run rules as the suite driver resolved them."""

    run_id: str
    spec_name: str
    spec_sha256: str
    base_dir: str
    keep_samples: bool
    cache_dir: str | None = None
    audit: bool = False  # run the compliance audits (--audit; always under the certify profile)
    accuracy_reference: str = "onnxruntime"  # backend computing the accuracy gate's reference outputs
    accuracy_samples: int | None = None  # pool inputs the accuracy gate compares (None: the whole pool)
    engine: str = "benchkit"  # benchkit | mlperf (benchkit.measure.ENGINES)
    run_dir: str | None = None  # where records go; the mlperf engine keeps LoadGen's logs beside them
    max_memory_bytes: int | None = None  # applied by each worker to itself (run.limits), before any runtime loads
    division: Division = "auto"  # run.division: the division requested for every cell


def new_run_id() -> str:
    return utcnow().strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def expand(
    loaded: LoadedSpec,
    backends: Iterable[str] = (),
    workloads: Iterable[str] = (),
    profile: str | None = None,
    device_file: Path | None = None,
    find_peak: bool = False,
) -> list[Cell]:
    """The suite's cells, in spec order, optionally filtered by backend ids and workload names.

    ``device_file`` (the CLI's ``--device-file``) replaces every backend's descriptor.
    A sweep (``offline.batch_size`` or ``server.target_qps`` given as a list)
    becomes one cell per value, its id suffixed ``-b8`` / ``-q1000``. With
    ``find_peak``, only Server scenarios are kept, one cell each, at the lowest
    listed rate: the starting point of a peak search (:mod:`benchkit.runner.peak`).
    """
    spec = loaded.spec
    src = str(loaded.path) if loaded.path else spec.name
    want_b, want_w = set(backends), set(workloads)
    known_b = {b.id for b in spec.backends}
    known_w = {w.name for w in spec.workloads}
    if want_b - known_b:
        raise SpecError(f"--backend: {', '.join(sorted(want_b - known_b))} not in {src}; backends there: {', '.join(sorted(known_b))}")
    if want_w - known_w:
        raise SpecError(f"--workload: {', '.join(sorted(want_w - known_w))} not in {src}; workloads there: {', '.join(sorted(known_w))}")
    prof = profile or spec.run.profile
    kinds = [s.kind for s in spec.scenarios]
    cells = []
    for wi, w in enumerate(spec.workloads):
        if want_w and w.name not in want_w:
            continue
        for b in spec.backends:
            if want_b and b.id not in want_b:
                continue
            dev = device_file or (loaded.base_dir / b.device_file if b.device_file else None)
            backend = b.model_copy(update={"device_file": Path(dev).resolve() if dev else None})
            for si, s in enumerate(spec.scenarios):
                if find_peak and s.kind != "server":
                    continue
                _check_pairing(w, wi, s, si, src)
                suffix = f"-{si}" if kinds.count(s.kind) > 1 else ""
                points = s.points(prof)
                if find_peak:
                    start = min(s.target_qps) if isinstance(s.target_qps, tuple) else s.target_qps
                    points = [("", s.effective(prof).model_copy(update={"target_qps": start}))]
                for point, scenario in points:
                    cells.append(Cell(
                        cell_id=f"{w.name}__{b.id}__{s.kind}{suffix}{point}",
                        workload=w,
                        backend=backend,
                        scenario=scenario,
                        seed=spec.seed,
                        profile=prof,
                        origin=f"{src}: workloads[{wi}] ({w.name})",
                    ))
    if find_peak and not cells:
        raise SpecError(f"--find-peak: {src} has no server scenario (for the selected workloads and backends) "
                        "to search; add one with kind: server, target_qps (a starting rate) and target_latency_ns")
    return cells


def _check_pairing(w: WorkloadSpec, wi: int, s: Any, si: int, src: str) -> None:
    """A generative scenario runs a generation workload, and a generation workload runs only under one."""
    from benchkit.workloads.generation import MODELS, is_generation_model

    generative = s.kind == "generative"
    if generative != is_generation_model(w.catalog_name):
        if generative:
            raise SpecError(f"{src}: scenarios[{si}] (generative) needs generation workloads ({', '.join(sorted(MODELS))}"
                            f"); workloads[{wi}] ({w.name}) is not one: put it in a spec of its own")
        raise SpecError(f"{src}: workloads[{wi}] ({w.name}) is a generation workload: it runs under kind: generative "
                        f"only, not scenarios[{si}] ({s.kind})")


__all__ = ["Cell", "SuiteContext", "Progress", "AdapterFaults", "new_run_id", "expand"]
