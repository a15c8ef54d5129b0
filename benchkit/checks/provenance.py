"""Provenance that is observed, not copied: which code ran, which runtime is installed, which devices exist.

An adapter's ``info()`` is what the adapter *says*. This module reads what
the machine shows, so a record can carry both and the verdict can compare them:

``adapter_provenance(cls)``
    The distribution that provides an adapter class (through its
    ``benchkit.backends`` entry point, else ``packages_distributions``), its
    version, and a SHA-256 over its installed files. For a regular install the
    files are those its ``RECORD`` lists, each also checked against the hash
    ``RECORD`` gives (an installed file edited afterwards is reported). For an
    editable install (PEP 610 ``direct_url.json``), a distribution without a
    ``RECORD``, or a class no distribution claims, the ``RECORD`` says nothing
    about the code, so the Python sources of the packages defining the class
    and its bases are hashed instead, and ``method`` says so.

``check_runtime_claims(info, adapter_dist, adapter_cls)``
    The runtime version in ``info()`` against the installed distribution of
    that runtime (and the version of its module, where already imported).

``probe_accelerators()`` and ``check_device_claims(info, probed)``
    Accelerators present on the PCI bus, under ``/dev/nvidia*``,
    ``/sys/class/drm`` and ``/sys/class/accel`` (file reads only: no driver
    library, no ``nvidia-smi``), and the device ``info()`` names against them.

The digest of :func:`adapter_provenance` is ``sha256`` over one line
``<path>\\0<sha256 hex of the file>\\n`` per file, sorted by path: paths as
``RECORD`` writes them, or relative to the folder holding the hashed package.
Files that change with every install of the same wheel are left out: the
``RECORD``, ``INSTALLER``, ``REQUESTED`` and ``direct_url.json`` of the
``.dist-info``, byte code (``*.pyc``), and scripts outside ``site-packages``
(their first line names the interpreter).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal


from benchkit.checks.verdict import Finding, finding
from benchkit.errors import BenchkitError
from benchkit.results.records import AdapterProvenance
from benchkit.machine.accelerators import (  # noqa: F401 - probe_accelerators re-exported for callers here
    PCI_VENDORS,
    VENDOR_WORDS,
    ProbedAccelerator,
    probe_accelerators,
)

GROUP = "benchkit.backends"

RUNTIME_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml",
                    "onnxruntime-rocm", "onnxruntime-qnn", "onnxruntime-silicon", "onnxruntime-training",
                    "ort-nightly", "ort-nightly-gpu"),
    "openvino": ("openvino", "openvino-nightly"),
    "torch": ("torch",),
    "onnx": ("onnx",),
    "benchkit": ("benchkit",),  # the null adapter reports benchkit's own version
}
"""Runtime name -> the distributions that install it (one import name, several builds)."""

RUNTIME_MODULES: dict[str, str] = {"onnxruntime": "onnxruntime", "openvino": "openvino", "torch": "torch",
                                   "onnx": "onnx", "benchkit": "benchkit"}
"""Runtime name -> its Python module, whose ``__version__`` is read when it is already imported."""

BUILTIN_ADAPTER_RUNTIMES: dict[str, str] = {
    "benchkit.backends.onnxruntime:OnnxRuntimeBackend": "onnxruntime",
    "benchkit.backends.openvino:OpenVinoBackend": "openvino",
    "benchkit.backends.pytorch:TorchBackend": "torch",
    "benchkit.backends.onnx_reference:OnnxReferenceBackend": "onnx",
    "benchkit.backends.null:NullBackend": "benchkit",
}
"""benchkit's own adapters and the runtime whose version their ``info().version`` reports (subclasses inherit it)."""

_VOLATILE_DIST_INFO = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}

Method = Literal["record", "editable-sources", "no-record-sources", "no-distribution-sources"]


def adapter_provenance(cls: type) -> AdapterProvenance:
    """Observed provenance of an adapter class (the one ``load_backend_class`` returned). Cached per class."""
    return _provenance(cls)


