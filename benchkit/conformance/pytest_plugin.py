"""pytest plugin: run a benchkit spec's cells as test items, so a project's CI gates on them.

    pytest --benchkit specs/ci-smoke.yaml [--benchkit-out results] [--benchkit-profile quick]
           [--benchkit-compare BASELINE --benchkit-compare-fail "p50:10%,throughput:10%"]

Each cell (workload x backend x scenario) becomes one test item named by its
cell id (``-k mlp`` and ``-m benchkit`` select them as usual). The spec's
selected items share one suite run, opened through the same driver as
``benchkit run`` (:class:`benchkit.runner.Suite`: run directory, session,
audits, accuracy settings, division, memory limit, power, stability, repeats),
so every spec field has the same effect here as there. An item runs its cell
(``run.repeats`` times), writes each record under
``--benchkit-out/<spec name>/<run id>/``, and fails when a record is INVALID,
listing every reason. A spec that does not load is a usage error
(pytest exit code 4); workloads or backends that cannot be resolved make each
of the spec's selected cells an error with that one-line message.

Registered through the ``pytest11`` entry point, so pytest loads it in every
run of an environment where benchkit is installed. It therefore imports
nothing but pytest and the standard library at import time, and every hook
returns at once unless ``--benchkit`` is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

# The spec nodes that ran, for the terminal summary.
_STASH = pytest.StashKey[list]()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("benchkit", "benchkit: run evaluation-spec cells as tests")
    g.addoption("--benchkit", action="append", default=[], metavar="SPEC",
                help="run this benchkit spec's cells as test items, one per cell (repeatable); "
                     "a file, or the name of a standard spec such as ci-smoke")
    g.addoption("--benchkit-out", default="results", metavar="DIR",
                help="where the cells' records are written (default: results)")
    g.addoption("--benchkit-profile", choices=["quick", "standard", "mlperf", "certify"], default=None,
                help="override the spec's run profile")
    g.addoption("--benchkit-isolation", choices=["process", "inline"], default=None,
                help="override the spec's isolation (default: the spec's, normally a worker process per cell)")
    g.addoption("--benchkit-compare", default=None, metavar="BASELINE",
                help="after the spec's cells, compare their records with the baseline records in BASELINE (files or a "
                     "directory) as `benchkit compare` does; one more test item, failing on a gated regression")
    g.addoption("--benchkit-compare-fail", default=None, metavar="METRIC:N%[,...]",
                help="the gate, as `benchkit compare --fail-on` (e.g. 'p50:10%,throughput:10%'; see the CI guide); "
                     "default with --benchkit-compare: 'headline:10%'")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "benchkit: a benchkit spec cell added by --benchkit")


@pytest.hookimpl(tryfirst=True)  # before -k/-m deselection, so they apply to cells too
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    specs = config.getoption("benchkit")
    if not specs:
        return
    from benchkit.errors import BenchkitError
    from benchkit.spec import load_spec, spec_path

    for name in specs:
        try:
            path = spec_path(name)
            loaded = load_spec(path)
        except BenchkitError as e:
            raise pytest.UsageError(f"--benchkit {name}: {e}") from None
        # Node ids start with the spec as the user named it: `pytest --benchkit ci-smoke` gives
        # "ci-smoke::mlp__onnxruntime__offline", wherever the file lives.
        node = SpecFile.from_parent(session, path=Path(path).resolve(), nodeid=name)
        node.loaded = loaded
        # The public collection hooks, so reporters count and show these items like any others.
        node.ihook.pytest_collectstart(collector=node)
        rep = node.ihook.pytest_make_collect_report(collector=node)
        node.ihook.pytest_collectreport(report=rep)
        if rep.failed:
            raise pytest.UsageError(f"--benchkit {name}: {rep.longreprtext}")
        items.extend(i for i in rep.result if isinstance(i, pytest.Item))


class CellInvalid(Exception):
    """A cell produced an INVALID record (or no measurement)."""

    def __init__(self, record: Any, path: Path) -> None:
        super().__init__(record.cell_id)
        self.record, self.path = record, path


class SpecFile(pytest.File):
    """One spec given to --benchkit; its items are the spec's cells."""

    loaded: Any = None
    suite: Any = None

    def collect(self):
        from benchkit.errors import BenchkitError
        from benchkit.runner.plan import expand

        cfg = self.config
        try:
            cells = expand(self.loaded, profile=cfg.getoption("benchkit_profile"))
        except BenchkitError as e:
            raise pytest.UsageError(f"--benchkit {self.path}: {e}") from None
        for cell in cells:
            item = CellItem.from_parent(self, name=cell.cell_id)
            item.cell = cell
            item.add_marker("benchkit")
            yield item
        if cfg.getoption("benchkit_compare"):
            gate = CompareItem.from_parent(self, name="benchkit-compare")
            gate.add_marker("benchkit")
            yield gate

    def setup(self) -> None:
        """Once per spec, before its first selected cell: resolve workloads and backends, open the suite run."""
        from benchkit.errors import BenchkitError
        from benchkit.runner.preflight import preflight
        from benchkit.runner.suite import RunOptions, Suite

        cfg = self.config
        items = [i for i in self.session.items if isinstance(i, CellItem) and i.parent is self]
        options = RunOptions(out_dir=Path(cfg.getoption("benchkit_out")), profile=cfg.getoption("benchkit_profile"),
                             isolation=cfg.getoption("benchkit_isolation"))
        problem = None
        try:
            cells = [i.cell for i in items]
            preflight(self.loaded, cells, options.cache_dir)
            self.suite = Suite.open(self.loaded, cells, options).__enter__()
        except BenchkitError as e:
            problem = f"{type(e).__name__}: {e}"
        if problem:  # outside the except block: the message alone, no chained traceback
            pytest.fail(problem, pytrace=False)
        self.suite.session.measure_idle()
        self.run_dir = self.suite.run_dir
        self.written: list[tuple[Any, Path]] = []
        cfg.stash.setdefault(_STASH, []).append(self)

    def teardown(self) -> None:
        """After the spec's last item: the between-session spread of repeated cells, then the run is closed."""
        suite = getattr(self, "suite", None)
        if suite is not None:
            try:
                suite.finish()
            finally:
                suite.close()
                self.suite = None


