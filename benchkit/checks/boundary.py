"""The end-to-end boundary audit: is the work inside the timed region, where the standard measures it?

Only ``run`` + ``synchronize`` are timed. An adapter can move its work to the
untimed ``stage`` (compute while "copying inputs") or ``fetch`` (compute while
"copying outputs"), or make ``synchronize`` return before the work is done.
The audit times never-seen queries end to end, each phase apart::

    t0  stage(feeds)  t1  run(staged); synchronize()  t2  fetch(result)  t3

and compares them with the measured loop's latencies (:func:`audit_boundary`):

``boundary.untimed_share``
    The untimed phases of a fresh query (``stage`` + ``fetch``, median over
    queries) may take at most what moving its bytes could take, the
    **transfer allowance** (:class:`TransferAllowance`, :func:`allowance_for`)::

        allowance = fixed + per tensor x (inputs + outputs) + (input + output bytes) / bandwidth

    ============================  =======  ==========  ==========================================
    device                        fixed    per tensor  bandwidth
    ============================  =======  ==========  ==========================================
    declared bandwidth            50 µs    20 µs       the declared host-device bandwidth
    an accelerator (default)      50 µs    20 µs       1 GB/s
    the host CPU (``cpu...``)     50 µs    5 µs        10 GB/s (staging is at most a memory copy)
    ============================  =======  ==========  ==========================================

    To that assumed figure the audit adds a measured one, the **copy
    control**: after each fresh query, benchkit blocks for as long as the
    query took (the adapter has nothing left running by then), then copies
    the query's input and output arrays itself and times the copy. It is
    what touching those bytes costs as the first host work after waiting on
    a call, on this machine, at this moment. That first work is slow: the
    caller's caches and the interpreter's working set went cold while it
    waited, and on a shared virtual machine the first microseconds after a
    wait run several times slower than the same work done hot (measured on
    the 2-core runner: an OpenVINO tensor wrapped in 1.4 µs hot and 30-95 µs
    as the first operation after a call or a sleep; a 600 KB copy in 60 µs
    hot and 100-130 µs there). An honest adapter's ``fetch`` always comes
    right after a call, and its ``stage`` right after the timed call before
    it, so both pay it. The control counts up to the assumed allowance, no
    more: an adapter can lengthen the wait only by being slow where the
    audit looks, and by the end of the wait whatever it left running in the
    background has had the time of a whole query to finish.

    They are reported as shares of the end-to-end time: the observed share
    against the transfer-plausible one, ``allowance / (allowance + timed p50)``,
    the allowance including the control.

``boundary.fresh_latency``
    A fresh query's end-to-end p50 may be at most :data:`FRESH_MAX_RATIO` times
    the measured loop's p50 plus the allowance. More means the timed call does
    not contain the work: ``synchronize`` does not wait for it, or the measured
    loop was answered from a cache that never-seen inputs miss.

Why these defaults. Honest adapters spend microseconds in the untimed phases:
ONNX Runtime on the CPU stages a dict of numpy arrays and fetches arrays it
already has, 0.4-5 µs each from tiny-add to MobileNetV2 at 96 px, against
allowances of 55-90 µs; its fresh end-to-end p50 is 0.9-1.5x its timed p50
(measured on a 2-core EPYC, ``tests/test_boundary.py``). A device adapter
copies inputs over PCIe (pageable copies reach 5-25 GB/s; an M.2 NPU on PCIe
3.0 x4 about 3 GB/s) and pays 5-20 µs of allocation and launch per tensor;
1 GB/s and 20 µs cover those. A USB-attached device is slower than 1 GB/s: its
adapter's device file declares its bandwidth. What a cheat can hide is bounded
by the allowance: a stage cheat on a model whose whole computation fits in it
gains little, and physical plausibility (``benchkit.cpu_peak``) bounds the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from time import perf_counter_ns, sleep
from typing import Any

import numpy as np

from benchkit.checks.verdict import Finding, finding

DEFAULT_HOST_DEVICE_BANDWIDTH_BYTES_PER_S = 1e9
"""Assumed host-device bandwidth when none is declared: below any PCIe 3.0 x16 copy (about 12 GB/s)."""
HOST_COPY_BYTES_PER_S = 10e9
"""One memory copy on the host: a single core copies 10-20 GB/s on current servers."""
FRESH_MAX_RATIO = 3.0
"""A fresh query's end-to-end p50 may be at most this multiple of the timed p50, plus the transfer allowance."""
CONTROL_WAIT_MAX_NS = 20_000_000
"""The copy control waits as long as the fresh query took, up to this (the audit's time stays bounded)."""


