"""MLPerf LoadGen as the measurement engine: ``benchkit run --engine mlperf``.

The same cell (workload, adapter, scenario settings) that benchkit's own loops
measure is handed to LoadGen itself (PyPI ``mlcommons-loadgen``, the
``mlperf_loadgen`` module; the ``mlperf`` extra):

* the query sample library is the cell's pool of staged inputs (loaded before
  the test, so loading stays untimed, as LoadGen requires);
* the system under test is the benchkit adapter: ``run(); synchronize()`` per
  call, in LoadGen's ``IssueQuery`` for SingleStream, MultiStream and Offline
  (Offline in calls of the cell's batch size), and for Server through the
  adapter's asynchronous ``submit`` or a pool of ``workers`` threads, so that
  LoadGen's issuing thread is never blocked;
* LoadGen's TestSettings come from the cell's effective settings
  (``min_duration_ms``, ``min_query_count``, percentiles, ``target_qps``,
  ``target_latency_ns``; the spec's seed for every LoadGen seed).

LoadGen writes ``mlperf_log_summary.txt`` and ``mlperf_log_detail.txt`` into
``<cell_id>.mlperf/`` beside the record; its verdict (VALID/INVALID and every
reason), its headline figure and its result keys are copied into the record
(``engine: mlperf``, ``metrics.extra.mlperf``). Per-sample latencies come from
LoadGen's trace (``mlperf_log_trace.json``, parsed, then deleted: it is ~1 KB
per sample) so ``samples_ns`` and ``metrics.latency_ns`` are LoadGen's own
samples; for runs too long to trace, and for Offline (where LoadGen has one
query and no per-sample latency), they are per-call times measured inside
the system under test, and ``metrics.extra.mlperf.samples_source`` says which.
"""

from __future__ import annotations

import json
import queue
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from time import perf_counter_ns
from typing import Any

import numpy as np

from benchkit._install import install_hint
from benchkit.errors import BackendError, BackendUnavailable
from benchkit.measure.loops import Measurement
from benchkit.stats import summarize

_SCENARIOS = {"single_stream": "SingleStream", "multi_stream": "MultiStream", "server": "Server", "offline": "Offline"}
# Beyond this many predicted samples LoadGen's trace (~1 KB per sample) is not written.
TRACE_MAX_SAMPLES = 1_000_000
_SAMPLE_EVENT = re.compile(
    r'^\{"name":"Sample","cat":"default","ph":"b".*?"args":\{"sample_seq":(\d+),"query_seq":(\d+),'
    r'"sample_idx":\d+,"issue_start_ns":(-?\d+),"complete_ns":(-?\d+)\}'
)


class LoadGenUnavailable(BackendUnavailable):
    """The ``mlperf_loadgen`` module is not installed."""


def require_loadgen() -> Any:
    """The ``mlperf_loadgen`` module, or :class:`LoadGenUnavailable` naming the extra to install."""
    try:
        import mlperf_loadgen
    except ImportError as e:
        raise LoadGenUnavailable(
            "--engine mlperf runs cells through MLPerf LoadGen, which is not installed: "
            f"{install_hint('mlperf')}, which brings PyPI's mlcommons-loadgen"
        ) from e
    return mlperf_loadgen


def loadgen_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mlcommons-loadgen")
    except PackageNotFoundError:
        return "unknown"


