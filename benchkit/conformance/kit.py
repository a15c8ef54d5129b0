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
``batch``               each micro-workload that ran, at batches 3 and 8 (:data:`BATCH_SIZES`): every sample of a
                        batched call within tolerance of the reference (no work skipped for all but some samples).
                        A batch the adapter rejects at load is skipped, not failed
``long-run``            :data:`LONG_RUN_CALLS` calls on one micro-workload, far more than the warm-up and audit
                        windows, cycling over :data:`LONG_RUN_POOL` staged inputs with never-seen ones staged in
                        between; outputs fetched at seeded positions, each after calls whose results were not
                        fetched, against the reference (no adapter honest only early, on the first inputs, or
                        only when it is looked at)
``boundary``            the end-to-end timing-boundary audit (:mod:`benchkit.checks.boundary`) on never-seen
                        inputs of a gemm large enough that its work clearly exceeds the allowance
                        (:data:`BOUNDARY_LADDER`): ``stage`` and ``fetch`` within the allowance, fresh queries'
                        end-to-end latency in line with the timed latency (no work in ``stage``/``fetch``, no
                        ``synchronize`` that returns early, no cache answering repeated inputs). The allowance is
                        the standard transfer allowance plus ``stage`` + ``fetch`` on the smallest gemm, timed
                        alongside (a cost that does not grow with the work is not moved work). Failed only when all
                        :data:`_BOUNDARY_ATTEMPTS` attempts fail; skipped when, in two climbs, the largest gemm's
                        work stays within the allowance (the audit cannot see it there)
``claims``              ``info()``'s runtime version against the installed distribution of the runtime the
                        adapter drives, its device against the accelerators probed on this machine, and the
                        adapter's installed files against their ``RECORD`` (:mod:`benchkit.checks.provenance`)
``load-close``          ``cycles`` rounds of construct, load, run, fetch, close: none fails, and the
                        process's resident memory grows by at most ``rss_growth_limit_mib``
``unsupported-operator`` a graph with an operator of an unknown domain fails with a BackendError
                        (at load or at the first run) whose message names the operator

Adapters that declare ``computes_outputs = False`` (the ``null`` backend,
which measures the harness) are exempt from the output comparisons, the
precision checks and the unsupported-operator check; those are reported as
skipped with that reason, and so are ``batch``, ``long-run`` and ``boundary`` (no work to check).

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

import numpy as np

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

BATCH_SIZES = (3, 8)
"""Batches of the ``batch`` check: an odd one and a power of two (a cheat may round, pad or special-case either)."""

LONG_RUN_CALLS = 320
"""Calls of the ``long-run`` check: past the standard warm-up (10 queries), the first pool inputs (4) the
accuracy gate once compared, and the call counts after which a stale or lazy adapter might stop working (64)."""
LONG_RUN_POOL = 12
"""Distinct inputs staged before the ``long-run`` calls and cycled over (never the same one back to back)."""
LONG_RUN_FETCHES = 16
"""Calls of the ``long-run`` check whose outputs are fetched: one seeded call per window of the run, never two
adjacent (each follows a call whose results were not fetched), the last call always; every other one runs an
input staged just before it, never seen by the adapter."""

