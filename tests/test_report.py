"""benchkit report: self-contained HTML; the browser test opens it in headless Chromium.

The browser test needs Debian's ``chromium`` and ``chromium-driver`` (apt) and
the ``selenium`` package ([test] extra); it drives the system chromedriver
directly, so nothing is downloaded. It is skipped, saying why, only where
those are not installed.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from real_records import real_run
from record_factory import T0, lognormal_ns, make_record

from benchkit import cli
from benchkit.results import records
from benchkit.results.report import ReportError, build_html, views_of

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
CHART_KINDS = {"cdf", "throughput-batch", "latency-load", "roofline", "variance"}

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
    assert "stopped at max_duration before the minimums were met" in html


def test_missing_data_says_so():
    html = build_html(views_of([make_record(lognormal_ns(300, seed=1)),
                                make_record(workload="gemm", keep_samples=False)]))
    kinds = dict(re.findall(r'<p class="nodata" data-kind="([a-z-]+)">no data: ([^<]+)</p>', html))
    assert set(kinds) == {"cdf", "latency-load", "roofline", "variance"}
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

    synth = tmp_path / "synthetic"
    for i, r in enumerate(every_chart_records()):
        records.save(r, synth / f"{i:02d}-{r.cell_id}.json")
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
    assert all(r.find_elements(By.TAG_NAME, "td")[-3].text == "3" for r in rows)  # three runs each
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
        assert sum(s[0] for s in stats) > 0, kind
    roof = browser.find_element(By.CSS_SELECTOR, "svg.chart[data-kind=roofline]")
    assert len(roof.find_elements(By.CSS_SELECTOR, "line.ref")) == 4  # a peak and a memory roof per device

    # A screenshot of the whole page, for a human to look at.
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
