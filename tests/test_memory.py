"""Peak memory in every record: measured in the process that ran the cell, plausible against the model and machine."""

from __future__ import annotations

import mmap

from benchkit.machine import memory

from test_accuracy_gate import run_inline

# ~6.3 M fp32 weights (25 MB): large enough that a peak below it would be a wrong figure, quick to build.
BIG_MLP = "{name: mlp, params: {in_features: 1024, hidden: [2048], out_features: 2048}}"


def test_record_carries_plausible_peak_memory(tmp_path):
    (rec,) = run_inline(tmp_path, BIG_MLP, "{name: onnxruntime}")
    mem = rec.memory
    assert mem is not None and mem.source in ("VmHWM", "ru_maxrss")
    weights = rec.workload.param_count * 4
    assert weights > 20e6
    # The runtime holds the weights at least once (ONNX Runtime keeps its own copy), within the machine's memory.
    assert weights < mem.peak_rss_bytes < rec.system.memory_bytes
    # (not strictly above: in a long-lived process the cell may reuse pages freed earlier but still resident)
    assert mem.rss_at_start_bytes is not None and mem.rss_at_start_bytes <= mem.peak_rss_bytes
    assert mem.peak_device_bytes is None  # ONNX Runtime on CPU reports no device memory


def test_peak_reset_makes_the_figure_the_cells_own():
    # An anonymous mapping, touched (64 MiB resident) and unmapped: the memory surely leaves the process (a heap
    # allocation could stay resident in a long-lived, fragmented heap).
    ballast = mmap.mmap(-1, 64 << 20)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    before, _ = memory.peak_rss_bytes()
    ballast.close()
    begun = memory.start()
    block = memory.block(begun)
    if block.scope == "cell":  # the kernel let the peak be reset: the earlier 64 MiB is not this cell's
        assert block.peak_rss_bytes < before - (32 << 20)
    else:
        assert block.peak_rss_bytes >= before


class _Reports:
    def peak_device_memory_bytes(self):
        return 123


class _Fails:
    def peak_device_memory_bytes(self):
        raise RuntimeError("driver gone")


def test_device_peak_from_the_adapter_never_fails_the_cell():
    assert memory.device_peak(_Reports()) == 123
    assert memory.device_peak(_Fails()) is None and memory.device_peak(object()) is None
