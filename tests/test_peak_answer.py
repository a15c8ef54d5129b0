"""--find-peak ends with an answer: an unattainable latency bound stops the search at light load, and every probe's
duration is bounded and announced before the search starts."""

from __future__ import annotations

from types import SimpleNamespace

from benchkit.runner.peak import PeakOptions, probe_bound_ms, run_peak_search
from benchkit.runner.plan import expand
from benchkit.runner.suite import RunOptions, run_suite
from benchkit.spec import parse_spec

SPEC = """
name: peak
workloads: [{{name: tiny-add}}]
backends: [{{name: "null"}}]
scenarios: [{{kind: server, target_qps: {qps}, target_latency_ns: {bound}, min_duration_ms: 50, min_query_count: 20}}]
run: {{profile: quick, isolation: inline}}
"""


def _cell(tmp_path, qps=200, bound=1):
    loaded = parse_spec(SPEC.format(qps=qps, bound=bound), "peak.yaml", tmp_path)
    return loaded, expand(loaded, find_peak=True)


def test_unattainable_bound_ends_the_search_on_a_real_run(tmp_path):
    """A 1 ns p99 bound: no system meets it, and the null backend's light load shows it on the first probe."""
    loaded, cells = _cell(tmp_path)
    told: list[str] = []
    result = run_suite(loaded, cells, RunOptions(out_dir=tmp_path / "out", find_peak=True,
                                                 peak=PeakOptions(max_probes=10, probe_max_s=5)), notice=told.append)
    (peak,) = result.peaks
    assert len(peak.probes) == 1 and peak.peak_qps is None and not peak.converged
    assert "unattainable" in peak.unattainable and "p99" in peak.unattainable
    assert peak.light_load_latency_ns == result.records[0].metrics.latency_ns.p99 > 1
    assert told == ["peak search tiny-add__null__server: at most 10 probes of at most 5 s of measurement each "
                    "(at most 0.8 min, plus load and checks per probe)"]
    assert result.records[0].scenario.settings["max_duration_ms"] == 5000


class SlowSystem:
    """A fake system under test (fault injection): every query takes `service_ns` whatever the load, so a bound
    below that fails at every rate; INVALID above `capacity_qps` for load as well."""

    def __init__(self, service_ns: int, bound_ns: int) -> None:
        self.service_ns, self.bound_ns, self.rates = service_ns, bound_ns, []

    def __call__(self, cell):
        qps = cell.scenario.target_qps
        self.rates.append((qps, cell.scenario.max_duration_ms))
        ok = self.service_ns <= self.bound_ns
        lat = SimpleNamespace(p50=self.service_ns, p90=self.service_ns, p99=self.service_ns)
        return SimpleNamespace(
            validity=SimpleNamespace(valid=ok, findings=[] if ok else [
                SimpleNamespace(check="latency", severity="reason", message="p99 above the bound")]),
            metrics=SimpleNamespace(latency_ns=lat),
            scenario=SimpleNamespace(settings={"target_latency_ns": self.bound_ns, "target_latency_percentile": 99.0}),
            samples_ns=None)


def test_search_shrinks_only_to_light_load_then_answers(tmp_path):
    _, (cell,) = _cell(tmp_path, qps=1000, bound=1_000_000)
    system = SlowSystem(service_ns=5_000_000, bound_ns=1_000_000)  # 5 ms per query, bound 1 ms
    peak = run_peak_search(cell, PeakOptions(max_probes=12, probe_max_s=30), system)
    # 1000, 500, ... QPS: load = rate x 5 ms; the search stops at the first probe at <= 10 % load (15.62 QPS).
    assert [q for q, _ in peak.probes] == [1000.0, 500.0, 250.0, 125.0, 62.5, 31.25, 15.62]
    assert peak.unattainable and "busy 7.8% of the time" in peak.unattainable and "5 ms" in peak.unattainable
    assert peak.light_load_latency_ns == 5_000_000
    assert {bound for _, bound in system.rates} == {30_000}  # every probe bounded


def test_probe_bound_never_below_the_minimum_duration(tmp_path):
    _, (cell,) = _cell(tmp_path)
    assert probe_bound_ms(cell.scenario, PeakOptions(probe_max_s=0.01)) == 50
    assert probe_bound_ms(cell.scenario, PeakOptions(probe_max_s=2)) == 2000
