"""Shared fixtures and helpers.

* ``run_cli``: the ``benchkit`` command in this process (``main(argv)``, output captured, the exit code is the
  return value). Use it wherever the subject is what a command does; keep a subprocess where the subject IS the
  process (the console script's exit code, start-up imports, signals, worker isolation).
* Every test runs inside ``_restore_process_state``, so an in-process command cannot leak environment variables,
  the working directory, warning filters or formatter, or logging handlers into the next test.
* ``write_tiny_add`` / ``tiny_model``: the tiny external Add model; ``fake_nvml``: the fake NVML module.
* The fault-injection adapters register through a real entry point (see tests/fakes/).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Output is not a terminal in tests; its width must not depend on the runner (a pytest-xdist worker, a CI log, a
# developer's terminal): the width benchkit uses for a pipe without COLUMNS, set for every test and its children.
# (Tests of COLUMNS itself pass their own.)
os.environ["COLUMNS"] = "160"
FAKES = Path(__file__).resolve().parent / "fakes"
SPECS = ROOT / "specs"


def _load_fake_nvml():
    # by file, not via sys.path: the fakes folder also registers fault-injection adapters
    spec = importlib.util.spec_from_file_location("fake_nvml", FAKES / "fake_nvml.py")
    module = sys.modules.setdefault("fake_nvml", importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    return module


fake_nvml = _load_fake_nvml()  # a stand-in for pynvml: fake_nvml.make([fake_nvml.FakeGpu()])


# --------------------------------------------------------------------------- process state


def _logging_state() -> dict:
    loggers = [logging.root, *(lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger))]
    return {lg: (list(lg.handlers), lg.level, lg.propagate, lg.disabled) for lg in loggers}


@pytest.fixture(autouse=True)
def _restore_process_state():
    """Put back what an in-process command (or the code under test) may change in this interpreter."""
    env, cwd = dict(os.environ), os.getcwd()
    filters, showwarning, formatwarning = list(warnings.filters), warnings.showwarning, warnings.formatwarning
    logs = _logging_state()
    yield
    if os.getcwd() != cwd:
        os.chdir(cwd)
    if dict(os.environ) != env:
        os.environ.clear()
        os.environ.update(env)
    warnings.filters[:] = filters
    warnings.showwarning, warnings.formatwarning = showwarning, formatwarning
    warnings._filters_mutated()  # as warnings.catch_warnings does on exit
    for lg, (handlers, level, propagate, disabled) in logs.items():  # loggers made during the test keep theirs
        for h in lg.handlers[:]:
            if h not in handlers and type(h).__module__ != "_pytest.logging":  # pytest's own come and go per phase
                lg.removeHandler(h)
        lg.level, lg.propagate, lg.disabled = level, propagate, disabled


# --------------------------------------------------------------------------- the command in this process


@dataclass(frozen=True)
class CliResult:
    """What ``benchkit ARGS`` returned and printed; named like subprocess.CompletedProcess's fields."""

    returncode: int
    stdout: str
    stderr: str


def run_cli(*args, cwd: Path | str | None = None, env: dict[str, str] | None = None) -> CliResult:
    """``benchkit ARGS`` in this process: ``benchkit.cli.main``, its output captured, its exit code returned.

    An argparse usage error or ``--help`` ends in SystemExit inside main(); its code is the exit code, exactly
    what the console script returns. Output is not a terminal, as in a pipe: rich folds no lines. cwd, the
    environment variables in ``env`` and the warning formatter main() installs are put back afterwards (also
    usable from module-scoped fixtures, which ``_restore_process_state`` does not wrap). Worker processes write
    nothing to this process's stderr (benchkit.runner.worker keeps their stderr in a file), so the captured
    stderr is all the command printed.
    """
    from benchkit.cli import main

    out, err = io.StringIO(), io.StringIO()
    before, formatwarning = os.getcwd(), warnings.formatwarning
    saved = {k: os.environ.get(k) for k in (env or {})}
    try:
        if cwd is not None:
            os.chdir(cwd)
        os.environ.update(env or {})
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main([str(a) for a in args])
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        os.chdir(before)
        warnings.formatwarning = formatwarning
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return CliResult(rc, out.getvalue(), err.getvalue())


def run_pytest_inprocess(path: Path, *args: str) -> CliResult:
    """pytest ARGS in folder `path`, in this process: a fresh Config that loads the pytest11 entry points, as a new
    pytest process would; its exit code and output.

    Unlike pytester's in-process runs, modules the run imported stay imported (a C extension such as numpy cannot
    be imported twice in one process); only the run's own test modules and conftest are dropped afterwards. Its
    temporary folders live under `path` (the default base would prune this session's).
    """
    out, err = io.StringIO(), io.StringIO()
    ours, before_path, cwd = sys.modules.pop("conftest", None), list(sys.path), os.getcwd()
    try:
        os.chdir(path)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = pytest.main([*args, "--basetemp", str(path / ".basetemp")])
    finally:
        os.chdir(cwd)
        sys.path[:] = before_path
        inner = str(path)
        for name, module in list(sys.modules.items()):
            if str(getattr(module, "__file__", None) or "").startswith(inner):
                del sys.modules[name]
        if ours is not None:
            sys.modules["conftest"] = ours
    return CliResult(int(rc), out.getvalue(), err.getvalue())


# --------------------------------------------------------------------------- models, specs, fakes


def write_tiny_add(path: Path, batch: int | str = "N", width: int = 16, opset: int = 17, ir_version: int = 8) -> Path:
    """An external ONNX file (not from the catalog): y = x + 1 on [batch, width] float32 (``batch`` a number: a
    batch dimension an exporter froze; an older ``opset``/``ir_version``: an older exporter's file)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, width])
    one = numpy_helper.from_array(np.ones((width,), np.float32), "one")
    g = helper.make_graph([helper.make_node("Add", ["x", "one"], ["y"])], "tiny", [x], [y], [one])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir_version
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(path))
    return path


@pytest.fixture
def tiny_model(tmp_path) -> Path:
    """The tiny Add model at tmp_path/models/tiny.onnx."""
    return write_tiny_add(tmp_path / "models" / "tiny.onnx")


@pytest.fixture
def fakes_on_path(monkeypatch):
    """Make the fault-injection adapters discoverable here and in worker processes."""
    monkeypatch.syspath_prepend(str(FAKES))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(FAKES), os.environ.get("PYTHONPATH")])))
    yield


_HASH_BUILDS = """
import hashlib, json, sys
from benchkit.workloads import catalog
for name, params, variant in json.loads(sys.argv[1]):
    print(hashlib.sha256(catalog.serialize(catalog.build(name, params, variant))).hexdigest())
"""


def build_hashes_in_fresh_processes(builds: list[tuple[str, dict | None, str]], timeout: float = 600
                                    ) -> list[list[str]]:
    """SHA-256 of each catalog build (name, params, variant) as two fresh interpreters compute it, side by side
    (each with its own hash seed): [hashes of process 1, hashes of process 2], in the order of `builds`."""
    import json
    import subprocess

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    procs = [subprocess.Popen([sys.executable, "-c", _HASH_BUILDS, json.dumps(builds)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT) for _ in range(2)]
    outs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, err
            outs.append(out.split())
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return outs


def write_spec(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


sys.path.insert(0, str(Path(__file__).resolve().parent))