@dataclass(frozen=True)
class TransferAllowance:
    """What the untimed phases of one query may plausibly take: fixed costs plus bytes over a bandwidth."""

    fixed_ns: int = 50_000  # per query: Python calls, allocation, a device launch and its completion
    per_tensor_ns: int = 20_000  # per input and output tensor: one allocation and one copy call each
    bandwidth_bytes_per_s: float = DEFAULT_HOST_DEVICE_BANDWIDTH_BYTES_PER_S

    def ns(self, input_bytes: int, output_bytes: int, tensors: int) -> int:
        """The allowance for one query moving these bytes in ``tensors`` tensors."""
        return int(self.fixed_ns + self.per_tensor_ns * tensors
                   + (input_bytes + output_bytes) / self.bandwidth_bytes_per_s * 1e9)

    def describe(self, input_bytes: int, output_bytes: int, tensors: int) -> str:
        return (f"{self.fixed_ns / 1e3:g} µs + {tensors} tensor(s) x {self.per_tensor_ns / 1e3:g} µs + "
                f"{input_bytes + output_bytes} bytes at {self.bandwidth_bytes_per_s / 1e9:g} GB/s")


@dataclass(frozen=True)
class EndToEndSamples:
    """Per-phase latencies of fresh queries, paired by index (from :func:`time_end_to_end`)."""

    stage_ns: tuple[int, ...]
    run_ns: tuple[int, ...]  # run + synchronize
    fetch_ns: tuple[int, ...]
    end_to_end_ns: tuple[int, ...]
    timed_ns: tuple[int, ...] = ()  # measured-loop-style calls on pool inputs, interleaved (empty: no pool given)
    control_ns: tuple[int, ...] = ()  # benchkit's copy of each fresh query's inputs and outputs, after a wait


@dataclass(frozen=True)
class BoundaryAudit:
    """The audit's figures and what it found (empty ``findings``: passed)."""

    timed_p50_ns: int
    stage_p50_ns: int
    fetch_p50_ns: int
    untimed_p50_ns: int  # median over fresh queries of stage + fetch
    end_to_end_p50_ns: int
    allowance_ns: int  # the transfer allowance, the copy control's p50 included
    untimed_share: float  # untimed p50 / end-to-end p50
    plausible_share: float  # allowance / (allowance + timed p50)
    fresh_ratio: float  # end-to-end p50 / timed p50
    findings: tuple[Finding, ...] = field(default_factory=tuple)
    control_p50_ns: int = 0  # the copy control's p50 as counted, at most the assumed allowance (0: none measured)

    @property
    def passed(self) -> bool:
        return not any(f.severity == "reason" for f in self.findings)

    def figures(self) -> dict[str, Any]:
        """JSON-ready figures for the record's audits block."""
        return {k: getattr(self, k) for k in ("timed_p50_ns", "stage_p50_ns", "fetch_p50_ns", "untimed_p50_ns",
                                               "end_to_end_p50_ns", "allowance_ns", "control_p50_ns")} | {
            "untimed_share": round(self.untimed_share, 4), "plausible_share": round(self.plausible_share, 4),
            "fresh_ratio": round(self.fresh_ratio, 3)}


HOST_ALLOWANCE = TransferAllowance(fixed_ns=50_000, per_tensor_ns=5_000, bandwidth_bytes_per_s=HOST_COPY_BYTES_PER_S)
"""For adapters whose device is the host CPU: staging and fetching are at most one memory copy."""


SERVED_ALLOWANCE = TransferAllowance(fixed_ns=300_000, per_tensor_ns=50_000, bandwidth_bytes_per_s=100e6)
"""For adapters that measure a deployed server (``info().endpoint`` set): the untimed phases hold the protocol's
codec, serializing the request (a JSON header, tensor bytes or a protobuf) and parsing the response, which costs
Python-level work per query and per tensor and copies the bytes a few times. JSON tensors (REST without the
binary extension) are slower still on large tensors and may exceed it: the binary extension is the default."""


