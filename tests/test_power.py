"""Power meters on fabricated inputs: a powercap tree in a temporary folder, a fake NVML module, a file and a
local HTTP endpoint; the sampler's arithmetic; and power figures in records end to end."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from benchkit import power
from benchkit.results import records
from benchkit.errors import PowerMeterError
from benchkit.power.external import ExternalMeter
from benchkit.power.nvml import NvmlMeter
from benchkit.power.rapl import RaplMeter
from benchkit.power.sampler import PowerSampler, integrate

from conftest import fake_nvml, run_cli


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    os.replace(tmp, path)  # readers never see a half-written counter


def make_powercap(root: Path, packages: int = 1, wrap_uj: int = 262_143_328_850) -> Path:
    """A /sys/class/powercap look-alike: package zones with core and dram subzones, plus psys."""
    for p in range(packages):
        zone = root / f"intel-rapl:{p}"
        zone.mkdir(parents=True)
        _write(zone / "name", f"package-{p}\n")
        _write(zone / "energy_uj", "1000000\n")
        _write(zone / "max_energy_range_uj", f"{wrap_uj}\n")
        for i, label in enumerate(("core", "dram")):
            sub = root / f"intel-rapl:{p}:{i}"
            sub.mkdir()
            _write(sub / "name", f"{label}\n")
            _write(sub / "energy_uj", "500000\n")
            _write(sub / "max_energy_range_uj", f"{wrap_uj}\n")
    psys = root / f"intel-rapl:{packages}"
    psys.mkdir()
    _write(psys / "name", "psys\n")
    _write(psys / "energy_uj", "0\n")
    _write(psys / "max_energy_range_uj", f"{wrap_uj}\n")
    return root


# --------------------------------------------------------------------------- RAPL


def test_rapl_reads_packages_and_dram_and_skips_psys_and_core(tmp_path):
    root = make_powercap(tmp_path / "powercap", packages=2)
    m = RaplMeter({"root": str(root)})
    m.open()
    assert m.read_as == "energy_j"
    assert sorted(m.domains) == ["dram-0", "dram-1", "package-0", "package-1"]
    assert m.read() == {d: 0.0 for d in m.domains}  # cumulative since open
    _write(root / "intel-rapl:0" / "energy_uj", "3500000\n")  # +2.5 J
    _write(root / "intel-rapl:1:1" / "energy_uj", "750000\n")  # dram-1 +0.25 J
    r = m.read()
    assert r["package-0"] == pytest.approx(2.5) and r["dram-1"] == pytest.approx(0.25)
    assert r["package-1"] == 0.0 and r["dram-0"] == 0.0


def test_rapl_unwraps_its_counter(tmp_path):
    root = make_powercap(tmp_path / "pc", wrap_uj=10_000_000)  # wraps every 10 J
    m = RaplMeter({"root": str(root), "domains": ["package"]})
    m.open()
    counter = root / "intel-rapl:0" / "energy_uj"
    total = 0.0
    for raw in (9_000_000, 2_000_000, 8_000_000, 1_000_000):  # wraps twice
        _write(counter, f"{raw}\n")
        total = m.read()["package-0"]
    # 1 -> 9 (+8), wrap -> 2 (+3), -> 8 (+6), wrap -> 1 (+3): 20 J
    assert total == pytest.approx(20.0)


def test_rapl_missing_or_unreadable_says_why(tmp_path, monkeypatch):
    with pytest.raises(PowerMeterError, match="no powercap interface at .*nope"):
        RaplMeter({"root": str(tmp_path / "nope")}).open()
    root = make_powercap(tmp_path / "pc")
    import benchkit._fsutil as fsutil

    real = os.open

    def denied(path, *a, **k):  # root can read anything, so the permission error is injected
        if str(path).endswith("energy_uj"):
            raise PermissionError(13, "Permission denied")
        return real(path, *a, **k)

    monkeypatch.setattr(fsutil.os, "open", denied)
    with pytest.raises(PowerMeterError, match="permission denied .*root only since Linux 5.10"):
        RaplMeter({"root": str(root)}).open()


@pytest.mark.parametrize("options, match", [
    ({"bogus": 1}, "unknown option"),
    ({"domains": ["package", "gpu"]}, "domains must be"),
    ({"domains": []}, "domains must be"),
])
def test_rapl_bad_options(options, match):
    with pytest.raises(PowerMeterError, match=match):
        RaplMeter(options)


# --------------------------------------------------------------------------- NVML (fake module)


def test_nvml_uses_the_energy_counter_where_supported():
    gpus = [fake_nvml.FakeGpu(energy_mj=5_000), fake_nvml.FakeGpu(energy_mj=7_000)]
    nv = fake_nvml.make(gpus)
    m = NvmlMeter({}, nvml=nv)
    m.open()
    assert m.read_as == "energy_j" and m.domains == ["gpu0", "gpu1"]
    gpus[0].energy_mj += 1_500
    assert m.read() == {"gpu0": 6.5, "gpu1": 7.0}
    m.close()
    assert nv.state.inits == 0  # every nvmlInit was paired with nvmlShutdown


def test_nvml_falls_back_to_sampled_power_and_honours_device_choice():
    gpus = [fake_nvml.FakeGpu(energy_mj=None, power_mw=250_000), fake_nvml.FakeGpu(energy_mj=None, power_mw=90_500)]
    m = NvmlMeter({"devices": [1]}, nvml=fake_nvml.make(gpus))
    m.open()
    assert m.read_as == "power_w" and m.domains == ["gpu1"]
    assert m.read() == {"gpu1": 90.5}
    with pytest.raises(PowerMeterError, match="not supported here"):
        NvmlMeter({"method": "energy"}, nvml=fake_nvml.make(gpus)).open()


def test_nvml_unavailable_reasons():
    with pytest.raises(PowerMeterError, match="NVML cannot start .*Driver Not Loaded"):
        NvmlMeter({}, nvml=fake_nvml.make([fake_nvml.FakeGpu()], fail_init=True)).open()
    with pytest.raises(PowerMeterError, match=r"no NVIDIA device \[3\]"):
        NvmlMeter({"devices": [3]}, nvml=fake_nvml.make([fake_nvml.FakeGpu()])).open()
    with pytest.raises(PowerMeterError, match="method must be"):
        NvmlMeter({"method": "guess"})


def test_nvml_without_the_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # as if nvidia-ml-py were not installed
    with pytest.raises(PowerMeterError, match=r"pip install -e '.*\[nvml\]'"):
        NvmlMeter({}).open()


# --------------------------------------------------------------------------- external


class _MeterServer:
    """A lab meter on 127.0.0.1 serving its latest reading; stopped by the fixture even on failure."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/power"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def meter_server():
    srv = _MeterServer(b'{"power_w": 35.5}')
    try:
        yield srv
    finally:
        srv.stop()


