"""The fleet file: which cluster resources each backend's cells ask for, and which node can run which cell.

A fleet file (YAML) maps backends to resource requests in Ray's terms::

    backends:
      ort-cuda: {num_gpus: 1}                          # a backend id (label, else name) of the spec ...
      vendor-npu: {resources: {"accelerator:npu-x": 1}}
      onnxruntime: {num_cpus: 4}                       # ... or an adapter name
    default: {num_cpus: 1}                             # every other backend: a CPU cell on one core
    max_attempts: 3

Accelerators are requested in whole units only: Ray counts a resource, it
does not share a device, so a fraction would let two cells time on one
accelerator at once. Everything here is pure (no Ray import), so the same
placement rules serve ``benchkit fleet``, the pre-suite check and the tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from benchkit._fsutil import read_bounded
from benchkit.errors import FleetError

# Ray's own names for the built-in resources; custom resources may not reuse them.
_BUILTIN = {"CPU": "num_cpus", "GPU": "num_gpus", "memory": "memory_bytes", "object_store_memory": None}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ResourceRequest(_Frozen):
    """What one cell of a backend asks of the node that runs it."""

    num_cpus: int = Field(
        1, ge=0,
        description="Cores held by the cell. Its worker process is pinned to that many cores that no other cell on "
        "the machine holds at the same time. 0: no core is reserved and the worker is not pinned.",
    )
    num_gpus: int = Field(0, ge=0, description="Whole GPUs; Ray hands the worker its own (CUDA_VISIBLE_DEVICES).")
    resources: dict[str, int] = Field(
        default_factory=dict,
        description="Custom resources a node advertises (`ray start --resources`), in whole units, e.g. "
        "{accelerator:h200: 1}. One unit stands for one accelerator: Ray never runs more cells on a node at once "
        "than it advertises units.",
    )
    memory_bytes: int | None = Field(None, gt=0, description="Host memory to reserve on the node (Ray `memory`).")

    @field_validator("resources")
    @classmethod
    def _whole_units(cls, v: dict[str, int]) -> dict[str, int]:
        for name, amount in v.items():
            if name in _BUILTIN:
                hint = f"use `{_BUILTIN[name]}`" if _BUILTIN[name] else "it is not a cell resource"
                raise ValueError(f"{name!r} is a Ray built-in resource: {hint}")
            if amount < 1:
                raise ValueError(f"{name!r}: ask for at least one whole unit, got {amount}")
        return v

    def ray_resources(self) -> dict[str, float]:
        """The request in Ray's resource names (``CPU``, ``GPU``, ``memory``, custom), zero entries left out."""
        out: dict[str, float] = {}
        if self.num_cpus:
            out["CPU"] = float(self.num_cpus)
        if self.num_gpus:
            out["GPU"] = float(self.num_gpus)
        if self.memory_bytes:
            out["memory"] = float(self.memory_bytes)
        out.update({k: float(v) for k, v in self.resources.items()})
        return out


class FleetSpec(_Frozen):
    """A fleet file: resource requests per backend, and how node losses are handled."""

    backends: dict[str, ResourceRequest] = Field(
        default_factory=dict,
        description="Requests by backend id (the spec's `label`, else `name`) or by adapter name; the id wins.",
    )
    default: ResourceRequest = Field(
        default_factory=ResourceRequest, description="Request of every backend not listed: a CPU cell on one core."
    )
    max_attempts: int = Field(
        3, ge=1, le=10, description="Tries of a cell whose node is lost while running it (first try included)."
    )
    reschedule_wait_s: float = Field(
        30.0, ge=0,
        description="How long a cell that no alive node can run any more (its nodes were lost) waits for one to "
        "join before it is recorded as failed.",
    )

    def request_for(self, backend: Any) -> ResourceRequest:
        """The request of a cell's backend (a ``BackendSpec``): by id, then by adapter name, else the default."""
        return self.backends.get(backend.id) or self.backends.get(backend.name) or self.default


