"""The generative scenario's token loop: requests drawn, issued (all at once, or on a Poisson schedule), timed by token.

Each request ``i`` has a prompt of ``input_tokens[i]`` seeded token ids and asks
for exactly ``output_tokens[i]`` tokens (an end-of-sequence token is not a
stop). Times are taken on the host when a token's id is there (the next step
needs it, so nothing can still be running):

* the **first token** is the one the prefill call returns; time to first token
  (TTFT) runs from the request's *scheduled* time (Server) or the start of the
  run (Offline: every request is issued at once) to the moment it is on the host;
* every later token comes from one decode step; inter-token latencies are the
  gaps between consecutive tokens of a request; time per output token (TPOT) is
  ``(last token - first token) / (output_tokens - 1)`` per request, MLPerf's
  definition;
* a request's latency runs from its scheduled time to its last token.

With a :class:`~benchkit.backends.generative.StepGenerator` this module is the
scheduler: iteration-level (continuous) batching, one thread. Each round admits
waiting requests while fewer than ``max_batch_size`` are running (requests of
one prompt length share a prefill call and then every decode step; Offline sorts
its requests by prompt length so that they can), then runs one decode step of
every running batch. A batch keeps its rows until its longest request is done.
Server requests are issued by a separate thread on their schedule, into a queue
the scheduler drains: issue lateness is that thread's alone, and time a request
waits in the queue is latency, as LoadGen counts it.

With a :class:`~benchkit.backends.generative.StreamGenerator` the system behind
the adapter schedules; benchkit runs ``concurrency`` requests at once, each on
its own thread, and times each token as the stream yields it.
"""

from __future__ import annotations

import collections
import math
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter_ns
from typing import Any

import numpy as np

from benchkit.errors import BackendError, SpecError
from benchkit.measure.loops import Clock, StopRule
from benchkit.stats import summarize

DEFAULT_INPUT_TOKENS = 32
DEFAULT_OUTPUT_TOKENS = 16


