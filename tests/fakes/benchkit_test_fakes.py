"""TEST FAKES: backend adapters that fail on purpose (fault injection).

They reach benchkit through the real plugin path: the folder holding this
module also holds a ``benchkit_test_fakes-0.0.0.dist-info`` with an
``entry_points.txt``, so putting the folder on ``sys.path``/``PYTHONPATH``
registers them exactly as a vendor's pip package would be. Never shipped.

Option ``fault`` picks the failure:
  none        behave (a numpy identity-ish adapter that really computes nothing useful)
  segfault    the worker process dies of SIGSEGV during run()
  hang        run() never returns
  raise_load  load() raises a plain RuntimeError (not a BenchkitError)
  raise_run   run() raises after `after` calls
  nan         outputs are NaN
  exit        the worker process calls os._exit(3) in load()
  oom         load() allocates (and touches) 64 MiB chunks up to `alloc_bytes` (default 2 GiB), as a runaway
              runtime would; it refuses to start unless a memory limit below 1 GiB is in force, so a test can
              never push the machine itself out of memory
  raise_close close() raises after a complete measurement
  hang_init   __init__ never returns (before any cell: preflight must not hang with it)
  abort_init  __init__ calls os.abort(): the process that constructs the adapter dies of SIGABRT
  hang_close  close() never returns
  shared_mem  load() maps `alloc_bytes` (default 1.5 GiB) of anonymous MAP_SHARED memory, touches every page (which
              RLIMIT_DATA does not count) and holds it, never returning: only a limit that counts it ends the cell
              before its timeout; it refuses to start unless a memory limit below 1 GiB is in force
  wrong_shape outputs lose their last column: [batch, n] becomes [batch, n - 1]

Options beside any fault: ``hold_ms`` (load() first sleeps that long, so that a test can see the worker alive
before its fault ends it), ``stderr`` (text the worker writes to its stderr in load()) and ``grandchild`` (load()
starts ``sleep GRANDCHILD``, a child of the worker that a timeout must kill with it; the odd duration lets a
test find it), and ``detached_grandchild`` (load() has a shell start ``setsid sleep DETACHED_GRANDCHILD`` in the
background and exit: a process in a session of its own, whose parent is gone, that a timeout must kill too).

``abort-at-import`` is an entry point whose module calls os.abort() when imported.

``slowed-ort`` is the ONNX Runtime adapter made slower on purpose, for the
CI-gate benchmark (tests/benchmarks/bench_ci_gate.py): option ``slowdown``
(a fraction, default 0) adds busy work after each call: that fraction of
the CPU time the call took, so the candidate of a "25 % more work"
experiment does 25 % more work per call under any load (the harness's own
overhead per call is not slowed: the measured median rises a little less).
Every other option is the ONNX Runtime adapter's.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import resource
import subprocess
import sys
import time

import numpy as np

from benchkit.backends.base import Backend, BackendInfo
from benchkit.backends.onnxruntime import OnnxRuntimeBackend
from benchkit.errors import BackendError


class FaultInjectionBackend(Backend):
    name = "fault-inject"
    # Its outputs are its inputs, not the model's: exempt from the accuracy gate like `null`.
    computes_outputs = False

    def __init__(self, options):
        super().__init__(options)
        self.fault = options.get("fault", "none")
        self.after = int(options.get("after", 0))
        self.calls = 0
        self._out = None
        if self.fault == "hang_init":
            while True:
                time.sleep(3600)
        if self.fault == "abort_init":
            os.abort()

    @classmethod
    def describe_installation(cls):
        return {"version": "0.0.0", "device": "fake"}

    def load(self, model_path, workload):
        if "hold_ms" in self.options:
            time.sleep(int(self.options["hold_ms"]) / 1000)
        if "stderr" in self.options:
            print(self.options["stderr"], file=sys.stderr, flush=True)
        if "grandchild" in self.options:
            self._grandchild = subprocess.Popen(["sleep", str(self.options["grandchild"])])
        if "detached_grandchild" in self.options:
            subprocess.run(["sh", "-c", f"setsid sleep {self.options['detached_grandchild']} >/dev/null 2>&1 &"],
                           check=True)
        if self.fault == "shared_mem":
            self._shared(int(self.options.get("alloc_bytes", 3 << 29)))
        if self.fault == "raise_load":
            raise RuntimeError("injected failure in load()")
        if self.fault == "exit":
            os._exit(3)
        if self.fault == "oom":
            self._runaway(int(self.options.get("alloc_bytes", 2 << 30)))
        self._names = list(workload.output_names)

    def run(self, staged):
        self.calls += 1
        if self.calls > self.after:
            if self.fault == "segfault":
                ctypes.string_at(0)  # reads address 0: SIGSEGV
            if self.fault == "hang":
                while True:
                    time.sleep(3600)
            if self.fault == "raise_run":
                raise RuntimeError("injected failure in run()")
        first = next(iter(staged.values()))
        if self.fault == "wrong_shape":
            return [first[..., :-1] for _ in self._names]
        return [np.full_like(first, np.nan) if self.fault == "nan" else first for _ in self._names]

    def _runaway(self, total: int) -> None:
        self._limited("oom")
        self._hoard = []
        for _ in range(total // (64 << 20)):
            self._hoard.append(np.ones(64 << 20, np.uint8))  # np.ones touches every page

    @staticmethod
    def _limited(fault: str) -> None:
        soft, _ = resource.getrlimit(resource.RLIMIT_DATA)
        if soft == resource.RLIM_INFINITY or soft > 1 << 30:
            raise RuntimeError(f"fault {fault!r} needs a worker memory limit below 1 GiB (run.max_memory_bytes); "
                               f"RLIMIT_DATA is {soft}: refusing to allocate without one")

    def _shared(self, total: int) -> None:
        self._limited("shared_mem")
        self._map = mmap.mmap(-1, total, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        page = mmap.PAGESIZE
        for off in range(0, total, page):  # touch every page: now it is memory, not address space
            self._map[off] = 1
        while True:  # held, as a runtime holds its arena
            time.sleep(3600)

    def close(self):
        self._hoard = None
        if self.fault == "hang_close":
            while True:
                time.sleep(3600)
        if self.fault == "raise_close":
            raise RuntimeError("injected failure in close()")

    def fetch(self, result):
        return list(result)

    def info(self):
        # the process id tells tests which worker measured (repetitions must each get a fresh one)
        return BackendInfo(name=self.name, version="0.0.0", device="fake", precision="fp32",
                           options={**self.options, "pid": os.getpid()}, adapter=f"{__name__}:FaultInjectionBackend")


class SlowedBackend(OnnxRuntimeBackend):
    name = "slowed-ort"

    def __init__(self, options):
        opts = dict(options)
        self.slowdown = float(opts.pop("slowdown", 0.0))
        if not 0.0 <= self.slowdown <= 10.0:
            raise BackendError(f"slowdown: expected a fraction between 0 and 10, got {self.slowdown}")
        super().__init__(opts)

    def run(self, staged):
        if not self.slowdown:
            return super().run(staged)
        # CPU time of this thread, not wall time: the extra work is `slowdown` x the work the call did, however
        # often a neighbour preempted either (a deadline in wall time would stretch with every preemption).
        # Exact with intra_op_num_threads: 1, where ONNX Runtime computes in the calling thread.
        c0 = time.thread_time_ns()
        out = super().run(staged)
        end = time.thread_time_ns() + int((time.thread_time_ns() - c0) * self.slowdown)
        while time.thread_time_ns() < end:  # busy: a slower kernel keeps its core, a sleep would hand it over
            pass
        return out

    def info(self):
        i = super().info()
        return i.model_copy(update={"options": {**i.options, "slowdown": self.slowdown}})
