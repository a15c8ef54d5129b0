"""Conformance kit: the checks a backend adapter must pass before its numbers mean anything.

Three ways to run it, all the same checks:

* command line: ``benchkit check-adapter NAME [--options JSON] [--precision P]``
* Python: ``benchkit.conformance.kit.check_adapter("myvendor", {"device": "npu0"})`` returns a
  :class:`ConformanceReport`
* pytest, in the vendor's own CI::

      # conftest.py
      pytest_plugins = ["benchkit.conformance.kit"]

      # test_conformance.py
      from benchkit.conformance import conformance_tests
      test_benchkit_conformance = conformance_tests("myvendor", {"device": "npu0"})

  gives one test per check (``registry``, ``options``, ``workload[gemm]``, ...),
  each failing with the check's figures. The plugin also provides the
  ``benchkit_conformance`` fixture: ``benchkit_conformance("myvendor")`` returns
  the report.

The checks:

``registry``            the adapter imports through the ``benchkit.backends`` entry point, its class
                        ``name`` equals the entry-point name, ``describe_installation()`` answers
                        without loading a model
``options``             the options given are accepted, and an unknown option is rejected with a
                        BackendError (a typo must not be silently ignored)
``workload[NAME]``      for each standard micro-workload (small params): load, ``info()`` fields
                        (name, version, device, precision, JSON-serialisable options), the claimed
                        precision honoured (``info().precision`` equals it), outputs of the right
                        count, shapes and dtypes within the precision's tolerance of the reference
                        backend, the same again after un-fetched calls (no stale buffers), and
                        repeatable. A workload the adapter rejects with a BackendError at load is
                        *skipped* as unsupported, not failed
``coverage``            at least one micro-workload ran
``precision[P]``        for each extra ``--precision``: gemm claimed at P reports P and meets P's tolerance
``load-close``          ``cycles`` rounds of construct, load, run, fetch, close: none fails, and the
                        process's resident memory grows by at most ``rss_growth_limit_mib``
``unsupported-operator`` a graph with an operator of an unknown domain fails with a BackendError
                        (at load or at the first run) whose message names the operator

Adapters that declare ``computes_outputs = False`` (the ``null`` backend,
which measures the harness) are exempt from the output comparisons, the
precision checks and the unsupported-operator check; those are reported as
skipped with that reason.

The reference is ONNX Runtime on the CPU at fp32, except when the adapter
under test is ``onnxruntime`` itself, which is judged against
``onnx-reference``.
"""

from __future__ import annotations

import gc
import json
import os
import tempfile
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

MICRO_WORKLOADS: dict[str, dict[str, Any]] = {
    "tiny-add": {"params": {}, "dims": {}},
    "gemm": {"params": {"m": 32, "n": 64, "k": 64}, "dims": {}},
    "mlp": {"params": {"in_features": 64, "hidden": [64, 32], "out_features": 10}, "dims": {}},
    "conv2d": {"params": {"in_channels": 8, "out_channels": 16, "height": 16, "width": 16}, "dims": {}},
    "attention": {"params": {"hidden": 64, "heads": 4}, "dims": {"seq": 16}},
    "layernorm": {"params": {"hidden": 64}, "dims": {"seq": 16}},
    "softmax": {"params": {"rows": 8, "cols": 64}, "dims": {}},
}
"""The standard micro-workloads the kit runs, with small parameters (seconds on any device)."""

UNSUPPORTED_DOMAIN = "com.benchkit.conformance"
UNSUPPORTED_OP = "Unobtainium"
_PRECISIONS = ("fp32", "fp16", "bf16", "int8", "mixed")
_SAMPLES = 3
_SEED = 20240601

