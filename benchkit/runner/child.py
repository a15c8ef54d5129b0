"""Worker process entry (the child side of :mod:`benchkit.runner.worker`): ``python -m benchkit.runner.child CELL.json RESULT.json``.

Runs exactly one cell and writes its record to RESULT.json (or, for a payload
naming an ``adapter``, checks that adapter: :mod:`benchkit.runner.probe`). A worker forked
from the zygote (:mod:`benchkit.runner.forkserver`) runs the same
:func:`main`, with the imports below already done. Phases are
reported on stdout as ``phase NAME`` lines for the parent's progress display.
The parent turns a crash, a kill or a hang of this process into an error
record, so nothing here needs to survive a vendor runtime's failure. Before
any runtime is imported the worker limits its own memory
(``run.max_memory_bytes``), joins its cgroup or becomes a subreaper
(:mod:`benchkit.runner.confine`) and asks to die with its parent, the zygote or
benchkit (:mod:`benchkit.runner.limits`).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    # stdlib only: the limits are in force before any runtime is imported (and, in a fresh interpreter, numpy)
    from benchkit.runner import limits

    payload = json.loads(Path(argv[0]).read_text())
    limits.confine_self((payload.get("confine") or {}).get("cgroup"))
    limits.die_with_parent(payload.get("parent_pid"))
    if "adapter" in payload:  # a check of an adapter (benchkit.runner.adapters), not a cell
        from benchkit.runner.probe import check_here

        _hand_over(Path(argv[1]), json.dumps(check_here(payload["adapter"])))
        return 0
    problem = limits.apply_memory_limit(payload["ctx"].get("max_memory_bytes"))
    if problem:
        print(f"benchkit worker: {problem}", file=sys.stderr, flush=True)

    from benchkit.runner.cell import execute_cell
    from benchkit.runner.plan import Cell, SuiteContext

    cell = Cell.model_validate(payload["cell"])
    ctx = SuiteContext(**payload["ctx"])

    def progress(_cell_id: str, phase: str) -> None:
        print(f"phase {phase}", flush=True)

    record = execute_cell(cell, ctx, progress)
    _hand_over(Path(argv[1]), record.model_dump_json())
    return 0


def _hand_over(result: Path, text: str) -> None:
    # A hand-over to the parent in its private temporary folder, deleted a moment later: renamed into place so
    # that it is whole when it exists, but not fsynced (the parent writes the record that is kept, durably).
    partial = result.with_name(result.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, result)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
