"""Records from a real `benchkit run` (ONNX Runtime CPU, worker processes), made once per test session."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SPEC = """\
name: i6-real
seed: 7
description: Two small cells for the tests of the tools that read records.
workloads:
  - name: tiny-add
backends:
  - name: onnxruntime
    options: {providers: [CPUExecutionProvider]}
scenarios:
  - kind: single_stream
    min_duration_ms: 300
    min_query_count: 200
  - kind: offline
    batch_size: 4
    min_duration_ms: 300
run:
  profile: quick
"""


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


@functools.lru_cache(maxsize=1)
def real_run() -> tuple[Path, Path]:
    """(spec file, run directory holding one record per cell). Runs once; removed at exit."""
    tmp = Path(tempfile.mkdtemp(prefix="benchkit-real-run-"))
    atexit.register(shutil.rmtree, tmp, True)
    spec = tmp / "i6-real.yaml"
    spec.write_text(SPEC)
    out = tmp / "results"
    r = subprocess.run([sys.executable, "-m", "benchkit", "run", str(spec), "--out", str(out),
                        "--cache-dir", str(tmp / "cache")],
                       capture_output=True, text=True, env=env(), timeout=300)
    if r.returncode not in (0, 1):
        raise RuntimeError(f"benchkit run failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    runs = sorted((out / "i6-real").iterdir())
    return spec, runs[-1]
