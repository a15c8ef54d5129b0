"""Fleet runs on Ray: each cell a Ray task on a node that has what the cell asks for.

Submitting side (the ``benchkit run --executor ray`` process, a Ray driver):

1. connects to the cluster and checks, before anything runs, that every cell
   has an alive node advertising its resources (fleet file:
   :mod:`benchkit.runner.fleet`);
2. ships what a node needs to rebuild each cell: catalog workloads are
   rebuilt on the node and must hash to the submitter's SHA-256; external
   model files and device files travel as bytes (through the object store
   when large) and are checked by SHA-256 on arrival;
3. submits every cell as a task asking for its whole accelerator units and
   cores, then collects records as tasks finish (a bounded ``ray.wait``
   loop) and hands each to ``emit``, which writes it at once.

Node side (:func:`_cell_task`): pins the task's thread to a CPU set no other
cell on the machine holds, then runs the cell exactly as a local run does,
in a fresh worker process with the per-cell timeout
(``benchkit.runner.worker.CellRunner``). The record is built there, so its ``system``
block is the node's.

Lost nodes: Ray retries a task whose node or worker died, up to the fleet's
``max_attempts``, on any node that can run it. A cell whose every capable
node is gone waits ``reschedule_wait_s`` for one to join, then gets a
failed record naming the cause; a started cell with no record after its
timeout plus a grace period is cancelled and recorded as timed out. No wait
is unbounded.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchkit._install import install_hint
from benchkit.results import records
from benchkit.errors import BenchkitError, FleetError, WorkloadError
from benchkit.runner.fleet import FleetSpec, NodeInfo, check_feasible, format_resources, load_fleet, runnable_on
from benchkit.results.records import PlacementRecord, ResultRecord, SystemRecord
from benchkit.runner.executors.base import Executor, with_placement
from benchkit.runner.plan import Cell, SuiteContext
from benchkit.checks.verdict import warning
from benchkit.runner.assemble import with_findings
from benchkit.runner.worker import CellRunner

MIN_RAY = (2, 9)
_INSTALL = install_hint("ray")
_INLINE_BYTES = 1 << 20  # files up to this size travel inside the task's arguments, larger through the object store
_HEAD = "node:__internal_head__"  # a resource Ray gives the head node only
_POLL_S = 0.25  # how often the submitting loop looks at progress events when no record arrives
_POLICE_S = 1.0  # how often it checks node liveness and deadlines
_BOARD_TIMEOUT_S = 10.0
_FETCH_TIMEOUT_S = 120.0  # a finished task's record, even a large one, arrives well within this


def import_ray():
    """The ``ray`` module, or :class:`FleetError` naming the extra to install."""
    try:
        import ray
    except ImportError as e:
        raise FleetError(f"--executor ray needs Ray, which is not installed ({e}): {_INSTALL}") from None
    version = tuple(int(p) for p in ray.__version__.split(".")[:2] if p.isdigit())
    if version < MIN_RAY:
        raise FleetError(f"Ray {ray.__version__} is too old for benchkit (needs >= {'.'.join(map(str, MIN_RAY))}): "
                         f"{_INSTALL}")
    return ray


def _grace_s(timeout_s: float) -> float:
    """Slack past the cell timeout before the submitter gives up on a started task: the worker process's
    start and the record's trip back are outside the worker's own clock."""
    return 30.0 + 0.1 * timeout_s


# --------------------------------------------------------------------------- node side


class _Board:
    """Progress events from the tasks to the submitter (a Ray actor next to the driver).

    A task reports its start (node, system block) and its phases; the submitter
    drains the events to show progress, to know each cell's node and attempt,
    and to start the clock of its deadline.
    """

    def __init__(self) -> None:
        self._events: list[tuple] = []
        self._nodes: dict[str, list[str]] = {}

    def started(self, cell_id: str, node_id: str, node_address: str, system_block: dict) -> tuple[int, list[str]]:
        """Record a start; return (attempt number, nodes of the earlier attempts)."""
        earlier = list(self._nodes.get(cell_id, []))
        self._nodes.setdefault(cell_id, []).append(node_id)
        self._events.append(("started", cell_id, node_id, node_address, len(earlier) + 1, system_block))
        return len(earlier) + 1, earlier

    def phase(self, cell_id: str, phase: str) -> None:
        self._events.append(("phase", cell_id, phase))

    def drain(self) -> list[tuple]:
        events, self._events = self._events, []
        return events


def _unpack(cell: Cell, work: CellRunner, ship: dict, workdir: Path) -> tuple[Cell, CellRunner]:
    """The cell as this node runs it, with its runner: its model and device file present here and checked by
    SHA-256."""
    from benchkit.workloads import catalog

    workload = cell.workload
    backend = cell.backend
    wl = ship["workload"]
    if wl["kind"] == "catalog":
        entry = cell.workload
        # Rebuilt here rather than shipped: the builders are deterministic, and a node whose build
        # differs (another onnx or numpy) must not measure a different model under the same name.
        path = catalog.materialize(entry.catalog_name, entry.params, entry.variant)
        digest = _digest(path)
        if digest != wl["sha256"]:
            raise WorkloadError(
                f"{cell.origin}: catalog workload {entry.catalog_name} ({entry.variant}) built on this node has "
                f"SHA-256 {digest}, the submitting machine's build has {wl['sha256']}: the two build different "
                "bytes (compare their benchkit, onnx and numpy versions)")
    else:
        workload = workload.model_copy(update={"model": _land(wl, workdir / "model", f"{cell.origin}: model file")})
    dev = ship.get("device_file")
    if dev is not None:
        backend = backend.model_copy(update={"device_file": _land(dev, workdir / "device",
                                                                   f"{cell.origin}: device file")})
    node_cell = cell.model_copy(update={"workload": workload, "backend": backend})
    # this node's own workload cache; files the cell writes beside its record (LoadGen's logs) go to a
    # folder of its own here and travel back with the record
    node_work = work.elsewhere(base_dir=str(workdir), cache_dir=None,
                               run_dir=str(workdir / _RUN) if work.ctx.run_dir else None)
    return node_cell, node_work


_RUN = "run"  # the node's stand-in for the submitter's run directory, inside the task's temporary folder
_RETURN_FILES_BYTES = 256 << 20  # files written beside a record that travel back with it, at most

_DIGESTS: dict[tuple[str, int, int], str] = {}  # per Ray worker process, which runs many cells


def _digest(path: Path) -> str:
    """SHA-256 of a cached model file, hashed once per file version: a large model must not cost every cell."""
    from benchkit.workloads import file_sha256

    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_sha256(path)
    return _DIGESTS[key]


def _land(item: dict, folder: Path, what: str) -> Path:
    """Write a shipped file under its own name and check its bytes against the submitter's SHA-256."""
    import hashlib

    import ray

    data = item["data"]
    if isinstance(data, ray.ObjectRef):
        data = ray.get(data, timeout=_FETCH_TIMEOUT_S)
    digest = hashlib.sha256(data).hexdigest()
    if digest != item["sha256"]:
        raise WorkloadError(f"{what} {item['name']} arrived with SHA-256 {digest}, sent with {item['sha256']}")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / item["name"]  # the same file name as on the submitter: records carry it
    path.write_bytes(data)
    return path