@dataclass
class GenerationMeasurement:
    """Raw outcome of a generative run: one entry per request, in request order; times in ns from the start."""

    input_tokens: np.ndarray
    output_tokens: np.ndarray
    scheduled_ns: np.ndarray  # Server: Poisson offsets; Offline: zeros
    issued_ns: np.ndarray
    first_token_ns: np.ndarray
    done_ns: np.ndarray
    itl_ns: np.ndarray  # every gap between consecutive tokens of a request, all requests
    duration_ns: int
    stop_reason: str
    mode: str
    captured: dict[int, list[int]] = field(default_factory=dict)  # request -> its first tokens, for agreement
    issue_lateness_ns: Any = None
    final_scheduled_ns: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return int(self.input_tokens.size)

    @property
    def ttft_ns(self) -> np.ndarray:
        return self.first_token_ns - self.scheduled_ns

    @property
    def e2e_ns(self) -> np.ndarray:
        return self.done_ns - self.scheduled_ns

    @property
    def tpot_ns(self) -> np.ndarray:
        """Per request with more than one output token: (last - first token) / (output_tokens - 1)."""
        many = self.output_tokens > 1
        return ((self.done_ns[many] - self.first_token_ns[many]) // (self.output_tokens[many] - 1)).astype(np.int64)


# ---------------------------------------------------------------------------------------------- lengths


def read_lengths_file(path: Path, origin: str) -> np.ndarray:
    """(input, output) pairs of a lengths file: 'input,output' per line; a header line and # comments allowed."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{origin}.lengths_file: cannot read {path}: {e}") from None
    pairs = []
    header = False
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [p.strip() for p in line.replace("\t", ",").split(",")]
        try:
            a, b = (int(p) for p in parts)
        except ValueError:
            if not pairs and not header and all(not p.lstrip("-").isdigit() for p in parts):
                header = True  # one header line, before the first pair
                continue
            raise SpecError(f"{origin}.lengths_file: {path.name} line {lineno}: expected 'input_tokens,"
                            f"output_tokens' (two positive integers), got {raw.strip()!r}") from None
        if a <= 0 or b <= 0:
            raise SpecError(f"{origin}.lengths_file: {path.name} line {lineno}: lengths must be positive, got {a},{b}")
        pairs.append((a, b))
    if not pairs:
        raise SpecError(f"{origin}.lengths_file: {path.name} holds no 'input_tokens,output_tokens' pair")
    return np.asarray(pairs, dtype=np.int64)


def draw_lengths(scenario: Any, n: int, seed: int, base_dir: Path, origin: str) -> tuple[np.ndarray, np.ndarray]:
    """Seeded input and output lengths of ``n`` requests: fixed, uniform [low, high], or pairs from a file."""
    rng = np.random.default_rng([seed, 0x1E])
    if scenario.lengths_file is not None:
        pairs = read_lengths_file((base_dir / scenario.lengths_file).resolve(), origin)
        picks = rng.integers(0, len(pairs), size=n)
        return pairs[picks, 0].copy(), pairs[picks, 1].copy()

    def one(spec: Any, default: int) -> np.ndarray:
        spec = default if spec is None else spec
        if isinstance(spec, tuple):
            return rng.integers(spec[0], spec[1] + 1, size=n, dtype=np.int64)
        return np.full(n, int(spec), dtype=np.int64)

    return one(scenario.input_tokens, DEFAULT_INPUT_TOKENS), one(scenario.output_tokens, DEFAULT_OUTPUT_TOKENS)


def check_lengths(scenario: Any, base_dir: Path, origin: str, n_ctx: int) -> None:
    """Before anything runs: the lengths file reads, and no request the scenario can draw exceeds the context."""
    if scenario.lengths_file is not None:
        pairs = read_lengths_file((base_dir / scenario.lengths_file).resolve(), origin)
        longest, where = int(pairs.sum(axis=1).max()), f"{origin}.lengths_file"
    else:
        def top(spec: Any, default: int) -> int:
            return default if spec is None else (spec[1] if isinstance(spec, tuple) else int(spec))

        longest = top(scenario.input_tokens, DEFAULT_INPUT_TOKENS) + top(scenario.output_tokens, DEFAULT_OUTPUT_TOKENS)
        where = f"{origin}.input_tokens + output_tokens"
    if longest > n_ctx:
        raise SpecError(f"{where}: a request of up to {longest} tokens (input + output) does not fit the model's "
                        f"context of {n_ctx}")


def request_count(scenario: Any, rate_per_s: float) -> int:
    """Offline: requests to issue at once so the run lasts at least min_duration_ms (LoadGen sizes its one
    query the same way, from an expected rate), and at least min_query_count; max_query_count caps it."""
    need = math.ceil(scenario.min_duration_ms / 1e3 * rate_per_s * 1.25) if rate_per_s > 0 else 0
    n = max(int(scenario.min_query_count), need, 1)
    if scenario.max_query_count is not None:
        n = min(n, int(scenario.max_query_count))
    return n


# ---------------------------------------------------------------------------------------------- step loop


class _Arrivals:
    """Server: a thread issuing request indices into a queue at their scheduled offsets."""

    def __init__(self, offsets: np.ndarray, start_ns: int, clock: Clock) -> None:
        from benchkit.measure.server import _SPIN_NS

        self.q: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.issued = np.zeros(offsets.size, dtype=np.int64)
        self._offsets, self._start, self._clock, self._spin = offsets.tolist(), start_ns, clock, _SPIN_NS
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="benchkit-arrivals", daemon=True)

    def _run(self) -> None:
        import time

        clock, start, put, issued = self._clock, self._start, self.q.put, self.issued
        for i, off in enumerate(self._offsets):
            while True:
                wait = off - (clock() - start)
                if wait <= 0:
                    break
                if wait > self._spin:
                    time.sleep((wait - self._spin) / 1e9)
                if self._stop.is_set():
                    return
            issued[i] = clock() - start
            put(i)

    def stop(self) -> None:
        self._stop.set()


def run_steps(gen: Any, prompts: list[np.ndarray], out_lens: np.ndarray, max_batch: int, *,
              offsets: np.ndarray | None = None, capture: dict[int, int] | None = None,
              clock: Clock = perf_counter_ns) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                       dict[int, list[int]], int]:
    """Run every request through a StepGenerator; Offline when ``offsets`` is None, else Server arrivals.

    Returns (issued, first token, last token, inter-token gaps, captured tokens, duration), per request in request
    order, times in ns from the start. ``capture``: request -> how many of its first tokens to keep.
    """
    n = len(prompts)
    in_lens = [int(p.size) for p in prompts]
    outs = out_lens.tolist()
    first = np.zeros(n, dtype=np.int64)
    done = np.zeros(n, dtype=np.int64)
    last = [0] * n
    itl: list[int] = []
    capture = capture or {}
    kept: dict[int, list[int]] = {i: [] for i in capture}
    pending: collections.deque[int] = collections.deque()
    arrivals = None
    start = clock()
    if offsets is None:
        pending.extend(sorted(range(n), key=in_lens.__getitem__))  # Offline may reorder: equal lengths batch
        issued = np.zeros(n, dtype=np.int64)
    else:
        arrivals = _Arrivals(offsets, start, clock)
        arrivals.thread.start()
        issued = arrivals.issued
    prefill, decode, release = gen.prefill, gen.decode, gen.release
    batches = gen.batches
    active: list[list[Any]] = []  # [state, members, tokens, produced, longest]
    rows = finished = 0
    try:
        while finished < n:
            if arrivals is not None:
                try:
                    while True:
                        pending.append(arrivals.q.get_nowait())
                except queue.Empty:
                    pass
                if not pending and not active:
                    pending.append(arrivals.q.get(timeout=600))
            while pending and rows < max_batch:
                members = _take(pending, in_lens, (max_batch - rows) if batches else 1)
                tokens, state = prefill([prompts[i] for i in members])
                t = clock() - start
                longest = 1
                for k, i in enumerate(members):
                    first[i] = last[i] = t
                    if i in kept:
                        kept[i].append(int(tokens[k]))
                    if outs[i] == 1:
                        done[i] = t
                        finished += 1
                    elif outs[i] > longest:
                        longest = outs[i]
                if longest == 1:
                    release(state)
                else:
                    active.append([state, members, tokens, 1, longest])
                    rows += len(members)
            for b in list(active):
                tokens = b[2] = decode(b[0], b[2])
                t = clock() - start
                produced = b[3] = b[3] + 1
                for k, i in enumerate(b[1]):
                    if produced > outs[i]:
                        continue
                    itl.append(t - last[i])
                    last[i] = t
                    if i in kept and len(kept[i]) < capture[i]:
                        kept[i].append(int(tokens[k]))
                    if produced == outs[i]:
                        done[i] = t
                        finished += 1
                if produced >= b[4]:
                    release(b[0])
                    active.remove(b)
                    rows -= len(b[1])
    except queue.Empty:
        raise BackendError("generative server: no request arrived for 600 s (the arrival thread stopped)") from None
    finally:
        if arrivals is not None:
            arrivals.stop()
            arrivals.thread.join(timeout=5)
    return issued, first, done, np.asarray(itl, dtype=np.int64), kept, int(done.max()) if n else 0


def _take(pending: collections.deque[int], in_lens: list[int], room: int) -> list[int]:
    """Up to ``room`` waiting requests with the prompt length of the oldest one (looked for near the front)."""
    head = pending.popleft()
    members = [head]
    if room > 1 and pending:
        want = in_lens[head]
        window = min(len(pending), 4 * room)
        for _ in range(window):
            i = pending.popleft()
            if in_lens[i] == want and len(members) < room:
                members.append(i)
            else:
                pending.append(i)
        # what was looked at and left goes back to the front, in order
        for _ in range(window - (len(members) - 1)):
            pending.appendleft(pending.pop())
    return members


# ---------------------------------------------------------------------------------------------- stream loop


def run_streams(gen: Any, prompts: list[np.ndarray], out_lens: np.ndarray, *, offsets: np.ndarray | None = None,
                capture: dict[int, int] | None = None, clock: Clock = perf_counter_ns):
    """Run every request through a StreamGenerator, ``gen.concurrency`` at a time; same return as run_steps."""
    n = len(prompts)
    first = np.zeros(n, dtype=np.int64)
    done = np.zeros(n, dtype=np.int64)
    issued = np.zeros(n, dtype=np.int64)
    capture = capture or {}
    kept: dict[int, list[int]] = {i: [] for i in capture}
    gaps: list[list[int]] = [[] for _ in range(n)]
    errors: list[BaseException] = []
    start = clock()

    def one(i: int) -> None:
        want = int(out_lens[i])
        count = 0
        prev = 0
        try:
            for tok in gen.stream(prompts[i], want):
                t = clock() - start
                if count == 0:
                    first[i] = t
                else:
                    gaps[i].append(t - prev)
                prev = t
                count += 1
                if i in kept and len(kept[i]) < capture[i]:
                    kept[i].append(int(tok))
            if count != want:
                raise BackendError(f"{gen.name}: request {i} streamed {count} tokens, {want} were asked for")
            done[i] = prev
        except BaseException as e:  # noqa: BLE001 - reported once, after the run
            errors.append(e)

    with ThreadPoolExecutor(max_workers=max(1, int(gen.concurrency)), thread_name_prefix="benchkit-stream") as pool:
        if offsets is None:
            for i in range(n):
                pool.submit(one, i)
        else:
            import time

            for i, off in enumerate(offsets.tolist()):
                wait = off - (clock() - start)
                if wait > 0:
                    time.sleep(wait / 1e9)
                issued[i] = clock() - start
                pool.submit(one, i)
    if errors:
        e = errors[0]
        raise BackendError(f"{type(e).__name__}: {e}" + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
    itl = np.asarray([g for gs in gaps for g in gs], dtype=np.int64)
    return issued, first, done, itl, kept, int(done.max()) if n else 0


# ---------------------------------------------------------------------------------------------- the scenario


def measure_generation(gen: Any, scenario: Any, prompts: list[np.ndarray], out_lens: np.ndarray, seed: int,
                       capture: dict[int, int], offsets: np.ndarray | None, stop_reason: str,
                       clock: Clock = perf_counter_ns) -> GenerationMeasurement:
    """Time one generative run of the given requests (see the module docstring)."""
    from benchkit.backends.generative import StepGenerator
    from benchkit.measure.server import _harness_quiet

    with _harness_quiet():
        if isinstance(gen, StepGenerator):
            issued, first, done, itl, kept, duration = run_steps(
                gen, prompts, out_lens, scenario.max_batch_size, offsets=offsets, capture=capture, clock=clock)
        else:
            issued, first, done, itl, kept, duration = run_streams(
                gen, prompts, out_lens, offsets=offsets, capture=capture, clock=clock)
    n = len(prompts)
    scheduled = offsets if offsets is not None else np.zeros(n, dtype=np.int64)
    lateness = summarize(issued - scheduled) if offsets is not None and n else None
    return GenerationMeasurement(
        input_tokens=np.asarray([p.size for p in prompts], dtype=np.int64), output_tokens=np.asarray(out_lens),
        scheduled_ns=scheduled, issued_ns=issued, first_token_ns=first, done_ns=done, itl_ns=itl,
        duration_ns=max(1, duration), stop_reason=stop_reason, mode=scenario.mode, captured=kept,
        issue_lateness_ns=lateness, final_scheduled_ns=int(offsets[-1]) if offsets is not None and n else None)


def server_schedule(scenario: Any, seed: int) -> tuple[np.ndarray, str]:
    """Poisson arrival offsets of the Server form, by LoadGen's stop rule (requests counted as queries)."""
    from benchkit.measure.server import poisson_schedule_ns

    return poisson_schedule_ns(float(scenario.target_qps), StopRule.of(scenario), seed)


__all__ = ["GenerationMeasurement", "draw_lengths", "check_lengths", "read_lengths_file", "request_count", "run_steps", "run_streams",
           "measure_generation", "server_schedule"]
