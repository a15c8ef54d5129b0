"""``benchkit run MODEL.onnx``: the spec a one-line run stands for, built from the command's flags.

The spec is an ordinary :class:`benchkit.spec.Spec`, written out as YAML text and parsed like any spec file, so
the run goes through the one suite driver and its records name the spec's SHA-256 as every run does.
``--print-spec`` prints that text: saved to a file, it runs the same suite again (``benchkit run saved.yaml``),
its model pinned by SHA-256.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from benchkit.errors import SpecError, WorkloadError

SCENARIOS = ("single_stream", "multi_stream", "server", "offline")
DEFAULT_BACKEND = "onnxruntime"


def is_model_path(text: str) -> bool:
    """Whether ``benchkit run``'s argument names an ONNX file rather than a spec: a ``.onnx`` name, or an existing
    file that is not text but parses as an ONNX model (a spec is UTF-8 text)."""
    p = Path(text)
    if p.suffix.lower() == ".onnx":
        return True
    if not p.is_file():
        return False
    with open(p, "rb") as f:
        head = f.read(1 << 16)
    try:
        head.decode("utf-8")
        return False
    except UnicodeDecodeError:
        pass
    import onnx

    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception:  # noqa: BLE001 - any parse failure: not a model; the spec loader says what the file is not
        raise SpecError(f"{text}: neither a spec (YAML or JSON text) nor an ONNX model (it does not parse as "
                        "an ONNX protobuf)") from None
    return bool(model.graph.node)


def _name(stem: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._") or "model"
    return name if name[0].isalnum() else f"m{name}"


def parse_pairs(items: list[str], flag: str, cast) -> dict[str, Any]:
    """`NAME=VALUE` flags (`--dim seq=128`) as a dict, each value through `cast`; a malformed one is a SpecError."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise SpecError(f"{flag} {item!r}: expected NAME=VALUE")
        try:
            out[key] = cast(value)
        except ValueError:
            raise SpecError(f"{flag} {item!r}: {value!r} is not a valid value") from None
    return out


def model_spec_text(model: str, args: Any) -> str:
    """The YAML spec ``benchkit run MODEL.onnx [flags]`` runs. Raises SpecError (exit 2) for a bad file or flag."""
    import yaml

    from benchkit.workloads.model import model_sha256, read_model

    path = Path(model).resolve()
    if not path.is_file():
        raise SpecError(f"{model}: model file not found")
    try:
        read_model(path, "benchkit run")  # an empty or corrupt file fails here, naming it
    except WorkloadError as e:
        raise SpecError(str(e).replace("benchkit run.model: ", "", 1)) from None
    digest = model_sha256(path, origin=model)
    name = _name(path.stem)
    kinds = list(dict.fromkeys(args.scenario or ["single_stream"]))
    batch = args.batch
    if batch is not None and batch <= 0:
        raise SpecError(f"--batch: expected a positive integer, got {batch}")
    scenarios: list[dict[str, Any]] = []
    for kind in kinds:
        s: dict[str, Any] = {"kind": kind}
        if kind == "offline" and batch is not None:
            s["batch_size"] = batch
        elif kind == "multi_stream" and batch is not None:
            s["samples_per_query"] = batch
        elif kind == "server":
            if args.target_qps is None or args.target_latency_ms is None:
                raise SpecError("--scenario server needs --target-qps (the arrival rate) and --target-latency-ms "
                                "(the p99 latency bound)")
            s.update(target_qps=args.target_qps, target_latency_ns=int(round(args.target_latency_ms * 1e6)))
        scenarios.append(s)
    workload: dict[str, Any] = {"name": name, "model": str(path), "sha256": digest}
    dims = parse_pairs(args.dim, "--dim", int)
    if dims:
        workload["dims"] = dims
    data = parse_pairs(args.data, "--data", lambda v: str(Path(v).resolve()))
    if data:
        workload["inputs"] = {k: {"data": v} for k, v in data.items()}
    backends = []
    for b in dict.fromkeys(args.backend or [DEFAULT_BACKEND]):
        backends.append({"name": b, "precision": args.precision})
    spec = {
        "name": name,
        "description": f"benchkit run {path.name}",
        "workloads": [workload],
        "backends": backends,
        "scenarios": scenarios,
        "run": {"profile": "quick" if args.quick else (args.profile or "standard")},
    }
    return yaml.safe_dump(spec, sort_keys=False, default_flow_style=None, width=120)


def load_model_spec(model: str, args: Any):
    """The :class:`benchkit.spec.LoadedSpec` of ``benchkit run MODEL.onnx``, and its YAML text."""
    from benchkit.spec import parse_spec

    text = model_spec_text(model, args)
    return parse_spec(text, f"benchkit run {model}", Path.cwd()), text


__all__ = ["is_model_path", "model_spec_text", "load_model_spec", "SCENARIOS"]
