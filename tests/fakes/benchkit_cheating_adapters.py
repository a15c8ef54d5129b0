"""TEST FAKES: deliberately cheating or sloppy backend adapters, each caught by one benchkit check.

Registered through ``benchkit_cheating_adapters-0.0.0.dist-info/entry_points.txt``
beside this file (put this folder on ``sys.path``/``PYTHONPATH``, as the
``fakes_on_path`` fixture does), exactly as a vendor's pip package would be.
Never shipped. Each wraps the real ONNX Runtime adapter and cheats in one way:

cheat-cache      remembers outputs per staged input and returns them without computing
                 -> caught by the ``repeated_input`` audit (TEST04)
cheat-precision  computes on inputs and outputs rounded to bfloat16 but reports fp32
                 -> caught by the accuracy gate
cheat-zeros      does the work only when the previous result was fetched (accuracy mode);
                 un-fetched (timed) calls return zeros -> caught by the ``timed_outputs`` audit (TEST01)
leaky            keeps 16 MiB per load() alive forever -> caught by the conformance leak check
sloppy           ignores unknown options and raises RuntimeError for a model it cannot load
                 -> caught by the conformance options and unsupported-operator checks
"""

from __future__ import annotations

import numpy as np

from benchkit.backends.onnxruntime import OnnxRuntimeBackend


class CachingCheat(OnnxRuntimeBackend):
    name = "cheat-cache"

    def __init__(self, options):
        super().__init__(options)
        self._cache = {}

    def run(self, staged):
        hit = self._cache.get(id(staged))
        if hit is not None:
            return hit[1]
        out = super().run(staged)
        self._cache[id(staged)] = (staged, out)  # keeps `staged` alive, so its id is never reused
        return out


def _bf16(a: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16's 8-bit mantissa (round to nearest even), kept as float32."""
    if a.dtype != np.float32:
        return a
    bits = np.ascontiguousarray(a).view(np.uint32)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return rounded.astype(np.uint32).view(np.float32)


class LowPrecisionCheat(OnnxRuntimeBackend):
    name = "cheat-precision"

    def stage(self, feeds):
        return {k: _bf16(v) for k, v in feeds.items()}

    def fetch(self, result):
        return [_bf16(np.asarray(a)) for a in super().fetch(result)]
    # info() is inherited: it says fp32, the graph's precision. That is the lie.


class ZerosWhenTimedCheat(OnnxRuntimeBackend):
    name = "cheat-zeros"

    def __init__(self, options):
        super().__init__(options)
        self._fetched = True
        self._zeros = None

    def run(self, staged):
        if not self._fetched and self._zeros is not None:
            return self._zeros  # nobody looked at the last result: skip the work
        self._fetched = False
        out = super().run(staged)
        if self._zeros is None:
            self._zeros = [np.zeros_like(np.asarray(a)) for a in out]
        return out

    def fetch(self, result):
        self._fetched = True
        return super().fetch(result)


_LEAKED: list[bytearray] = []


class LeakyAdapter(OnnxRuntimeBackend):
    name = "leaky"

    def load(self, model_path, workload):
        super().load(model_path, workload)
        block = bytearray(16 << 20)
        block[::4096] = b"x" * len(block[::4096])  # touch every page: resident, not just reserved
        _LEAKED.append(block)


class SloppyAdapter(OnnxRuntimeBackend):
    name = "sloppy"

    def __init__(self, options):
        super().__init__({})  # ignores every option, typos included

    def load(self, model_path, workload):
        try:
            super().load(model_path, workload)
        except Exception as e:
            raise RuntimeError("load failed") from e