@functools.lru_cache(maxsize=32)
def _provenance(cls: type) -> AdapterProvenance:
    path = f"{cls.__module__}:{cls.__qualname__}"
    ep_name, dist = _distribution_of(cls)
    common: dict[str, Any] = {"adapter": path, "entry_point": ep_name}
    if dist is None:
        digest, n, roots = _hash_sources(cls)
        return AdapterProvenance(**common, method="no-distribution-sources", files_sha256=digest,
                                 files_hashed=n, source_roots=roots)
    common.update(distribution=dist.metadata["Name"], version=dist.version, editable=_editable(dist))
    files = dist.files
    if common["editable"] or not files or not any(_is_record(f) for f in files):
        digest, n, roots = _hash_sources(cls)
        method: Method = "editable-sources" if common["editable"] else "no-record-sources"
        return AdapterProvenance(**common, method=method, files_sha256=digest, files_hashed=n, source_roots=roots)
    lines, missing, modified = [], 0, []
    for f in files:
        rel = str(f).replace("\\", "/")
        if _volatile(rel):
            continue
        located = Path(str(f.locate()))
        try:
            h = _file_hash(located)
        except (OSError, BenchkitError):  # gone, or not a regular file (a FIFO would block): not hashed
            missing += 1
            continue
        lines.append((rel, h.hexdigest()))
        if f.hash is not None and f.hash.mode == "sha256":
            recorded = base64.urlsafe_b64decode(f.hash.value + "=" * (-len(f.hash.value) % 4))
            if recorded != h.digest():
                modified.append(rel)
    return AdapterProvenance(**common, method="record", files_sha256=_digest(lines), files_hashed=len(lines),
                             files_missing=missing, files_modified=tuple(sorted(modified)))


def provenance_findings(prov: AdapterProvenance) -> list[Finding]:
    """What the provenance itself says about trusting the adapter's version."""
    out = []
    if prov.files_modified:
        shown = ", ".join(prov.files_modified[:5]) + (" ..." if len(prov.files_modified) > 5 else "")
        out.append(finding("provenance.modified_files",
                           f"{len(prov.files_modified)} installed file(s) of {prov.distribution} {prov.version} differ "
                           f"from the hashes its RECORD lists ({shown}): the code that ran is not that release"))
    if prov.files_missing:
        out.append(finding("provenance.missing_files",
                           f"{prov.files_missing} file(s) RECORD lists for {prov.distribution} {prov.version} are "
                           "not installed", "warning"))
    # benchkit's own adapters in a development checkout are not warned about: the record's benchkit_version and
    # the sources' hash (kept in backend.provenance) say what ran, and a warning on every cell would be noise.
    if prov.method == "editable-sources" and prov.distribution != "benchkit":
        out.append(finding("provenance.editable",
                           f"{prov.adapter} runs from an editable install of {prov.distribution}: its version does "
                           f"not identify the code; the hash of its sources ({prov.files_sha256[:12]}) does",
                           "warning"))
    elif prov.method == "no-distribution-sources":
        out.append(finding("provenance.no_distribution",
                           f"no installed distribution provides {prov.adapter}: it has no version, only the hash of "
                           f"its sources ({prov.files_sha256[:12]})", "warning"))
    return out


# --------------------------------------------------------------------------- runtime claims


@dataclass(frozen=True)
class RuntimeClaim:
    """The runtime an adapter drives, and how benchkit knows."""

    runtime: str  # a RUNTIME_DISTRIBUTIONS key, or the declared distribution's name
    distributions: tuple[str, ...]  # whose installed versions the reported version must match
    basis: Literal["declared", "inherited", "required"]
    # declared: the class attribute ``runtime_distributions``; inherited: a subclass of a built-in adapter;
    # required: named in the adapter distribution's requirements (an inference: the adapter may use that
    # package for something else, so a mismatch is only a warning)