def test_external_meter_over_http(meter_server):
    m = ExternalMeter({"url": meter_server.url, "domain": "wall"})
    m.open()
    assert m.domains == ["wall"] and m.read_as == "power_w" and m.read() == {"wall": 35.5}
    meter_server.body = b"not a number: secret-token-123"
    with pytest.raises(PowerMeterError, match="not a valid reading") as e:
        m.read()
    assert "secret-token-123" not in str(e.value)  # the reply is never quoted (it may be any web page)


def test_external_meter_follows_no_redirect_and_no_proxy(meter_server, monkeypatch):
    """The meter talks to the address given and nowhere else: a 3xx is an error, the proxy variables are ignored."""
    hits = []

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(302)
            self.send_header("Location", meter_server.url)
            self.end_headers()

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # a proxy that would refuse: must not be used
        m = ExternalMeter({"url": f"http://127.0.0.1:{srv.server_address[1]}/power"})
        with pytest.raises(PowerMeterError, match=r"HTTP status 302, a redirect, which is not followed"):
            m.open()
        assert hits == ["/power"]
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


def test_external_meter_from_a_file(tmp_path):
    f = tmp_path / "pdu.txt"
    f.write_text("123.25\n")
    m = ExternalMeter({"file": str(f)})
    m.open()
    assert m.read() == {"external": 123.25}
    f.write_text(json.dumps({"energy_j": 10.0}))
    assert ExternalMeter({"file": str(f), "read_as": "energy_j"}).read() == {"external": 10.0}
    f.write_text("-3")
    with pytest.raises(PowerMeterError, match="not a valid reading"):
        m.read()
    with pytest.raises(PowerMeterError, match="cannot read"):
        ExternalMeter({"file": str(tmp_path / "missing")}).open()
    f.write_text("root:x:0:0:root:/root:/bin/bash\n")
    with pytest.raises(PowerMeterError, match=r"not a valid reading \(32 bytes\)") as e:
        m.read()
    assert "root" not in str(e.value).replace(str(tmp_path), "")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(PowerMeterError, match="a FIFO"):  # refused at once: a FIFO without a writer would hang
        ExternalMeter({"file": str(fifo)}).open()