BOUNDARY_LADDER: tuple[dict[str, int], ...] = (
    {"m": 64, "n": 256, "k": 256},
    {"m": 64, "n": 512, "k": 512},
    {"m": 64, "n": 1024, "k": 1024},
    {"m": 64, "n": 2048, "k": 2048},
)
"""gemm sizes the ``boundary`` check climbs (4x the work, 2x the bytes per step) until the work is visible."""
BOUNDARY_RESOLUTION = 2.0
"""The ladder stops where a fresh query's end-to-end time exceeds the smallest gemm's by this many allowances:
work moved into ``stage`` or ``fetch`` then exceeds the allowance at least this many times over, whatever
constant cost (a busy-wait, a fixed launch) the adapter adds to every call."""
BOUNDARY_MAX_CALL_NS = 20_000_000
"""The ladder climbs no further once a fresh query takes this long, from its second size on (a slow adapter's
audit stays short)."""
BOUNDARY_POOL = 8
_BOUNDARY_PROBES = 9  # the ladder judges each size by the fastest of these fresh queries
_BOUNDARY_QUERIES = (8, 32)  # never-seen queries of the audit, as the runner's every-cell audit uses
_BOUNDARY_BUDGET_NS = 500_000_000
_BOUNDARY_ATTEMPTS = 3  # timing on a shared machine is noisy: a cheat fails every attempt, noise rarely thrice

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
            + [f"precision[{p}]" for p in precisions]
            + ["batch", "long-run", "boundary", "claims", "load-close", "unsupported-operator"])


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
    kit = _Kit(name, dict(options or {}), precision, cache_dir, wls)
    plan: list[tuple[str, Callable[[], CheckResult | str]]] = [
        ("registry", kit.registry),
        ("options", kit.options),
        *[(f"workload[{w}]", (lambda w=w: kit.workload(w))) for w in wls],
        ("coverage", kit.coverage),
        *[(f"precision[{p}]", (lambda p=p: kit.precision_check(p))) for p in precisions],
        ("batch", kit.batch),
        ("long-run", kit.long_run),
        ("boundary", kit.boundary),
        ("claims", kit.claims),
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


@dataclass
class _Rung:
    """One loaded size of the boundary check's gemm ladder, with what its audit needs."""

    backend: Any
    wl: Any
    pool: list[Any]
    probe_ns: int = 0  # fastest fresh query, end to end
    untimed_ns: int = 0  # median stage + fetch of the fresh queries probed
    allowance: Any = None  # the standard TransferAllowance for the adapter's device
    out_bytes: int = 0
    tensors: int = 0


def _close_rungs(*rungs: _Rung | None) -> None:
    for r in {id(r): r for r in rungs if r is not None}.values():
        r.backend.close()


def _raised(allowance: Any, per_call_ns: int) -> Any:
    """The transfer allowance with a per-call cost added to its fixed part."""
    import dataclasses

    return dataclasses.replace(allowance, fixed_ns=allowance.fixed_ns + int(per_call_ns))


def _interleaved(rung: _Rung, fresh: Sequence[Any], base: _Rung, base_fresh: Sequence[Any]):
    """Fresh queries on ``rung`` and on the smallest gemm ``base``, one after the other, each preceded by a timed
    call on its pool: (``rung``'s samples, ``base``'s), taken under the same machine conditions."""
    from benchkit.checks.boundary import EndToEndSamples, time_end_to_end

    got, beside = [], []
    for i, (f, g) in enumerate(zip(fresh, base_fresh)):
        # No copy control: the kit's allowance is raised by the smallest gemm's own untimed phases instead.
        got.append(time_end_to_end(rung.backend, [f], [rung.pool[i % len(rung.pool)]], control=False))
        beside.append(time_end_to_end(base.backend, [g], [base.pool[i % len(base.pool)]], control=False))

    def joined(parts: list[EndToEndSamples]) -> EndToEndSamples:
        return EndToEndSamples(*(sum((getattr(p, f) for p in parts), ()) for f in
                                 ("stage_ns", "run_ns", "fetch_ns", "end_to_end_ns", "timed_ns")))

    return joined(got), joined(beside)


class _Kit:
    def __init__(self, name: str, options: dict[str, Any], precision: str, cache_dir: Path | None,
                 workloads: Sequence[str] = tuple(MICRO_WORKLOADS)) -> None:
        self.name, self.opts, self.precision = name, options, precision
        self.cache_dir = cache_dir
        self.wls = list(workloads)  # the micro-workloads asked for
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

    def resolve(self, workload: str, variant: str = "fp32", params: Mapping[str, Any] | None = None):
        from benchkit.spec import WorkloadSpec
        from benchkit.workloads import resolve

        spec = MICRO_WORKLOADS[workload]
        ws = WorkloadSpec(name=workload, params=dict(params if params is not None else spec["params"]),
                          dims=spec["dims"], variant=variant)
        return resolve(ws, Path("."), f"conformance: {workload}", self.cache_dir)

    def winfo(self, wl, claimed: str, batch_size: int = 1):
        from benchkit.backends.base import WorkloadInfo

        shapes, batch = wl.call_shapes(batch_size)
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

    def _load(self, wl, claimed: str, batch_size: int = 1):
        from benchkit.errors import BackendError

        backend = self.cls()(self.opts)
        try:
            backend.load(wl.path, self.winfo(wl, claimed, batch_size))
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

    def _first_loadable(self, prefer: Sequence[str] = ()):
        """(workload, loaded backend) of the first micro-workload the adapter loads: of those that ran, ``prefer``
        first; then of those asked for, ``prefer`` first."""
        order = ([w for w in prefer if w in self.ran] + self.ran
                 + [w for w in prefer if w in self.wls] + self.wls)
        for w in dict.fromkeys(order):
            wl = self.resolve(w)
            try:
                return wl, self._load(wl, self.precision)
            except _Skipped:
                continue
        raise _Skipped("the adapter loads none of the micro-workloads (see the workload checks)")

    def batch(self) -> CheckResult:
        """Batched calls: every sample of a batch-N call within tolerance of the reference, not only the first."""
        from benchkit.checks import accuracy

        if not self.computes:
            raise _Skipped(f"{self.name} declares computes_outputs = False")
        _, tol = accuracy.tolerance_for(self.precision, self.precision, False)
        ran: list[str] = []
        rejected: list[str] = []
        wrong: dict[str, list[int]] = {}
        problems: list[str] = []
        max_rel = 0.0
        for w in self.ran or self.wls:
            wl = self.resolve(w)
            for b in BATCH_SIZES:
                feeds, effective = wl.make_feeds(b, 2, _SEED + b)
                if effective != b:
                    rejected.append(f"{w} (fixed batch {effective})")
                    break
                try:
                    backend = self._load(wl, self.precision, b)
                except _Skipped:
                    rejected.append(f"{w}@{b}")
                    continue
                try:
                    outs = [accuracy.run_outputs(backend, backend.stage(f)) for f in feeds]
                finally:
                    backend.close()
                refs, desc, _ = accuracy.reference_outputs(wl, feeds, self.reference(), _SEED + b, self.cache_dir)
                try:
                    _check_structure(outs[0], refs[0], wl.output_names)
                except _Failed as e:
                    raise _Failed(f"{w} at batch {b}: {e.detail}") from None
                bad, rel = _per_sample(outs, refs, wl.output_names, tol, b)
                max_rel = max(max_rel, rel)
                ran.append(f"{w}@{b}")
                if bad:
                    wrong[f"{w}@{b}"] = sorted(bad)
                    first = min(bad)
                    problems.append(f"{w} at batch {b}: sample(s) {_spans(sorted(bad))} of {b} differ from the "
                                    f"reference (sample {first}: {bad[first]})")
        figures = {"batch_sizes": list(BATCH_SIZES), "ran": ran, "rejected": rejected, "wrong_samples": wrong,
                   "max_rel_error": max_rel, "tolerance_rel": tol.rel}
        if problems:
            raise _Failed("; ".join(problems) + ": a batched call does not do every sample's work", figures)
        if not ran:
            return CheckResult("batch", "skipped", "the adapter rejects batches above 1 on every micro-workload "
                               f"(BackendError at load: {', '.join(rejected)})", figures)
        note = f"; rejected at load: {', '.join(rejected)}" if rejected else ""
        return CheckResult("batch", "passed",
                           f"{len(ran)} batched call set(s) ({', '.join(ran)}): every sample within tolerance, max "
                           f"rel error {max_rel:.2g} (tolerance {tol.rel:g}){note}", figures)

    def long_run(self) -> CheckResult:
        """Many calls over many inputs: outputs fetched late, after un-fetched calls, on never-seen inputs, right."""
        from benchkit.checks import accuracy

        if not self.computes:
            raise _Skipped(f"{self.name} declares computes_outputs = False")
        _, tol = accuracy.tolerance_for(self.precision, self.precision, False)
        plan = long_run_plan(LONG_RUN_CALLS, LONG_RUN_POOL, LONG_RUN_FETCHES, _SEED)
        wl, backend = self._first_loadable(prefer=("gemm", "mlp"))
        feeds, _ = wl.make_feeds(1, LONG_RUN_POOL + plan.never_seen, _SEED + 1)
        got: dict[int, list[np.ndarray]] = {}
        try:
            stage, run, sync, fetch = backend.stage, backend.run, backend.synchronize, backend.fetch
            staged = [stage(f) for f in feeds[:LONG_RUN_POOL]]
            for call, i in enumerate(plan.inputs):
                s = staged[i] if i < LONG_RUN_POOL else stage(feeds[i])  # never seen: staged just before its call
                r = run(s)
                sync()
                if call in plan.fetched:
                    got[call] = [np.asarray(a) for a in fetch(r)]
        finally:
            backend.close()
        calls = sorted(got)
        inputs = sorted({plan.inputs[c] for c in calls})
        refs, desc, _ = accuracy.reference_outputs(wl, [feeds[i] for i in inputs], self.reference(), _SEED + 1,
                                                   self.cache_dir)
        ref_of = dict(zip(inputs, refs))
        _check_structure(got[calls[0]], ref_of[plan.inputs[calls[0]]], wl.output_names)
        wrong: dict[int, str] = {}
        max_rel = 0.0
        for c in calls:
            per, failures = accuracy.compare_outputs([got[c]], [ref_of[plan.inputs[c]]], wl.output_names, tol)
            max_rel = max([max_rel, *(o.max_rel_error or 0.0 for o in per)])
            if failures:
                wrong[c] = failures[0]
        figures = {"workload": wl.name, "calls": LONG_RUN_CALLS, "pool_inputs": LONG_RUN_POOL,
                   "never_seen_inputs": plan.never_seen, "fetched_calls": calls, "wrong_calls": sorted(wrong),
                   "reference": desc, "max_rel_error": max_rel, "tolerance_rel": tol.rel}
        if wrong:
            right = [c for c in calls if c not in wrong]
            first = min(wrong)
            which = "a never-seen input" if plan.inputs[first] >= LONG_RUN_POOL else f"pool input {plan.inputs[first]}"
            raise _Failed(
                f"{len(wrong)} of {len(calls)} outputs fetched over {LONG_RUN_CALLS} calls on {wl.name} differ from "
                f"{desc} (calls {_spans(sorted(wrong))}; right: {_spans(right) or 'none'}); the first wrong is call "
                f"{first} ({which}, after an un-fetched call): {wrong[first]}", figures)
        return CheckResult("long-run", "passed",
                           f"{LONG_RUN_CALLS} calls on {wl.name} over {LONG_RUN_POOL} staged and {plan.never_seen} "
                           f"never-seen inputs; {len(calls)} fetched at seeded positions up to call {calls[-1]}, "
                           f"each after un-fetched calls: all within tolerance (max rel error {max_rel:.2g})", figures)

    def _climb(self) -> tuple[_Rung, _Rung, list[dict[str, Any]], float]:
        """Load gemm sizes of :data:`BOUNDARY_LADDER` until a fresh query's work exceeds the rung's allowance
        :data:`BOUNDARY_RESOLUTION` times over: (the smallest rung and the last one, both still loaded; each
        rung's figures; the last one's resolution).

        A rung's allowance is the standard transfer allowance plus what ``stage`` and ``fetch`` take on the
        smallest gemm: a cost every call pays whatever its size (Python and runtime overhead, a runtime's worker
        threads still spinning after a call, all slower on a loaded machine) is not work moved out of the timed
        region, while moved work grows with the gemm and, at the rung chosen, exceeds this allowance at least
        twice over. The smallest rung stays loaded so that the audit can measure that cost beside it.
        """
        from benchkit.checks import accuracy, boundary as bd

        ladder: list[dict[str, Any]] = []
        base: _Rung | None = None
        rung: _Rung | None = None
        resolution = 0.0
        try:
            for params in BOUNDARY_LADDER:
                wl = self.resolve("gemm", params=params)
                try:
                    backend = self._load(wl, self.precision)
                except _Skipped:
                    if rung is None:
                        raise
                    break  # the largest gemm it accepts
                if rung is not None and rung is not base:
                    rung.backend.close()
                rung = _Rung(backend, wl, [backend.stage(f) for f in wl.make_feeds(1, BOUNDARY_POOL, _SEED + 2)[0]])
                base = base or rung
                for s in rung.pool:  # warm: first-call costs paid, and any cache filled, as in a measured loop
                    outs = accuracy.run_outputs(backend, s)
                # Interleaved with timed calls on the pool, as the audit will be.
                probes = bd.time_end_to_end(backend, wl.make_feeds(1, _BOUNDARY_PROBES, _SEED + 3)[0], rung.pool,
                                            control=False)
                rung.probe_ns = min(probes.end_to_end_ns)
                rung.untimed_ns = int(np.median(np.add(probes.stage_ns, probes.fetch_ns)))
                info = backend.info()
                rung.allowance = bd.allowance_for(info.device, served=info.endpoint is not None)
                rung.out_bytes, rung.tensors = sum(int(a.nbytes) for a in outs), len(wl.inputs) + len(outs)
                limit = _raised(rung.allowance, base.untimed_ns).ns(wl.bytes_per_call(1), rung.out_bytes,
                                                                     rung.tensors)
                resolution = (rung.probe_ns - base.probe_ns) / limit
                ladder.append({"n": params["n"], "k": params["k"], "fresh_min_ns": int(rung.probe_ns),
                               "allowance_ns": int(limit), "resolution": round(resolution, 2)})
                # Two sizes at least: the first alone cannot tell work from what every call costs.
                if resolution >= BOUNDARY_RESOLUTION or (rung.probe_ns > BOUNDARY_MAX_CALL_NS and len(ladder) > 1):
                    break
        except BaseException:
            _close_rungs(base, rung)
            raise
        assert base is not None and rung is not None
        return base, rung, ladder, resolution

    def boundary(self) -> CheckResult:
        """The end-to-end boundary audit on never-seen inputs of a gemm whose work exceeds the allowance."""
        from benchkit.checks import boundary as bd

        if not self.computes:
            raise _Skipped(f"{self.name} declares computes_outputs = False: it does no work to locate")
        base, rung, ladder, resolution = self._climb()
        if resolution < BOUNDARY_RESOLUTION:  # a stall while timing the smallest gemm hides the work: climb again
            _close_rungs(base, rung)
            base, rung, again, resolution = self._climb()
            ladder += again
        wl = rung.wl
        lo, hi = _BOUNDARY_QUERIES
        n = int(min(hi, max(lo, _BOUNDARY_BUDGET_NS // max(1, 2 * rung.probe_ns))))
        audits: list[bd.BoundaryAudit] = []
        per_call: list[int] = []
        try:
            for attempt in range(_BOUNDARY_ATTEMPTS):
                fresh, _ = wl.make_feeds(1, n, _SEED + 4 + attempt)  # never seen: a seed no other call used
                base_fresh, _ = base.wl.make_feeds(1, n, _SEED + 8 + attempt)
                e2e, beside = _interleaved(rung, fresh, base, base_fresh)
                per_call.append(int(np.median(np.add(beside.stage_ns, beside.fetch_ns))))
                audits.append(bd.audit_boundary(
                    e2e.timed_ns, e2e.stage_ns, e2e.fetch_ns, e2e.end_to_end_ns, input_bytes=wl.bytes_per_call(1),
                    output_bytes=rung.out_bytes, tensors=rung.tensors,
                    allowance=_raised(rung.allowance, per_call[-1])))
                if audits[-1].passed:
                    break
        finally:
            _close_rungs(base, rung)
        audit = audits[-1]
        p = wl.params
        size = f"gemm {p['m']}x{p['n']}x{p['k']}"
        figures = {"workload": size, "ladder": ladder, "queries": n, "attempts": len(audits),
                   "per_call_untimed_ns": per_call, **audit.figures(), "first_attempt": audits[0].figures()}
        if not audit.passed:
            raise _Failed(f"{size}, {len(audits)} of {len(audits)} attempts: "
                          + "; ".join(f.message for f in audit.findings if f.severity == "reason"), figures)
        summary = (f"{size}: stage + fetch p50 {audit.untimed_p50_ns / 1e3:.1f} µs within the "
                   f"{audit.allowance_ns / 1e3:.1f} µs allowance (transfers, and {per_call[-1] / 1e3:.1f} µs of "
                   f"stage + fetch on the smallest gemm, timed alongside); fresh end-to-end p50 "
                   f"{audit.fresh_ratio:.2f}x the timed p50 ({n} never-seen queries"
                   f"{f', attempt {len(audits)}' if len(audits) > 1 else ''})")
        if resolution < BOUNDARY_RESOLUTION:
            return CheckResult("boundary", "skipped",
                               f"inconclusive: the largest gemm tried adds {resolution:.2g} allowances of work "
                               f"to a fresh query (needed: {BOUNDARY_RESOLUTION:g}), so work moved into stage or "
                               f"fetch could hide in the allowance on this device; {summary}", figures)
        return CheckResult("boundary", "passed", summary, figures)

    def claims(self) -> CheckResult:
        """What ``info()`` says against what the machine shows: runtime version, device, the adapter's own files."""
        from benchkit.checks import provenance

        _, backend = self._first_loadable()
        try:
            info = backend.info()
        finally:
            backend.close()
        cls = self.cls()
        prov = provenance.adapter_provenance(cls)
        probed = provenance.probe_accelerators()
        found = [*provenance.provenance_findings(prov),
                 *provenance.check_runtime_claims(info, prov.distribution, cls),
                 *provenance.check_device_claims(info, probed)]
        reasons = [f.message for f in found if f.severity == "reason"]
        warnings = [f.message for f in found if f.severity != "reason"]
        figures = {"version": info.version, "device": info.device, "adapter_distribution": prov.distribution,
                   "adapter_version": prov.version, "provenance_method": prov.method,
                   "probed_accelerators": [a.model or f"{a.vendor} at {a.address}" for a in probed],
                   "reasons": reasons, "warnings": warnings}
        if reasons:
            raise _Failed("; ".join(reasons), figures)
        note = f"; warnings: {'; '.join(warnings)}" if warnings else ""
        return CheckResult("claims", "passed",
                           f"version {info.version} and device {info.device!r} agree with this machine "
                           f"({len(probed)} accelerator(s) probed){note}", figures)

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


@dataclass(frozen=True)
class LongRunPlan:
    """Which input each call of the ``long-run`` check runs, and which calls' outputs are fetched."""

    inputs: tuple[int, ...]  # per call: a pool index (< pool) or a never-seen input (pool, pool + 1, ...)
    fetched: frozenset[int]
    never_seen: int


def long_run_plan(calls: int, pool: int, fetches: int, seed: int) -> LongRunPlan:
    """The ``long-run`` schedule: seeded passes over the pool (never one input twice in a row), one fetched call
    per window of ``calls // fetches`` (never its first call, so never two adjacent), the last call fetched, and
    every other fetched call on a never-seen input."""
    if pool < 2 or fetches < 2 or calls // fetches < 3:
        raise ValueError("long_run_plan: need pool >= 2, fetches >= 2 and calls >= 3 x fetches")
    rng = np.random.default_rng([int(seed), 0x10F6])
    order: list[int] = []
    while len(order) < calls:
        perm = [int(i) for i in rng.permutation(pool)]
        if order and perm[0] == order[-1]:
            perm.append(perm.pop(0))
        order.extend(perm)
    del order[calls:]
    window = calls // fetches
    fetched = [w * window + int(rng.integers(1, window)) for w in range(fetches)]
    fetched[-1] = calls - 1
    never_seen = 0
    for j, c in enumerate(fetched):
        if j % 2 == 1:
            order[c] = pool + never_seen
            never_seen += 1
    return LongRunPlan(tuple(order), frozenset(fetched), never_seen)


def _per_sample(outs, refs, names, tol, batch: int) -> tuple[dict[int, str], float]:
    """Compare each sample of batched calls on its own: {sample: first failure}, and the max relative error."""
    from benchkit.checks.accuracy import compare_outputs

    def sample(call, s):
        return [a[s:s + 1] if a.ndim and a.shape[0] == batch else a for a in call]

    bad: dict[int, str] = {}
    rel = 0.0
    for s in range(batch):
        per, failures = compare_outputs([sample(o, s) for o in outs], [sample(r, s) for r in refs], names, tol)
        rel = max([rel, *(o.max_rel_error or 0.0 for o in per)])
        if failures:
            bad[s] = failures[0]
    return bad, rel


def _spans(values: Sequence[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``1-3, 7``."""
    runs: list[list[int]] = []
    for v in values:
        if runs and runs[-1][1] == v - 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


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
