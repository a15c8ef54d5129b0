"""The accuracy gate: are the measured backend's outputs right, at the precision the result claims?

For every performance record, outside the timed region, the measured backend
runs a fixed sample set (the first ``run.accuracy_samples`` of the cell's
seeded input pool) and its outputs are compared with reference outputs:

* the reference backend is ONNX Runtime on the CPU at fp32 (or
  ``onnx-reference`` when the spec's ``run.accuracy_reference`` asks for it);
* for the fp16 and int8 variants of a catalog workload the reference runs
  the fp32 model of the same entry and params, so a variant is judged against
  what it approximates, not against itself;
* reference outputs are computed once and cached under the workload cache
  (``<cache>/reference/``), keyed by the reference model's digest (the graph
  and its external-data files, :func:`benchkit.workloads.model_sha256`), the
  reference runtime and its version, the seed and the input bytes. Every
  entry carries an HMAC-SHA256 tag over that key and its arrays, made with a
  per-user secret kept outside the cache (:func:`cache_secret_path`); an entry
  whose tag or key does not match, or that cannot be read, is recomputed and
  rewritten, never used. The tag stops a cache edited or replaced on disk
  (a cheat's outputs written over the reference, a cache copied from another
  machine); code running as the same user can read the secret, as it could
  patch benchkit in memory, which is why ``benchkit check-bundle`` re-checks
  accuracy against a reference it computes itself.

Tolerances depend on the precision the result claims; where a spec allows a
precision mismatch, the looser of the claimed and the effective precision
applies. fp32's are constants (:data:`TOLERANCES`). Below fp32 they are
derived from the standard itself (:func:`standard_tolerance`): the reference
runtime runs the catalog's own build of the workload at that precision on the
gate's inputs, and a result may deviate at most :data:`TOLERANCE_MARGIN` times
as much as that build does, never less than fp32 noise and never more than the
precision's constant. A workload without such a build (a model file that is
not a standard build, a precision the entry has no variant for) keeps the
constant, and the record says which applied (``accuracy.tolerance_source``).
Errors are measured per output:

``max_abs_error``  max |out - ref| over every element of every sample
``max_rel_error``  max_abs_error / max |ref|: the error relative to the
                   output's scale (element-wise relative error is meaningless
                   where the reference is near zero)
``cosine``         lowest per-call cosine similarity (catches a wrong shape
                   of the output distribution even when magnitudes are small)
``top1``           share of samples whose arg-max class agrees, for the
                   outputs of classifier workloads

A workload whose catalog builder module offers ``evaluation_set()`` and
``top1()`` (the ``digits-mlp`` accuracy workload) is also scored on its
labelled evaluation set: the measured backend must reach 99% of the
reference's score, MLPerf's rule for its accuracy targets.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, astuple, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchkit._fsutil import loads_json, open_regular, write_atomic
from benchkit.checks import structured
from benchkit.errors import BenchkitError, WorkloadError
from benchkit.results.records import Accuracy, OutputAccuracy, OutputArray, StoredOutputs, TaskMetric


@dataclass(frozen=True)
class Tolerance:
    """What a precision may deviate from the fp32 reference; an output passes when all hold."""

    abs: float  # max_abs_error <= abs + rel * max|ref|
    rel: float
    min_cosine: float  # lowest per-call cosine similarity
    min_top1_agreement: float  # classifier outputs only


# Measured on the catalog (errors relative to the output's scale, vs ONNX Runtime CPU fp32):
# another runtime at fp32 (OpenVINO, PyTorch) 0 to 1.1e-6; the same models computed in fp16
# 1.5e-4 to 2e-3, in bf16 3e-3 to 9e-3. fp32's bound (1e-4) sits between fp32 noise and fp16,
# so a result computed at a lower precision than it claims fails; the 16-bit bounds are about
# 5x what their mantissas produced. The int8 variants, statically quantised with calibration on
# random data, reach 0.46 (cosine 0.85) on the smallest classifier: int8's element-wise bounds
# only catch garbage, and classifiers are held to their task metric where they have one.
# Below fp32 these constants are the ceiling of the tolerances derived per workload (standard_tolerance), and what
# applies where the workload has no catalog build at the claimed precision.
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(abs=1e-5, rel=1e-4, min_cosine=0.999999, min_top1_agreement=1.0),
    "fp16": Tolerance(abs=1e-3, rel=1e-2, min_cosine=0.9999, min_top1_agreement=0.75),
    "bf16": Tolerance(abs=1e-2, rel=5e-2, min_cosine=0.999, min_top1_agreement=0.75),
    "mixed": Tolerance(abs=1e-2, rel=5e-2, min_cosine=0.999, min_top1_agreement=0.75),
    "int8": Tolerance(abs=1e-1, rel=0.5, min_cosine=0.8, min_top1_agreement=0.5),
}
TASK_METRIC_FRACTION = 0.99
"""A task metric passes at this fraction of the reference's score (MLPerf's 99% accuracy target)."""

_LOOSENESS = ["fp32", "fp16", "bf16", "mixed", "int8"]
_CLASSIFIER_TASKS = ("classification", "keyword-spotting")


def tolerance_for(claimed: str, effective: str, allow_mismatch: bool) -> tuple[str, Tolerance]:
    """The precision whose tolerances apply, and those tolerances."""
    prec = claimed if claimed in TOLERANCES else "mixed"
    if allow_mismatch and effective in TOLERANCES and _LOOSENESS.index(effective) > _LOOSENESS.index(prec):
        prec = effective
    return prec, TOLERANCES[prec]


# --------------------------------------------------------------------------- reference outputs


def reference_model(wl: Any, cache_dir: Path | None) -> tuple[Path, str]:
    """The model the reference runs: the fp32 build of a catalog variant, else the workload's own file."""
    if wl.catalog and wl.variant and wl.variant != "fp32":
        from benchkit.workloads import catalog
        from benchkit.workloads.model import model_sha256

        path = catalog.materialize(wl.catalog, dict(wl.params), "fp32", cache_dir=cache_dir)
        return path, model_sha256(path)
    return wl.path, wl.sha256