class CellItem(pytest.Item):
    """One cell: runs it, writes its record, fails if the record is INVALID."""

    cell: Any = None

    def runtest(self) -> None:
        spec_node: SpecFile = self.parent
        invalid = None
        for repeat in range(1, spec_node.loaded.spec.run.repeats + 1):
            rec, path = spec_node.suite.run_cell(self.cell, repeat)
            spec_node.written.append((rec, path))
            self.user_properties.append(("benchkit_record", str(path)))
            self.user_properties.append(("benchkit_valid", rec.validity.valid))
            if rec.metrics is not None:
                h = rec.metrics.headline
                self.user_properties.append((f"benchkit_{h.name}", h.value))
            if not rec.validity.valid and invalid is None:
                invalid = CellInvalid(rec, path)
        if invalid is not None:
            raise invalid

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, CellInvalid):
            rec, path = excinfo.value.record, excinfo.value.path
            lines = [f"{rec.cell_id}: INVALID"]
            lines += [f"  reason: {r}" for r in rec.validity.reasons]
            if rec.error is not None and rec.error.detail:
                lines += ["  detail:", *("    " + x for x in rec.error.detail.strip().splitlines()[-12:])]
            lines.append(f"  record: {path}")
            return "\n".join(lines)
        from benchkit.errors import BenchkitError

        if isinstance(excinfo.value, BenchkitError):  # e.g. preflight: the message says it all
            return f"{type(excinfo.value).__name__}: {excinfo.value}"
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, f"benchkit cell {self.name}"


class Regression(Exception):
    """The spec's records regressed against the baseline beyond the gate."""


class CompareItem(pytest.Item):
    """After the spec's cells: their records against a baseline, through ``benchkit compare``'s own logic (pooled
    runs, intervals with run-to-run variation, the documented rule for one run per side). pytest-benchmark's
    ``--benchmark-compare-fail``, on benchkit's records."""

    def runtest(self) -> None:
        from benchkit.results.compare import CompareSettings, compare_paths, parse_fail_on

        spec_node: SpecFile = self.parent
        if not spec_node.written:
            pytest.skip("no cell of this spec ran, nothing to compare")
        cfg = self.config
        settings = CompareSettings(fail_on=parse_fail_on(cfg.getoption("benchkit_compare_fail") or "headline:10%"))
        result = compare_paths([cfg.getoption("benchkit_compare")], [p for _, p in spec_node.written], settings)
        self.user_properties.append(("benchkit_compare", result.counts()))
        failures = result.failures()
        if failures:
            lines = [f"{p.key.label()} {m.metric} {m.change * 100:+.1f}% (interval {m.ci_low:.3f}-{m.ci_high:.3f}) "
                     f"beyond {m.threshold:.0%}" for p, m in failures]
            raise Regression("\n".join(lines))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, Regression):
            return f"regression against {self.config.getoption('benchkit_compare')}:\n{excinfo.value}"
        from benchkit.errors import BenchkitError

        if isinstance(excinfo.value, BenchkitError):
            return f"{type(excinfo.value).__name__}: {excinfo.value}"
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, "benchkit compare against the baseline"


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    nodes = config.stash.get(_STASH, [])
    if not nodes:
        return
    from benchkit._format import fmt_value

    tr = terminalreporter
    tr.section("benchkit")
    for node in nodes:
        if not node.written:
            continue
        valid = sum(r.validity.valid for r, _ in node.written)
        tr.write_line(f"{len(node.written)} record(s) in {node.run_dir}: {valid} VALID, "
                      f"{len(node.written) - valid} INVALID")
        for rec, _ in node.written:
            head = "-"
            if rec.metrics is not None:
                h = rec.metrics.headline
                head = f"{h.name} {fmt_value(h.value, h.unit)}"
            tr.write_line(f"  {rec.cell_id}: {'VALID' if rec.validity.valid else 'INVALID'}  {head}")