def _files_beside(run_dir: Path) -> tuple[dict[str, bytes], list[str]]:
    """Files the cell wrote beside its record (relative path -> bytes), and what was too large to send."""
    files: dict[str, bytes] = {}
    left: list[str] = []
    total = 0
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()) if run_dir.is_dir() else []:
        size = path.stat().st_size
        if total + size > _RETURN_FILES_BYTES:
            left.append(f"{path.relative_to(run_dir)} ({size} bytes)")
            continue
        files[str(path.relative_to(run_dir))] = path.read_bytes()
        total += size
    return files, left


def _cell_task(job_key: str, cell_data: dict, work: CellRunner, num_cpus: int, ship: dict,
               board, submitted_at: str, requested: dict[str, float]) -> dict:
    """One cell on this node: unpack, pin to a CPU set, run in a worker process.

    Returns ``{"record": record as JSON, "files": {relative path: bytes}}``, the files being what the cell
    wrote beside its record (LoadGen's logs under ``--engine mlperf``).
    """
    from datetime import datetime

    import ray

    from benchkit.machine import host as system
    from benchkit.runner.executors import cpuset

    dispatched = records.utcnow()
    cell = Cell.model_validate(cell_data)
    node_id = ray.get_runtime_context().get_node_id()
    node_address = ray.util.get_node_ip_address()
    attempt, earlier = _attempt(), []
    try:
        counted, earlier = ray.get(board.started.remote(job_key, node_id, node_address, system.describe()),
                                   timeout=_BOARD_TIMEOUT_S)
        attempt = attempt or counted
    except Exception:  # noqa: BLE001 - progress only: the cell runs without it
        pass
    attempt = attempt or 1

    def progress(_cell_id: str, phase: str) -> None:
        board.phase.remote(job_key, phase)  # fire and forget: never slows the cell

    cores = None
    phase = "ship"
    files: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="benchkit-ray-") as tmp:
        try:
            node_cell, node_work = _unpack(cell, work, ship, Path(tmp))
            phase = "pin"
            # Waiting for cores counts against the cell's timeout: a cell never waits longer than it may run.
            with cpuset.pinned(num_cpus, wait_s=work.timeout_s) as cores:
                # always a worker process on the node: `inline` is for debugging on one machine
                rec = dataclasses.replace(node_work, isolation="process")(node_cell, progress)
            files, left = _files_beside(Path(tmp) / _RUN)
            if left:
                rec = with_findings(rec, [warning("executor", f"files too large to bring back from node "
                                                  f"{node_id[:12]}, left there and deleted: {', '.join(left)}")])
        except BenchkitError as e:
            rec = work.failed(cell, dispatched, f"{type(e).__name__}: {e}", type(e).__name__, phase)
    # The record names the cell as the submitter wrote it, not this node's copies of its files; its system
    # block gets this node's accelerators, which the submitter cannot see.
    updates: dict[str, Any] = {"spec": {**rec.spec, **{k: v for k, v in cell.spec_block().items()
                                                         if k in ("workload", "backend")}}}
    accelerators = _node_accelerators()
    if accelerators and not rec.system.accelerators:
        updates["system"] = rec.system.model_copy(update={"accelerators": accelerators})
    rec = rec.model_copy(update=updates)
    rec = with_placement(rec, PlacementRecord(
        executor="ray", node_id=node_id, node_address=node_address, requested=requested, cpu_set=cores,
        attempt=attempt, lost_nodes=earlier, submitted_at=datetime.fromisoformat(submitted_at),
        dispatched_at=dispatched))
    return {"record": rec.model_dump(mode="json"), "files": files}