def adapter_runtimes(adapter_cls: type | None, adapter_dist: str | None) -> list[RuntimeClaim]:
    """The runtime(s) an adapter drives, from the best evidence available (see :class:`RuntimeClaim`).

    An adapter may declare its runtime's distributions as a class attribute,
    ``runtime_distributions = ("onnxruntime-gpu",)``; benchkit's own adapters
    and their subclasses are known; otherwise the runtimes its distribution
    requires are taken (not benchkit's own requirements, which are the harness's).
    """
    declared = getattr(adapter_cls, "runtime_distributions", None)
    if declared:
        names = (declared,) if isinstance(declared, str) else tuple(declared)
        rt = next((k for k, v in RUNTIME_DISTRIBUTIONS.items() if _normalise(names[0]) in map(_normalise, v)), names[0])
        return [RuntimeClaim(rt, names, "declared")]
    found: list[RuntimeClaim] = []
    for c in getattr(adapter_cls, "__mro__", ()):
        rt = BUILTIN_ADAPTER_RUNTIMES.get(f"{c.__module__}:{c.__qualname__}")
        if rt and all(f.runtime != rt for f in found):
            found.append(RuntimeClaim(rt, RUNTIME_DISTRIBUTIONS[rt], "inherited"))
    if found or adapter_dist is None or _normalise(adapter_dist) == "benchkit":
        return found
    try:
        requires = metadata.distribution(adapter_dist).requires or []
    except metadata.PackageNotFoundError:
        return found
    by_dist = {_normalise(d): rt for rt, dists in RUNTIME_DISTRIBUTIONS.items() for d in dists if rt != "benchkit"}
    for req in requires:
        if re.search(r"\bextra\s*==", req):
            continue  # an optional extra does not say what the adapter needs
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
        rt = by_dist.get(_normalise(m.group(1))) if m else None
        if rt and all(f.runtime != rt for f in found):
            found.append(RuntimeClaim(rt, RUNTIME_DISTRIBUTIONS[rt], "required"))
    return found


def installed_versions(distributions: Iterable[str], module: str | None = None) -> dict[str, str]:
    """Installed versions of ``distributions``, plus ``<module> module``: its ``__version__`` if already imported."""
    out = {}
    for d in distributions:
        try:
            out[d] = metadata.version(d)
        except metadata.PackageNotFoundError:
            continue
    loaded = getattr(sys.modules.get(module), "__version__", None) if module else None
    if isinstance(loaded, str):
        out[f"{module} module"] = loaded
    return out


def check_runtime_claims(info: Any, adapter_dist: str | None, adapter_cls: type | None = None) -> list[Finding]:
    """The runtime version ``info()`` reports against what is installed.

    ``info`` is the adapter's :class:`~benchkit.backends.base.BackendInfo`;
    ``adapter_dist`` the distribution providing the adapter
    (``AdapterProvenance.distribution``), whose requirements may name its
    runtime; ``adapter_cls`` the adapter class (its declared
    ``runtime_distributions``, or a built-in adapter it subclasses). A version
    that matches no installed build of a declared or inherited runtime is a
    reason; of a runtime only inferred from requirements, or of one that
    cannot be identified, a warning.
    """
    check = "provenance.runtime_version"
    claims = adapter_runtimes(adapter_cls, adapter_dist)
    reported = str(info.version)
    if not claims:
        return [finding(check, f"cannot tell which runtime adapter {info.name} drives (its distribution "
                               f"{adapter_dist or '(none)'} declares none and requires none of "
                               f"{', '.join(k for k in RUNTIME_DISTRIBUTIONS if k != 'benchkit')}): its reported "
                               f"runtime version {reported!r} is not cross-checked", "warning")]
    installed: dict[str, str] = {}
    for c in claims:
        installed.update(installed_versions(c.distributions, RUNTIME_MODULES.get(c.runtime)))
    names = " or ".join(c.runtime for c in claims)
    severity = "reason" if any(c.basis != "required" for c in claims) else "warning"
    if not installed:
        return [finding(check, f"adapter {info.name} reports {names} {reported} but no {names} distribution is "
                               "installed", severity)]
    if any(_same_version(reported, v) for v in installed.values()):
        stray = [f"{k} {v}" for k, v in installed.items() if k.endswith(" module") and not _same_version(reported, v)]
        if stray:  # the reported version is installed, but the process imported another build
            return [finding(check, f"adapter {info.name} reports {names} {reported}, but the loaded module is "
                                   f"{', '.join(stray)}", severity)]
        return []
    by_version: dict[str, list[str]] = {}
    for k, v in installed.items():
        by_version.setdefault(v, []).append("imported module" if k.endswith(" module") else f"distribution {k}")
    have = " and ".join(f"{v} ({', '.join(src)})" for v, src in by_version.items())
    return [finding(check, f"adapter {info.name} reports {names} {reported} but {have} is installed", severity)]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _same_version(a: str, b: str) -> bool:
    """Same release numbers (trailing zeros ignored: 2024.0 == 2024.0.0), and same local build label where both have one.

    Build suffixes that are not PEP 440 (OpenVINO's ``2026.4.1-22982-e213a14``) are ignored.
    """
    def split(v: str) -> tuple[tuple[int, ...], str | None]:
        m = re.match(r"\s*v?(\d+(?:\.\d+)*)", v)
        release = tuple(int(x) for x in m.group(1).split(".")) if m else ()
        while release and release[-1] == 0:
            release = release[:-1]
        local = v.split("+", 1)[1].strip().lower() if "+" in v else None
        return release, local

    (ra, la), (rb, lb) = split(a), split(b)
    if not ra or ra != rb:
        return False
    return la is None or lb is None or la == lb