def allowance_for(device: str, declared_bandwidth_bytes_per_s: float | None = None,
                  served: bool = False) -> TransferAllowance:
    """The transfer allowance for an adapter's device (``info().device``) and a declared host-device bandwidth.

    A declared bandwidth wins; ``served`` (the adapter measured a server and reported its endpoint, which makes the
    result open unless the server vouches for the model's bytes) gets :data:`SERVED_ALLOWANCE`; a device named
    ``cpu...`` (all of it: no accelerator in a ``;``-separated list) gets :data:`HOST_ALLOWANCE`; any other
    the accelerator default. Checked against the accelerator probe
    (``benchkit.provenance``), a false device claim does not buy the larger allowance unnoticed.
    """
    if declared_bandwidth_bytes_per_s is not None and declared_bandwidth_bytes_per_s > 0:
        return TransferAllowance(bandwidth_bytes_per_s=float(declared_bandwidth_bytes_per_s))
    if served:
        return SERVED_ALLOWANCE
    parts = [p.strip().lower() for p in str(device).split(";") if p.strip()]
    if parts and all(p.startswith("cpu") for p in parts):
        return HOST_ALLOWANCE
    return TransferAllowance()


def audit_boundary(
    timed_ns: Sequence[int],
    stage_ns: Sequence[int],
    fetch_ns: Sequence[int],
    end_to_end_ns: Sequence[int],
    *,
    input_bytes: int,
    output_bytes: int,
    tensors: int,
    allowance: TransferAllowance = TransferAllowance(),
    fresh_max_ratio: float = FRESH_MAX_RATIO,
    control_ns: Sequence[int] = (),
) -> BoundaryAudit:
    """Judge the timing boundary from the measured loop's latencies and fresh queries' phases.

    ``timed_ns``: run + synchronize latencies of the measured loop.
    ``stage_ns``, ``fetch_ns``, ``end_to_end_ns``: of fresh (never-seen)
    queries, paired by index when of equal length (as :func:`time_end_to_end`
    returns them). ``input_bytes`` / ``output_bytes``: one query's, and
    ``tensors`` their number of arrays. ``control_ns``: the copy control
    (:attr:`EndToEndSamples.control_ns`), whose p50 is added to the
    allowance, up to the allowance again. Pure: no clock, no backend.
    """
    if len(timed_ns) == 0 or len(end_to_end_ns) == 0 or len(stage_ns) == 0 or len(fetch_ns) == 0:
        return BoundaryAudit(0, 0, 0, 0, 0, 0, 0.0, 0.0, 0.0, (finding(
            "boundary.untimed_share", "the end-to-end boundary audit has no samples to judge", "warning"),))
    timed = _p50(timed_ns)
    stage, fetch, e2e = _p50(stage_ns), _p50(fetch_ns), _p50(end_to_end_ns)
    if len(stage_ns) == len(fetch_ns):
        untimed = _p50(np.asarray(stage_ns, dtype=np.int64) + np.asarray(fetch_ns, dtype=np.int64))
    else:
        untimed = stage + fetch
    static = allowance.ns(input_bytes, output_bytes, tensors)
    # Capped at the assumed allowance: whatever an adapter does to the conditions of the copy (long timed calls,
    # work left running in the background), it must not buy itself more than the allowance again.
    control = min(_p50(control_ns), static) if len(control_ns) else 0
    limit = static + control
    share = untimed / e2e if e2e > 0 else 0.0
    plausible = limit / (limit + timed) if limit + timed > 0 else 1.0
    ratio = e2e / timed if timed > 0 else float("inf")
    findings = []
    how = allowance.describe(input_bytes, output_bytes, tensors)
    if control:
        how += f" + {control / 1e3:.1f} µs of benchkit's own copy of the query's arrays at that point"
    if untimed > limit:
        findings.append(finding(
            "boundary.untimed_share",
            f"untimed phases carry {share:.0%} of fresh queries' end-to-end time (stage p50 {stage / 1e3:.1f} µs, "
            f"fetch p50 {fetch / 1e3:.1f} µs), more than the transfer-plausible {plausible:.0%} "
            f"({limit / 1e3:.1f} µs: {how}): work is done outside the timed region"))
    if e2e > fresh_max_ratio * timed + limit:
        findings.append(finding(
            "boundary.fresh_latency",
            f"fresh queries' end-to-end p50 ({e2e / 1e3:.1f} µs) is {ratio:.3g}x the timed p50 ({timed / 1e3:.1f} µs), "
            f"beyond {fresh_max_ratio:g}x plus the {limit / 1e3:.1f} µs transfer allowance: the timed call does not "
            "contain the work (synchronize returns early, or the measured loop was answered from a cache)"))
    return BoundaryAudit(timed, stage, fetch, untimed, e2e, limit, share, plausible, ratio, tuple(findings), control)


