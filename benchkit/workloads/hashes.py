"""The SHA-256 of every standard build, known without building: a table generated from the builds themselves.

Catalog builds are deterministic (:func:`benchkit.workloads.catalog.build`): the same manifest, params, variant,
benchkit and library versions give the same bytes, which :func:`~benchkit.workloads.catalog.cache_key` names. So
the SHA-256 of each default build can be computed once and shipped (``workloads/hashes.json``), each entry with the
key it was built under (:func:`build_key`): an entry counts only while that key is still the key of the build it
describes (a manifest, the build format or benchkit's version changed: the entry is stale, never wrong).

Deciding a division (:mod:`benchkit.checks.divisions`) compares a model file with this table instead of building
the catalog: nothing is built that the user did not ask for. Beside each digest the table keeps the build's
*structure* (:func:`structure_sha256`: its operators in order and its weights' shapes, names and values left
out), so a file that is a standard model changed (re-exported with fixed dims, retrained) is named after the
build it departs from, and a file that is none of them is said to be none.

Regenerate after changing a manifest, a builder or a pinned library::

    python -m benchkit.workloads.hashes            # every entry and variant (builds the whole catalog)
    python -m benchkit.workloads.hashes mlp gemm   # only these entries, the others kept
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchkit._resources import data_dir

TABLE_FORMAT = 1  # 1: first version: builds[name][variant] = {sha256, size, build_key, structure}
TABLE_FILE = "hashes.json"


@dataclass(frozen=True)
class KnownBuild:
    """One standard build as the table records it."""

    name: str
    variant: str
    sha256: str
    size: int
    build_key: str
    structure: str


def table_path() -> Path:
    return data_dir("workloads") / TABLE_FILE


@functools.lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    try:
        data = json.loads(table_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("format") == TABLE_FORMAT else {}


def recorded(name: str, variant: str) -> KnownBuild | None:
    """The table's entry for the default build of ``name`` at ``variant``, current or stale; None when absent."""
    e = _table().get("builds", {}).get(name, {}).get(variant)
    if not isinstance(e, dict):
        return None
    try:
        return KnownBuild(name, variant, str(e["sha256"]), int(e["size"]), str(e["build_key"]), str(e["structure"]))
    except (KeyError, TypeError, ValueError):
        return None


def known(name: str, variant: str) -> KnownBuild | None:
    """The entry for the default build of ``name`` at ``variant`` when it still describes what benchkit builds here
    (its key is the build's :func:`build_key` now); None when absent or stale."""
    from benchkit.errors import BenchkitError

    e = recorded(name, variant)
    if e is None:
        return None
    try:
        return e if build_key(name, variant) == e.build_key else None
    except BenchkitError:
        return None


def build_key(name: str, variant: str) -> str:
    """What the bytes of the default build of ``name`` at ``variant`` depend on in benchkit itself: the manifest,
    the builder, the params, the variant, the build format and benchkit's version (stamped into every build).
    Unlike the cache key, the versions of numpy, onnx and onnxruntime are left out: they draw and serialise the
    same bytes from one release to the next, and the table's test rebuilds the cheap entries to show it."""
    from benchkit._version import __version__
    from benchkit.workloads import catalog

    entry = catalog.get(name)
    h = hashlib.sha256()
    for part in (entry.manifest_path.read_bytes(), entry.builder.encode(),
                 json.dumps(catalog.resolve_params(name), sort_keys=True, separators=(",", ":")).encode(),
                 variant.encode(), catalog.BUILD_FORMAT.encode(), __version__.encode()):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def structure_sha256(model) -> str:
    """SHA-256 of a graph's shape of computation: its operators (type and domain, in node order) and its
    initializers' element types and dims (sorted). Names, weight values, doc strings, metadata and the graph
    inputs' declared dims are left out, so a re-export with fixed dims or other weights keeps its structure."""
    h = hashlib.sha256()
    for n in model.graph.node:
        h.update(f"{n.domain}:{n.op_type};".encode())
    h.update(b"|")
    for t in sorted((t.data_type, tuple(t.dims)) for t in model.graph.initializer):
        h.update(f"{t[0]}{list(t[1])};".encode())
    return h.hexdigest()


def measure(name: str, variant: str, cache_dir: Path | None = None) -> dict[str, Any]:
    """Build (or take from the cache) ``name`` at ``variant`` and describe it as the table does."""
    import onnx

    from benchkit.workloads import catalog
    from benchkit.workloads.model import model_sha256

    path = catalog.materialize(name, None, variant, cache_dir=cache_dir)
    model = onnx.load(str(path), load_external_data=False)
    return {"sha256": model_sha256(path, model), "size": path.stat().st_size,
            "build_key": build_key(name, variant), "structure": structure_sha256(model)}


def generate(names: list[str] | None = None, cache_dir: Path | None = None, progress=print) -> dict[str, Any]:
    """The table with the builds of ``names`` (default: every entry) measured, other entries kept as they are."""
    from benchkit._version import __version__
    from benchkit.workloads import catalog

    old = dict(_table())
    builds = {k: dict(v) for k, v in old.get("builds", {}).items()} if old else {}
    entries = catalog.entries()
    for name in names or list(entries):
        e = catalog.get(name)
        builds[name] = {}
        for variant in e.variants:
            progress(f"{name} {variant} ...")
            builds[name][variant] = measure(name, variant, cache_dir)
    builds = {k: builds[k] for k in sorted(builds) if k in entries}
    return {"format": TABLE_FORMAT, "benchkit_version": __version__,
            "note": "generated by python -m benchkit.workloads.hashes; an entry counts while its build_key is the "
                    "build's key", "builds": builds}


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m benchkit.workloads.hashes",
                                description="Regenerate the table of standard-build SHA-256s (workloads/hashes.json).")
    p.add_argument("names", nargs="*", help="only these catalog entries (default: all; builds each)")
    p.add_argument("--cache-dir", type=Path, help="built-workload cache (default: the usual one)")
    p.add_argument("-o", "--output", type=Path, default=None, help="where to write (default: the shipped table)")
    args = p.parse_args(argv)
    from benchkit.workloads import catalog

    out = args.output or table_path()
    for name in args.names or list(catalog.entries()):  # written after each entry: an interruption keeps the rest
        table = generate([name], args.cache_dir)
        out.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        _table.cache_clear()
    print(f"{out}: {sum(len(v) for v in table['builds'].values())} builds")
    return 0


__all__ = ["KnownBuild", "known", "recorded", "structure_sha256", "measure", "generate", "table_path"]

if __name__ == "__main__":
    raise SystemExit(main())
