"""The backend adapter protocol: what a vendor implements.

An adapter is a class registered in the ``benchkit.backends`` entry-point
group. benchkit drives it in this order, and only steps 4-5 are timed::

    1. Backend(options)            construct; validate options (untimed)
    2. load(model_path, workload)  compile the ONNX file for the device (untimed, reported as load_ns)
    3. stage(feeds) -> staged      copy one call's inputs to the device (untimed)
    4. run(staged) -> result       start the inference call            ┐ timed:
    5. synchronize()               wait until the device has finished  ┘ one boundary for every vendor
    6. fetch(result) -> outputs    copy outputs back as numpy (untimed; accuracy checks only)
    7. close()                     release everything

``info()`` describes what actually ran (runtime version, device, *effective*
precision, resolved options); it goes verbatim into every record.

Optional asynchronous submission (the Server scenario)::

    supports_async() -> bool       True when submit() works for the loaded model (asked after load)
    max_in_flight() -> int         calls submit() runs at once; above 1, Offline keeps that many in flight
    submit(staged, done, tag)      start one call and return at once; the adapter calls
                                   done(tag, None) when its outputs are ready (run + synchronize
                                   semantics), or done(tag, error) if it failed, from any thread

The Server scenario issues each query on its Poisson schedule whether or not
earlier ones completed. With ``submit`` the issuing thread only starts work
(ONNX Runtime's ``run_async``, OpenVINO's ``AsyncInferQueue``); without it
benchkit runs ``run(); synchronize()`` on a pool of ``workers`` threads, so
``run`` must then be safe to call from several threads at once.

A minimal adapter is about thirty lines; see ``NullBackend`` in
``benchkit/backends/null.py`` and the ONNX Runtime adapter.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class TensorMetadata(BaseModel):
    """One input or output of a served model, as the server's metadata describes it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="Tensor name.")
    datatype: str = Field(description="Protocol datatype: FP32, FP16, INT64, BYTES ...")
    shape: list[int] = Field(description="Dimensions; -1 where any size is accepted.")


class Endpoint(BaseModel):
    """A deployed inference server an adapter measured over the network, and what it reported about the model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(description="Where the server was reached, e.g. 'http://127.0.0.1:8080' or 'grpc://10.0.0.5:8001'.")
    protocol: str = Field(description="Wire protocol, e.g. 'oip-rest', 'oip-grpc' (Open Inference Protocol).")
    model: str = Field(description="Model name on the server.")
    version: str = Field("", description="Model version asked for ('' = the server's default).")
    server: str = Field("", description="Server name and version as its metadata reports them, e.g. 'kserve 0.21.0'.")
    platform: str = Field("", description="Model platform as the server reports it ('' when it reports none).")
    model_sha256: str | None = Field(
        None, description="SHA-256 of the model file the server reports it loaded; None when it reports none "
        "(then which graph ran cannot be told, and the result is open).")
    inputs: list[TensorMetadata] = Field(default_factory=list, description="Inputs as the server's metadata lists them.")
    outputs: list[TensorMetadata] = Field(default_factory=list,
                                          description="Outputs as the server's metadata lists them.")


class BackendInfo(BaseModel):
    """What an adapter reports about itself; stored as the record's ``backend`` block."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="Adapter name (entry-point name).")
    version: str = Field(description="Version of the vendor runtime (not of the adapter).")
    device: str = Field(description="What executed the model, e.g. 'cpu: AMD EPYC 9654', 'cuda:0 NVIDIA H200'.")
    precision: str = Field(description="Effective compute precision as read back from the runtime.")
    options: dict[str, Any] = Field(default_factory=dict, description="Options as the runtime resolved them.")
    adapter: str = Field("", description="Python path of the adapter class.")
    adapter_version: str = Field("", description="Version of the package providing the adapter.")
    peak_flops_per_s: float | None = Field(None, description="Device peak at the effective precision, if known.")
    endpoint: Endpoint | None = Field(
        None, description="Set by adapters that measure a deployed server (`oip`): the server and model measured. "
        "Its runtime version and device are then the server's, not checked against this machine, and the result is "
        "open unless the server reports the SHA-256 of the workload's model.")


Done = Callable[[int, "BaseException | None"], None]
"""Completion callback of :meth:`Backend.submit`: ``done(tag, error)``; ``error`` is None on success."""


