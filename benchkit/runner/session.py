"""Everything around the cells of one suite run, in the benchkit process (never in a timed loop).

A :class:`SuiteSession` owns the run directory (new, or reopened by
``--resume``), the worker memory limit, the power meters with their idle
baseline, the stability probe, the system description, and the repetitions.
For each cell it hands out a :class:`CellWatch`, whose ``progress`` callback
sees the worker's phases (relayed from the worker's stdout): it opens the
power window and reads the machine state when the ``measure`` phase starts,
and closes both at the next phase. :meth:`CellWatch.finish` then completes
the cell's record (system, power, stability, repeat, memory-limit cause)
before it is written.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any, Callable

from benchkit.runner import limits, repeats, rundir
from benchkit import power
from benchkit.checks import measurement, provenance
from benchkit.checks.verdict import Finding, amend, findings_of, reason, warning
from benchkit.results import records
from benchkit.machine import stability, description as sysdesc
from benchkit.errors import RunError, SpecError
from benchkit.power.sampler import PowerSampler, WindowFigures
from benchkit.results.records import ResultRecord

Progress = Callable[[str, str], None]

_FEW_READINGS = 5  # a sampled-power window with fewer readings than this is a poor average


class SuiteSession:
    """Open with :meth:`open`; use as a context manager so meters, NVML and the run lock are released."""

    def __init__(self, loaded, run: rundir.RunDir, max_memory_bytes: int | None, system_fields: dict[str, Any],
                 sampler: PowerSampler | None, unavailable: list[str], probe: stability.StabilityProbe | None,
                 power_reason: str | None) -> None:
        self.loaded = loaded
        self.run = run
        self.max_memory_bytes = max_memory_bytes
        self.system_fields = system_fields
        self.sampler = sampler
        self.unavailable = unavailable
        self.probe = probe
        self.power_reason = power_reason
        self.idle: WindowFigures | None = None
        self.results: dict[tuple[str, int], tuple[Path, ResultRecord]] = dict(run.done)
        self.held: dict[tuple[str, int], tuple[Path, ResultRecord]] = {}  # measured, not yet written
        self.write_failure = ""

    # ------------------------------------------------------------------ set-up

    @classmethod
    def open(cls, loaded, out_dir: Path, cells: list, *, resume: bool | str | Path = False,
             system_file: Path | None = None, new_run_id: Callable[[], str], sys_root: Path = Path("/sys"),
             nvml: Any = None) -> SuiteSession:
        rules = loaded.spec.run
        src = str(loaded.path) if loaded.path else loaded.spec.name
        # Inputs are checked before a run directory exists: a typo must not leave an empty run behind.
        user = None
        sf = Path(system_file) if system_file is not None else (
            loaded.base_dir / rules.system_file if rules.system_file is not None else None)
        if sf is not None:
            user = sysdesc.load_system_file(sf, "--system-file" if system_file is not None else f"{src}: run.system_file")
        try:
            power.check(rules.power.meters)
        except power.PowerMeterError as e:
            raise SpecError(f"{src}: run.power.meters: {e}") from None

        if resume:
            run = rundir.reopen(out_dir, loaded.spec.name, loaded.sha256, cells, rules.repeats,
                               None if resume is True else Path(resume))
        else:
            run = rundir.create(out_dir, loaded.spec.name, loaded.sha256, cells, rules.repeats, new_run_id)
        try:
            sampler, unavailable, reason = None, [], None
            meters, unavailable = power.open_meters(rules.power.meters)
            if meters:
                sampler = PowerSampler(meters, rules.power.sample_interval_ms / 1000)
            elif rules.power.meters != "auto" and not rules.power.meters:
                reason = "no power meter configured (run.power.meters: [])"
            else:
                reason = "no power meter can be read here: " + ("; ".join(unavailable) or "none is installed")
            probe = stability.StabilityProbe(sys_root, nvml)
            fields = sysdesc.suite_fields(user, nvml)
        except BaseException:
            run.close()
            raise
        return cls(loaded, run, limits.resolve_memory_limit(rules.max_memory_bytes), fields, sampler, unavailable,
                   probe, reason)

    def __enter__(self) -> SuiteSession:
        if self.sampler is not None:
            self.sampler.start()
        return self

    def measure_idle(self) -> None:
        """The idle baseline (``run.power.idle_ms``), before the first cell; skipped when nothing is left to run."""
        idle_ms = self.loaded.spec.run.power.idle_ms
        if self.sampler is not None and idle_ms and self.pending:
            self.idle = self.sampler.measure_idle(idle_ms / 1000)

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.held:  # interrupted or failed with records still unwritten: a last try, then say what is missing
            self._write_held()
            if self.held:
                print(f"benchkit: error: {len(self.held)} measured record(s) could not be written "
                      f"({self.write_failure}): {', '.join(c for c, _ in self.held)}; `--resume {self.run.path}` "
                      "measures them again", file=sys.stderr)
                self.held.clear()
        if self.sampler is not None:
            self.sampler.close()
            self.sampler = None
        if self.probe is not None:
            self.probe.close()
            self.probe = None
        self.run.close()

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def run_dir(self) -> Path:
        return self.run.path

    @property
    def pending(self) -> list[tuple[Any, int]]:
        return self.run.pending

    # ------------------------------------------------------------------ per cell

    def watch(self, cell, repeat: int, progress: Progress | None = None, local: bool = True) -> CellWatch:
        """The cell's watch; ``local=False`` for a cell that runs on another machine (a Ray node), which
        this machine's meters and state say nothing about."""
        return CellWatch(self, cell, repeat, progress, local)

    def save(self, record: ResultRecord, cell, repeat: int) -> tuple[ResultRecord, Path]:
        """Write the record; one that cannot be written (disk full, ...) is held in memory, never dropped.

        Held records are written again before each later record and at the end (:meth:`flush_held`), so a disk
        that gets space back loses nothing; the cells after a failed write still run."""
        path = self.run.path_for(cell.cell_id, repeat)
        self.results[(cell.cell_id, repeat)] = (path, record)
        self.held[(cell.cell_id, repeat)] = (path, record)
        self._write_held()
        return record, path

    def _write_held(self) -> None:
        for key, (path, rec) in list(self.held.items()):
            try:
                records.save(rec, path)
            except OSError as e:  # WriteError: the message says why; nothing partial was left
                self.write_failure = getattr(e, "reason", None) or str(e)
                return  # the same disk: the rest would fail alike
            del self.held[key]

    def flush_held(self) -> None:
        """Write every held record, or stop with a RunError that names them and says how to complete the run."""
        self._write_held()
        if not self.held:
            return
        cells = ", ".join(f"{c}" + (f" (repeat {r})" if self.run.repeats > 1 else "") for c, r in self.held)
        lost = dict(self.held)
        self.held.clear()  # said here, once: close() has nothing more to report
        for key in lost:
            self.results.pop(key, None)
        raise RunError(f"{len(lost)} measured record(s) could not be written to {self.run.path} "
                       f"({self.write_failure}): {cells}. The run's other records are there; once the cause is "
                       f"fixed, `benchkit run SPEC --resume {self.run.path}` measures the missing cells again")

    def finish(self) -> None:
        """Once every session of a cell has a record, write the between-session spread into each of them."""
        n = self.run.repeats
        if n == 1:
            return
        for cell, _ in self.run.planned[: len(self.run.planned) // n]:
            got = [self.results.get((cell.cell_id, r)) for r in range(1, n + 1)]
            if any(g is None for g in got):
                continue  # interrupted: --resume completes the sessions and the summary
            between = repeats.spread([g[1] for g in got])
            for r, (path, rec) in enumerate(got, start=1):
                rec = repeats.with_repeat(rec, r, n, between)
                records.save(rec, path)
                self.results[(cell.cell_id, r)] = (path, rec)

    def all_results(self) -> tuple[list[Path], list[ResultRecord]]:
        """Every record of the run so far (resumed ones included): planned cells in plan order, then any others
        (peak-search probes) in the order they were measured."""
        planned = [(c.cell_id, r) for c, r in self.run.planned]
        keys = [k for k in planned if k in self.results]
        seen = set(planned)
        keys += [k for k in self.results if k not in seen]
        got = [self.results[k] for k in keys]
        return [p for p, _ in got], [rec for _, rec in got]

    # ------------------------------------------------------------------ record blocks

    def power_block(self, window: WindowFigures | None, metrics: records.Metrics) -> tuple[records.Power, list[str]]:
        """The record's power block, and warnings about it."""
        if self.sampler is None:
            return records.Power(available=False, reason=self.power_reason, unavailable=self.unavailable), []
        failed = window.failed if window else self.sampler.failed
        if window is None or not window.domains:
            why = "no meter gave two readings in the measured window"
            return records.Power(available=False, reason=why + (f" ({'; '.join(failed)})" if failed else ""),
                                 unavailable=self.unavailable + failed), []
        idle = {(d.meter_index, d.domain): d.avg_power_w for d in (self.idle.domains if self.idle else [])}
        domains, warnings = [], []
        for d in window.domains:
            domains.append(records.PowerDomain(meter=d.meter, domain=d.domain, read_as=d.read_as,
                                               avg_power_w=d.avg_power_w,
                                               idle_power_w=idle.get((d.meter_index, d.domain)),
                                               readings=d.readings))
            if d.read_as == "power_w" and d.readings < _FEW_READINGS:
                warnings.append(f"power: {d.meter}/{d.domain} was read only {d.readings} times in the measured "
                                "window; its average is rough (lengthen min_duration_ms)")
        if self.unavailable or failed:
            warnings.append(f"power: figures cover {', '.join(f'{d.meter}/{d.domain}' for d in window.domains)} "
                            f"only; not measured: {'; '.join(self.unavailable + failed)}")
        avg = window.avg_power_w
        keys = [(d.meter_index, d.domain) for d in window.domains]
        idle_total = sum(idle[k] for k in keys) if idle and all(k in idle for k in keys) else None
        energy = avg * metrics.duration_ns / 1e9
        return records.Power(
            available=True,
            window_ns=window.duration_ns,
            avg_power_w=avg,
            idle_power_w=idle_total,
            energy_j=energy,
            energy_per_inference_j=energy / metrics.sample_count if metrics.sample_count else None,
            samples_per_s_per_w=metrics.throughput_per_s / avg if avg > 0 else None,
            domains=domains,
            unavailable=self.unavailable + failed,
        ), warnings


class CellWatch:
    """Brackets one cell's measured run: power window and machine state, opened and closed on phase changes."""

    def __init__(self, session: SuiteSession, cell, repeat: int, progress: Progress | None,
                 local: bool = True) -> None:
        self.session, self.cell, self.repeat, self._user, self.local = session, cell, repeat, progress, local
        self._lock = threading.Lock()  # phases arrive on the worker-output reader thread
        self._state = "before"
        self.window: WindowFigures | None = None
        self.before: dict[str, Any] | None = None
        self.after: dict[str, Any] | None = None
        self.unreadable: list[str] = []

    def progress(self, cell_id: str, phase: str) -> None:
        with self._lock:
            if not self.local:  # a cell on another machine: nothing here to open or close
                pass
            elif phase == "measure" and self._state == "before":
                if self.session.probe is not None:
                    self.before, self.unreadable = self.session.probe.read()
                if self.session.sampler is not None:
                    self.session.sampler.begin()
                self._state = "measuring"
            elif phase != "measure" and self._state == "measuring":
                self._close()
        if self._user:
            self._user(cell_id, phase)

    def _close(self) -> None:
        if self.session.sampler is not None:
            self.window = self.session.sampler.end()
        if self.session.probe is not None:
            self.after, more = self.session.probe.read()
            self.unreadable = sorted(set(self.unreadable) | set(more))
        self._state = "after"

    def finish(self, rec: ResultRecord) -> ResultRecord:
        """The record with this session's blocks added and their findings in its verdict (machine-state
        flags are reasons under the certify profile: ``checks.measurement.machine_state``)."""
        with self._lock:
            measured_whole = self._state == "after"
            if self._state == "measuring":
                self._close()  # the cell died while measuring: close the window, its figures are not used
        s = self.session
        updates: dict[str, Any] = {}
        fields = s.system_fields if self.local else {k: v for k, v in s.system_fields.items() if k != "accelerators"}
        system = {**rec.system.model_dump(), **fields}  # a remote record keeps its node's own accelerators
        if not system.get("accelerators"):
            # What the machine shows (probed here; a remote node's record brings its own), then the adapter's
            # device marked as its claim, observed or not: an adapter's word is never listed as a fact.
            probed = provenance.probe_accelerators() if self.local else []
            system["accelerators"] = provenance.accelerators_with_claims(probed, rec.backend)
        updates["system"] = records.SystemRecord(**system)
        found: list[Finding] = []
        redo: list[str] = []  # checks whose findings this session re-judges
        error = rec.error

        if (error is not None and s.max_memory_bytes and error.type != "MemoryLimit"  # said so already
                and limits.looks_like_oom(f"{error.message}\n{error.detail}")):
            # The cell's error, said as what it was: the worker ran out of the memory the spec gave it.
            message = limits.memory_limit_message(s.max_memory_bytes, error.message)
            found += [reason("error", f.message.replace(error.message, message))
                      for f in findings_of(rec.validity) if f.check == "error"]
            redo.append("error")
            updates["error"] = error.model_copy(update={"message": message})

        if rec.metrics is not None and not self.local:
            elsewhere = "the cell ran on another machine (a Ray node), "
            updates["power"] = records.Power(available=False,
                                             reason=elsewhere + "and power is metered on the submitting machine only")
            updates["stability"] = records.Stability(
                unreadable=[elsewhere + "and machine state is read on the submitting machine only"])
        elif rec.metrics is not None:
            block, power_warnings = s.power_block(self.window if measured_whole else None, rec.metrics)
            updates["power"] = block
            found += [warning("power", w) for w in power_warnings]
            flags = stability.compare(self.before or {}, self.after or {}) if measured_whole else []
            updates["stability"] = records.Stability(before=self.before or {}, after=self.after or {}, flags=flags,
                                                     unreadable=self.unreadable)
            found += measurement.machine_state(flags, self.cell.profile)
        if s.run.repeats > 1:
            updates["repeat"] = records.RepeatInfo(index=self.repeat, count=s.run.repeats)
        updates["validity"] = amend(rec.validity, found, drop=redo)
        return rec.model_copy(update=updates)