def _cache_root(cache_dir: Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir) / "reference"
    from benchkit.workloads import catalog

    return catalog.cache_dir() / "reference"


def _feeds_digest(feeds: Sequence[Mapping[str, np.ndarray]]) -> str:
    h = hashlib.sha256()
    for feed in feeds:
        for name in sorted(feed):
            a = np.ascontiguousarray(feed[name])
            h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def _reference_backend(reference: str):
    from benchkit.backends.registry import load_backend_class

    if reference == "onnxruntime":
        return load_backend_class("onnxruntime")({"providers": ["CPUExecutionProvider"]})
    return load_backend_class(reference)({})


def _winfo(wl: Any, feeds: Mapping[str, np.ndarray], graph_precision: str):
    from benchkit.backends.base import WorkloadInfo

    return WorkloadInfo(
        name=wl.name,
        inputs={k: tuple(v.shape) for k, v in feeds.items()},
        input_dtypes={k: v.dtype for k, v in feeds.items()},
        output_names=wl.output_names,
        batch_size=int(next(iter(feeds.values())).shape[0]) if feeds else 1,
        extra={"graph_precision": graph_precision, "claimed_precision": "fp32", "source": wl.source,
               "catalog": wl.catalog, "scenario": "single_stream"},
    )


def run_outputs(backend: Any, staged: Any) -> list[np.ndarray]:
    """One untimed call through the protocol, outputs on the host."""
    result = backend.run(staged)
    backend.synchronize()
    return [np.asarray(a) for a in backend.fetch(result)]


REFERENCE_CACHE_VERSION = 2  # 2: keyed by model digest, reference runtime and version; HMAC-tagged; 1: untagged


def cache_secret_path() -> Path:
    """Where this user's reference-cache secret lives: ``$XDG_CONFIG_HOME/benchkit/reference-cache.key``.

    Outside the workload cache on purpose: a cache folder copied, shared or
    written over does not carry the secret that vouches for its entries.
    """
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "benchkit" / "reference-cache.key"


def _cache_secret() -> bytes | None:
    """The secret that tags reference-cache entries, created on first use (32 random bytes, hex, mode 0600).

    None when it can be neither read nor created, or when others could write it:
    then no cache entry is trusted and every reference is recomputed.
    """
    path = cache_secret_path()
    for _ in range(2):
        try:
            st = path.stat()
            text = path.read_text(encoding="ascii").strip()
            if st.st_mode & 0o022 or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
                return None  # a secret others can write vouches for nothing
            if len(text) == 64:
                return bytes.fromhex(text)
        except FileNotFoundError:
            pass
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        try:  # write beside it, then link into place: concurrent workers agree on one secret
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(os.urandom(32).hex() + "\n")
            try:
                if path.exists():  # there but malformed: replace it
                    os.replace(tmp, path)
                else:
                    os.link(tmp, path)
            except FileExistsError:
                pass  # another worker won the race: use its secret
            finally:
                tmp.unlink(missing_ok=True)
        except OSError:
            return None
    return None


def _reference_version(reference: str) -> str:
    """Version of the reference runtime as its adapter reports it (part of the cache key)."""
    from benchkit.backends.registry import load_backend_class

    return str(load_backend_class(reference).describe_installation().get("version", "unknown"))