def _attempt() -> int | None:
    """Ray's own count of this task's tries (1 = first), where this Ray version says it (else None)."""
    try:
        from ray._private.worker import global_worker

        return int(global_worker.core_worker.get_current_task_attempt_number()) + 1
    except Exception:  # noqa: BLE001 - a private API: the board's count stands in for it
        return None


def _node_accelerators() -> list:
    """This node's accelerators as NVML reports them (empty where there is none or no NVML)."""
    from benchkit.results.records import AcceleratorInfo
    from benchkit.machine.description import suite_fields

    try:
        return [AcceleratorInfo(**a) for a in suite_fields(None).get("accelerators", [])]
    except Exception:  # noqa: BLE001 - a description, never a reason to lose the record
        return []


def _probe_task() -> dict:
    """What a node says about itself for ``benchkit fleet``."""
    from benchkit.machine import host as system
    from benchkit._version import __version__

    return {"benchkit": __version__, **system.describe()}


# --------------------------------------------------------------------------- submitting side


@dataclasses.dataclass
class _Pending:
    job: Any  # executors.Job
    requested: dict[str, float]
    submitted_at: Any  # datetime
    progress: Any = None  # the job's phase callback
    node_id: str | None = None
    node_address: str | None = None
    attempt: int = 0
    nodes: list[str] = dataclasses.field(default_factory=list)
    system_block: dict | None = None
    started_mono: float | None = None
    unschedulable_since: float | None = None


