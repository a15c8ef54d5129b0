"""compare between two backends says faster/slower (not regression/improvement), and shows peak memory."""

from __future__ import annotations

from record_factory import lognormal_ns, make_record

from benchkit.results.compare import compare, verdict_word
from benchkit.results.records import Memory


def _with_memory(rec, mib):
    return rec.model_copy(update={"memory": Memory(peak_rss_bytes=mib << 20, scope="cell", source="VmHWM")})


def test_other_backend_is_slower_not_a_regression_and_memory_is_a_ratio():
    base = _with_memory(make_record(lognormal_ns(2000, median_ns=1_000_000, seed=1), backend="onnxruntime"), 200)
    cand = _with_memory(make_record(lognormal_ns(2000, median_ns=2_000_000, seed=2), backend="openvino"), 300)
    (pair,) = compare([base], [cand]).pairs
    p50 = next(m for m in pair.metrics if m.metric == "p50")
    assert p50.verdict == "regression" and verdict_word(pair, p50) == "slower"
    mem = next(m for m in pair.metrics if m.metric == "peak_rss")
    assert mem.unit == "bytes" and mem.ratio == 1.5 and mem.verdict == "no interval" and mem.ci_low is None
    # The same backend on both sides keeps the words of a change over time.
    (same,) = compare([base], [cand.model_copy(update={"backend": base.backend, "spec": base.spec})]).pairs
    assert verdict_word(same, next(m for m in same.metrics if m.metric == "p50")) == "regression"
