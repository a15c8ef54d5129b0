"""Scenarios: the timed loops and their stop rules, with MLPerf LoadGen's semantics.

=============  ===============================================  ======================
scenario       traffic                                          headline metric
=============  ===============================================  ======================
single_stream  1 sample per query, next issued on completion    p90 latency
multi_stream   N samples per query, closed loop                 p99 query latency
server         Poisson arrivals at target_qps, open loop        samples/s under bound
offline        all samples at once, calls of batch_size         samples/s
=============  ===============================================  ======================

Every scenario times exactly ``backend.run(staged); backend.synchronize()``
with ``perf_counter_ns`` and nothing else: one timing boundary for every
vendor. Loading, staging, warmup and output checks are outside it.
"""

from __future__ import annotations

from benchkit.measure.loops import Measurement, StopRule, closed_loop, timed_call, warmup
from benchkit.measure.dispatch import HEADLINE, measure

__all__ = ["Measurement", "StopRule", "closed_loop", "timed_call", "warmup", "measure", "HEADLINE"]
