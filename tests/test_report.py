"""benchkit report: self-contained HTML; the browser test opens it in headless Chromium.

The browser test needs Debian's ``chromium`` and ``chromium-driver`` (apt) and
the ``selenium`` package ([test] extra); it drives the system chromedriver
directly, so nothing is downloaded. It is skipped, saying why, only where
those are not installed.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from real_records import real_run
from record_factory import T0, lognormal_ns, make_record

from benchkit import cli, stats
from benchkit.checks.verdict import reason, verdict, warning
from benchkit.results import records
from benchkit.results.records import RepeatInfo, SessionSpread
from benchkit.results.report import ReportError, build_html, views_of
from benchkit.results.report.intervals import downsample_keep_extremes, ratio
from benchkit.results.report.leaderboard import fmt_range, fmt_ratio

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
CHART_KINDS = {"cdf", "throughput-batch", "latency-load", "throughput-latency", "roofline", "variance", "timeline"}

CPU = ("cpu: AMD EPYC 9654", 2.0e12, 4.6e11)
GPU = ("cuda:0 NVIDIA H200", 9.9e14, 4.8e12)


def every_chart_records() -> list:
    """Records that give every chart something to draw: 3 backends, runs, a batch sweep, a load sweep, FLOPs."""
    recs = []
    backends = [("onnxruntime", CPU, 1.0), ("openvino", CPU, 0.8), ("tensorrt", GPU, 0.1)]
    for bi, (be, (dev, peak, bw), scale) in enumerate(backends):
        kw = dict(workload="resnet50-v1.5", backend=be, device=dev, peak_flops_per_s=peak,
                  memory_bandwidth_bytes_per_s=bw, flops=8_200_000_000)
        for run in range(3):  # run-to-run variance
            x = lognormal_ns(1500, median_ns=4_000_000 * scale * (1 + 0.02 * np.sin(run + bi)), seed=10 * run + bi)
            recs.append(make_record(x, kind="single_stream", run_id=f"run{run}", bytes_per_sample=100_000_000,
                                    started_at=T0 + timedelta(days=run, minutes=bi), **kw))
        for b in (1, 4, 16, 64):  # throughput vs batch (and roofline points: intensity grows with the batch)
            x = lognormal_ns(600, median_ns=4_000_000 * scale * b ** 0.7, seed=100 + b + bi)
            recs.append(make_record(x, kind="offline", batch=b, run_id="run0", bytes_per_sample=100_000_000 // b,
                                    started_at=T0 + timedelta(hours=1 + b), **kw))
        for c in (2, 4, 8):  # throughput vs latency: calls in flight
            x = lognormal_ns(600, median_ns=4_000_000 * scale * c ** 0.6, seed=200 + c + bi)
            recs.append(make_record(x, kind="offline", batch=4, concurrency=c, run_id="run0",
                                    started_at=T0 + timedelta(hours=20 + c), **kw))
        for q in (50, 100, 200, 400):  # latency vs load
            x = lognormal_ns(800, median_ns=8_000_000 * scale * (1 + 4 * (q / 450) ** 3), seed=1000 + q + bi)
            late = be == "onnxruntime" and q == 400
            recs.append(make_record(x, kind="server", target_qps=float(q), run_id="run0", valid=not late,
                                    reasons=["p99 exceeds target_latency_ns"] if late else None,
                                    started_at=T0 + timedelta(hours=30 + q / 100), **kw))
    recs.append(make_record(lognormal_ns(900, median_ns=300_000, seed=5), workload="bert-base", backend="onnxruntime",
                            valid=False, reasons=["stopped at max_duration before the minimums were met"]))
    recs.append(make_record(workload="bert-base", backend="openvino", failed=True))
    recs.append(make_record(lognormal_ns(900, median_ns=900_000, seed=6), workload="bert-base", backend="openvino",
                            backend_label="ov-int8", precision="int8"))
    return recs


# --------------------------------------------------------------------------- without a browser


def test_self_contained_and_complete():
    html = build_html(views_of(every_chart_records()), title="t")
    # Offline: nothing fetched - no external script, stylesheet, image or font.
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", html)
    assert "@import" not in html and "url(http" not in html
    assert set(re.findall(r'<svg class="chart" data-kind="([a-z-]+)"', html)) == CHART_KINDS
    assert 'class="nodata"' not in html
    assert html.count('<table class="sortable leaderboard"') == 4  # resnet50 x 3 scenarios + bert-base
    assert 'data-status="INVALID"' in html and 'data-status="FAILED"' in html
    assert html.count(">in flight</th>") == 1  # the Offline table of resnet50, which has calls-in-flight records
    assert "stopped at max_duration before the minimums were met" in html


def test_missing_data_says_so():
    html = build_html(views_of([make_record(lognormal_ns(300, seed=1)),
                                make_record(workload="gemm", keep_samples=False)]))
    kinds = dict(re.findall(r'<p class="nodata" data-kind="([a-z-]+)">no data: ([^<]+)</p>', html))
    assert set(kinds) == {"cdf", "latency-load", "throughput-latency", "roofline", "variance"}
    assert "no Server records" in kinds["latency-load"] and "more than one run" in kinds["variance"]
    assert "keep_samples" in kinds["cdf"]
    with pytest.raises(ReportError):
        build_html([])


def test_cli_on_real_records(tmp_path, capsys):
    _, run_dir = real_run()
    out = tmp_path / "r.html"
    assert cli.main(["report", str(run_dir), "-o", str(out), "--title", "ci smoke"]) == 0
    html = out.read_text()
    assert "<title>ci smoke</title>" in html and "tiny-add · single_stream" in html and "tiny-add · offline" in html
    assert cli.main(["report", str(tmp_path / "none"), "-o", str(out)]) == 2


# --------------------------------------------------------------------------- intervals, ratios, time chart, notes


class _Tables(HTMLParser):
    """Each table's rows by id: (the row's attributes, [(cell attributes, cell text)])."""

    def __init__(self, html: str):
        super().__init__()
        self.tables: dict[str, list[tuple[dict, list[tuple[dict, str]]]]] = {}
        self._table = self._row = self._cell = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id"):
            self._table = self.tables.setdefault(a["id"], [])
        elif tag == "tr" and self._table is not None:
            self._row = (a, [])
        elif tag == "td" and self._row is not None:
            self._cell = (a, [])

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row[1].append((self._cell[0], " ".join("".join(self._cell[1]).split())))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row[1]:
                self._table.append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1].append(data + " ")


def _rows(html: str, table_id: str) -> list[dict]:
    """A leaderboard's rows as {column name: (attributes, text)} plus the row's own attributes under ``tr``."""
    heads = re.search(rf'<table[^>]* id="{table_id}".*?<thead><tr>(.*?)</tr>', html).group(1)
    names = [re.sub(r"<[^>]+>", "", h) for h in re.findall(r"<th[^>]*>(.*?)</th>", heads)]
    return [dict(zip(names, cells), tr=attrs) for attrs, cells in _Tables(html).tables[table_id]]


def known_samples(scale: int = 1000, seed: int = 3) -> np.ndarray:
    """The latencies 1..1000 x scale ns in a shuffled issue order: p90 (LoadGen's rule) is sample 901."""
    return np.random.default_rng(seed).permutation(np.arange(1, 1001)) * scale


def test_latency_headline_interval_is_the_order_statistics_one():
    x = known_samples()
    html = build_html(views_of([make_record(x, workload="known")]))
    (row,) = _rows(html, "lb-known-single-stream")
    assert row["p90 ↓"][1] == "901 µs"
    # Independently: ranks n q -/+ z sqrt(n q (1 - q) D) around index n q, clamped, D the design effect.
    n, q, z = 1000, 0.9, 1.959963984540054
    d = stats.quantile_design_effect(x, 901_000)
    lo, hi = np.sort(x)[math.floor(900 - z * math.sqrt(n * q * (1 - q) * d))], \
        np.sort(x)[math.ceil(900 + z * math.sqrt(n * q * (1 - q) * d))]
    assert 870_000 < lo < 901_000 < hi < 930_000
    attrs, text = row["95% interval"]
    assert text == f"{fmt_range(lo, hi, 'ns')} ±{(hi - lo) / 2 / 901_000:.1%}"
    assert float(attrs["data-sort"]) == pytest.approx((hi - lo) / 2 / 901_000, rel=1e-5)
    assert "distribution-free" in attrs["title"] and "p90" in attrs["title"]


def test_throughput_headline_interval_is_the_mean_latencys():
    x = known_samples()
    rec = make_record(x, workload="known", kind="offline", batch=4)
    (row,) = _rows(build_html(views_of([rec])), "lb-known-offline")
    mean, lo, hi = stats.mean_interval(x)
    thr = rec.metrics.headline.value
    attrs, text = row["95% interval"]
    assert text.startswith(fmt_range(thr * mean / hi, thr * mean / lo, "samples/s"))
    assert float(attrs["data-sort"]) == pytest.approx((mean / lo - mean / hi) / 2, rel=1e-5)
    assert "mean latency" in attrs["title"]
    assert "samples/s" not in [k for k in row if k != "samples/s ↑"]  # the headline is samples/s: not twice


def test_no_samples_no_interval_and_it_says_why():
    (row,) = _rows(build_html(views_of([make_record(workload="gemm", keep_samples=False)])), "lb-gemm-single-stream")
    attrs, text = row["95% interval"]
    assert text == "n/a" and "keep_samples" in attrs["title"]
    server = make_record(lognormal_ns(400, seed=2), workload="srv", kind="server", target_qps=50.0)
    (row,) = _rows(build_html(views_of([server])), "lb-srv-server")
    assert row["95% interval"][1] == "n/a" and "offered load" in row["95% interval"][0]["title"]


def test_runs_give_their_spread_and_repeat_blocks_too():
    recs = [make_record(lognormal_ns(500, median_ns=m, seed=i), workload="r", run_id=f"run{i}",
                        started_at=T0 + timedelta(hours=i)) for i, m in enumerate((100_000, 110_000, 120_000))]
    (row,) = _rows(build_html(views_of(recs)), "lb-r-single-stream")
    heads = [r.metrics.headline.value for r in recs]
    attrs, text = row["runs"]
    assert text.startswith("3 mean ") and fmt_range(min(heads), max(heads), "ns") in text
    assert "3 runs" in attrs["title"]
    # One record of a run with run.repeats: 3 speaks for its sessions through its repeat block.
    one = recs[0].model_copy(update={"repeat": RepeatInfo(index=3, count=3, between=SessionSpread(
        metric="latency_p90_ns", unit="ns", values=[100_000.0, None, 130_000.0]))})
    (row,) = _rows(build_html(views_of([one])), "lb-r-single-stream")
    assert row["runs"][1].startswith("1 mean 115 µs") and "100–130 µs" in row["runs"][1]
    assert "repeat block" in row["runs"][0]["title"]


def _pair(**kw) -> list:
    """Two backends with the same latencies, one twice as slow: the ratio is exactly 2 (or 1/2)."""
    x = known_samples()
    return [make_record(x, workload="pair", backend="fast", **kw),
            make_record(x * 2, workload="pair", backend="slow", started_at=T0 + timedelta(minutes=1), **kw)]


@pytest.mark.parametrize("kind", ["single_stream", "offline"])
def test_ratio_to_baseline_is_higher_is_better_aware(kind):
    recs = _pair(kind=kind)
    html = build_html(views_of(recs), baseline="slow")
    sc = kind.replace("_", "-")
    assert re.search(r'<option value="b1" selected>slow fp32</option>', html)
    fast, slow = _rows(html, f"lb-pair-{sc}")
    assert fast["backend"][1] == "fast" and slow["vs baseline"][1] == "baseline"
    # Twice as fast is 2x better whether the headline is a latency (slow / fast) or a throughput (fast / slow).
    attrs, text = fast["vs baseline"]
    assert text.split()[0] == "2.00×" and float(attrs["data-sort"]) == pytest.approx(2.0, rel=1e-3)
    # The ratio's interval: both rows' log distances in quadrature, from each row's own interval.
    def own(r):
        x = np.asarray(r.samples_ns)
        if kind == "single_stream":
            iv = stats.percentile_interval(x, 90)
            return float(iv.low_ns), float(iv.high_ns)
        mean, lo, hi = stats.mean_interval(x)
        return r.metrics.headline.value * mean / hi, r.metrics.headline.value * mean / lo

    expect = ratio(recs[0].metrics.headline.value, recs[1].metrics.headline.value,
                   recs[0].metrics.headline.higher_is_better, own(recs[0]), own(recs[1]))
    lo, hi = text.split()[1].split("–")
    assert (lo, hi) == (fmt_ratio(expect.low), fmt_ratio(expect.high)) and expect.low < 2 < expect.high
    assert "better" in fast["vs baseline"][0]["class"]
    # Every baseline's figures are in the row, for the page's select box; the default follows --baseline.
    table = json.loads(fast["tr"]["data-ratios"])
    assert table["b0"]["t"] == "baseline" and table["b1"]["t"] == "2.00×"
    other = json.loads(slow["tr"]["data-ratios"])
    assert other["b0"]["t"] == "0.500×" and other["b0"]["k"] == "worse"
    # Without --baseline the top-ranked row is the baseline.
    assert _rows(build_html(views_of(recs)), f"lb-pair-{sc}")[0]["vs baseline"][1] == "baseline"


def test_ratio_interval_combines_the_log_distances():
    r = ratio(200.0, 100.0, True, (190.0, 215.0), (90.0, 105.0))
    assert r.value == 2.0
    assert r.low == pytest.approx(2.0 * math.exp(-math.hypot(math.log(200 / 190), math.log(105 / 100))))
    assert r.high == pytest.approx(2.0 * math.exp(math.hypot(math.log(215 / 200), math.log(100 / 90))))
    lat = ratio(100.0, 200.0, False, (95.0, 110.0), (180.0, 230.0))  # a latency: baseline / row
    assert lat.value == 2.0 and lat.low == pytest.approx(2.0 * math.exp(-math.hypot(math.log(200 / 180),
                                                                                     math.log(110 / 100))))
    assert ratio(1.0, 2.0, True).low is None and ratio(1.0, 2.0, True).verdict == "unknown"


def _stalled(n: int = 100_000, at: int = 54_321) -> np.ndarray:
    x = lognormal_ns(n, median_ns=1_000_000, sigma=0.05, seed=11)
    x[at] = 50_000_000  # one 50 ms stall among 1 ms calls
    return x


def test_time_chart_downsampling_keeps_a_stall():
    x = _stalled()
    idx, vals = downsample_keep_extremes(x)
    assert idx.size <= 2000 and np.all(np.diff(idx) > 0)  # issue order, no point twice
    assert 54_321 in idx.tolist() and vals.max() == 50_000_000
    assert vals.min() == x.min()  # the floor too
    small = np.arange(10)
    assert downsample_keep_extremes(small)[0].tolist() == list(range(10))
    html = build_html(views_of([make_record(x, workload="stall")]))
    block = re.search(r'<details class="timeline" id="tl-stall-single-stream[^"]*"[^>]*>(.*?)</details>', html,
                      re.S).group(1)
    assert "open" not in re.search(r'<details class="timeline"[^>]*>', html).group(0)  # collapsed by default
    svg = re.search(r'<svg class="chart" data-kind="timeline".*?</svg>', block, re.S).group(0)
    series = re.search(r'<g class="series"[^>]* data-n="(\d+)"', svg)
    assert int(series.group(1)) <= 2000
    assert "query 54,322: 50 ms" in svg  # the stall is marked, with its place in issue order
    assert re.findall(r'<line class="ref"[^>]*><title>(p\d+) ', svg) == ["p99", "p50"]
    # The drawn line reaches the stall: its highest point is the top of the chart's data.
    ys = [float(y) for y in re.findall(r"[ML][\d.]+,([\d.]+)", re.search(r'<path class="line" d="([^"]+)"', svg)
                                                                .group(1))]
    assert min(ys) == pytest.approx(float(re.search(r'<circle class="pt" cx="[\d.]+" cy="([\d.]+)"[^>]*>'
                                                      r"<title>query 54,322", svg).group(1)))


def test_invalid_never_ranked_above_valid():
    # The INVALID record has the best headline and is the newest: it still sorts below every VALID row.
    recs = [make_record(lognormal_ns(500, median_ns=100_000, seed=1), workload="inv", backend="cheat", valid=False,
                        reasons=["timed outputs differ"], started_at=T0 + timedelta(hours=1)),
            make_record(lognormal_ns(500, median_ns=300_000, seed=2), workload="inv", backend="slow"),
            make_record(lognormal_ns(500, median_ns=200_000, seed=3), workload="inv", backend="fast"),
            make_record(workload="inv", backend="broken", failed=True)]
    rows = _rows(build_html(views_of(recs)), "lb-inv-single-stream")
    assert [(r["backend"][1], r["#"][1], r["tr"]["data-tier"]) for r in rows] == [
        ("fast", "1", "0"), ("slow", "2", "0"), ("cheat", "–", "1"), ("broken", "–", "2")]
    assert "timed outputs differ" in rows[2]["validity"][1]
    # A ratio involving an INVALID row is shown, without a better/worse colour.
    assert rows[2]["vs baseline"][0]["class"] == "num ratio" and "INVALID" in rows[2]["vs baseline"][0]["title"]


LEGACY_CV = ("latency is unstable: coefficient of variation 45.40% exceeds 2.50% (stdev 2,473 ns around a mean of "
             "5,448 ns over 172 samples; 0 low and 24 high outliers); check for frequency scaling, background load or "
             "thermal throttling and consider a longer run")


def _with(rec, *findings):
    return rec.model_copy(update={"validity": verdict(findings)})


def test_cv_warning_only_where_it_means_something_and_stability_findings_shown():
    heavy = lognormal_ns(5000, median_ns=50_000, sigma=1.0, seed=4)  # CV ~130 %, but 5,000 samples
    short = lognormal_ns(20, median_ns=50_000, sigma=0.4, seed=5)  # CV ~40 % over 20 samples: mean poorly known
    assert stats.summarize(heavy).cv > 0.025 and stats.stability_warning(stats.summarize(heavy)) is None
    assert stats.stability_warning(stats.summarize(short))
    drift_msg = "latency drifted during the run: median latency of the last third x1.300"
    recs = [_with(make_record(heavy, workload="cv", backend="heavy"), warning("stability", LEGACY_CV),
                  warning("stability.drift", drift_msg), warning("outputs", "outputs look odd")),
            _with(make_record(short, workload="cv", backend="short"), warning("stability", LEGACY_CV)),
            _with(make_record(short, workload="cv", backend="certified"),
                  reason("stability.headline", "stability (certify profile): the headline is not pinned down"))]
    html = build_html(views_of(recs))
    rows = {r["backend"][1]: r for r in _rows(html, "lb-cv-single-stream")}
    assert "coefficient of variation 45.40%" not in html  # the old rule's warning is not repeated anywhere
    heavy_validity = re.search(r'<tr[^>]*>(?:(?!</tr>).)*?<td[^>]*>heavy</td>.*?</tr>', html, re.S).group(0)
    assert "outputs look odd" in heavy_validity and "too noisy" not in heavy_validity
    assert 'data-check="stability.drift"' in heavy_validity and "x1.300" in heavy_validity
    assert "drift" in rows["heavy"]["95% interval"][1]
    short_row = re.search(r'<tr[^>]*>(?:(?!</tr>).)*?<td[^>]*>short</td>.*?</tr>', html, re.S).group(0)
    assert "latency is too noisy for the run&#x27;s length" in short_row  # today's rule still warns here
    assert "imprecise" in rows["certified"]["95% interval"][1]
    assert re.search(r'class="flag reason" data-check="stability.headline" title="stability \(certify', html)
    assert "drift" in re.search(r'<summary>Latency over time: heavy[^<]*(<span[^>]*>[^<]*</span>)?', html).group(0)


HOSTILE = '"><img src=x onerror=alert(1)><script>alert(2)</script>'


def hostile_records() -> list:
    recs = []
    for i, be in enumerate(("plain", f"be{HOSTILE}")):
        r = make_record(lognormal_ns(400, seed=i), workload=f"w{HOSTILE}", backend="onnxruntime", backend_label=be,
                        precision=f"fp32{HOSTILE}", started_at=T0 + timedelta(minutes=i), run_id=f"r{i}")
        recs.append(_with(r, reason("latency", f"reason {HOSTILE}"), warning("outputs", f"warn {HOSTILE}"),
                          warning("stability.drift", f"drift {HOSTILE}")))
    recs.append(make_record(lognormal_ns(400, seed=9), workload=f"w{HOSTILE}", backend="onnxruntime",
                            backend_label="plain", precision=f"fp32{HOSTILE}", run_id="r9",
                            started_at=T0 + timedelta(hours=1)))
    return recs


def test_every_injected_string_is_escaped():
    html = build_html(views_of(hostile_records()), title=f"t{HOSTILE}", baseline=f"be{HOSTILE}")
    assert html.count("<script") == 1 and "<img" not in html and "onerror=alert(1)>" not in html
    # Attribute values never break out of their quotes: every data-ratios parses as JSON.
    for blob in re.findall(r'data-ratios="([^"]*)"', html):
        from html import unescape
        json.loads(unescape(blob))


# --------------------------------------------------------------------------- in a real browser


@pytest.fixture
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromium-driver are not installed (Debian: apt-get install chromium "
                    "chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the [test] extra)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="benchkit-chromium-")
    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1400,1000"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _column(table, index: int) -> list[str]:
    return [row.find_elements("css selector", "td")[index].get_attribute("data-sort")
            for row in table.find_elements("css selector", "tbody tr")]


def test_report_in_headless_chromium(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    synth = tmp_path / "synthetic"
    stall = make_record(_stalled(20_000, at=12_345), workload="stall", started_at=T0 + timedelta(days=5))
    for i, r in enumerate(every_chart_records() + hostile_records() + [stall]):
        records.save(r, synth / f"{i:02d}-{abs(hash(r.cell_id))}.json")
    _, run_dir = real_run()
    out = tmp_path / "report.html"
    assert cli.main(["report", str(synth), str(run_dir), "-o", str(out)]) == 0

    browser.get(out.resolve().as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    # Nothing was fetched from anywhere, and no script error.
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors

    # Table contents: the resnet50 SingleStream leaderboard ranks the three backends by p90.
    lb = browser.find_element(By.ID, "lb-resnet50-v1-5-single-stream")
    rows = lb.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert [r.find_elements(By.TAG_NAME, "td")[1].text for r in rows] == ["tensorrt", "openvino", "onnxruntime"]
    assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in rows] == ["1", "2", "3"]
    assert all(r.find_elements(By.TAG_NAME, "td")[-3].text.split()[0] == "3" for r in rows)  # three runs each
    assert all("\nmean " in r.find_elements(By.TAG_NAME, "td")[-3].text for r in rows)  # ... and their spread
    # INVALID and FAILED rows are marked, never ranked, and say why.
    bert = browser.find_element(By.ID, "lb-bert-base-single-stream")
    marked = bert.find_elements(By.CSS_SELECTOR, "tbody tr.invalid")
    assert len(marked) == 2 and {m.get_attribute("data-status") for m in marked} == {"INVALID", "FAILED"}
    assert "stopped at max_duration" in marked[0].text and marked[0].find_element(By.TAG_NAME, "td").text == "–"
    assert marked[0].value_of_css_property("background-color") != rows[0].value_of_css_property("background-color")
    server = browser.find_element(By.ID, "lb-resnet50-v1-5-server")
    assert any("INVALID" in r.text for r in server.find_elements(By.CSS_SELECTOR, "tbody tr.invalid"))
    assert browser.find_element(By.ID, "lb-tiny-add-offline")  # the real run is there too

    # Sorting: click the p50 header -> ascending, click again -> descending.
    headers = [th.text.strip() for th in lb.find_elements(By.CSS_SELECTOR, "thead th")]
    p50 = headers.index("p50")
    th = lb.find_elements(By.CSS_SELECTOR, "thead th")[p50]
    th.click()
    asc = [float(v) for v in _column(lb, p50)]
    assert asc == sorted(asc) and th.get_attribute("aria-sort") == "ascending"
    th.click()
    desc = [float(v) for v in _column(lb, p50)]
    assert desc == sorted(desc, reverse=True) and th.get_attribute("aria-sort") == "descending"
    backend_th = lb.find_elements(By.CSS_SELECTOR, "thead th")[1]
    backend_th.click()
    assert [r.find_elements(By.TAG_NAME, "td")[1].text for r in lb.find_elements(By.CSS_SELECTOR, "tbody tr")] == \
        ["onnxruntime", "openvino", "tensorrt"]

    # Ratio to a baseline: the select box swaps in the chosen baseline's figures, and the order keeps its tiers.
    sel = browser.find_element(By.CSS_SELECTOR, 'select.baseline[data-table="lb-resnet50-v1-5-single-stream"]')
    ratio_col = headers.index("vs baseline")

    def ratios():
        return {r.find_elements(By.TAG_NAME, "td")[1].text: r.find_elements(By.TAG_NAME, "td")[ratio_col].text
                for r in lb.find_elements(By.CSS_SELECTOR, "tbody tr")}

    assert ratios()["tensorrt"] == "baseline"  # the top-ranked row until the reader picks another
    before = {r.find_elements(By.TAG_NAME, "td")[1].text: json.loads(r.get_attribute("data-ratios"))
              for r in lb.find_elements(By.CSS_SELECTOR, "tbody tr")}
    Select(sel).select_by_visible_text("onnxruntime fp32")
    now = ratios()
    key = sel.get_attribute("value")
    assert now["onnxruntime"] == "baseline" and float(now["tensorrt"].split("×")[0]) > 5
    assert now["tensorrt"] == f"{before['tensorrt'][key]['t']}\n{before['tensorrt'][key]['c']}"
    cell = [r for r in lb.find_elements(By.CSS_SELECTOR, "tbody tr")
            if r.find_elements(By.TAG_NAME, "td")[1].text == "tensorrt"][0].find_elements(By.TAG_NAME, "td")[ratio_col]
    assert "better" in cell.get_attribute("class") and "onnxruntime fp32" in cell.get_attribute("title")
    lb.find_elements(By.CSS_SELECTOR, "thead th")[ratio_col].click()
    assert [float(v) for v in _column(lb, ratio_col)] == sorted(float(v) for v in _column(lb, ratio_col))

    # INVALID and FAILED rows never sort above a VALID one, whichever column and direction.
    for table in (bert, server):
        for i, th in enumerate(table.find_elements(By.CSS_SELECTOR, "thead th")):
            for _ in range(2):
                th.click()
                tiers = [int(r.get_attribute("data-tier")) for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
                assert tiers == sorted(tiers), (table.get_attribute("id"), i, tiers)

    # Hostile strings stay text: no element was injected, and switching baseline injects none either.
    assert not browser.find_elements(By.TAG_NAME, "img")
    assert len(browser.find_elements(By.TAG_NAME, "script")) == 1
    hostile_sel = [s for s in browser.find_elements(By.CSS_SELECTOR, "select.baseline")
                   if "onerror" in s.get_attribute("data-table") or "img" in s.text]
    assert hostile_sel
    for option in Select(hostile_sel[0]).options:
        Select(hostile_sel[0]).select_by_value(option.get_attribute("value"))
    assert not browser.find_elements(By.TAG_NAME, "img")
    assert any(HOSTILE in td.text for td in browser.find_elements(By.CSS_SELECTOR, "table.leaderboard td"))

    # Latency over time: collapsed by default, drawn when opened, the stall marked where it happened.
    details = browser.find_elements(By.CSS_SELECTOR, "details.timeline")
    assert details and not any(d.get_attribute("open") for d in details)
    first_svg = details[0].find_element(By.CSS_SELECTOR, "svg.chart")
    assert not first_svg.is_displayed()
    browser.execute_script("document.querySelectorAll('details.timeline').forEach(function (d) { d.open = true; });")
    stall_chart = browser.find_element(By.CSS_SELECTOR, "details.timeline[id^=tl-stall] svg.chart")
    marks = [c.find_element(By.TAG_NAME, "title").get_attribute("textContent")
             for c in stall_chart.find_elements(By.CSS_SELECTOR, "circle.pt")]
    assert any(m.startswith("query 12,346: 50 ms") for m in marks), marks
    plot_top = browser.execute_script("return arguments[0].querySelector('rect.plot').getBoundingClientRect().top",
                                      stall_chart)
    line_top = browser.execute_script("return arguments[0].querySelector('path.line').getBoundingClientRect().top",
                                      stall_chart)
    assert abs(line_top - plot_top) < 150  # the drawn line reaches up to the stall, near the top of the plot

    # Every plot rendered: a visible SVG with data series of non-zero size holding data points.
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert {c.get_attribute("data-kind") for c in charts} == CHART_KINDS
    assert not browser.find_elements(By.CSS_SELECTOR, ".nodata")
    for c in charts:
        kind = c.get_attribute("data-kind")
        box = browser.execute_script("var r = arguments[0].getBoundingClientRect(); return [r.width, r.height];", c)
        assert box[0] > 300 and box[1] > 200, (kind, box)
        stats = browser.execute_script("""
            var s = arguments[0].querySelectorAll('g.series');
            return Array.prototype.map.call(s, function (g) {
              var b = g.getBBox();
              return [g.querySelectorAll('circle.pt').length, g.querySelectorAll('path.line').length,
                      b.width, b.height, +g.getAttribute('data-n')];
            });""", c)
        assert stats, kind
        for pts, lines, w, h, n in stats:
            assert n > 0 and (pts > 0 or lines > 0), (kind, stats)
            assert w > 0 or h > 0, (kind, stats)  # a series of points in one column still has a height
        assert sum(s[0] for s in stats) > 0 or kind == "timeline", kind  # a timeline marks only stalls
    roof = browser.find_element(By.CSS_SELECTOR, "svg.chart[data-kind=roofline]")
    refs = [t.get_attribute("textContent") for t in roof.find_elements(By.CSS_SELECTOR, "line.ref title")]
    # A peak and a memory roof per synthetic device (the real run's CPU may add a derived peak of its own).
    assert sorted(r for r in refs if r.startswith(("cpu: AMD EPYC 9654 ", "cuda:0 NVIDIA H200 "))) == [
        "cpu: AMD EPYC 9654 memory roof 460 GB/s", "cpu: AMD EPYC 9654 peak 2 TFLOP/s",
        "cuda:0 NVIDIA H200 memory roof 4.8e+03 GB/s", "cuda:0 NVIDIA H200 peak 990 TFLOP/s"]

    # A screenshot of the whole page, for a human to look at: the time charts collapsed again but the stall's.
    browser.execute_script("document.querySelectorAll('details.timeline').forEach(function (d) {"
                           " d.open = d.id.indexOf('tl-stall') === 0; });")
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1400, min(height + 100, 16000))
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 50_000
    keep = os.environ.get("BENCHKIT_ARTIFACTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "report.png")
        shutil.copy(out, Path(keep) / "report.html")