@pytest.mark.parametrize("options, match", [
    ({}, "exactly one of url or file"),
    ({"url": "http://x", "file": "y"}, "exactly one of url or file"),
    ({"url": "ftp://127.0.0.1/x"}, "http:// or https://"),
    ({"file": "x", "read_as": "amps"}, "read_as must be"),
    ({"file": "x", "timeout_s": 0}, "timeout_s"),
])
def test_external_meter_bad_options(options, match):
    with pytest.raises(PowerMeterError, match=match):
        ExternalMeter(options)


# --------------------------------------------------------------------------- registry and sampler


def test_builtin_meters_are_registered_through_the_entry_point_group():
    assert {"rapl", "nvml", "external"} <= set(power.names())
    assert power.load_meter_class("rapl") is RaplMeter
    with pytest.raises(PowerMeterError, match="unknown power meter 'wattmeter'"):
        power.load_meter_class("wattmeter")
    # 'auto' never picks a meter that needs options
    assert "external" not in dict(power.configured("auto"))


def test_open_meters_reports_unreadable_ones_without_failing(tmp_path):
    from benchkit.spec import PowerMeterSpec

    good = make_powercap(tmp_path / "pc")
    opened, unavailable = power.open_meters((PowerMeterSpec(name="rapl", options={"root": str(good)}),
                                             PowerMeterSpec(name="rapl", options={"root": str(tmp_path / "no")})))
    assert [m.name for m in opened] == ["rapl"]
    assert len(unavailable) == 1 and unavailable[0].startswith("rapl: no powercap interface")
    with pytest.raises(PowerMeterError, match="unknown option"):
        power.open_meters((PowerMeterSpec(name="rapl", options={"rooot": "/"}),))


def test_integrate_counter_and_trapezoid():
    t = [0, 1_000_000_000, 2_000_000_000, 4_000_000_000]
    assert integrate("energy_j", t, [10.0, 30.0, 50.0, 90.0]) == 80.0
    assert integrate("power_w", t, [100.0, 100.0, 200.0, 200.0]) == pytest.approx(100 + 150 + 400)
    assert integrate("power_w", t[:1], [5.0]) == 0.0


class SteadyMeter(power.PowerMeter):
    """Synthetic meter for the sampler test: a counter rising at `watts` in real time, or a constant power."""

    name = "steady"

    def __init__(self, watts: float, read_as: str) -> None:
        super().__init__({})
        self.watts, self.read_as, self.t0 = watts, read_as, time.perf_counter()

    def open(self):
        self.domains = ["d"]

    def read(self):
        if self.read_as == "power_w":
            return {"d": self.watts}
        return {"d": self.watts * (time.perf_counter() - self.t0)}


def test_sampler_windows_give_average_power():
    meters = [SteadyMeter(40.0, "energy_j"), SteadyMeter(25.0, "power_w")]
    for m in meters:
        m.open()
    s = PowerSampler(meters, interval_s=0.02)
    s.start()
    try:
        idle = s.measure_idle(0.3)
        assert 280_000_000 <= idle.duration_ns < 3_000_000_000
        by = {d.meter + d.read_as: d for d in idle.domains}
        assert by["steadypower_w"].avg_power_w == pytest.approx(25.0)
        assert by["steadyenergy_j"].avg_power_w == pytest.approx(40.0, rel=0.05)
        assert by["steadypower_w"].readings >= 3
        assert idle.avg_power_w == pytest.approx(65.0, rel=0.05)
    finally:
        s.close()


def test_sampler_marks_a_meter_that_fails_mid_run():
    class Flaky(SteadyMeter):
        def read(self):
            raise OSError("meter unplugged")

    m = Flaky(1.0, "power_w")
    m.open()
    s = PowerSampler([m], interval_s=0.01)
    s.begin()
    w = s.end()
    assert w.domains == [] and w.failed == ["steady: read failed: OSError: meter unplugged"]


# --------------------------------------------------------------------------- end to end