class RayExecutor(Executor):
    """Runs each cell as a Ray task on a cluster (``address``: ``HOST:PORT`` or ``auto``)."""

    name = "ray"
    local = False

    def __init__(self, address: str | None = None, fleet_file: Path | None = None,
                 fleet: FleetSpec | None = None) -> None:
        self._ray = import_ray()
        self.address = address or "auto"
        self.fleet = fleet if fleet is not None else (load_fleet(fleet_file) if fleet_file else FleetSpec())
        self._connected_here = False

    # ----------------------------------------------------------- cluster

    def connect(self) -> None:
        """Join the cluster as a driver (once). Raises :class:`FleetError` when there is none at the address."""
        ray = self._ray
        if ray.is_initialized():
            return
        kwargs: dict[str, Any] = {"address": self.address, "log_to_driver": False,
                                  "logging_level": logging.WARNING, "namespace": "benchkit"}
        host, _, port = self.address.rpartition(":")
        if host and port.isdigit() and "://" not in host:
            _reachable(host, int(port), self.address)
        if host.startswith("127.") or host == "localhost":
            # A cluster on a loopback address runs on this machine under that address; without this the
            # driver would guess its own address from the network, which a loopback-only host does not have.
            kwargs["_node_ip_address"] = "127.0.0.1" if host == "localhost" else host
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise FleetError(f"--address {self.address}: cannot join a Ray cluster there: {e} (start one with "
                             "`ray start --head`, or pass --address HOST:PORT)") from None
        self._connected_here = True

    def nodes(self) -> list[NodeInfo]:
        """Every node the cluster knows, alive or dead."""
        self.connect()
        return [NodeInfo.from_ray(n) for n in self._ray.nodes()]

    def probe(self, nodes: Sequence[NodeInfo], timeout_s: float = 30.0) -> dict[str, dict | None]:
        """Ask each alive node what it runs (benchkit version, system block); None for a node that did not answer."""
        ray = self._ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        task = ray.remote(_probe_task)
        refs = {n.node_id: task.options(num_cpus=0, max_retries=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
            n.node_id, soft=False)).remote() for n in nodes if n.alive}
        ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s) if refs else ([], [])
        out: dict[str, dict | None] = {}
        for node_id, ref in refs.items():
            out[node_id] = None
            if ref in ready:
                try:
                    out[node_id] = ray.get(ref, timeout=_BOARD_TIMEOUT_S)
                except Exception as e:  # noqa: BLE001 - shown in the table; the other nodes still answer
                    out[node_id] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
            else:
                ray.cancel(ref, force=True)
        return out

    def check(self, cells: Sequence[Cell]) -> None:
        """Raise :class:`FleetError` if some cell has no alive node advertising what it asks for."""
        check_feasible(cells, self.nodes(), self.fleet, self.address)

    def close(self) -> None:
        if self._connected_here and self._ray.is_initialized():
            self._ray.shutdown()
        self._connected_here = False

    # ----------------------------------------------------------- suite

    def _ship(self, cells: Sequence[Cell], ctx: SuiteContext) -> dict[str, dict]:
        """What each workload's cells need on a node, by workload name (files read and hashed once)."""
        from benchkit.workloads import catalog, file_sha256

        ships: dict[str, dict] = {}
        devices: dict[str, dict] = {}
        for cell in cells:
            key = cell.workload_name + "\0" + str(cell.backend.device_file)
            if key in ships:
                continue
            entry = cell.workload
            if entry.catalog_name is not None:
                path = catalog.materialize(entry.catalog_name, entry.params, entry.variant,
                                           cache_dir=Path(ctx.cache_dir) if ctx.cache_dir else None)
                wl = {"kind": "catalog", "sha256": file_sha256(path)}
            else:
                wl = {"kind": "file", **self._pack(Path(ctx.base_dir) / entry.model, f"{cell.origin}.model")}
            dev = str(cell.backend.device_file) if cell.backend.device_file else None
            if dev is not None and dev not in devices:
                devices[dev] = self._pack(Path(dev), f"{cell.origin}: device_file")
            ships[key] = {"workload": wl, "device_file": devices.get(dev) if dev else None}
        return ships

    def _pack(self, path: Path, what: str) -> dict:
        import hashlib

        import os

        from benchkit._fsutil import open_regular

        try:  # a regular file only: a FIFO or a device would block or never end
            with os.fdopen(open_regular(Path(path).resolve(), error=WorkloadError), "rb") as f:
                data = f.read()
        except OSError as e:
            raise WorkloadError(f"{what}: cannot read {path} to send it to the cluster: {e}") from None
        except WorkloadError as e:
            raise WorkloadError(f"{what}: {e}") from None
        item = {"name": Path(path).name, "sha256": hashlib.sha256(data).hexdigest(), "data": data}
        if len(data) > _INLINE_BYTES:
            item["data"] = self._ray.put(data)  # once, shared by every task of this workload
        return item

    def run(self, jobs, work, *, progress_for, emit) -> None:
        ray = self._ray
        if not jobs:  # e.g. --resume of a run that is complete
            return
        cells = [job.cell for job in jobs]
        self.check(cells)
        ships = self._ship(cells, work.ctx)
        # On the head node: it lives as long as the cluster does, whichever worker nodes are lost.
        board = ray.remote(_Board).options(num_cpus=0, max_restarts=0, resources={_HEAD: 0.001}).remote()
        task = ray.remote(_cell_task)
        pending: dict[Any, _Pending] = {}
        try:
            for job in jobs:
                cell = job.cell
                req = self.fleet.request_for(cell.backend)
                requested = req.ray_resources()
                opts: dict[str, Any] = {"num_cpus": req.num_cpus, "num_gpus": req.num_gpus,
                                        "resources": dict(req.resources), "max_retries": self.fleet.max_attempts - 1,
                                        "retry_exceptions": False}
                if req.memory_bytes:
                    opts["memory"] = req.memory_bytes
                submitted = records.utcnow()
                ship = ships[cell.workload_name + "\0" + str(cell.backend.device_file)]
                ref = task.options(**opts).remote(job.key, cell.model_dump(mode="json"), work, req.num_cpus, ship,
                                                  board, submitted.isoformat(), requested)
                pending[ref] = _Pending(job, requested, submitted, progress_for(job))
            self._collect(pending, board, work, emit)
        except BaseException:
            for ref in pending:
                _cancel(ray, ref)
            raise
        finally:
            try:
                ray.kill(board)
            except Exception:  # noqa: BLE001 - the cluster may be gone; nothing left to release then
                pass

    def _collect(self, pending: dict, board, work: CellRunner, emit) -> None:
        ray = self._ray
        by_key = {p.job.key: p for p in pending.values()}
        next_police = time.monotonic() + _POLICE_S
        while pending:
            refs = list(pending)
            ready, rest = ray.wait(refs, num_returns=1, timeout=_POLL_S)
            if ready and rest:
                ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
            self._drain(board, by_key)
            for ref in ready:
                p = pending.pop(ref)
                emit(p.job, self._record(ref, p, work))
            if time.monotonic() >= next_police:
                self._police(pending, work, emit)
                next_police = time.monotonic() + _POLICE_S

    def _drain(self, board, by_key: dict[str, _Pending]) -> None:
        try:
            events = self._ray.get(board.drain.remote(), timeout=_BOARD_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - progress only; records and deadlines do not depend on it alone
            return
        for ev in events:
            p = by_key.get(ev[1])
            if p is None:
                continue
            if ev[0] == "started":
                _, _, node_id, address, attempt, system_block = ev
                p.node_id, p.node_address, p.attempt, p.system_block = node_id, address, attempt, system_block
                p.nodes.append(node_id)
                p.started_mono = time.monotonic()
                if p.progress:
                    p.progress(p.job.cell.cell_id, f"started on node {node_id[:8]}"
                               + (f" (attempt {attempt})" if attempt > 1 else ""))
            elif p.progress:
                p.progress(p.job.cell.cell_id, ev[2])

    def _police(self, pending: dict, work: CellRunner, emit) -> None:
        """Fail, with the cause, cells that no alive node can run any more and started cells past their deadline."""
        ray = self._ray
        timeout_s = work.timeout_s
        try:
            alive = [n for n in self.nodes() if n.alive]
        except Exception:  # noqa: BLE001 - a control-plane hiccup: look again next round
            return
        now = time.monotonic()
        for ref, p in list(pending.items()):
            if runnable_on(p.requested, alive):
                p.unschedulable_since = None
            else:
                p.unschedulable_since = p.unschedulable_since or now
                if now - p.unschedulable_since >= self.fleet.reschedule_wait_s:
                    _cancel(ray, ref)
                    del pending[ref]
                    lost = f"; it was running on node {p.node_id[:12]} ({p.node_address}), which was lost" \
                        if p.node_id else ""
                    emit(p.job, self._failed(
                        p, work, f"no alive node of the cluster can run the cell any more: it needs "
                        f"{format_resources(p.requested)}{lost}; waited {self.fleet.reschedule_wait_s:g} s for one "
                        "to join", "NodeLost", "schedule"))
                    continue
            if p.started_mono is not None and now - p.started_mono > timeout_s + _grace_s(timeout_s):
                _cancel(ray, ref)
                del pending[ref]
                emit(p.job, self._failed(
                    p, work, f"no record from node {p.node_id[:12]} ({p.node_address}) within cell_timeout_s="
                    f"{timeout_s:g} plus {_grace_s(timeout_s):g} s after the cell started there; cancelled",
                    "Timeout", "worker"))

    def _record(self, ref, p: _Pending, work: CellRunner) -> ResultRecord:
        """The finished task's record, or a failed record saying why the task gave none."""
        ray = self._ray
        where = f"node {p.node_id[:12]} ({p.node_address})" if p.node_id else "its node"
        try:
            data = ray.get(ref, timeout=_FETCH_TIMEOUT_S)
        except ray.exceptions.RayTaskError as e:
            # benchkit's own task code raised: a bug, not a measurement; kept with its traceback
            cause = getattr(e, "cause", None) or e
            return self._failed(p, work, f"the cell's Ray task failed on {where}: {type(cause).__name__}: "
                                f"{_first_line(cause)}", "ExecutorError", "executor", str(e))
        except ray.exceptions.GetTimeoutError:
            return self._failed(p, work, f"the record from {where} did not arrive within {_FETCH_TIMEOUT_S:g} s",
                                "NodeLost", "collect")
        except ray.exceptions.RayError as e:
            # Ray gave up after max_attempts: the node (or the task's worker) died on every try.
            return self._failed(
                p, work, f"{where} was lost while running the cell, attempt {max(p.attempt, 1)} of "
                f"{self.fleet.max_attempts}: {type(e).__name__}: {_first_line(e)}", "NodeLost", "worker", str(e))
        try:
            rec = records.parse(data["record"], f"record of {p.job.cell.cell_id} from {where}")
        except BenchkitError as e:
            return self._failed(p, work, str(e), "RecordError", "collect")
        if work.ctx.run_dir:
            _write_beside(Path(work.ctx.run_dir), data["files"])
        return rec

    def _failed(self, p: _Pending, work: CellRunner, message: str, etype: str, phase: str,
                detail: str = "") -> ResultRecord:
        rec = work.failed(p.job.cell, p.submitted_at, message, etype, phase, detail)
        if p.system_block:  # the node that had the cell last, not this machine
            rec = rec.model_copy(update={"system": SystemRecord(**p.system_block)})
        return with_placement(rec, PlacementRecord(
            executor=self.name, node_id=p.node_id, node_address=p.node_address, requested=p.requested,
            attempt=max(p.attempt, 1), lost_nodes=p.nodes[:-1], submitted_at=p.submitted_at))


def _write_beside(run_dir: Path, files: dict[str, bytes]) -> None:
    """Put the files a cell wrote beside its record on its node into the submitter's run directory."""
    from benchkit._fsutil import write_atomic

    root = run_dir.resolve()
    for rel, data in files.items():
        path = (root / rel).resolve()
        if root not in path.parents:  # only ever a path under the run directory
            continue
        write_atomic(path, data)  # a reader never sees half a log


def _reachable(host: str, port: int, address: str, timeout_s: float = 5.0) -> None:
    """Fail at once when nothing listens at the cluster's address: ``ray.init`` would retry for minutes."""
    import socket

    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as e:
        raise FleetError(f"--address {address}: cannot join a Ray cluster there: nothing answers ({e}); start one "
                         "with `ray start --head`, or pass the head's HOST:PORT") from None


def _cancel(ray, ref) -> None:
    try:
        ray.cancel(ref, force=True)
    except Exception:  # noqa: BLE001 - already finished, or its node is gone
        pass


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


__all__ = ["RayExecutor", "import_ray"]