def load_fleet(path: str | Path) -> FleetSpec:
    """Read and validate a fleet file. Raises :class:`FleetError` naming the file and field."""
    from benchkit.spec import format_validation_error

    p = Path(path)
    try:
        data = yaml.safe_load(read_bounded(p, 1 << 20, error=FleetError, what="fleet file").decode("utf-8"))
    except FileNotFoundError:
        raise FleetError(f"{p}: fleet file not found") from None
    except RecursionError:
        raise FleetError(f"{p}: cannot read fleet file: YAML nesting too deep") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise FleetError(f"{p}: cannot read fleet file: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FleetError(f"{p}: expected a mapping with keys backends, default, max_attempts; got {type(data).__name__}")
    try:
        return FleetSpec.model_validate(data)
    except ValidationError as e:
        raise FleetError(format_validation_error(str(p), e, data).replace("invalid spec", "invalid fleet file")) from None


@dataclass(frozen=True)
class NodeInfo:
    """One node of the cluster as its control plane reports it."""

    node_id: str
    address: str
    hostname: str
    alive: bool
    resources: dict[str, float] = field(default_factory=dict)  # totals the node advertises

    @classmethod
    def from_ray(cls, entry: Mapping[str, Any]) -> NodeInfo:
        """From one item of ``ray.nodes()``."""
        return cls(
            node_id=entry["NodeID"],
            address=entry.get("NodeManagerAddress", ""),
            hostname=entry.get("NodeManagerHostname", ""),
            alive=bool(entry.get("Alive")),
            resources={k: float(v) for k, v in (entry.get("Resources") or {}).items()},
        )

    @property
    def advertised(self) -> dict[str, float]:
        """Resources worth showing: Ray's per-node bookkeeping entries (``node:<ip>``) left out."""
        return {k: v for k, v in self.resources.items() if not k.startswith("node:")}


def shortfall(request: Mapping[str, float], node: NodeInfo) -> dict[str, float]:
    """What `node` lacks to run a cell asking `request` (empty: it can run it). Totals, not what is free now."""
    return {k: v for k, v in request.items() if node.resources.get(k, 0.0) < v}


def runnable_on(request: Mapping[str, float], nodes: Iterable[NodeInfo]) -> list[NodeInfo]:
    """Alive nodes that can run a cell asking `request`."""
    return [n for n in nodes if n.alive and not shortfall(request, n)]


def format_resources(res: Mapping[str, float]) -> str:
    """``CPU=1, accelerator:h200=1, memory=21.7 GiB``: memory figures (bytes) in GiB."""
    def value(k: str, v: float) -> str:
        return f"{v / (1 << 30):.1f} GiB" if k in ("memory", "object_store_memory") else f"{v:g}"

    return ", ".join(f"{k}={value(k, v)}" for k, v in sorted(res.items())) or "nothing"


def check_feasible(cells: Sequence[Any], nodes: Sequence[NodeInfo], fleet: FleetSpec, cluster: str) -> None:
    """Raise :class:`FleetError` listing every cell that no alive node of the cluster can run."""
    alive = [n for n in nodes if n.alive]
    bad = []
    for c in cells:
        req = fleet.request_for(c.backend).ray_resources()
        if not runnable_on(req, alive):
            bad.append(f"  {c.cell_id} needs {format_resources(req)}")
    if not bad:
        return
    offered = "\n".join(f"  node {n.node_id[:12]} ({n.address}): {format_resources(n.advertised)}" for n in alive) \
        or "  (no alive node)"
    raise FleetError(
        f"{len(bad)} cell(s) cannot run on any node of the Ray cluster at {cluster}:\n" + "\n".join(bad)
        + f"\nnodes and the resources they advertise:\n{offered}\n"
        "(map the backend to resources a node advertises in the fleet file, or start a node with them)"
    )


__all__ = ["ResourceRequest", "FleetSpec", "NodeInfo", "load_fleet", "shortfall", "runnable_on", "check_feasible",
           "format_resources"]