Status = Literal["passed", "failed", "skipped"]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: status, a one-line detail, and the figures it rests on."""

    name: str
    status: Status
    detail: str = ""
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ConformanceReport:
    adapter: str
    options: dict[str, Any]
    results: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        """True when no check failed (skipped checks do not fail a report)."""
        return all(r.status != "failed" for r in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == "failed"]

    def summary(self) -> str:
        lines = [f"benchkit conformance of {self.adapter!r}: {'PASSED' if self.passed else 'FAILED'}"]
        for r in self.results:
            lines.append(f"  {r.status.upper():7s} {r.name}: {r.detail}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"adapter": self.adapter, "options": self.options, "passed": self.passed,
                "results": [r.__dict__ for r in self.results]}


def check_names(precisions: Sequence[str] = (), workloads: Sequence[str] | None = None) -> list[str]:
    """Names of the checks :func:`check_adapter` runs, in order (stable: pytest ids are built from them)."""
    wls = list(workloads) if workloads is not None else list(MICRO_WORKLOADS)
    return (["registry", "options"] + [f"workload[{w}]" for w in wls] + ["coverage"]
            + [f"precision[{p}]" for p in precisions] + ["load-close", "unsupported-operator"])


class _Failed(Exception):
    def __init__(self, detail: str, figures: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail, self.figures = detail, figures or {}


class _Skipped(Exception):
    pass


def check_adapter(
    name: str,
    options: Mapping[str, Any] | None = None,
    *,
    precision: str = "fp32",
    precisions: Sequence[str] = (),
    workloads: Sequence[str] | None = None,
    cycles: int = 20,
    rss_growth_limit_mib: float = 64.0,
    only: Sequence[str] | None = None,
    cache_dir: Path | None = None,
    progress: Callable[[CheckResult], None] | None = None,
) -> ConformanceReport:
    """Run the conformance checks on the adapter registered as `name` with `options`.

    ``precision`` is what the micro-workload runs claim (the adapter must report
    it); ``precisions`` adds one ``precision[P]`` check each. ``only`` restricts
    the run to those check names (see :func:`check_names`). Raises
    :class:`benchkit.errors.BackendError` if no adapter of that name is registered,
    and :class:`~benchkit.errors.BackendUnavailable` if its runtime or device is missing.
    """
    from benchkit.backends.registry import names as registered
    from benchkit.errors import BackendError

    if name not in registered():
        raise BackendError(f"no backend {name!r} is registered in the benchkit.backends entry-point group; "
                           f"installed: {', '.join(registered()) or 'none'}")
    for p in (precision, *precisions):
        if p not in _PRECISIONS:
            raise BackendError(f"precision: {p!r} is not one of {', '.join(_PRECISIONS)}")
    wls = list(workloads) if workloads is not None else list(MICRO_WORKLOADS)
    unknown = [w for w in wls if w not in MICRO_WORKLOADS]
    if unknown:
        raise BackendError(f"workloads: {', '.join(unknown)} not among the micro-workloads "
                           f"{', '.join(MICRO_WORKLOADS)}")
    from benchkit.backends.registry import load_backend_class
    from benchkit.errors import BackendUnavailable

    try:  # a runtime or device that is not there is not a conformance finding: say so and stop
        load_backend_class(name)(dict(options or {})).close()
    except BackendUnavailable:
        raise
    except Exception:  # noqa: BLE001 - other failures are findings, reported by the options check
        pass
    kit = _Kit(name, dict(options or {}), precision, cache_dir)
    plan: list[tuple[str, Callable[[], CheckResult | str]]] = [
        ("registry", kit.registry),
        ("options", kit.options),
        *[(f"workload[{w}]", (lambda w=w: kit.workload(w))) for w in wls],
        ("coverage", kit.coverage),
        *[(f"precision[{p}]", (lambda p=p: kit.precision_check(p))) for p in precisions],
        ("load-close", lambda: kit.load_close(cycles, rss_growth_limit_mib)),
        ("unsupported-operator", kit.unsupported_operator),
    ]
    results = []
    for check, fn in plan:
        if only is not None and check not in only:
            continue
        results.append(kit.run(check, fn))
        if progress:
            progress(results[-1])
    return ConformanceReport(name, dict(options or {}), tuple(results))


class _Kit:
    def __init__(self, name: str, options: dict[str, Any], precision: str, cache_dir: Path | None) -> None:
        self.name, self.opts, self.precision = name, options, precision
        self.cache_dir = cache_dir
        self.ran: list[str] = []  # workloads that ran
        self._cls = None

    # -- plumbing

    def run(self, check: str, fn: Callable[[], Any]) -> CheckResult:
        try:
            out = fn()
        except _Failed as f:
            return CheckResult(check, "failed", f.detail, f.figures)
        except _Skipped as s:
            return CheckResult(check, "skipped", str(s))
        except Exception as e:  # noqa: BLE001 - any other exception is a finding about the adapter
            tb = traceback.format_exc(limit=4).strip().splitlines()
            return CheckResult(check, "failed", f"{type(e).__name__}: {e}", {"traceback": tb[-6:]})
        if isinstance(out, CheckResult):
            return out
        return CheckResult(check, "passed", str(out or "ok"))

    def cls(self):
        if self._cls is None:
            from benchkit.backends.registry import load_backend_class

            self._cls = load_backend_class(self.name)
        return self._cls

    @property
    def computes(self) -> bool:
        return bool(getattr(self.cls(), "computes_outputs", True))

    def resolve(self, workload: str, variant: str = "fp32"):
        from benchkit.spec import WorkloadSpec
        from benchkit.workloads import resolve

        spec = MICRO_WORKLOADS[workload]
        ws = WorkloadSpec(name=workload, params=spec["params"], dims=spec["dims"], variant=variant)
        return resolve(ws, Path("."), f"conformance: {workload}", self.cache_dir)

    def winfo(self, wl, claimed: str):
        from benchkit.backends.base import WorkloadInfo

        shapes, batch = wl.call_shapes(1)
        return WorkloadInfo(name=wl.name, inputs=shapes, input_dtypes={i.name: i.dtype for i in wl.inputs},
                            output_names=wl.output_names, batch_size=batch,
                            extra={"graph_precision": wl.graph_precision, "source": wl.source, "catalog": wl.catalog,
                                   "claimed_precision": claimed, "scenario": "single_stream"})

    def reference(self) -> str:
        return "onnx-reference" if self.name == "onnxruntime" else "onnxruntime"

    # -- checks

    def registry(self) -> str:
        from benchkit.backends.registry import names

        cls = self.cls()
        if cls.name != self.name:
            raise _Failed(f"class {cls.__qualname__}.name is {cls.name!r}, but it is registered as {self.name!r}; "
                          "records would carry the wrong backend name")
        details = cls.describe_installation()
        if not isinstance(details, dict):
            raise _Failed(f"describe_installation() returned {type(details).__name__}, expected a dict")
        _json(details, "describe_installation()")
        assert self.name in names()
        return f"{cls.__module__}:{cls.__qualname__}, {details.get('version', 'no version')!s}"

    def options(self) -> str:
        from benchkit.errors import BackendError, BenchkitError

        cls = self.cls()
        try:
            cls(self.opts).close()
        except BenchkitError as e:
            raise _Failed(f"the options given were rejected: {e}") from None
        bad = {**self.opts, "no_such_option_xyz": 1}
        try:
            b = cls(bad)
        except BackendError as e:
            return f"unknown option rejected: {e}"
        except Exception as e:  # noqa: BLE001
            raise _Failed(f"an unknown option raised {type(e).__name__} ({e}), expected a BackendError") from None
        b.close()
        raise _Failed("an unknown option (no_such_option_xyz) was accepted silently; validate options in __init__ "
                      "and raise BackendError naming the bad one")

    def _load(self, wl, claimed: str):
        from benchkit.errors import BackendError

        backend = self.cls()(self.opts)
        try:
            backend.load(wl.path, self.winfo(wl, claimed))
        except BackendError as e:
            backend.close()
            raise _Skipped(f"unsupported by this adapter (BackendError at load: {e})") from None
        except BaseException:
            backend.close()
            raise
        return backend

    def _info(self, backend, claimed: str, graph: str) -> dict[str, Any]:
        info = backend.info()
        problems = []
        if info.name != self.name:
            problems.append(f"info().name {info.name!r} != {self.name!r}")
        for f in ("version", "device", "precision", "adapter"):
            if not str(getattr(info, f) or "").strip():
                problems.append(f"info().{f} is empty")
        if info.precision not in _PRECISIONS:
            problems.append(f"info().precision {info.precision!r} is not one of {', '.join(_PRECISIONS)}")
        try:
            _json(info.options, "info().options")
        except _Failed as e:
            problems.append(e.detail)
        if problems:
            raise _Failed("; ".join(problems))
        expected = claimed if graph == "fp32" else graph
        if self.computes and info.precision != expected:
            raise _Failed(f"precision not honoured: claimed {claimed}, the adapter reports {info.precision} "
                          f"(graph {graph})", {"claimed": claimed, "effective": info.precision})
        return info.model_dump()

    def workload(self, workload: str) -> CheckResult:
        from benchkit.checks import accuracy

        wl = self.resolve(workload)
        feeds, _ = wl.make_feeds(1, _SAMPLES, _SEED)
        backend = self._load(wl, self.precision)
        try:
            info = self._info(backend, self.precision, wl.graph_precision)
            staged = [backend.stage(f) for f in feeds]
            outs = [accuracy.run_outputs(backend, s) for s in staged]
            for o in outs:
                if not all(hasattr(a, "dtype") and hasattr(a, "shape") for a in o):
                    raise _Failed("fetch() must return a list of numpy arrays")
            if not self.computes:
                self.ran.append(workload)
                return CheckResult(f"workload[{workload}]", "passed",
                                   f"protocol and info() ok; outputs not compared ({self.name} declares "
                                   "computes_outputs = False)", {"precision": info["precision"]})
            refs, desc, _ = accuracy.reference_outputs(wl, feeds, self.reference(), _SEED, self.cache_dir)
            prec, tol = accuracy.tolerance_for(self.precision, self.precision, False)
            _check_structure(outs[0], refs[0], wl.output_names)
            per, failures = accuracy.compare_outputs(outs, refs, wl.output_names, tol)
            figures = {"reference": desc, "precision": info["precision"],
                       "max_abs_error": max(o.max_abs_error or 0.0 for o in per),
                       "max_rel_error": max(o.max_rel_error or 0.0 for o in per)}
            if failures:
                raise _Failed(f"outputs differ from {desc}: " + "; ".join(failures), figures)
            # Un-fetched calls in between (as in the timed loop), then one fetched: must still be right.
            for s in staged[1:] + staged[1:]:
                backend.run(s)
                backend.synchronize()
            again = accuracy.run_outputs(backend, staged[0])
            _, failures = accuracy.compare_outputs([again], [refs[0]], wl.output_names, tol)
            if failures:
                raise _Failed("after calls whose results were not fetched, a fetched call's outputs are wrong "
                              "(stale or skipped work): " + "; ".join(failures), figures)
            self.ran.append(workload)
            return CheckResult(f"workload[{workload}]", "passed",
                               f"{info['precision']}, max rel error {figures['max_rel_error']:.2g} "
                               f"(tolerance {tol.rel:g}) vs {desc}", figures)
        finally:
            backend.close()

    def coverage(self) -> str:
        if not self.ran:
            raise _Failed("no micro-workload ran: the adapter rejected every one (see the skipped checks)")
        return f"{len(self.ran)} micro-workload(s) ran: {', '.join(self.ran)}"

    def precision_check(self, precision: str) -> CheckResult:
        from benchkit.checks import accuracy

        if not self.computes:
            raise _Skipped(f"{self.name} declares computes_outputs = False")
        wl = self.resolve("gemm")
        feeds, _ = wl.make_feeds(1, _SAMPLES, _SEED)
        backend = self._load(wl, precision)
        try:
            self._info(backend, precision, wl.graph_precision)
            outs = [accuracy.run_outputs(backend, backend.stage(f)) for f in feeds]
        finally:
            backend.close()
        refs, desc, _ = accuracy.reference_outputs(wl, feeds, self.reference(), _SEED, self.cache_dir)
        _, tol = accuracy.tolerance_for(precision, precision, False)
        per, failures = accuracy.compare_outputs(outs, refs, wl.output_names, tol)
        rel = max(o.max_rel_error or 0.0 for o in per)
        if failures:
            raise _Failed(f"claimed {precision}: outputs beyond {precision} tolerance: " + "; ".join(failures),
                          {"max_rel_error": rel})
        return CheckResult(f"precision[{precision}]", "passed",
                           f"reports {precision}; max rel error {rel:.2g} (tolerance {tol.rel:g})",
                           {"max_rel_error": rel})

    def load_close(self, cycles: int, limit_mib: float) -> CheckResult:
        from benchkit.checks import accuracy

        wl = self.resolve((self.ran or list(MICRO_WORKLOADS))[0])
        feeds, _ = wl.make_feeds(1, 1, _SEED)
        rss: list[int] = []
        warm = min(3, max(1, cycles // 4))  # allocator pools and lazy imports settle in the first rounds
        for i in range(cycles):
            backend = self._load(wl, self.precision)
            try:
                accuracy.run_outputs(backend, backend.stage(feeds[0]))
            finally:
                backend.close()
            del backend
            gc.collect()
            r = _rss_bytes()
            if r is not None:
                rss.append(r)
        if len(rss) < cycles:
            return CheckResult("load-close", "passed",
                               f"{cycles} cycles on {wl.name} without error (resident memory not readable here)")
        growth = (rss[-1] - rss[warm - 1]) / 2**20
        figures = {"cycles": cycles, "workload": wl.name, "rss_after_warmup_mib": round(rss[warm - 1] / 2**20, 1),
                   "rss_final_mib": round(rss[-1] / 2**20, 1), "growth_mib": round(growth, 2),
                   "limit_mib": limit_mib}
        if growth > limit_mib:
            raise _Failed(f"resident memory grew {growth:.1f} MiB over {cycles - warm} load/close cycles "
                          f"(limit {limit_mib:g} MiB): close() does not release the model", figures)
        return CheckResult("load-close", "passed",
                           f"{cycles} cycles on {wl.name}; resident memory {growth:+.1f} MiB after warm-up "
                           f"(limit {limit_mib:g})", figures)

    def unsupported_operator(self) -> str:
        from benchkit.checks import accuracy
        from benchkit.errors import BackendError

        if not self.computes:
            raise _Skipped(f"{self.name} declares computes_outputs = False: it never interprets the graph")
        with tempfile.TemporaryDirectory(prefix="benchkit-conformance-") as tmp:
            path = unsupported_model(Path(tmp) / "unsupported.onnx")
            from benchkit.backends.base import WorkloadInfo
            import numpy as np

            winfo = WorkloadInfo(name="unsupported-operator", inputs={"x": (1, 4)},
                                 input_dtypes={"x": np.dtype(np.float32)}, output_names=("y",), batch_size=1,
                                 extra={"graph_precision": "fp32", "claimed_precision": "fp32", "source": "file",
                                        "catalog": None, "scenario": "single_stream"})
            backend = self.cls()(self.opts)
            try:
                try:
                    backend.load(path, winfo)
                    accuracy.run_outputs(backend, backend.stage({"x": np.ones((1, 4), np.float32)}))
                except BackendError as e:
                    msg = str(e)
                    if UNSUPPORTED_OP not in msg and UNSUPPORTED_DOMAIN not in msg:
                        raise _Failed(f"BackendError does not name the operator ({UNSUPPORTED_DOMAIN}::"
                                      f"{UNSUPPORTED_OP}): {msg}") from None
                    return f"BackendError: {msg[:200]}"
                except Exception as e:  # noqa: BLE001
                    raise _Failed(f"raised {type(e).__name__} ({str(e)[:200]}), expected a BackendError naming "
                                  "the operator") from None
            finally:
                backend.close()
        raise _Failed(f"a graph with the unknown operator {UNSUPPORTED_DOMAIN}::{UNSUPPORTED_OP} loaded and ran "
                      "without an error")


def unsupported_model(path: Path) -> Path:
    """Write a one-node ONNX model whose operator no runtime implements (``com.benchkit.conformance::Unobtainium``)."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    node = helper.make_node(UNSUPPORTED_OP, ["x"], ["y"], domain=UNSUPPORTED_DOMAIN, name="unobtainium")
    graph = helper.make_graph([node], "unsupported_operator", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid(UNSUPPORTED_DOMAIN, 1)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _check_structure(outs, refs, names) -> None:
    if len(outs) != len(refs):
        raise _Failed(f"fetch() returned {len(outs)} outputs; the graph has {len(refs)} ({', '.join(names)})")
    for n, a, r in zip(names, outs, refs):
        if a.shape != r.shape:
            raise _Failed(f"output {n!r} has shape {list(a.shape)}, expected {list(r.shape)}")
        if a.dtype != r.dtype:
            raise _Failed(f"output {n!r} has dtype {a.dtype}, expected {r.dtype} (the graph's output type)")


def _json(obj: Any, what: str) -> None:
    try:
        json.dumps(obj)
    except (TypeError, ValueError) as e:
        raise _Failed(f"{what} is not JSON-serialisable ({e}); records store it verbatim") from None


def _rss_bytes() -> int | None:
    """Resident set size of this process now (not the peak), or None where it cannot be read."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import psutil  # type: ignore[import-not-found]

        return int(psutil.Process().memory_info().rss)
    except Exception:  # noqa: BLE001 - optional
        return None


# --------------------------------------------------------------------------- pytest plugin


def conformance_tests(name: str, options: Mapping[str, Any] | None = None, **kwargs: Any):
    """A pytest test function, parametrised over the check names, that runs the kit on adapter `name`.

    Assign it to a module-level ``test_*`` name in the vendor's test suite;
    ``kwargs`` are those of :func:`check_adapter` (``precisions``, ``cycles``, ...).
    """
    import pytest

    names = check_names(kwargs.get("precisions", ()), kwargs.get("workloads"))
    cache: dict[str, ConformanceReport] = {}

    @pytest.mark.parametrize("check", names)
    def test(check: str) -> None:
        if "report" not in cache:
            # One run of the kit for all parametrised checks: load/close cycles and workloads are not repeated.
            cache["report"] = check_adapter(name, options, **kwargs)
        result = next((r for r in cache["report"].results if r.name == check), None)
        if result is None:
            pytest.skip(f"{check} was not run")
        if result.status == "skipped":
            pytest.skip(result.detail)
        assert result.status == "passed", f"{check}: {result.detail} {result.figures or ''}"

    test.__name__ = f"test_benchkit_conformance_{name.replace('-', '_')}"
    return test


try:  # the fixture exists only where pytest does; benchkit itself never needs pytest at run time
    import pytest as _pytest

    @_pytest.fixture
    def benchkit_conformance():
        """``benchkit_conformance(name, options=None, **kwargs) -> ConformanceReport``."""
        return check_adapter
except ImportError:  # pragma: no cover
    pass


__all__ = ["check_adapter", "check_names", "conformance_tests", "ConformanceReport", "CheckResult",
           "MICRO_WORKLOADS", "unsupported_model"]
