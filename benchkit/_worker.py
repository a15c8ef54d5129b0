"""Worker process entry: ``python -m benchkit._worker CELL.json RESULT.json``.

Runs exactly one cell and writes its record to RESULT.json. Phases are
reported on stdout as ``phase NAME`` lines for the parent's progress display.
The parent turns a crash, a kill or a hang of this process into an error
record, so nothing here needs to survive a vendor runtime's failure.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from .records import write_atomic
    from .runner import Cell, SuiteContext, execute_cell

    payload = json.loads(Path(argv[0]).read_text())
    cell = Cell(**payload["cell"])
    ctx = SuiteContext(**payload["ctx"])

    def progress(_cell_id: str, phase: str) -> None:
        print(f"phase {phase}", flush=True)

    record = execute_cell(cell, ctx, progress)
    write_atomic(Path(argv[1]), record.model_dump_json())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