def time_end_to_end(
    backend: Any,
    feeds: Sequence[Mapping[str, np.ndarray]],
    pool: Sequence[Any] = (),
    clock: Callable[[], int] = perf_counter_ns,
    control: bool = True,
) -> EndToEndSamples:
    """Time each never-seen input through stage, run + synchronize and fetch, one query after another.

    Untimed by the standard (it runs after the measurement, like the other
    audits); the phases are paired by index. ``feeds`` must be inputs the
    backend has not seen (a fresh seed), or a cache would answer them.

    With ``pool`` (the measured loop's staged inputs), each fresh query is
    preceded by one call timed exactly as the measured loop times it, on the
    next pool input: ``timed_ns`` then holds latencies taken under the same
    machine conditions as the fresh queries. Pass those to
    :func:`audit_boundary` rather than the measured loop's own: on a shared
    machine the load can change between the measurement and the audit. (Work
    an adapter leaves running after ``synchronize`` lands in the next fresh
    query's phases.)

    With ``control``, benchkit then blocks for as long as the fresh query took
    end to end (at most :data:`CONTROL_WAIT_MAX_NS`; work an adapter left
    running has finished by then) and times its own copy of that query's input
    and output arrays (``control_ns``, the copy control): the cost of touching
    those bytes as the first host work after a wait, under the same conditions.
    One untimed call on the pool follows the copy: a thread that slept is
    scheduled ahead of a busy neighbour for a while, and that head start must
    not go to the timed call the fresh query is compared with.
    """
    n, k = len(feeds), len(pool)
    st, rn, ft, e2e = (np.empty(n, dtype=np.int64) for _ in range(4))
    copy = np.empty(n if control else 0, dtype=np.int64)
    timed = np.empty(n if k else 0, dtype=np.int64)
    stage, run, sync, fetch = backend.stage, backend.run, backend.synchronize, backend.fetch
    for i, f in enumerate(feeds):
        if k:
            s = pool[i % k]
            t0 = clock()
            run(s)
            sync()
            timed[i] = clock() - t0
        t0 = clock()
        s = stage(f)
        t1 = clock()
        r = run(s)
        sync()
        t2 = clock()
        outs = fetch(r)
        t3 = clock()
        st[i], rn[i], ft[i], e2e[i] = t1 - t0, t2 - t1, t3 - t2, t3 - t0
        if control:
            arrays = [*f.values(), *(a for a in outs if isinstance(a, np.ndarray))]
            sleep(min(e2e[i], CONTROL_WAIT_MAX_NS) / 1e9)
            t0 = clock()
            copies = [np.array(a, copy=True) for a in arrays]
            copy[i] = clock() - t0
            del copies, arrays
            if k:  # the settling call (untimed), on a pool input other than the next timed call's
                run(pool[(i + 1 + k // 2) % k])
                sync()
        del outs
    return EndToEndSamples(tuple(st.tolist()), tuple(rn.tolist()), tuple(ft.tolist()), tuple(e2e.tolist()),
                           tuple(timed.tolist()), tuple(copy.tolist()))


def _p50(values: Sequence[int] | np.ndarray) -> int:
    return int(np.median(np.asarray(values, dtype=np.int64)))


__all__ = ["TransferAllowance", "EndToEndSamples", "BoundaryAudit", "audit_boundary", "time_end_to_end",
           "allowance_for", "HOST_ALLOWANCE", "SERVED_ALLOWANCE", "DEFAULT_HOST_DEVICE_BANDWIDTH_BYTES_PER_S", "HOST_COPY_BYTES_PER_S",
           "FRESH_MAX_RATIO", "CONTROL_WAIT_MAX_NS"]