def check_device_claims(info: Any, probed: Sequence[ProbedAccelerator]) -> list[Finding]:
    """The device ``info()`` names against the accelerators present.

    A device of a vendor none of whose devices is present is a reason; a model
    name that matches none of that vendor's probed names, or a device no
    vendor can be read from while no accelerator is present, is a warning.
    Devices named ``cpu...`` (and ``none``, the ``null`` adapter's) are not accelerator claims.
    """
    out = []
    for part in str(info.device).split(";"):
        claim = part.strip()
        low = claim.lower()
        if not claim or low.startswith("cpu") or low in ("none", "fake"):
            continue
        vendor = claimed_vendor(claim)
        present = [a for a in probed if vendor is not None and a.vendor == vendor]
        if vendor is None:
            if not probed:
                out.append(finding("provenance.device",
                                   f"adapter {info.name} reports device {claim!r}, but no accelerator is present "
                                   "on this machine's PCI bus or device nodes", "warning"))
            continue
        if not present:
            seen = ", ".join(sorted({a.vendor for a in probed})) or "none"
            out.append(finding("provenance.device",
                               f"adapter {info.name} reports device {claim!r}, but no {vendor} device is present "
                               f"(accelerators probed on this machine: {seen})"))
            continue
        models = [a.model for a in present if a.model]
        if models and not any(_model_in(m, claim) for m in models):
            out.append(finding("provenance.device",
                               f"adapter {info.name} reports device {claim!r}, but the {vendor} devices present are "
                               f"{', '.join(sorted(set(models)))}", "warning"))
    return out


def claimed_vendor(device: str) -> str | None:
    """The vendor a device string names (``cuda:0 NVIDIA H200`` -> NVIDIA), or None."""
    low = f" {device.lower()} "
    for vendor, words in VENDOR_WORDS:
        if any(w in low for w in words):
            return vendor
    return None


def accelerators_with_claims(probed: Sequence[ProbedAccelerator], info: Any | None) -> list[dict[str, Any]]:
    """``system.accelerators`` entries: every probed device, then the adapter's device marked as its claim.

    The claim's ``source`` is ``claim adapter <name> (observed)`` when a probed
    device of its vendor is present, ``claim adapter <name> (not observed)`` otherwise.
    """
    out = [a.as_accelerator_info() for a in probed]
    if info is None:
        return out
    for part in str(info.device).split(";"):
        claim = part.strip()
        if not claim or claim.lower().startswith("cpu") or claim.lower() in ("none", "fake"):
            continue
        vendor = claimed_vendor(claim)
        seen = vendor is not None and any(a.vendor == vendor for a in probed)
        out.append({"model": claim, "memory_bytes": None, "driver": None, "index": None,
                    "source": f"claim adapter {info.name} ({'observed' if seen else 'not observed'})"})
    return out


# --------------------------------------------------------------------------- helpers


