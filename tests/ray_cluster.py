"""A real multi-node Ray cluster that never leaves the machine, for tests and benchmarks.

Every process (head, worker nodes, the driver under test) runs inside a fresh
network namespace whose only interface is loopback, so every connection
stays on 127.0.0.1 whatever address Ray would otherwise pick. Needs root and
iproute2's ``ip``. :meth:`LoopbackCluster.stop` kills exactly the processes
inside the namespace (``ip netns pids``) and deletes it: ``ray stop`` is not
used because it matches Ray processes by name across the whole machine, where
other clusters may be running.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PORT = 6379  # the namespace is empty: Ray's default port is free there

# Fast node-death detection (default ~15-30 s): 1 s health checks, 3 misses.
_SYSTEM_CONFIG = {"health_check_period_ms": 1000, "health_check_timeout_ms": 1000,
                  "health_check_failure_threshold": 3, "health_check_initial_delay_ms": 1000}
_NODE_OPTS = ["--num-cpus=1", "--object-store-memory=100000000", "--disable-usage-stats",
              "--node-ip-address=127.0.0.1", "--include-log-monitor=false"]


def unavailable_reason() -> str | None:
    """Why a loopback cluster cannot run here (None: it can)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return "ray is not installed (the ray extra)"
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if shutil.which("ray") is None:
        return "the `ray` command is not on PATH"
    return None


class LoopbackCluster:
    """Head plus worker nodes, each with its own custom resources, in a loopback-only namespace."""

    def __init__(self, workers: dict[str, dict[str, float]], head_resources: dict[str, float] | None = None) -> None:
        self.ns = f"bk-test-{secrets.token_hex(4)}"
        self.temp_dir = Path(f"/tmp/bkr-{secrets.token_hex(3)}")  # short: Ray's socket paths have a length limit
        self.address = f"127.0.0.1:{PORT}"
        self.workers = workers
        self.head_resources = head_resources or {}
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0",
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self._created = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> LoopbackCluster:
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        self._created = True
        self.exec(["ip", "link", "set", "lo", "up"], check=True)
        self._ray_start(["--head", f"--port={PORT}", "--include-dashboard=false",
                         f"--resources={json.dumps(self.head_resources)}",
                         f"--system-config={json.dumps(_SYSTEM_CONFIG)}"], "head", 0)
        with ThreadPoolExecutor(len(self.workers) or 1) as pool:  # worker nodes join side by side
            list(pool.map(lambda item: self.add_node(item[1][0], item[1][1], item[0] + 1),
                          enumerate(self.workers.items())))
        return self

    def add_node(self, name: str, resources: dict[str, float], index: int) -> None:
        """Start worker node number `index` (1, 2, ...; 0 is the head)."""
        self._ray_start([f"--address={self.address}", f"--resources={json.dumps(resources)}"], name, index)

    def _ray_start(self, args: list[str], name: str, index: int) -> None:
        # Fixed, distinct ports per node: nodes started side by side otherwise race for the same free port.
        base = 20000 + 1000 * index
        ports = [f"--node-manager-port={base + 1}", f"--object-manager-port={base + 2}",
                 f"--metrics-export-port={base + 3}", f"--dashboard-agent-listen-port={base + 4}",
                 f"--dashboard-agent-grpc-port={base + 5}", f"--runtime-env-agent-port={base + 6}",
                 f"--min-worker-port={base + 100}", f"--max-worker-port={base + 999}"]
        # A temporary directory per node: nodes sharing one pick their socket names racily.
        cmd = ["ray", "start", *args, *ports, *_NODE_OPTS, f"--temp-dir={self.temp_dir}/n{index}"]
        r = self.exec(cmd, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"ray start ({name}) failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")

    def stop(self) -> None:
        """Kill every process in the namespace, then delete it. Safe to call twice."""
        if not self._created:
            return
        for sig, wait_s in ((signal.SIGTERM, 3), (signal.SIGKILL, 10)):
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait_s
            while self.pids() and time.monotonic() < deadline:
                time.sleep(0.2)
            if not self.pids():
                break
        subprocess.run(["ip", "netns", "delete", self.ns], check=False)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        self._created = False

    def __enter__(self) -> LoopbackCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ inside the namespace

    def exec(self, cmd: list[str], timeout: float = 300, check: bool = False, cwd: Path | None = None,
             env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.ns, *cmd], capture_output=True, text=True,
                              timeout=timeout, check=check, cwd=cwd, env=env or self.env, stdin=subprocess.DEVNULL)

    def popen(self, cmd: list[str], cwd: Path | None = None) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.ns, *cmd], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=cwd, env=self.env, stdin=subprocess.DEVNULL)

    def benchkit(self, *args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        """The benchkit CLI as a driver of this cluster."""
        return self.exec([sys.executable, "-m", "benchkit", *args], cwd=cwd, timeout=timeout)

    def pids(self) -> list[int]:
        r = subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True, text=True)
        return [int(p) for p in r.stdout.split()]

    def nodes(self) -> list[dict]:
        """``ray.nodes()`` as seen by a separate driver (the tests' independent view of the cluster)."""
        code = ("import json, ray; ray.init(address=%r, _node_ip_address='127.0.0.1', logging_level='error', "
                "log_to_driver=False); print(json.dumps(ray.nodes()))" % self.address)
        r = self.exec([sys.executable, "-c", code], timeout=120, check=True)
        return json.loads(r.stdout.strip().splitlines()[-1])

    def raylet_of(self, pid: int) -> int | None:
        """The raylet that (transitively) started process `pid`, i.e. the Ray node it runs on."""
        while pid > 1:
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
                if cmd.endswith(b"/raylet"):
                    return pid
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                return None
            pid = int(stat.rsplit(")", 1)[1].split()[1])  # ppid: the field after the state
        return None

    def kill_node(self, raylet: int) -> None:
        """Lose a node as a machine is lost: its raylet and every process it started, at once (SIGKILL).

        Stopping the raylet alone leaves its workers to notice and exit on their own, which under load can
        take longer than a short cell: the test would then see the cell finish as if nothing happened.
        """
        parents = {}
        for pid in self.pids():
            try:
                parents[pid] = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
        doomed, frontier = {raylet}, [raylet]
        while frontier:
            children = [pid for pid, ppid in parents.items() if ppid in frontier and pid not in doomed]
            doomed.update(children)
            frontier = children
        for pid in [raylet, *sorted(doomed - {raylet})]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def cell_workers(self) -> dict[str, int]:
        """cell_id -> pid of the benchkit worker process running it, among this namespace's processes."""
        out = {}
        for pid in self.pids():
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"benchkit.runner.child" in argv and len(argv) > 3:
                try:
                    out[json.loads(Path(argv[3].decode()).read_text())["cell"]["cell_id"]] = pid
                except (OSError, ValueError, KeyError):
                    continue
        return out
