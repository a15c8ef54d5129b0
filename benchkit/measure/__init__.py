"""Measurement: the timed loops and their stop rules, with MLPerf LoadGen's semantics.

=============  ===============================================  ======================
scenario       traffic                                          headline metric
=============  ===============================================  ======================
single_stream  1 sample per query, next issued on completion    p90 latency
multi_stream   N samples per query, closed loop                 p99 query latency
server         Poisson arrivals at target_qps, open loop        samples/s under bound
offline        all samples at once, calls of batch_size,        samples/s
               `concurrency` of them in flight (default 1)
=============  ===============================================  ======================

Every scenario times exactly ``backend.run(staged); backend.synchronize()``
with ``perf_counter_ns`` and nothing else: one timing boundary for every
vendor. Loading, staging, warmup and output checks are outside it.

Two engines drive the loops: benchkit's own (:mod:`.loops`, :mod:`.server`, :mod:`.concurrency`)
and MLPerf LoadGen itself (:mod:`.loadgen`, the ``mlperf`` extra); both
return the same :class:`Measurement`.
"""

from __future__ import annotations

from benchkit.measure.dispatch import ENGINES, HEADLINE, Engine, measure, run_engine
from benchkit.measure.loops import Measurement, StopRule, closed_loop, timed_call, warmup

__all__ = ["Measurement", "StopRule", "closed_loop", "timed_call", "warmup", "measure", "run_engine", "HEADLINE",
           "ENGINES", "Engine"]