def _ramp(counter: Path, watts: float, stop: threading.Event) -> None:
    """Drive a fabricated RAPL counter at a steady `watts` until stopped (as the CPU package would)."""
    t0, base = time.perf_counter(), int(counter.read_text())
    while not stop.wait(0.01):
        _write(counter, f"{base + int(watts * (time.perf_counter() - t0) * 1e6)}\n")


def test_power_figures_in_records_end_to_end(tmp_path, tiny_model, meter_server):
    root = make_powercap(tmp_path / "powercap")
    spec = tmp_path / "power.yaml"
    spec.write_text(f"""
name: power
workloads: [{{name: tiny, model: {tiny_model}}}]
backends: [{{name: onnxruntime, options: {{providers: [CPUExecutionProvider]}}}}]
scenarios: [{{kind: single_stream, min_duration_ms: 600, min_query_count: 10}}]
run:
  profile: quick
  power:
    meters:
      - {{name: rapl, options: {{root: {root}, domains: [package]}}}}
      - {{name: external, options: {{url: "{meter_server.url}", domain: wall}}}}
      - {{name: rapl, options: {{root: {tmp_path / "absent"}}}}}
    idle_ms: 300
    sample_interval_ms: 20
""")
    stop = threading.Event()
    ramp = threading.Thread(target=_ramp, args=(root / "intel-rapl:0" / "energy_uj", 20.0, stop), daemon=True)
    ramp.start()
    try:
        proc = run_cli("run", spec, "--inline", "--out", tmp_path / "o")  # power is the subject, not isolation
    finally:
        stop.set()
        ramp.join(5)
    assert proc.returncode in (0, 1), proc.stderr
    rec = records.load(next((tmp_path / "o").rglob("*.json")))
    p = rec.power
    assert p.available, p.reason
    by = {d.domain: d for d in p.domains}
    assert set(by) == {"package-0", "wall"}
    assert by["wall"].avg_power_w == pytest.approx(35.5) and by["wall"].read_as == "power_w"
    assert by["package-0"].avg_power_w == pytest.approx(20.0, rel=0.35)  # file updates are coarse, timing is not ours
    assert by["wall"].idle_power_w == pytest.approx(35.5) and p.idle_power_w is not None
    m = rec.metrics
    assert p.avg_power_w == pytest.approx(sum(d.avg_power_w for d in p.domains))
    assert p.energy_j == pytest.approx(p.avg_power_w * m.duration_ns / 1e9)
    assert p.energy_per_inference_j == pytest.approx(p.energy_j / m.sample_count)
    assert p.samples_per_s_per_w == pytest.approx(m.throughput_per_s / p.avg_power_w)
    assert p.window_ns >= m.duration_ns * 0.9
    assert len(p.unavailable) == 1 and "absent" in p.unavailable[0]
    assert any(w.startswith("power: figures cover package-0") or w.startswith("power: figures cover rapl/package-0")
               for w in rec.validity.warnings)


def test_no_meter_means_unavailable_with_the_reason(tmp_path, tiny_model):
    spec = tmp_path / "nopower.yaml"
    spec.write_text(f"""
name: nopower
workloads: [{{name: tiny, model: {tiny_model}}}]
backends: [{{name: "null"}}]
scenarios: [{{kind: single_stream, min_duration_ms: 50, min_query_count: 10}}]
run: {{profile: quick, power: {{meters: [{{name: rapl, options: {{root: {tmp_path / "none"}}}}}]}}}}
""")
    from benchkit.runner.plan import expand
    from benchkit.runner.suite import RunOptions, run_suite
    from benchkit.spec import load_spec

    loaded = load_spec(spec)
    res = run_suite(loaded, expand(loaded), RunOptions(out_dir=tmp_path / "o", isolation="inline"))
    p = res.records[0].power
    assert not p.available and p.avg_power_w is None and p.energy_per_inference_j is None
    assert p.reason.startswith("no power meter can be read here: rapl: no powercap interface")
    spec.write_text(spec.read_text().split("run:")[0] + "run: {profile: quick, power: {meters: []}}\n")
    loaded = load_spec(spec)
    p = run_suite(loaded, expand(loaded), RunOptions(out_dir=tmp_path / "o", isolation="inline")).records[0].power
    assert not p.available and p.reason == "no power meter configured (run.power.meters: [])"
