"""The structure the folder tree promises: no import cycles, one author of the verdict, one suite driver."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "benchkit"


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                lines.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
    return lines


def import_graph() -> dict[str, set[str]]:
    """Every import of a benchkit module by another, at module level or inside a function (a lazy import is
    still a dependency), except those only a type checker sees."""
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        typing_only = _type_checking_lines(tree)
        is_pkg = path.name == "__init__.py"
        here = name.split(".") if is_pkg else name.split(".")[:-1]
        deps: set[str] = set()
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in typing_only:
                continue
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in MODULES)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
                for a in node.names:
                    full = f"{base}.{a.name}"
                    if full in MODULES:
                        deps.add(full)
                    elif base in MODULES:
                        deps.add(base)
        deps.discard(name)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (c := visit(d)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_in_benchkit():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_executors_are_handed_their_work_and_import_no_orchestration():
    graph = import_graph()
    for name in [m for m in MODULES if m.startswith("benchkit.runner.executors")]:
        assert not graph[name] & {"benchkit.runner.suite", "benchkit.runner.session", "benchkit.runner.cell"}, name


def test_results_never_touch_a_backend():
    graph = import_graph()
    for name in [m for m in MODULES if m.startswith("benchkit.results")]:
        # backends.base holds the protocol's data types (BackendInfo, which a record's backend block extends);
        # the planner (which cells a spec has) and the pure schedule/headline functions of measure/ are read by
        # check-bundle to recompute figures
        bad = {d for d in graph[name] if d.startswith(("benchkit.backends", "benchkit.runner"))
               and d not in ("benchkit.backends.base", "benchkit.runner.plan")}
        assert not bad, f"{name} imports {sorted(bad)}"


def _validity_writers(path: Path) -> list[int]:
    """Lines that construct a Validity or replace a record's validity block."""
    tree = ast.parse(path.read_text())
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if name == "Validity":
                lines.append(node.lineno)
            if name == "model_copy" and isinstance(f, ast.Attribute) and "validity" in ast.unparse(f.value):
                lines.append(node.lineno)
        if isinstance(node, ast.Dict):
            if any(isinstance(k, ast.Constant) and k.value == "validity" for k in node.keys) and not all(
                    isinstance(v, ast.Call) and ast.unparse(v.func).split(".")[-1] in ("amend", "verdict")
                    for k, v in zip(node.keys, node.values) if isinstance(k, ast.Constant) and k.value == "validity"):
                lines.append(node.lineno)
        if isinstance(node, ast.keyword) and node.arg == "validity" and not (
                isinstance(node.value, ast.Call) and ast.unparse(node.value.func).split(".")[-1] in ("amend", "verdict")):
            lines.append(node.value.lineno)
    return lines


def test_the_verdict_has_one_author():
    allowed = {PKG / "checks" / "verdict.py", PKG / "results" / "records.py"}
    writers = {str(p.relative_to(PKG.parent)): ln for p in PKG.rglob("*.py") if p not in allowed
               and (ln := _validity_writers(p))}
    assert writers == {}, f"validity written outside benchkit.checks.verdict: {writers}"


def test_the_writer_finder_sees_a_writer(tmp_path):
    p = tmp_path / "x.py"
    p.write_text("rec.model_copy(update={'validity': v})\nValidity(valid=True)\nf(validity=x)\n"
                 "ok = rec.model_copy(update={'validity': amend(v, [])})\n")
    assert _validity_writers(p) == [1, 2, 3] or sorted(set(_validity_writers(p))) == [1, 2, 3]


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("benchkit.")))
def test_no_module_past_the_size_budget(name):
    # ~500 lines a module, with a stated reason where one is longer.
    reasons = {
        "benchkit.workloads.flops": "one FLOP/byte formula per ONNX operator: a table, read op by op",
        "benchkit.workloads.catalog": "the catalog entries are data; the builders live in workloads/builders",
        "benchkit.spec": "every spec model with its field descriptions, which generate the reference page",
        "benchkit.results.compare": "pooled intervals, the gate and the text/markdown/JSON renderings of one table",
        "benchkit.results.report": "the HTML report: leaderboards, charts and their data in one template module",
        "benchkit.results.bundle": "one function per publication rule (MLPerf's checker is 147k characters)",
        "benchkit.results.records": "every record block with its field descriptions (the reference page)",
        "benchkit.conformance.kit": "one function per conformance check",
        "benchkit.stats": "pure statistics functions, each with its derivation",
        "benchkit.runner.executors.ray": "the Ray executor: shipping, scheduling, node loss and timeouts",
        "benchkit.checks.accuracy": "the accuracy gate end to end: tolerances, the tamper-evident reference cache, "
                                    "comparison, task metric, and the outputs kept for check-bundle's re-check",
    }
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= 520 or name in reasons, f"{name} has {lines} lines"