def loadgen_settings(lg: Any, scenario: Any, samples_per_call: int, seed: int, call_ns: int) -> Any:
    """LoadGen TestSettings for one resolved scenario. ``call_ns``: mean warmup call time, LoadGen's
    expected-latency hint."""
    kind = scenario.kind
    ts = lg.TestSettings()
    ts.scenario = getattr(lg.TestScenario, _SCENARIOS[kind])
    ts.mode = lg.TestMode.PerformanceOnly
    ts.min_duration_ms = int(scenario.min_duration_ms)
    ts.min_query_count = int(scenario.min_query_count)
    ts.max_duration_ms = int(scenario.max_duration_ms or 0)  # LoadGen: 0 is no limit
    ts.max_query_count = int(scenario.max_query_count or 0)
    ts.qsl_rng_seed = ts.sample_index_rng_seed = ts.schedule_rng_seed = int(seed)
    call_ns = max(1, int(call_ns))
    pct = scenario.latency_percentile
    # LoadGen pre-generates SingleStream/MultiStream queries from the expected latency and ends the
    # run when they run out: a hint below the real latency only generates spare queries, one above
    # it ends the run before min_duration. Half the warmup mean errs on the safe side.
    if kind == "single_stream":
        ts.single_stream_expected_latency_ns = max(1, call_ns // 2)
        ts.single_stream_target_latency_percentile = float(pct) / 100
    elif kind == "multi_stream":
        ts.multi_stream_samples_per_query = int(samples_per_call)
        ts.multi_stream_expected_latency_ns = max(1, call_ns // 2)
        ts.multi_stream_target_latency_percentile = float(pct) / 100
    elif kind == "server":
        ts.server_target_qps = float(scenario.target_qps)
        ts.server_target_latency_ns = int(scenario.target_latency_ns)
        ts.server_target_latency_percentile = float(pct) / 100
    else:
        # Offline is one query of 1.1 x min_duration x expected_qps samples, all of which must be
        # processed: an estimate above the real rate lengthens the run, one below it ends the run
        # before min_duration (INVALID). 1.5 x the warmup rate covers warmup being slower.
        ts.offline_expected_qps = 1.5 * samples_per_call * 1e9 / call_ns
    return ts


def predicted_samples(scenario: Any, samples_per_call: int, call_ns: int) -> int:
    """About how many samples LoadGen will issue: decides whether its per-sample trace is affordable."""
    kind = scenario.kind
    dur_ns = scenario.min_duration_ms * 1_000_000
    if kind == "server":
        return int(max(scenario.min_query_count, scenario.target_qps * dur_ns / 1e9))
    if kind == "offline":
        return int(max(scenario.min_query_count, 1.65 * samples_per_call * dur_ns / max(1, call_ns)))
    queries = max(scenario.min_query_count, 2 * dur_ns / max(1, call_ns))
    return int(queries * (samples_per_call if kind == "multi_stream" else 1))


class _SystemUnderTest:
    """The adapter seen from LoadGen: IssueQuery / FlushQueries, plus per-call timings of its own."""

    def __init__(self, lg: Any, kind: str, backend: Any, staged: Sequence[Any], samples_per_call: int,
                 workers: int) -> None:
        self.lg, self.kind, self.backend, self.staged = lg, kind, backend, staged
        self.k = len(staged)
        self.b = max(1, int(samples_per_call))
        self.calls = 0
        self.call_ns: list[int] = []  # per inference call, measured here (Offline's latencies; trace fallback)
        self.first_issue_ns: int | None = None
        self.last_done_ns = 0
        self.errors: list[BaseException] = []
        self.use_async = kind == "server" and bool(getattr(backend, "supports_async", lambda: False)())
        self._issued_at: dict[int, int] = {}
        self._work: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        if kind == "server" and not self.use_async:
            n = max(1, workers)
            self._threads = [threading.Thread(target=self._worker, args=(list(staged[j::n]) or list(staged),),
                                              daemon=True, name=f"benchkit-lg-{j}") for j in range(n)]
            for t in self._threads:
                t.start()

    # ---- LoadGen callbacks

    def issue_query(self, query_samples: list[Any]) -> None:
        now = perf_counter_ns()
        if self.first_issue_ns is None:
            self.first_issue_ns = now
        if self.kind == "server":
            for q in query_samples:
                self._issued_at[q.id] = perf_counter_ns()
                if self.use_async:
                    self.backend.submit(self.staged[q.index % self.k], self._done, q.id)
                else:
                    self._work.put((q.id, q.index))
            return
        # SingleStream (1 sample), MultiStream (one call of samples_per_query) and Offline (all samples
        # in calls of the batch size): the calls run here, back to back, as in benchkit's closed loop.
        for start in range(0, len(query_samples), self.b):
            chunk = query_samples[start:start + self.b]
            staged = self.staged[self.calls % self.k]
            self.calls += 1
            t0 = perf_counter_ns()
            try:
                self.backend.run(staged)
                self.backend.synchronize()
            except BaseException as e:  # noqa: BLE001 - LoadGen must still see every sample complete
                self.errors.append(e)
            t1 = perf_counter_ns()
            self.call_ns.append(t1 - t0)
            self.lg.QuerySamplesComplete([self.lg.QuerySampleResponse(q.id, 0, 0) for q in chunk])
            self.last_done_ns = perf_counter_ns()

    def flush_queries(self) -> None:
        """Nothing is batched across queries, so nothing to flush."""

    # ---- Server completions

    def _done(self, tag: int, error: BaseException | None) -> None:
        now = perf_counter_ns()
        if error is not None:
            self.errors.append(error)
        self.call_ns.append(now - self._issued_at.pop(tag, now))
        self.lg.QuerySamplesComplete([self.lg.QuerySampleResponse(tag, 0, 0)])
        self.last_done_ns = max(self.last_done_ns, perf_counter_ns())

    def _worker(self, mine: list[Any]) -> None:
        # Each worker cycles through its own share of the staged inputs: none is used by two calls at once.
        c = 0
        while (item := self._work.get()) is not None:
            sample_id, _index = item
            try:
                self.backend.run(mine[c % len(mine)])
                c += 1
                self.backend.synchronize()
                self._done(sample_id, None)
            except BaseException as e:  # noqa: BLE001
                self._done(sample_id, e)

    def stop(self) -> None:
        for _ in self._threads:
            self._work.put(None)
        for t in self._threads:
            t.join(timeout=10)


def measure_with_loadgen(
    scenario: Any,
    backend: Any,
    staged: Sequence[Any],
    samples_per_call: int,
    seed: int,
    call_ns: int,
    log_dir: Path | None,
) -> Measurement:
    """Run one cell's timed part under LoadGen and turn its logs into a :class:`Measurement`.

    The measurement carries LoadGen's verdict (``engine_reasons``), its
    headline figure (``headline_value``), and its result keys in
    ``extra["mlperf"]``, which go into the record with ``engine: mlperf``.
    """
    kind = scenario.kind
    if getattr(scenario, "concurrency", 1) != 1:
        from benchkit.errors import BackendError

        # LoadGen's Offline hands the SUT every sample at once: it has no closed loop of N calls to drive.
        raise BackendError(f"offline.concurrency {scenario.concurrency} is run by benchkit's engine only; "
                           "MLPerf LoadGen has no concurrency setting (use --engine benchkit)")
    lg = require_loadgen()
    if log_dir is None:
        import tempfile

        log_dir = Path(tempfile.mkdtemp(prefix="benchkit-mlperf-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    b = max(1, int(samples_per_call))
    ts = loadgen_settings(lg, scenario, b, seed, call_ns)
    traced = kind != "offline" and predicted_samples(scenario, b, call_ns) <= TRACE_MAX_SAMPLES
    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(log_dir)
    log_settings.log_output.copy_summary_to_stdout = False
    log_settings.log_output.copy_detail_to_stdout = False
    log_settings.enable_trace = traced

    sut_impl = _SystemUnderTest(lg, kind, backend, staged, b, int(getattr(scenario, "workers", None) or 1))
    n_qsl = len(staged) * (b if kind in ("multi_stream", "offline") else 1)
    sut = lg.ConstructSUT(sut_impl.issue_query, sut_impl.flush_queries)
    qsl = lg.ConstructQSL(n_qsl, n_qsl, _no_op, _no_op)  # inputs are staged already: loading is a no-op
    try:
        lg.StartTestWithLogSettings(sut, qsl, ts, log_settings)
    finally:
        sut_impl.stop()
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    if sut_impl.errors:
        first = sut_impl.errors[0]
        raise BackendError(f"{len(sut_impl.errors)} inference calls failed under LoadGen; first: "
                           f"{type(first).__name__}: {first}") from first

    detail = parse_detail_log(log_dir / "mlperf_log_detail.txt")
    trace_path = log_dir / "mlperf_log_trace.json"
    samples = parse_trace_samples(trace_path) if traced else None
    if trace_path.exists():
        trace_path.unlink()  # ~1 KB per sample; its samples are in the record now
    accuracy_log = log_dir / "mlperf_log_accuracy.json"
    if accuracy_log.exists() and accuracy_log.stat().st_size <= 16:
        # Performance mode logs no responses ("[]"); a stray .json beside the records would be taken for one.
        accuracy_log.unlink()
    return _measurement(scenario, b, detail, samples, sut_impl, log_dir)


def _no_op(_samples: list[int]) -> None:
    return None


def parse_detail_log(path: Path) -> dict[str, Any]:
    """LoadGen's ``mlperf_log_detail.txt`` as {key: value} (``:::MLLOG {json}`` lines; the last value of a key wins).

    Errors and warnings (``metadata.is_error`` / ``is_warning``) are collected
    under ``"_errors"`` and ``"_warnings"``.
    """
    out: dict[str, Any] = {"_errors": [], "_warnings": []}
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise BackendError(f"LoadGen wrote no detail log at {path}: {e}") from None
    for line in lines:
        if not line.startswith(":::MLLOG "):
            continue
        try:
            entry = json.loads(line[len(":::MLLOG "):])
        except json.JSONDecodeError:
            continue
        key, value = entry.get("key"), entry.get("value")
        meta = entry.get("metadata") or {}
        if meta.get("is_error"):
            out["_errors"].append(f"{key}: {value}")
        elif meta.get("is_warning"):
            out["_warnings"].append(f"{key}: {value}")
        out[key] = value
    if "result_validity" not in out:
        raise BackendError(f"{path}: LoadGen's detail log has no result_validity (did the test finish?)")
    return out


def parse_trace_samples(path: Path) -> np.ndarray:
    """Per-sample (sample_seq, query_seq, issue_start_ns, complete_ns) from LoadGen's trace, in issue order.

    ``complete_ns`` is LoadGen's sample latency (from the scheduled time for
    Server); ``issue_start_ns`` is how late LoadGen issued it.
    """
    rows: list[tuple[int, int, int, int]] = []
    match = _SAMPLE_EVENT.match
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = match(line)
            if m:
                rows.append((int(m[1]), int(m[2]), int(m[3]), int(m[4])))
    arr = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
    return arr[np.argsort(arr[:, 0], kind="stable")]


def _percentile_key(pct: float, per_query: bool) -> str:
    return f"result_{pct:.2f}_percentile_{'per_query_' if per_query else ''}latency_ns"


def _measurement(scenario: Any, b: int, d: dict[str, Any], samples: np.ndarray | None,
                 sut: _SystemUnderTest, log_dir: Path) -> Measurement:
    kind = scenario.kind
    pct = float(scenario.latency_percentile or 90.0)
    source = "loadgen_trace"
    lateness = None
    if kind == "offline" or samples is None or samples.size == 0:
        lat = np.asarray(sut.call_ns, dtype=np.int64)
        source = "sut_calls"
    elif kind == "multi_stream":
        # A query's latency is the latency of its slowest sample (LoadGen's definition).
        q = samples[:, 1]
        order = np.unique(q, return_index=True)[1]
        lat = np.maximum.reduceat(samples[:, 3], order) if order.size else samples[:, 3]
    else:
        lat = samples[:, 3].copy()
        if kind == "server":
            lateness = summarize(np.maximum(samples[:, 2], 0))

    queries = int(d.get("result_query_count") or lat.size)
    start = sut.first_issue_ns or 0
    samples_total = None
    if kind == "offline":
        # samples/s = samples / time to the last completed sample: LoadGen's max latency.
        duration = int(d.get("result_max_latency_ns") or (sut.last_done_ns - start))
        samples_total = int(d.get("generated_samples_per_query") or len(sut.call_ns) * b)
        queries = len(sut.call_ns)
    else:
        duration = max(1, sut.last_done_ns - start)

    if kind == "single_stream":
        headline = d.get(_percentile_key(pct, False))
    elif kind == "multi_stream":
        headline = d.get(_percentile_key(pct, True))
    elif kind == "server":
        headline = d.get("result_completed_samples_per_sec")
    else:
        headline = d.get("result_samples_per_second")

    reasons = []
    if d.get("result_validity") != "VALID":
        why = str(d.get("result_invalid_reason") or "").strip()
        flags = [name for key, name in (("result_min_duration_met", "min duration"),
                                        ("result_min_queries_met", "min queries"),
                                        ("result_perf_constraints_met", "performance constraints"),
                                        ("early_stopping_met", "early stopping")) if d.get(key) is False]
        reasons.append("LoadGen: result INVALID" + (f" ({', '.join(flags)} not met)" if flags else "")
                       + (f": {why}" if why else ""))
    reasons.extend(f"LoadGen error: {e}" for e in d["_errors"])
    met = d.get("result_min_duration_met") is not False and d.get("result_min_queries_met") is not False
    keep = {k: v for k, v in d.items() if k.startswith(("result_", "early_stopping", "effective_", "generated_"))}
    keep.update(loadgen_version=str(d.get("loadgen_version", "")), package_version=loadgen_version(),
                log_dir=log_dir.name, samples_source=source, warnings=d["_warnings"])
    latency_met = None
    if source == "loadgen_trace":
        # What benchkit's own latency rules judge too (Offline has none; without the trace the samples differ).
        latency_met = keep["latency_constraints_met"] = d.get("early_stopping_met") is not False and \
            d.get("result_perf_constraints_met") is not False
    extra: dict[str, Any] = {"mlperf": keep}
    if kind == "server":
        extra["target_qps"] = float(scenario.target_qps)
        extra["issue_mode"] = "async" if sut.use_async else "workers"
    return Measurement(
        samples_ns=lat.astype(np.int64, copy=False),
        start_ns=start,
        end_ns=start + duration,
        query_count=queries,
        samples_per_query=b,
        stop_reason="min_duration_and_query_count" if met else "loadgen_minimums_not_met",
        extra=extra,
        samples_total=samples_total,
        engine="mlperf",
        engine_reasons=reasons,
        engine_latency_met=latency_met,
        headline_value=None if headline is None else float(headline),
        issue_lateness_ns=lateness,
    )


__all__ = ["LoadGenUnavailable", "TRACE_MAX_SAMPLES", "measure_with_loadgen", "parse_detail_log",
           "parse_trace_samples", "require_loadgen", "loadgen_settings"]
