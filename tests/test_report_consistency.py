"""Report details that make charts comparable: one colour per backend in every chart, Server CDFs at one offered
load, a roof on CPU rooflines from the derived peak, and one spelling per device."""

from __future__ import annotations

import re
from collections import defaultdict

from record_factory import lognormal_ns, make_record

from benchkit.results.report import build_html, views_of
from benchkit.results.report.svg import PALETTE

SYSTEM = {"cpu_flags": ["avx2", "fma", "avx512f"], "cpu_count": 8, "cpu_affinity": 8, "cpu_frequency_mhz": 3000.0}


def _records():
    recs = []
    for bi, (be, dev) in enumerate((("onnxruntime", "cpu: AMD EPYC 9654"), ("openvino", "CPU: AMD EPYC 9654"))):
        for b in (1, 8):
            recs.append(make_record(lognormal_ns(300, median_ns=1e6 * b ** 0.5 * (bi + 1), seed=b + bi), kind="offline",
                                    batch=b, backend=be, device=dev, flops=4_000_000_000,
                                    bytes_per_sample=50_000_000 // b, seed=b))
        # onnxruntime ran 50 and 100 QPS (INVALID at 100), openvino 50, 100 and 200.
        for q in (50, 100) if be == "onnxruntime" else (50, 100, 200):
            late = be == "onnxruntime" and q == 100
            recs.append(make_record(lognormal_ns(400, median_ns=2e6, seed=q + bi), kind="server", target_qps=float(q),
                                    backend=be, device=dev, valid=not late,
                                    reasons=["p99 exceeds target_latency_ns"] if late else None))
    return recs


def _series_colors(html: str) -> dict[str, set[str]]:
    """backend -> every colour a series of it was drawn in, over all charts."""
    seen: dict[str, set[str]] = defaultdict(set)
    for name, body in re.findall(r'<g class="series" data-series="([^"]+)"[^>]*>(.*?)</g>', html, re.S):
        be = name.split()[0]
        seen[be] |= set(re.findall(r'stroke="(#[0-9A-Fa-f]{6})"', body))
    return seen


def test_one_colour_per_backend_everywhere():
    html = build_html(views_of(_records()))
    seen = _series_colors(html)
    assert set(seen) == {"onnxruntime", "openvino"}
    assert seen["onnxruntime"] == {PALETTE[0]} and seen["openvino"] == {PALETTE[1]}


def test_server_cdf_compares_one_offered_load():
    html = build_html(views_of(_records()))
    title = re.search(r"Latency CDF: mlp · server([^<\"]*)[<\"]", html).group(1)
    # 100 QPS is common to both but INVALID for onnxruntime; 50 QPS is common and VALID for both.
    assert title == " @ 50 QPS"
    cdf = html[html.index('data-kind="cdf"', html.index("Latency CDF: mlp · server") - 400):]
    cdf = cdf[:cdf.index("</svg>")]
    assert set(re.findall(r'data-series="[^"]*@(\d+)qps', cdf)) == {"50"}


def test_cpu_roof_from_the_derived_peak_and_one_device_spelling():
    recs = [r.model_copy(update={"system": r.system.model_copy(update=SYSTEM)}) for r in _records()]
    html = build_html(views_of(recs))
    roof = html[html.index('data-kind="roofline"'):]
    roof = roof[:roof.index("</svg>")]
    labels = re.findall(r'<line class="ref"[^>]*><title>([^<]+)</title>', roof)
    # avx512f with FMA: 64 fp32 FLOP/cycle/core x 8 CPUs x 3 GHz = 1.54 TFLOP/s, one roof for the one CPU.
    assert labels == ["cpu: AMD EPYC 9654 peak 1.54 TFLOP/s"]
    assert "CPU: AMD EPYC" not in roof


def test_peak_memory_column():
    from benchkit.results.records import Memory

    rec = make_record(lognormal_ns(200, seed=3))
    rec = rec.model_copy(update={"memory": Memory(peak_rss_bytes=300 << 20, rss_at_start_bytes=90 << 20, scope="cell",
                                                  source="VmHWM", peak_device_bytes=2 << 30)})
    html = build_html(views_of([rec, make_record(lognormal_ns(200, seed=4), backend="openvino")]))
    assert ">peak memory</th>" in html
    assert re.search(r'<td class="num mem" data-sort="314572800" title="scope: cell \(VmHWM\)">300\.0 MiB'
                     r'<span class="sub">device 2\.0 GiB</span></td>', html)
    assert 'class="num mem" data-sort="" title="not measured' in html  # the record without a memory block
