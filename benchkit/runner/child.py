"""Worker process entry (the child side of :mod:`benchkit.runner.worker`): ``python -m benchkit.runner.child CELL.json RESULT.json``.

Runs exactly one cell and writes its record to RESULT.json. Phases are
reported on stdout as ``phase NAME`` lines for the parent's progress display.
The parent turns a crash, a kill or a hang of this process into an error
record, so nothing here needs to survive a vendor runtime's failure. Before
anything heavy is imported the worker limits its own memory
(``run.max_memory_bytes``) and asks to die with its parent
(:mod:`benchkit.runner.limits`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from benchkit.runner import limits  # stdlib only: the limits are in force before numpy or any runtime is imported

    payload = json.loads(Path(argv[0]).read_text())
    limits.die_with_parent(payload.get("parent_pid"))
    problem = limits.apply_memory_limit(payload["ctx"].get("max_memory_bytes"))
    if problem:
        print(f"benchkit worker: {problem}", file=sys.stderr, flush=True)

    from benchkit.results.records import write_atomic
    from benchkit.runner.cell import execute_cell
    from benchkit.runner.plan import Cell, SuiteContext

    cell = Cell.model_validate(payload["cell"])
    ctx = SuiteContext(**payload["ctx"])

    def progress(_cell_id: str, phase: str) -> None:
        print(f"phase {phase}", flush=True)

    record = execute_cell(cell, ctx, progress)
    write_atomic(Path(argv[1]), record.model_dump_json())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