def _cache_tag(secret: bytes, key: Mapping[str, Any], desc: str, outs: Sequence[Sequence[np.ndarray]]) -> str:
    from benchkit.spec import canonical_json

    h = hmac.new(secret, digestmod=hashlib.sha256)
    h.update(canonical_json({"key": key, "reference": desc, "outputs": [len(c) for c in outs]}).encode())
    for c, call in enumerate(outs):
        for o, a in enumerate(call):
            a = np.ascontiguousarray(a)
            h.update(f"|c{c}_o{o}|{a.dtype.str}|{list(a.shape)}|".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def _read_reference_cache(path: Path, key: Mapping[str, Any]) -> tuple[list[list[np.ndarray]], str] | None:
    """A cached entry, only when its key is ours and its tag verifies; None means recompute."""
    secret = _cache_secret()
    if secret is None:
        return None
    try:
        # A regular file only (a FIFO planted in the cache would block np.load); a deep meta is a ValueError.
        with os.fdopen(open_regular(path), "rb") as f, np.load(f, allow_pickle=False) as z:
            meta = loads_json(str(z["meta"]))
            if not isinstance(meta, dict) or meta.get("key") != key:
                return None
            outs = [[z[f"c{c}_o{o}"] for o in range(int(n))] for c, n in enumerate(meta["outputs"])]
            desc = str(meta["reference"])
            tag = str(meta["tag"])
    except (OSError, KeyError, ValueError, TypeError, EOFError, BenchkitError):
        return None
    if len(outs) != key["calls"] or not hmac.compare_digest(tag, _cache_tag(secret, key, desc, outs)):
        return None
    return outs, desc


def _write_reference_cache(path: Path, key: Mapping[str, Any], desc: str, outs: list[list[np.ndarray]]) -> None:
    secret = _cache_secret()
    if secret is None:
        return  # nothing written could be verified later
    if any(not structured.is_tensor(np.asarray(a)) for call in outs for a in call):
        return  # sequences and maps have no array file form (np.load refuses pickles): recomputed each time
    arrays = {f"c{c}_o{o}": a for c, call in enumerate(outs) for o, a in enumerate(call)}
    meta = {"key": dict(key), "reference": desc, "outputs": [len(c) for c in outs],
            "tag": _cache_tag(secret, key, desc, outs)}
    _save_npz(path, arrays, meta)


def reference_outputs(
    wl: Any,
    feeds: Sequence[Mapping[str, np.ndarray]],
    reference: str,
    seed: int,
    cache_dir: Path | None,
) -> tuple[list[list[np.ndarray]], str, str]:
    """Reference outputs for each feed: ``(outputs per call, description, reference model sha256)``.

    Cached by reference model digest, reference runtime and version, seed and
    input bytes; an entry is used only when its HMAC tag verifies, otherwise
    it is recomputed and rewritten (see the module docstring).
    """
    from benchkit.spec import canonical_json

    path, sha = reference_model(wl, cache_dir)
    key = {"version": REFERENCE_CACHE_VERSION, "model_sha256": sha, "reference": reference,
           "reference_version": _reference_version(reference), "seed": int(seed), "calls": len(feeds),
           "inputs": [[n, np.asarray(a).dtype.str, list(np.shape(a))] for n, a in sorted(feeds[0].items())]
           if feeds else [], "inputs_sha256": _feeds_digest(feeds)}
    digest = hashlib.sha256(canonical_json(key).encode()).hexdigest()
    cache = _cache_root(cache_dir) / f"{sha[:16]}-seed{seed}-{reference}-{digest[:16]}.npz"
    hit = _read_reference_cache(cache, key)
    if hit is not None:
        return hit[0], hit[1], sha

    from benchkit.workloads.model import graph_precision, read_model

    backend = _reference_backend(reference)
    try:
        backend.load(path, _winfo(wl, feeds[0], graph_precision(read_model(path, wl.origin or wl.name))))
        info = backend.info()
        outs = [run_outputs(backend, backend.stage(f)) for f in feeds]
    finally:
        backend.close()
    where = "CPUExecutionProvider, " if reference == "onnxruntime" else ""
    desc = f"{info.name} {info.version} ({where}{info.precision} model {path.name})"
    _write_reference_cache(cache, key, desc, outs)
    return outs, desc, sha


def _save_npz(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    import io

    buf = io.BytesIO()
    np.savez(buf, meta=np.array(json.dumps(meta)), **arrays)
    write_atomic(path, buf.getvalue())  # concurrent cells may race here: either complete file wins


# --------------------------------------------------------------------------- comparison


def compare_outputs(
    outputs: Sequence[Sequence[np.ndarray]],
    refs: Sequence[Sequence[np.ndarray]],
    names: Sequence[str],
    tol: Tolerance,
    classifier: bool = False,
) -> tuple[list[OutputAccuracy], list[str]]:
    """Per-output errors of `outputs` against `refs` (both: one list of arrays per call), and each failure."""
    failures: list[str] = []
    per_output: list[OutputAccuracy] = []
    n_out = len(refs[0]) if refs else 0
    for o in range(n_out):
        name = names[o] if o < len(names) else f"output{o}"
        max_abs = 0.0
        scale = 0.0
        cosines: list[float] = []
        agree = agree5 = rows = 0
        bad = not_comparable = None
        for c, (out, ref) in enumerate(zip(outputs, refs)):
            if o >= len(out):
                bad = f"output {name!r}: the backend returned {len(out)} outputs, the reference {len(ref)}"
                break
            # sequences and maps (a ZipMap's) are compared through their numeric form, structure first
            r, r_form, r_why = structured.numeric_view(ref[o])
            if r_why is not None:
                not_comparable = f"the reference's output is {r_why}: no numeric form to compare"
                break
            a, a_form, a_why = structured.numeric_view(out[o])
            if a_why is not None or a_form != r_form:
                bad = f"output {name!r}: " + (f"the output is {a_why}" if a_why is not None
                                              else structured.structure_mismatch(a_form, r_form))
                break
            if a.shape != r.shape:
                bad = f"output {name!r}: shape {list(a.shape)} differs from the reference's {list(r.shape)}"
                break
            a64 = a.astype(np.float64)
            r64 = r.astype(np.float64)
            if not np.all(np.isfinite(a64)):
                bad = f"output {name!r}: contains NaN or Inf (call {c})"
                break
            if a64.size:
                max_abs = max(max_abs, float(np.max(np.abs(a64 - r64))))
                scale = max(scale, float(np.max(np.abs(r64))))
            if np.issubdtype(r.dtype, np.floating) and r64.size > 1:
                na, nr = float(np.linalg.norm(a64)), float(np.linalg.norm(r64))
                if na > 0 and nr > 0:
                    cosines.append(float(np.dot(a64.ravel(), r64.ravel()) / (na * nr)))
                elif na == nr:
                    cosines.append(1.0)
                else:
                    cosines.append(0.0)
            if classifier and r.ndim == 2 and r.shape[-1] >= 2:
                top = r64.argmax(axis=-1)
                agree += int(np.sum(a64.argmax(axis=-1) == top))
                if r.shape[-1] >= 10:
                    top5 = np.argsort(-a64, axis=-1)[:, :5]
                    agree5 += int(np.sum(np.any(top5 == top[:, None], axis=-1)))
                rows += r.shape[0]
        if not_comparable is not None:
            per_output.append(OutputAccuracy(name=name, max_abs_error=None, max_rel_error=None,
                                             not_comparable=not_comparable))
            continue
        if bad is not None:
            failures.append(bad)
            per_output.append(OutputAccuracy(name=name, max_abs_error=None, max_rel_error=None))
            continue
        rel = max_abs / scale if scale > 0 else max_abs  # an all-zero reference: the absolute error itself
        cos = min(cosines) if cosines else None
        top1 = agree / rows if rows else None
        top5 = agree5 / rows if rows and refs and np.asarray(refs[0][o]).shape[-1] >= 10 else None
        per_output.append(OutputAccuracy(name=name, max_abs_error=max_abs, max_rel_error=rel, cosine_similarity=cos,
                                         top1_agreement=top1, top5_agreement=top5))
        if max_abs > tol.abs + tol.rel * scale:
            failures.append(f"output {name!r}: max abs error {max_abs:.3g} ({rel:.3g} of its scale {scale:.3g}) "
                            f"exceeds {tol.abs:g} + {tol.rel:g} x scale")
        if cos is not None and cos < tol.min_cosine:
            failures.append(f"output {name!r}: cosine similarity {cos:.6f} < {tol.min_cosine}")
        if top1 is not None and top1 < tol.min_top1_agreement:
            failures.append(f"output {name!r}: top-1 agreement {top1:.0%} < {tol.min_top1_agreement:.0%}")
    return per_output, failures


def is_classifier(wl: Any) -> bool:
    """Whether the workload's outputs are class scores (catalog task), so top-k agreement applies."""
    if not wl.catalog:
        return False
    from benchkit.workloads import catalog

    try:
        task = catalog.get(wl.catalog).task
    except BenchkitError:
        return False
    return any(t in task for t in _CLASSIFIER_TASKS)


# --------------------------------------------------------------------------- tolerances derived from the standard

TOLERANCE_MARGIN = 3.0
"""How many times the error of the standard's own build at a precision a result at that precision may have.

Measured on the catalog (int8 builds, vs ONNX Runtime CPU fp32, 8-16 seeded inputs, seeds 1-5): other int8
engines running the same QDQ graph (ONNX Runtime without its QLinear fusions, OpenVINO's CPU plugin) reach 0.76x
to 1.17x of ONNX Runtime's own relative error and 0.8x to 1.3x of its 1 - cosine; mobilenet-v2 with its first
residual block cut out (claiming int8, on the fp32 or the int8 graph) reaches 4.6x to 7x the relative error and
26x to 47x the 1 - cosine. Three leaves honest engines a wide berth and the cheat none. fp16 builds (mobilenet-v2,
ds-cnn, mlp, bert-base): the same two engines reach 0.6x to 1.0x of ONNX Runtime's error, but both compute fp16
graphs in fp32 on this CPU; an accelerator with native fp16 arithmetic has not been measured against the margin.
"""
DERIVED_TOLERANCE_VERSION = 1  # 1: margin 3, floors at fp32's tolerance, ceilings at the precision's constants


def _round_up(x: float) -> float:
    """``x`` rounded up to two significant digits: a derived bound is not made tighter by rounding, and runs that
    differ by float noise in the last digits derive the same figure."""
    if x <= 0:
        return 0.0
    q = 10.0 ** (math.floor(math.log10(x)) - 1)
    return float(f"{math.ceil(x / q - 1e-9) * q:.2g}")


def _standard_entry(wl: Any, precision: str, cache_dir: Path | None) -> tuple[Any, dict[str, Any], str]:
    """The catalog entry and params whose ``precision`` build judges a result on ``wl``, or ``(None, {}, why)``.

    A catalog workload is its own entry; a model file counts when its bytes are a standard build at the entry's
    default params (as the division rules decide), so exporting a standard build does not loosen its tolerance.
    """
    from benchkit.workloads import catalog

    if wl.catalog:
        entry, params = catalog.get(wl.catalog), dict(wl.params)
    else:
        from benchkit.checks.divisions import standard_build

        build = standard_build(wl, cache_dir)
        if build is None or build.sha256 != wl.sha256:
            return None, {}, f"a model file that is not a standard build has no catalog {precision} build"
        entry, params = catalog.get(build.name), {}
    if precision not in entry.variants:
        return None, {}, f"{entry.name} has no {precision} build"
    return entry, params, ""


def _model_outputs(reference: str, path: Path, wl: Any, feeds: Sequence[Mapping[str, np.ndarray]]
                   ) -> list[list[np.ndarray]]:
    """The reference runtime's outputs of the model at ``path`` for each feed (uncached)."""
    from benchkit.workloads.model import graph_precision, read_model

    backend = _reference_backend(reference)
    try:
        backend.load(path, _winfo(wl, feeds[0], graph_precision(read_model(path, path.name))))
        return [run_outputs(backend, backend.stage(f)) for f in feeds]
    finally:
        backend.close()


def _derive(precision: str, per: Sequence[OutputAccuracy], refs: Sequence[Sequence[np.ndarray]]
            ) -> tuple[Tolerance, list[str]]:
    """The tolerance allowing TOLERANCE_MARGIN x the errors ``per`` of the standard's build, and the bounds that
    the ceiling (the precision's constant) cut."""
    m, floor, ceil = TOLERANCE_MARGIN, TOLERANCES["fp32"], TOLERANCES[precision]
    capped: list[str] = []

    def clamp(name: str, x: float, lo: float, hi: float) -> float:
        if x > hi:
            capped.append(name)
        return min(hi, max(lo, x))

    scales = [max((float(np.max(np.abs(np.asarray(c[o], np.float64)))) for c in refs if np.size(c[o])), default=0.0)
              for o in range(len(per))]
    rel = clamp("rel", _round_up(m * max(o.max_rel_error for o in per)), floor.rel, ceil.rel)
    # The margin is carried by rel (relative to the output's scale); abs only covers an output whose reference is
    # all zeros, where rel cannot.
    zero = max((o.max_abs_error for o, s in zip(per, scales) if s == 0), default=0.0)
    abs_ = clamp("abs", _round_up(m * zero), floor.abs, ceil.abs)
    # 1 - cosine grows as the square of the error's relative size: the margin applies squared.
    gaps = [1.0 - o.cosine_similarity for o in per if o.cosine_similarity is not None]
    lo_gap, hi_gap = round(1 - floor.min_cosine, 12), round(1 - ceil.min_cosine, 12)
    gap = clamp("min_cosine", _round_up(m * m * max(gaps)), lo_gap, hi_gap) if gaps else hi_gap
    # Top-1 disagreements are a count: the build's own plus one (for none, the rule of three), times the margin.
    shares = []
    for o, out in enumerate(per):
        if out.top1_agreement is not None:
            rows = sum(int(np.shape(c[o])[0]) for c in refs)
            wrong = round((1.0 - out.top1_agreement) * rows)
            shares.append(round(1.0 - m * (wrong + 1) / rows, 6))
    if shares and min(shares) < ceil.min_top1_agreement:
        capped.append("min_top1_agreement")
    top1 = max(ceil.min_top1_agreement, min(shares, default=0.0))
    return Tolerance(abs=abs_, rel=rel, min_cosine=round(1 - gap, 12), min_top1_agreement=top1), capped


def standard_tolerance(
    wl: Any,
    feeds: Sequence[Mapping[str, np.ndarray]],
    *,
    claimed: str,
    effective: str,
    allow_mismatch: bool,
    reference: str,
    seed: int,
    cache_dir: Path | None,
) -> tuple[str, Tolerance, str]:
    """The precision whose tolerances apply, those tolerances, and where they come from (``tolerance_source``).

    fp32's are the constant of :data:`TOLERANCES`. Below fp32 (fp16, int8), on a workload with a catalog build at
    that precision, they are derived from the standard: the reference runtime runs the entry's fp32 and
    ``precision`` builds on ``feeds`` (the gate's inputs), the build's errors are measured as the gate measures
    them, and a result may have :data:`TOLERANCE_MARGIN` times as much: rel error x M, 1 - cosine x M², top-1
    disagreements (the build's + 1) x M; never tighter than fp32's tolerance, never looser than the precision's
    constant. Cached beside the reference outputs, keyed by both builds' digests, the reference runtime and its
    version and the inputs' digest, HMAC-tagged like them. Otherwise (no such build, or the reference cannot run
    it) the constant applies, and the source says why.
    """
    from benchkit.spec import canonical_json
    from benchkit.workloads import catalog
    from benchkit.workloads.model import model_sha256

    precision, constant = tolerance_for(claimed, effective, allow_mismatch)
    if precision == "fp32":
        return precision, constant, "constant: fp32 (its bound lies between fp32 noise and fp16 arithmetic)"
    if not feeds:
        return precision, constant, "constant: no inputs to derive from"
    try:
        entry, params, why = _standard_entry(wl, precision, cache_dir)
        if entry is None:
            return precision, constant, f"constant: {why}"
        fp32_path = catalog.materialize(entry.name, params, "fp32", cache_dir=cache_dir)
        build_path = catalog.materialize(entry.name, params, precision, cache_dir=cache_dir)
        version = _reference_version(reference)
        key = {"version": DERIVED_TOLERANCE_VERSION, "kind": "tolerance", "precision": precision,
               "margin": TOLERANCE_MARGIN, "model_sha256": model_sha256(fp32_path),
               "build_sha256": model_sha256(build_path), "reference": reference, "reference_version": version,
               "seed": int(seed), "calls": 1, "inputs_sha256": _feeds_digest(feeds)}
        digest = hashlib.sha256(canonical_json(key).encode()).hexdigest()
        cache = _cache_root(cache_dir) / "tolerance" / f"{key['build_sha256'][:16]}-{precision}-{digest[:16]}.npz"
        hit = _read_reference_cache(cache, key)
        if hit is not None and hit[0][0][0].shape == (4,):
            a, r, c, t = (float(x) for x in hit[0][0][0])
            return precision, Tolerance(abs=a, rel=r, min_cosine=c, min_top1_agreement=t), hit[1]
        if wl.catalog and reference_model(wl, cache_dir)[1] == key["model_sha256"]:
            refs = reference_outputs(wl, feeds, reference, seed, cache_dir)[0]  # the gate's own, cached
        else:
            refs = _model_outputs(reference, fp32_path, wl, feeds)
        outs = _model_outputs(reference, build_path, wl, feeds)
    except BenchkitError as e:
        return precision, constant, f"constant: the reference could not run the catalog {precision} build ({e})"
    classifier = any(t in entry.task for t in _CLASSIFIER_TASKS)
    per, _ = compare_outputs(outs, refs, wl.output_names, constant, classifier)
    if not per or any(o.max_abs_error is None for o in per):
        return precision, constant, f"constant: the catalog {precision} build's outputs could not be compared"
    tol, capped = _derive(precision, per, refs)
    cos = [o.cosine_similarity for o in per if o.cosine_similarity is not None]
    top1 = [o.top1_agreement for o in per if o.top1_agreement is not None]
    source = (f"derived: {TOLERANCE_MARGIN:g} x the error of {entry.name}'s {precision} build under {reference} "
              f"{version} (max rel error {max(o.max_rel_error for o in per):.3g}"
              + (f", cosine {min(cos):.6f}" if cos else "") + (f", top-1 {min(top1):.0%}" if top1 else "")
              + f" on these {len(feeds)} inputs)"
              + (f"; {', '.join(capped)} at the {precision} constant" if capped else ""))
    _write_reference_cache(cache, key, source, [[np.array(astuple(tol), dtype=np.float64)]])
    return precision, tol, source


# --------------------------------------------------------------------------- task metric


def _metric_module(wl: Any):
    if not wl.catalog:
        return None
    from benchkit.workloads import catalog

    try:
        module = importlib.import_module(catalog.get(wl.catalog).builder.split(":")[0])
    except (BenchkitError, ImportError):
        return None
    if callable(getattr(module, "evaluation_set", None)) and callable(getattr(module, "top1", None)):
        return module
    return None


def _score(backend: Any, module: Any, wl: Any, batch: int) -> tuple[float, int]:
    inputs, labels = module.evaluation_set({"batch": batch})
    name = wl.inputs[0].name
    outs = []
    for start in range(0, len(inputs), batch):
        outs.append(run_outputs(backend, backend.stage({name: inputs[start:start + batch]}))[0])
    return float(module.top1(np.concatenate(outs, axis=0), labels)), int(np.sum(labels >= 0))


def task_metric(backend: Any, wl: Any, batch: int, reference: str, cache_dir: Path | None) -> TaskMetric | None:
    """Score the measured backend on the workload's labelled evaluation set, against the reference's score."""
    module = _metric_module(wl)
    if module is None or len(wl.inputs) != 1:
        return None
    value, n = _score(backend, module, wl, batch)
    path, _ = reference_model(wl, cache_dir)
    ref = _reference_backend(reference)
    try:
        from benchkit.workloads.model import graph_precision, read_model

        feeds = {wl.inputs[0].name: np.zeros((batch, *wl.call_shapes(batch)[0][wl.inputs[0].name][1:]),
                                              dtype=wl.inputs[0].dtype)}
        ref.load(path, _winfo(wl, feeds, graph_precision(read_model(path, wl.name))))
        ref_value, _ = _score(ref, module, wl, batch)
    finally:
        ref.close()
    floor = TASK_METRIC_FRACTION * ref_value
    return TaskMetric(name="top1", value=value, reference_value=ref_value, min_value=floor, passed=value >= floor,
                      samples=n)


# --------------------------------------------------------------------------- outputs kept for a reviewer

OUTPUTS_MAX_BYTES = 1 << 20
"""Outputs of the gate up to this size are kept whole in the record; larger ones as a seeded sample of this size."""


def sample_positions(size: int, count: int, seed: int, call: int, output: int) -> np.ndarray:
    """Flat positions kept of an output too large to keep whole: ``count`` distinct ones, sorted, seeded."""
    if count >= size:
        return np.arange(size)
    return np.sort(np.random.default_rng([int(seed), call, output]).choice(size, count, replace=False))


def store_outputs(outs: Sequence[Sequence[np.ndarray]], feeds: Sequence[Mapping[str, np.ndarray]],
                  seed: int) -> StoredOutputs | None:
    """The gate's outputs as the record keeps them (None for outputs that are not numeric arrays)."""
    import base64
    import zlib

    arrays = [(c, o, np.ascontiguousarray(a)) for c, call in enumerate(outs) for o, a in enumerate(call)]
    if not arrays or any(a.dtype.hasobject for _, _, a in arrays):
        return None
    sampled = sum(a.nbytes for _, _, a in arrays) > OUTPUTS_MAX_BYTES
    budget = OUTPUTS_MAX_BYTES // len(arrays)
    parts, kept = [], []
    for c, o, a in arrays:
        flat = a.reshape(-1)
        values = flat[sample_positions(flat.size, max(1, budget // a.itemsize), seed, c, o)] if sampled else flat
        parts.append(values.tobytes())
        kept.append(OutputArray(call=c, output=o, dtype=a.dtype.str, shape=list(a.shape), elements=int(values.size)))
    raw = b"".join(parts)
    return StoredOutputs(inputs_sha256=_feeds_digest(feeds), sha256=hashlib.sha256(raw).hexdigest(), sampled=sampled,
                         arrays=kept, data=base64.b64encode(zlib.compress(raw, 6)).decode("ascii"))


def load_outputs(stored: StoredOutputs) -> list[list[np.ndarray]]:
    """Outputs per call as kept: whole arrays, or the sampled values (1-D); ValueError when damaged."""
    import base64
    import binascii
    import zlib

    try:
        raw = zlib.decompress(base64.b64decode(stored.data, validate=True))
    except (binascii.Error, zlib.error) as e:
        raise ValueError(f"the kept outputs do not decode ({e})") from None
    if hashlib.sha256(raw).hexdigest() != stored.sha256:
        raise ValueError("the kept outputs do not match their SHA-256")
    calls: list[list[np.ndarray]] = []
    at = 0
    for k in stored.arrays:
        dt = np.dtype(k.dtype)
        size = int(np.prod(k.shape, dtype=np.int64))
        if (not stored.sampled and k.elements != size) or k.elements > size:
            raise ValueError(f"call {k.call} output {k.output}: {k.elements} values kept of shape {k.shape}")
        values = np.frombuffer(raw, dt, k.elements, at)
        at += k.elements * dt.itemsize
        while len(calls) <= k.call:
            calls.append([])
        if k.output != len(calls[k.call]):
            raise ValueError(f"call {k.call}: outputs out of order")
        calls[k.call].append(values if stored.sampled else values.reshape(k.shape))
    if at != len(raw):
        raise ValueError(f"the kept outputs hold {len(raw) - at} bytes more than their arrays")
    return calls


def _looser_than(applied: Mapping[str, float], tol: Tolerance) -> list[str]:
    """The bounds of a record's ``applied`` tolerance that allow more than ``tol`` (a missing bound allows anything).

    A tighter bound is no fault: the reviewer's comparison below applies ``tol`` anyway, and a derivation made with
    another version of the reference runtime may differ in the last digit.
    """
    out = []
    for name, bound in asdict(tol).items():
        got = applied.get(name)
        larger_allows_more = name in ("abs", "rel")
        if got is None or (got > bound if larger_allows_more else got < bound):
            out.append(name)
    return out


@dataclass(frozen=True)
class Recheck:
    """A reviewer's re-check of one record's accuracy gate."""

    passed: bool
    detail: str


def _standard_workload(record: Any):
    """The spec entry of benchkit's own build of the record's model, or a reason why there is none."""
    from benchkit.spec import WorkloadSpec

    w = record.workload
    if w.source == "catalog":
        return WorkloadSpec.model_validate(record.spec["workload"]), None
    div = record.division
    if div is not None and div.name == "closed" and div.standard_workload:
        entry, _, variant = div.standard_workload.partition(" ")
        return WorkloadSpec(name=w.name, catalog=entry, variant=variant or "fp32", dims=dict(w.dims)), None
    return None, "its model is a file that is not a standard build, and model files do not travel in a bundle"


def recheck(record: Any, cache_dir: Path) -> Recheck:
    """Re-check a record's accuracy gate as a reviewer, trusting nothing the submitter computed.

    The workload is built afresh into ``cache_dir`` (it must hash to the
    record's ``model_sha256``), the gate's inputs are regenerated from the seed
    (their digest must be the one kept), the reference is computed here with
    ONNX Runtime on the CPU, and the kept outputs are compared with it at the
    standard's tolerance for the claimed precision. The outputs themselves
    are the submitter's: this proves they meet the standard and that the
    record's figures are theirs, not that the device produced them.
    """
    from benchkit.workloads import resolve

    acc, w, b = record.accuracy, record.workload, record.backend
    stored = acc.measured_outputs
    if stored is None:
        return Recheck(False, "the record keeps no outputs of the gate (accuracy.measured_outputs)")
    entry, why = _standard_workload(record)
    if entry is None:
        return Recheck(False, f"cannot rebuild the model: {why}")
    wl = resolve(entry, Path(cache_dir), f"{record.cell_id}: workload", Path(cache_dir))
    if wl.sha256 != w.model_sha256:
        return Recheck(False, f"benchkit's build of {entry.catalog_name} {entry.variant} here has SHA-256 "
                              f"{wl.sha256[:16]}…, the record's model {w.model_sha256[:16]}… (the build depends on the "
                              "versions of benchkit, numpy and onnx in system.packages)")
    _, ref_sha = reference_model(wl, Path(cache_dir))
    if acc.reference_model_sha256 != ref_sha:
        return Recheck(False, f"the record's reference model {str(acc.reference_model_sha256)[:16]}… is not the "
                              f"standard's fp32 build ({ref_sha[:16]}…)")
    outs = load_outputs(stored)
    if len(outs) != acc.samples:
        return Recheck(False, f"{len(outs)} calls' outputs kept, the gate compared {acc.samples}")
    shapes = {i.name: tuple(i.shape) for i in w.inputs}
    positions = acc.pool_positions if acc.pool_positions is not None else list(range(len(outs)))
    pool = wl.feeds_for_shapes(shapes, max(positions) + 1 if positions else 0, acc.seed)
    feeds = [pool[i] for i in positions]
    if _feeds_digest(feeds) != stored.inputs_sha256:
        return Recheck(False, f"the inputs regenerated from seed {acc.seed} are not those of the gate")
    refs, desc, _ = reference_outputs(wl, feeds, "onnxruntime", acc.seed, Path(cache_dir))
    if stored.sampled:
        refs = [[np.asarray(r).reshape(-1)[sample_positions(np.asarray(r).size, k.elements, acc.seed, k.call, k.output)]
                 for r, k in zip(call, [a for a in stored.arrays if a.call == c])] for c, call in enumerate(refs)]
    allow = bool(record.spec.get("backend", {}).get("allow_precision_mismatch", False))
    # The gate's derivation, made here: the standard's own build at the claimed precision, run by this reference.
    prec, tol, source = standard_tolerance(wl, feeds, claimed=b.claimed_precision, effective=b.precision,
                                           allow_mismatch=allow, reference="onnxruntime", seed=acc.seed,
                                           cache_dir=Path(cache_dir))
    looser = _looser_than(acc.tolerance, tol)
    if acc.precision != prec or looser:
        return Recheck(False, f"the record applied {acc.precision} tolerances {acc.tolerance}"
                              + (f" ({', '.join(looser)} looser)" if looser else "")
                              + f", the standard's for this claim are {prec} {asdict(tol)} ({source})")
    per, failures = compare_outputs(outs, refs, wl.output_names, tol, is_classifier(wl) and not stored.sampled)
    kept = "a seeded sample of the outputs" if stored.sampled else "the outputs"
    if failures:
        return Recheck(False, f"{kept} fail against {desc}: " + "; ".join(failures[:2]))
    worst = max((o.max_rel_error for o in per if o.max_rel_error is not None), default=0.0)
    # Another build of the reference runtime differs by fp32 noise (about 1e-6 of the scale); a record
    # reporting less error than its own outputs carry by more than that understates it.
    if not stored.sampled and worst > (acc.max_rel_error or 0.0) + 1e-5:
        return Recheck(False, f"the record reports max rel error {acc.max_rel_error:.3g}, its outputs have "
                              f"{worst:.3g} against {desc}")
    return Recheck(True, f"{kept} of {len(outs)} calls within {prec} tolerances of {desc} "
                         f"(max rel error {worst:.3g})")


# --------------------------------------------------------------------------- the gate


def check(
    backend: Any,
    staged: Sequence[Any],
    feeds: Sequence[Mapping[str, np.ndarray]],
    wl: Any,
    *,
    claimed: str,
    effective: str,
    allow_mismatch: bool,
    reference: str,
    seed: int,
    batch: int,
    cache_dir: Path | None,
    positions: Sequence[int] | None = None,
) -> tuple[Accuracy, list[list[np.ndarray]]]:
    """Run the gate for one cell. Returns the record block and the backend's accuracy-mode outputs per call.

    ``staged``/``feeds`` are the sample set (same order), ``positions`` their places in the cell's input pool
    (kept in the record so a reviewer regenerates the same inputs). Nothing here is timed.
    """
    prec, tol = tolerance_for(claimed, effective, allow_mismatch)  # what a gate that compares nothing records
    base = dict(precision=prec, tolerance={k: float(v) for k, v in asdict(tol).items()}, samples=len(feeds), seed=seed,
                pool_positions=list(positions) if positions is not None else None)
    if not getattr(type(backend), "computes_outputs", True):
        return Accuracy(passed=None, reference="none", skipped=f"the {backend.name} backend computes no outputs",
                        **base), []
    measured = [run_outputs(backend, s) for s in staged]
    # Kept in the record (under its signature), so that a reviewer can re-check the gate with a reference of
    # their own: check-bundle does (recheck() below).
    base["measured_outputs"] = store_outputs(measured, feeds, seed)
    try:
        refs, desc, ref_sha = reference_outputs(wl, feeds, reference, seed, cache_dir)
    except BenchkitError as e:
        return Accuracy(passed=None, reference=reference, skipped=f"the reference backend failed: {e}", **base), \
            measured
    prec, tol, source = standard_tolerance(wl, feeds, claimed=claimed, effective=effective,
                                           allow_mismatch=allow_mismatch, reference=reference, seed=seed,
                                           cache_dir=cache_dir)
    base.update(precision=prec, tolerance={k: float(v) for k, v in asdict(tol).items()}, tolerance_source=source)
    per_output, failures = compare_outputs(measured, refs, wl.output_names, tol, is_classifier(wl))
    metric = None
    try:
        metric = task_metric(backend, wl, batch, reference, cache_dir)
    except (BenchkitError, ValueError) as e:
        failures.append(f"task metric could not be computed: {e}")
    if metric is not None and not metric.passed:
        failures.append(f"task metric {metric.name} {metric.value:.4f} < {metric.min_value:.4f} "
                        f"({TASK_METRIC_FRACTION:.0%} of the reference's {metric.reference_value:.4f})")
    finite = [o for o in per_output if o.max_abs_error is not None]
    cos = [o.cosine_similarity for o in per_output if o.cosine_similarity is not None]
    top1 = [o.top1_agreement for o in per_output if o.top1_agreement is not None]
    # an output could not be compared at all (shape, count, NaN); one with no numeric form is reported as such
    bad = len(finite) < len([o for o in per_output if o.not_comparable is None])
    return Accuracy(
        passed=not failures,
        reference=desc,
        reference_model_sha256=ref_sha,
        max_abs_error=None if bad else max((o.max_abs_error for o in finite), default=0.0),
        max_rel_error=None if bad else max((o.max_rel_error for o in finite), default=0.0),
        min_cosine_similarity=min(cos) if cos else None,
        top1_agreement=min(top1) if top1 else None,
        outputs=per_output,
        task_metric=metric,
        failures=failures,
        **base,
    ), measured


def findings(acc: Accuracy | None, required: bool) -> list:
    """The accuracy gate's word on the record: a failed gate is a reason; a gate that compared nothing is a
    reason where a passed gate is ``required`` (--audit, the certify profile) and a warning elsewhere."""
    from benchkit.checks.verdict import reason, warning

    if acc is None or acc.passed is True:
        return []
    if acc.passed is False:
        return [reason("accuracy", summary(acc))]
    msg = f"accuracy not checked: {acc.skipped}"
    if required:
        return [reason("accuracy", msg + " (required under --audit / the certify profile)")]
    return [warning("accuracy", msg)]


def summary(acc: Accuracy) -> str:
    """The figures that go into a validity reason."""
    figs = f"max abs error {acc.max_abs_error:.3g}, max rel error {acc.max_rel_error:.3g}" \
        if acc.max_abs_error is not None else ""
    return f"accuracy gate failed at {acc.precision} tolerances vs {acc.reference} ({figs}): " + "; ".join(acc.failures)


__all__ = ["Tolerance", "TOLERANCES", "TOLERANCE_MARGIN", "tolerance_for", "standard_tolerance", "reference_model",
           "reference_outputs", "compare_outputs",
           "task_metric", "check", "summary", "findings", "run_outputs", "cache_secret_path", "store_outputs",
           "load_outputs",
           "sample_positions", "recheck", "Recheck", "WorkloadError"]
