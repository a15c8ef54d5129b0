"""The one suite driver: ``benchkit run``, :func:`benchkit.run` and ``pytest --benchkit`` all go through it.

A spec travels in a straight line::

    spec file -> LoadedSpec -> plan_cells(): cells, checked by preflight()
              -> Suite.open(): the run directory, the session (power, stability, memory limit, repeats),
                 the context every cell shares (audits, accuracy, engine, division ...)
              -> executor(jobs, CellRunner) -> record per cell -> session.finish(record) -> file

:class:`RunOptions` holds every way a caller can change a run (the CLI's
flags, ``benchkit.run()``'s arguments, the pytest plugin's options), and
:meth:`Suite.open` is the only place that turns them and the spec's ``run``
block into the :class:`SuiteContext`, so every spec field has the same effect
through each caller.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchkit.errors import SpecError
from benchkit.measure import ENGINES
from benchkit.results.records import ResultRecord
from benchkit.runner.executors import Executor, Job, LocalExecutor
from benchkit.runner.peak import PeakOptions, PeakResult, run_peak_search
from benchkit.runner.plan import AdapterFaults, Cell, Progress, SuiteContext, expand, new_run_id
from benchkit.runner.preflight import preflight
from benchkit.runner.session import SuiteSession
from benchkit.runner.worker import CellRunner
from benchkit.spec import LoadedSpec


@dataclass(frozen=True)
class RunOptions:
    """How to run a spec: what a caller may change. Unset fields (None) take the spec's ``run`` values."""

    out_dir: Path = Path("results")
    backends: tuple[str, ...] = ()  # only these backend ids (--backend)
    workloads: tuple[str, ...] = ()  # only these workload names (--workload)
    profile: str | None = None  # --profile / --quick
    isolation: str | None = None  # process | inline (--inline)
    audit: bool | None = None  # --audit (the certify profile always audits)
    engine: str = "benchkit"  # benchkit | mlperf (--engine)
    cache_dir: Path | None = None  # built-workload cache (--cache-dir)
    device_file: Path | None = None  # every backend's device descriptor (--device-file)
    find_peak: bool = False  # search each Server scenario's highest VALID rate (--find-peak)
    peak: PeakOptions = field(default_factory=PeakOptions)
    resume: bool | str | Path = False  # complete an earlier run (--resume)
    system_file: Path | None = None  # MLPerf-style system description (--system-file)


@dataclass
class SuiteResult:
    run_id: str
    out_dir: Path
    paths: list[Path]
    records: list[ResultRecord]
    peaks: list[PeakResult] = field(default_factory=list)

    @property
    def all_valid(self) -> bool:
        return all(r.validity.valid for r in self.records)


def plan_cells(loaded: LoadedSpec, options: RunOptions, adapter_faults: AdapterFaults = "raise") -> list[Cell]:
    """The cells ``options`` select from the spec, checked before anything runs (workloads resolve, backends
    import and accept their options, power meters exist). An adapter that hangs or crashes while starting is a
    SpecError, or with ``adapter_faults="record"`` marks its cells, which the suite records as errors without
    running them (see :func:`benchkit.runner.preflight.preflight`)."""
    if options.engine not in ENGINES:
        raise SpecError(f"--engine must be one of {', '.join(ENGINES)}, got {options.engine!r}")
    if (options.isolation or loaded.spec.run.isolation) != "inline":
        from benchkit.runner import forkserver

        forkserver.prewarm()  # its preload overlaps the planning and preflight below
    cells = expand(loaded, options.backends, options.workloads, options.profile, options.device_file,
                   find_peak=options.find_peak)
    return preflight(loaded, cells, options.cache_dir, adapter_faults)