@dataclass(frozen=True)
class WorkloadInfo:
    """What an adapter may want to know about the model it loads."""

    name: str
    inputs: Mapping[str, tuple[int, ...]]  # one call's fixed input shapes
    input_dtypes: Mapping[str, np.dtype]
    output_names: Sequence[str]
    batch_size: int  # samples per call
    # graph_precision (what the graph computes in), claimed_precision (what the spec's result claims: set the
    # runtime's precision from it, report what it really used), scenario (single_stream | multi_stream |
    # server | offline: pick latency or throughput settings), source, catalog
    extra: Mapping[str, Any] = field(default_factory=dict)


class Backend(abc.ABC):
    """Base class of every backend adapter. Subclasses implement the abstract methods."""

    #: Entry-point name; also the ``backend.name`` of records.
    name: ClassVar[str] = ""
    #: False only for adapters that measure the harness and compute nothing (``null``): their records carry
    #: an accuracy block marked skipped, can never pass the certify profile, and the conformance kit skips
    #: its output checks for them.
    computes_outputs: ClassVar[bool] = True

    def __init__(self, options: Mapping[str, Any]) -> None:
        """Validate ``options``; raise :class:`benchkit.errors.BackendError` naming a bad one. Do not load models here."""
        self.options = dict(options)

    @classmethod
    def describe_installation(cls) -> dict[str, Any]:
        """For ``benchkit backends``: runtime version and available devices. Must not load a model."""
        return {}

    @abc.abstractmethod
    def load(self, model_path: Path, workload: WorkloadInfo) -> None:
        """Compile/prepare the model for the device. Untimed; its duration is reported as ``metrics.load_ns``."""

    def stage(self, feeds: Mapping[str, np.ndarray]) -> Any:
        """Make one call's inputs ready on the device (untimed). Default: the numpy feeds themselves."""
        return feeds

    @abc.abstractmethod
    def run(self, staged: Any) -> Any:
        """Issue one inference call on staged inputs. Timed. May return before the device finishes."""

    def synchronize(self) -> None:
        """Block until all issued work is complete. Timed. Default: nothing (synchronous runtimes)."""

    def supports_async(self) -> bool:
        """Whether :meth:`submit` works for the loaded model. Asked once, after ``load``. Default: False."""
        return False

    def max_in_flight(self) -> int:
        """How many :meth:`submit` calls the loaded model runs at once (optional; asked after load, untimed).

        Above 1, the Offline scenario keeps that many queries in flight through
        ``submit`` instead of one ``run(); synchronize()`` after another (a
        throughput-mode runtime with N streams and N infer requests). Prepare
        whatever the calls need here (request pools), not in the first
        ``submit``. Default: 1 (Offline stays a closed loop).
        """
        return 1

    def submit(self, staged: Any, done: Done, tag: int) -> None:
        """Start one inference call on staged inputs and return without waiting for it (optional).

        When the call's outputs are ready (what ``run`` followed by
        ``synchronize`` guarantees), call ``done(tag, None)``; if it failed,
        ``done(tag, error)``. ``done`` may be called from any thread, or from
        inside ``submit`` itself for a runtime that completes at once. Keep
        this method short: at high arrival rates its cost is the scheduler's
        headroom. Only called when :meth:`supports_async` returned True.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement submit()")

    @abc.abstractmethod
    def fetch(self, result: Any) -> list[np.ndarray]:
        """Outputs of ``run`` as host numpy arrays, in graph output order (untimed).

        benchkit calls it after ``synchronize`` and before the next ``run``, so an
        adapter may reuse its output buffers from call to call.
        """

    def peak_device_memory_bytes(self) -> int | None:
        """Peak device memory this adapter's work used since ``load`` (optional; asked once, before ``close``).

        For the record's ``memory.peak_device_bytes``: e.g. ``torch.cuda.max_memory_allocated()``. Default:
        None (not known; host memory is measured by benchkit itself).
        """
        return None

    def close(self) -> None:
        """Release the model and device resources. Called once, also after a failure."""

    @abc.abstractmethod
    def info(self) -> BackendInfo:
        """Describe what ran: call after ``load`` so effective settings can be read back."""


_M = TypeVar("_M", bound=BaseModel)


def parse_options(model: type[_M], options: Mapping[str, Any]) -> _M:
    """An adapter's ``options`` validated by its pydantic ``model``; the first problem as a :class:`BackendError`
    naming the option (an unknown one with the options there are), which preflight reports as the spec's field."""
    from pydantic import ValidationError

    from benchkit.errors import BackendError

    try:
        return model.model_validate(dict(options))
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "options"
        msg = first["msg"]
        if first["type"] == "extra_forbidden":
            msg = f"unknown option; expected one of {', '.join(model.model_fields)}"
        raise BackendError(f"{where}: {msg}") from None
