"""Progress of a run on stderr: a live bar with i/N and an ETA on a terminal, plain lines when piped, or nothing.

A terminal gets rich's bar (cell, phase, i/N, elapsed, remaining). Piped
(a CI log, ``2>log``), the same facts come as one plain line per finished cell,
``[3/12] cell: VALID (0:01:02 elapsed, ETA 0:03:10) -> path``, and one line
per phase change of a cell that takes longer than a few seconds, so a long
cell is never silent. The ETA is the mean time of the cells finished in this
run times the cells left (cells differ, so it is an estimate, and says so by
being absent until one cell has finished). ``quiet`` prints nothing.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path


def _hms(seconds: float) -> str:
    return str(timedelta(seconds=int(max(0.0, seconds))))


class RunProgress:
    """The run command's progress; use as a context manager around the suite."""

    # Piped: a phase change is printed only once a cell has run this long (short cells stay one line each).
    PHASE_AFTER_S = 5.0

    def __init__(self, con, total: int | None, quiet: bool = False) -> None:
        self.con, self.total, self.quiet = con, total, quiet
        self.live = con.is_terminal and not quiet
        self.done = 0
        self.skipped = 0  # already measured (--resume): not part of this run's pace
        self._t0 = time.monotonic()
        self._cell_t0 = self._t0
        self._cell = ""
        self._bar = self._task = None

    def __enter__(self) -> RunProgress:
        if self.live:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self._bar = Progress(TextColumn("[bold]{task.fields[cell]}"), TextColumn("{task.fields[phase]}"),
                                 BarColumn(), MofNCompleteColumn(), TextColumn("cells"), TimeElapsedColumn(),
                                 TextColumn("ETA"), TimeRemainingColumn(), console=self.con, transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task("suite", total=self.total, cell="", phase="")
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    # ------------------------------------------------------------------ events

    def say(self, line: str) -> None:
        """A line for the reader (escaped: messages may hold brackets)."""
        if self.quiet:
            return
        from benchkit._format import term_text

        if self._bar is not None:
            self._bar.console.print(term_text(line))
        else:  # a log line stays one line, whatever the width
            self.con.print(term_text(line), soft_wrap=True)

    def started(self, already_done: int) -> None:
        self.skipped = self.done = already_done
        if self._bar is not None and self.total is not None:
            self._bar.update(self._task, completed=already_done)

    def phase(self, cell_id: str, phase: str) -> None:
        if cell_id != self._cell:
            self._cell, self._cell_t0 = cell_id, time.monotonic()
        if self._bar is not None:
            self._bar.update(self._task, cell=cell_id, phase=phase)
        elif not self.quiet and time.monotonic() - self._cell_t0 >= self.PHASE_AFTER_S:
            self.con.print(f"{self._position(self.done + 1)} {cell_id}: {phase} "
                           f"({_hms(time.monotonic() - self._cell_t0)} in this cell)", highlight=False, soft_wrap=True)

    def finished(self, rec, path) -> None:
        self.done += 1
        self._cell = ""
        if self._bar is not None:
            self._bar.advance(self._task)
        mark = "VALID" if rec.validity.valid else ("FAILED" if rec.metrics is None else "INVALID")
        elapsed = time.monotonic() - self._t0
        timing = f"{_hms(elapsed)} elapsed"
        ran = self.done - self.skipped
        if self.total is not None and ran > 0 and self.done < self.total:
            timing += f", ETA {_hms(elapsed / ran * (self.total - self.done))}"
        if Path(path).exists():
            self.say(f"{self._position(self.done)} {rec.cell_id}: {mark} ({timing}) -> {path}")
        else:  # the session holds it and writes it again after each cell (benchkit.runner.session.save)
            self.say(f"{self._position(self.done)} {rec.cell_id}: {mark} ({timing}), NOT WRITTEN to {path} (cannot "
                     "write there); kept in memory and tried again after each cell")

    def _position(self, i: int) -> str:
        return f"[{i}/{self.total}]" if self.total is not None else f"[{i}]"
