"""Repetitions: each cell measured in N fresh worker processes, in rounds; the spread between sessions beside the
spread within each run; an interrupted set of sessions completed by --resume."""

from __future__ import annotations

import pytest

from benchkit.results import records
from benchkit.runner import repeats

from conftest import run_cli

SPEC = """
name: again
workloads: [{{name: tiny, model: {model}}}]
backends: [{{name: fault-inject, label: a}}, {{name: fault-inject, label: b}}]
scenarios: [{{kind: single_stream, min_duration_ms: 100, min_query_count: 10}}]
run: {{profile: quick, repeats: 2, power: {{meters: []}}}}
"""


@pytest.mark.slow  # four worker processes
def test_each_session_in_a_fresh_process_with_the_spread_between_them(tmp_path, tiny_model, fakes_on_path):
    spec = tmp_path / "again.yaml"
    spec.write_text(SPEC.format(model=tiny_model))
    # this process plans and collects; each session is a real worker process (the subject)
    proc = run_cli("run", spec, "--out", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "o" / "again").iterdir()
    recs = {p.name: records.load(p) for p in run_dir.glob("*.json")}
    assert sorted(recs) == ["tiny__a__single_stream-r1.json", "tiny__a__single_stream-r2.json",
                            "tiny__b__single_stream-r1.json", "tiny__b__single_stream-r2.json"]
    pids = {r.backend.options["pid"] for r in recs.values()}
    assert len(pids) == 4  # four sessions, four worker processes
    # rounds: both cells' first sessions before either's second
    order = sorted(recs.values(), key=lambda r: r.started_at)
    assert [r.repeat.index for r in order] == [1, 1, 2, 2]
    for name in ("a", "b"):
        r1, r2 = recs[f"tiny__{name}__single_stream-r1.json"], recs[f"tiny__{name}__single_stream-r2.json"]
        assert r1.cell_id == r2.cell_id == f"tiny__{name}__single_stream"
        assert (r1.repeat.index, r2.repeat.index, r1.repeat.count) == (1, 2, 2)
        assert r1.repeat.between == r2.repeat.between
        b = r1.repeat.between
        assert b.values == [r1.metrics.headline.value, r2.metrics.headline.value]
        assert b.within_run_cv == [r1.metrics.latency_ns.cv, r2.metrics.latency_ns.cv]
        assert b.min <= b.mean <= b.max and b.cv == pytest.approx(b.stdev / b.mean)
    assert "spread between sessions" in proc.stdout and "between-session CV" in proc.stdout


def _rec(value: float | None, cv: float = 0.1):
    from types import SimpleNamespace

    if value is None:
        return SimpleNamespace(metrics=None)
    return SimpleNamespace(metrics=SimpleNamespace(headline=SimpleNamespace(name="throughput", unit="1/s",
                                                                            value=value),
                                                   latency_ns=SimpleNamespace(cv=cv)))


def test_spread_arithmetic_and_failed_sessions():
    s = repeats.spread([_rec(100.0, 0.01), _rec(None), _rec(110.0, 0.02), _rec(90.0, 0.03)])
    assert s.values == [100.0, None, 110.0, 90.0] and s.within_run_cv == [0.01, None, 0.02, 0.03]
    assert s.mean == pytest.approx(100.0) and s.stdev == pytest.approx(10.0) and s.cv == pytest.approx(0.1)
    assert (s.min, s.max, s.metric, s.unit) == (90.0, 110.0, "throughput", "1/s")
    one = repeats.spread([_rec(5.0), _rec(None)])
    assert one.mean == 5.0 and one.stdev is None and one.cv is None


def test_resume_completes_the_missing_sessions_and_then_the_summary(tmp_path, tiny_model, fakes_on_path, capsys):
    from benchkit.cli import main

    spec = tmp_path / "again.yaml"
    spec.write_text(SPEC.format(model=tiny_model).replace("label: b}", "label: b, options: {fault: raise_load}}"))
    out = tmp_path / "o"
    args = ["run", str(spec), "--out", str(out), "--inline"]  # in-process: this test is about the bookkeeping
    assert main(args) == 1
    (run_dir,) = (out / "again").iterdir()
    (run_dir / "tiny__a__single_stream-r2.json").unlink()  # as if killed before it was measured
    kept = records.load(run_dir / "tiny__a__single_stream-r1.json")
    capsys.readouterr()
    assert main(args + ["--resume"]) == 1
    assert "3 of 4 cells done, 1 to run" in " ".join(capsys.readouterr().err.split())
    r1 = records.load(run_dir / "tiny__a__single_stream-r1.json")
    r2 = records.load(run_dir / "tiny__a__single_stream-r2.json")
    assert r1.metrics == kept.metrics and r1.repeat.between == r2.repeat.between
    assert r1.repeat.between.values == [r1.metrics.headline.value, r2.metrics.headline.value]
    failed = records.load(run_dir / "tiny__b__single_stream-r1.json")  # every session of b failed: no figures
    assert failed.repeat.between.values == [None, None] and failed.repeat.between.mean is None
