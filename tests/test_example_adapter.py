"""The plugin path end to end: the example adapter package, pip-installed into a fresh virtual environment
next to benchkit itself, is found through its entry point and runs a spec with that venv's `benchkit`.

The venv reuses this interpreter's numpy/onnx/onnxruntime/pydantic (--system-site-packages) and installs
the two packages with --no-deps --no-build-isolation, so nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "benchkit-adapter-example"


def _run(cmd, **kw):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=240, env=env, **kw)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.mark.slow
def test_example_package_installs_into_a_fresh_venv_and_runs_a_spec(tmp_path):
    pytest.importorskip("hatchling", reason="building benchkit without network needs hatchling: pip install hatchling")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", venv])
    py = venv / "bin" / "python"
    pip = [py, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    _run([*pip, ROOT], cwd=tmp_path)
    _run([*pip, EXAMPLE], cwd=tmp_path)

    where = _run([py, "-c", "import benchkit, benchkit_adapter_example as e; print(benchkit.__file__); print(e.__file__)"],
                 cwd=tmp_path).stdout.split()
    assert all(p.startswith(str(venv)) for p in where), where  # the venv's copies, not a checkout

    listing = _run([venv / "bin" / "benchkit", "backends"], cwd=tmp_path).stdout
    assert "numpy-example" in listing and "benchkit-adapter-example 0.1.0" in listing

    out = tmp_path / "out"
    run = _run([venv / "bin" / "benchkit", "run", EXAMPLE / "spec.yaml", "--out", out, "--cache-dir",
                tmp_path / "cache"], cwd=tmp_path)
    assert "2 record(s)" in run.stdout
    recs = [json.loads(p.read_text()) for p in sorted(out.rglob("*.json"))]
    assert len(recs) == 2
    for r in recs:
        assert r["backend"]["name"] == "numpy-example" and r["backend"]["adapter_version"] == "0.1.0"
        assert r["validity"]["valid"], r["validity"]
        assert r["accuracy"]["passed"] and r["accuracy"]["max_rel_error"] < 1e-4

    # The vendor's own CI: the conformance kit as a pytest plugin, in that venv.
    ci = _run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", EXAMPLE, EXAMPLE / "tests"],
              cwd=tmp_path)
    assert "passed" in ci.stdout and "failed" not in ci.stdout, ci.stdout