class Suite:
    """One open suite run. Use as a context manager: meters, NVML and the run lock are released on exit.

    :meth:`run` runs every pending job through the executor; :meth:`run_cell` runs one cell to the end (the
    pytest plugin runs its items so, and a peak search its probes). Either way each record passes through
    the session (system, power, stability, repeat) and is written before the next cell starts."""

    def __init__(self, loaded: LoadedSpec, cells: list[Cell], options: RunOptions, session: SuiteSession,
                 executor: Executor) -> None:
        spec = loaded.spec
        self.loaded, self.cells, self.options, self.session, self.executor = loaded, cells, options, session, executor
        self.ctx = SuiteContext(
            run_id=session.run_id,
            spec_name=spec.name,
            spec_sha256=loaded.sha256,
            base_dir=str(loaded.base_dir),
            keep_samples=spec.run.keep_samples,
            cache_dir=str(options.cache_dir) if options.cache_dir else None,
            audit=spec.run.audit if options.audit is None else options.audit,
            accuracy_reference=spec.run.accuracy_reference,
            accuracy_samples=spec.run.accuracy_samples,
            engine=options.engine,
            run_dir=str(session.run_dir),
            max_memory_bytes=session.max_memory_bytes,
            division=spec.run.division,
        )
        broken = tuple(sorted({(c.backend_id, c.preflight_error) for c in cells if c.preflight_error}))
        self.work = CellRunner(self.ctx, options.isolation or spec.run.isolation, spec.run.cell_timeout_s, broken)
        self._watches: dict[str, Any] = {}

    @classmethod
    def open(cls, loaded: LoadedSpec, cells: list[Cell], options: RunOptions,
             executor: Executor | None = None) -> Suite:
        """Open the run directory (new, or the run ``options.resume`` names) and the session around it."""
        if options.engine == "mlperf":
            from benchkit.measure.loadgen import require_loadgen

            require_loadgen()
        spec = loaded.spec
        if options.find_peak and (options.resume or spec.run.repeats > 1):
            # Each probe's rate depends on the verdicts before it: a search is neither resumable nor repeatable.
            raise SpecError("--find-peak runs each probe once, in a new run: it cannot be combined with --resume or "
                            f"run.repeats > 1 (the spec has repeats: {spec.run.repeats})")
        session = SuiteSession.open(loaded, Path(options.out_dir), cells, resume=options.resume,
                                    system_file=options.system_file, new_run_id=new_run_id)
        return cls(loaded, cells, options, session, executor or LocalExecutor())

    def __enter__(self) -> Suite:
        self.session.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    @property
    def run_id(self) -> str:
        return self.session.run_id

    @property
    def run_dir(self) -> Path:
        return self.session.run_dir

    @property
    def pending(self) -> list[tuple[Cell, int]]:
        return self.session.pending

    # ------------------------------------------------------------------ running

    def _progress_for(self, progress: Progress | None) -> Callable[[Job], Progress]:
        def progress_for(job: Job) -> Progress:
            # An executor running cells elsewhere gets a watch that meters nothing on this machine.
            watch = self._watches[job.key] = self.session.watch(job.cell, job.repeat, progress,
                                                                local=self.executor.local)
            return watch.progress
        return progress_for

    def _emit(self, progress: Progress | None, on_record: Callable[[ResultRecord, Path], None] | None,
              got: list[tuple[ResultRecord, Path]] | None = None) -> Callable[[Job, ResultRecord], None]:
        def emit(job: Job, rec: ResultRecord) -> None:
            watch = self._watches.pop(job.key, None) or self.session.watch(job.cell, job.repeat, progress,
                                                                            local=self.executor.local)
            rec, path = self.session.save(watch.finish(rec), job.cell, job.repeat)
            if got is not None:
                got.append((rec, path))
            if on_record:
                on_record(rec, path)
        return emit

    def run(self, progress: Progress | None = None,
            on_record: Callable[[ResultRecord, Path], None] | None = None,
            notice: Callable[[str], None] | None = None) -> SuiteResult:
        """Every pending job (cell, repeat), or with ``options.find_peak`` a peak search per cell (its bounds
        told to ``notice`` before it starts)."""
        if self.work.isolation != "inline" and self.executor.local:
            from benchkit.runner import forkserver

            forkserver.settle()  # a zygote still importing would disturb the idle power baseline
        self.session.measure_idle()
        peaks = []
        if not self.options.find_peak:
            self.executor.run([Job(cell, repeat) for cell, repeat in self.pending], self.work,
                              progress_for=self._progress_for(progress), emit=self._emit(progress, on_record))
            self.finish()
        else:
            def probe(cell: Cell) -> ResultRecord:
                return self.run_cell(cell, progress=progress, on_record=on_record)[0]
            peaks = [run_peak_search(cell, self.options.peak, probe, notice) for cell in self.cells]
            self.session.flush_held()
        return self.result(peaks)

    def run_cell(self, cell: Cell, repeat: int = 1, progress: Progress | None = None,
                 on_record: Callable[[ResultRecord, Path], None] | None = None) -> tuple[ResultRecord, Path]:
        """One job to the end, through the executor and the session: its finished record and where it is."""
        got: list[tuple[ResultRecord, Path]] = []
        self.executor.run([Job(cell, repeat)], self.work, progress_for=self._progress_for(progress),
                          emit=self._emit(progress, on_record, got))
        return got[0]

    def finish(self) -> None:
        """Once every job ran: records a full disk held back written now (or a RunError naming them), then the
        between-session spread of repeated cells, written into their records."""
        self.session.flush_held()
        self.session.finish()

    def result(self, peaks: list[PeakResult] | None = None) -> SuiteResult:
        paths, recs = self.session.all_results()
        return SuiteResult(self.run_id, self.run_dir, paths, recs, peaks or [])


def run_suite(loaded: LoadedSpec, cells: list[Cell], options: RunOptions, *, executor: Executor | None = None,
              progress: Progress | None = None, on_record: Callable[[ResultRecord, Path], None] | None = None,
              on_start: Callable[[Path, int], None] | None = None,
              notice: Callable[[str], None] | None = None) -> SuiteResult:
    """Run ``cells`` (``run.repeats`` times each) and write one record per job under
    ``options.out_dir/<spec name>/<run id>/``.

    Each record is written atomically as soon as its cell finishes, so an interruption keeps everything
    measured before it; ``options.resume`` completes an earlier run (only jobs without a readable record run).
    ``on_start(run_dir, jobs to run)`` is called once the run directory is known; ``on_record(record, path)``
    as each record is written. The result lists every record of the run, resumed ones included.
    """
    with Suite.open(loaded, cells, options, executor) as suite:
        if on_start:
            on_start(suite.run_dir, len(suite.pending))
        return suite.run(progress, on_record, notice)


__all__ = ["RunOptions", "SuiteResult", "Suite", "plan_cells", "run_suite"]