def _distribution_of(cls: type) -> tuple[str | None, metadata.Distribution | None]:
    """(entry-point name, distribution): the entry point naming this class first, else the top-level package's owner."""
    for group in (GROUP, "benchkit.generators"):  # backend adapters, then generative adapters
        for ep in metadata.entry_points(group=group):
            if ep.module == cls.__module__ and ep.attr == cls.__qualname__:
                return ep.name, ep.dist
    top = cls.__module__.split(".")[0]
    owners = metadata.packages_distributions().get(top) or []
    for name in owners:
        try:
            return None, metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
    return None, None


def _editable(dist: metadata.Distribution) -> bool:
    import json

    try:
        text = dist.read_text("direct_url.json")
        return bool(text and json.loads(text).get("dir_info", {}).get("editable"))
    except (ValueError, AttributeError, OSError):
        return False


def _is_record(f: Any) -> bool:
    parts = str(f).replace("\\", "/").split("/")
    return len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "RECORD"


def _volatile(rel: str) -> bool:
    parts = rel.split("/")
    if parts[0] == ".." or rel.endswith(".pyc"):
        return True
    return len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] in _VOLATILE_DIST_INFO


def _hash_sources(cls: type) -> tuple[str, int, tuple[str, ...]]:
    """Hash the .py files of every top-level package (or single module) defining ``cls`` or a base of it.

    ``benchkit.backends.base.Backend`` and the standard library are left out
    unless something else in the same package is in the MRO: a vendor adapter
    subclassing ``Backend`` directly is hashed without benchkit.
    """
    tops: dict[str, None] = {}
    for c in cls.__mro__:
        mod = c.__module__
        top = mod.split(".")[0]
        if top in sys.stdlib_module_names or top == "builtins":
            continue
        if f"{mod}:{c.__qualname__}" == "benchkit.backends.base:Backend":
            continue
        tops.setdefault(top, None)
    lines: list[tuple[str, str]] = []
    roots: list[str] = []
    for top in tops:
        module = sys.modules.get(top)
        if module is None:
            continue
        paths = list(getattr(module, "__path__", []) or [])
        if paths:  # a package (namespace packages have several folders)
            for p in paths:
                base = Path(p)
                roots.append(str(base))
                for f in sorted(base.rglob("*.py")):
                    if "__pycache__" in f.parts:
                        continue
                    lines.append((f"{top}/{f.relative_to(base).as_posix()}", _file_sha256(f)))
        elif getattr(module, "__file__", None):
            f = Path(module.__file__)
            roots.append(str(f.parent))
            lines.append((f.name, _file_sha256(f)))
    return _digest(lines), len(lines), tuple(roots)


def _file_hash(path: Path):
    """SHA-256 of a regular file, read in chunks (installed libraries can be large); BenchkitError otherwise."""
    from benchkit._fsutil import open_regular

    h = hashlib.sha256()
    with os.fdopen(open_regular(path), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h


def _file_sha256(path: Path) -> str:
    return _file_hash(path).hexdigest()


def _digest(lines: Iterable[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for rel, hexd in sorted(lines):
        h.update(f"{rel}\0{hexd}\n".encode())
    return h.hexdigest()










_GENERIC_WORDS = {"nvidia", "amd", "intel", "r", "tm", "cuda", "tensorrt", "rocm", "gpu", "device", "corporation"}


def _model_in(model: str, claim: str) -> bool:
    """Whether a probed model name and a claimed device agree.

    Compared on distinctive words (vendor names, "cuda", indexes dropped): they agree when either word set
    contains the other, or when the claim has no distinctive word at all (``cuda:0`` names no model).
    """
    def words(text: str) -> set[str]:
        return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _GENERIC_WORDS and not w.isdigit()}

    m, c = words(model), words(claim)
    return not c or not m or m <= c or c <= m


__all__ = ["AdapterProvenance", "ProbedAccelerator", "adapter_provenance", "provenance_findings",
           "check_runtime_claims", "adapter_runtimes", "RuntimeClaim", "installed_versions", "probe_accelerators",
           "check_device_claims", "claimed_vendor", "accelerators_with_claims", "RUNTIME_DISTRIBUTIONS",
           "BUILTIN_ADAPTER_RUNTIMES", "PCI_VENDORS"]
