"""Certification bundles: pack a submission, and check one the way a reviewer would.

``benchkit bundle RESULTS... -o bundle.tar.gz --key KEY`` packs the records of
one run, under one top folder::

    bundle.json         what this is: format version, spec name and SHA-256, run id, record count, creation time
    spec/<name>.yaml    the spec the records were run from (byte-exact)
    records/<spec>/<run>/<cell>.json  the records, byte-exact (raw samples and the accuracy gate's outputs
                        included), with <cell>.json.sig where signed
    system.json         the system description(s) of the records
    models.json         every workload's model: name, digest (benchkit.workloads.model_sha256), file, precision, FLOPs
    adapters.json       every backend: adapter, adapter version, runtime version, device, options, and the
                        adapter's distribution with the SHA-256 of each of its installed files
    accuracy.json       the accuracy gate and audit figures records carry (``accuracy``, ``audits``), where present
    MANIFEST.sha256     SHA-256 of every other file (``sha256sum -c`` format)
    MANIFEST.sha256.sig an Ed25519 signature over the manifest (``--key``): required by check-bundle

The archive is reproducible: members sorted, owner and times fixed.

``benchkit check-bundle bundle.tar.gz --pubkey SIGNER.pub`` reads it without
extracting to disk and applies each rule of :data:`RULES` (one function per
rule, one rule per publication requirement of docs/rules.md), printing PASS or
FAIL with the reason; it exits 1 if any rule failed and never prints an
overall OK in that case. Nothing the submitter computed is taken on trust
where it can be recomputed: statistics, counts and throughput come again from
the raw samples and durations, the models are rebuilt from the catalog, and
the accuracy gate is re-run against a reference computed here. Without
``--pubkey`` the bundle's own key proves nothing (anyone can re-sign a
bundle): the verdict is UNTRUSTED unless ``--trust-bundle-key`` says to
accept it anyway.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import re
import tarfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from benchkit._fsutil import MiB, loads_json, open_regular, read_bounded, write_atomic
from benchkit.errors import BenchkitError

BUNDLE_FORMAT_VERSION = 2  # 2: one run per bundle (bundle.json run_id), adapters.json carries the adapters'
#                             distributions and file hashes, the manifest signature is required; 1: first version
TOP = "benchkit-bundle"
MANIFEST = "MANIFEST.sha256"
# Bounds on what check-bundle reads into memory: a hostile archive (a few MB of gzip that claims gigabytes) is
# refused by its headers, before any member is decompressed. A record of 10^7 samples is about 100 MB.
MAX_MEMBER_BYTES = 512 * MiB
MAX_TOTAL_BYTES = 2048 * MiB
MAX_MEMBERS = 100_000
MAX_SPEC_BYTES = 1 * MiB
REQUIRED = ("bundle.json", MANIFEST, "system.json", "models.json", "adapters.json", "accuracy.json")


class BundleError(BenchkitError):
    """Records or a spec that cannot make a bundle, or a file that is not a bundle at all."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _dump(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()


# --------------------------------------------------------------------------- making a bundle


def _find_spec(spec_name: str, spec_sha256: str, given: Path | None) -> tuple[str, bytes]:
    from benchkit.spec import find_bundled_spec, spec_path

    if given:
        given = spec_path(given)  # a file, or a standard spec by its bare name, as `benchkit run` takes it
    candidates = [given] if given else [p for p in (find_bundled_spec(spec_name),) if p]
    for p in candidates:
        try:
            data = read_bounded(p, MAX_SPEC_BYTES, error=BundleError, what="spec")
        except FileNotFoundError:
            raise BundleError(f"--spec {p}: no such spec file") from None
        if _sha256(data) == spec_sha256:
            return Path(p).name, data
        if given:
            raise BundleError(f"--spec {p}: SHA-256 {_sha256(data)[:16]}… is not that of the spec the records were "
                              f"run from ({spec_sha256[:16]}…)")
    raise BundleError(f"the spec {spec_name!r} (SHA-256 {spec_sha256[:16]}…) is not a standard spec of this benchkit; "
                      "pass the file the records were run from with --spec FILE")


def make_bundle(paths: Sequence[str | Path], out: str | Path, spec: str | Path | None = None,
                key: str | Path | None = None) -> Path:
    """Pack the records under ``paths`` (files or directories) into a submission bundle at ``out``."""
    from benchkit.results import records
    from benchkit._version import __version__

    files = records.find(list(paths))
    if not files:
        raise BundleError(f"no record files in {', '.join(map(str, paths))}")
    recs = [(p, read_bounded(p, records.MAX_RECORD_BYTES, error=BundleError, what="record"), records.load(p))
            for p in files]
    names = {(r.spec_name, r.spec_sha256) for _, _, r in recs}
    if len(names) != 1:
        raise BundleError("a bundle holds the records of one spec; these come from "
                          + ", ".join(f"{n} ({h[:12]}…)" for n, h in sorted(names)))
    ((spec_name, spec_sha),) = names
    runs = sorted({r.run_id for _, _, r in recs})
    if len(runs) != 1:
        raise BundleError(f"a bundle holds the records of one run; these come from {len(runs)}: {', '.join(runs)}")
    bare = [str(p) for p, _, r in recs if r.metrics is not None and not r.samples_ns]
    if bare:
        raise BundleError(f"{bare[0]}: no raw samples (run.keep_samples: false); a bundle must let every figure be "
                          "recomputed, so run again with keep_samples: true")
    spec_file, spec_bytes = _find_spec(spec_name, spec_sha, Path(spec) if spec else None)

    members: dict[str, bytes] = {f"spec/{spec_file}": spec_bytes}
    systems, models, adapters, accuracy = {}, {}, {}, []
    for p, data, r in recs:
        rel = f"records/{r.spec_name}/{r.run_id}/{p.name}"
        if rel in members:
            raise BundleError(f"{p}: a second record for {rel}")
        members[rel] = data
        sig = p.with_name(p.name + ".sig")
        if sig.is_file():
            members[rel + ".sig"] = read_bounded(sig, 1 << 20, within=p.parent, error=BundleError,
                                                 what="signature file")
        doc = loads_json(data)
        systems[_system_key(r.system.model_dump())] = r.system.model_dump()
        if r.workload is not None:
            w = r.workload
            models[f"{w.name}:{w.model_sha256}"] = {"workload": w.name, "model_sha256": w.model_sha256,
                                                    "model_file": w.model_file, "graph_precision": w.graph_precision,
                                                    "variant": w.variant, "source": w.source, "flops": w.flops}
        if r.backend is not None:
            b = r.backend
            if b.id not in adapters:
                adapters[b.id] = {"backend": b.id, "name": b.name, "runtime_version": b.version,
                                  "adapter": b.adapter, "adapter_version": b.adapter_version, "device": b.device,
                                  "options": b.options, "distribution": adapter_distribution(b.name)}
        if doc.get("accuracy") is not None:
            accuracy.append({"cell_id": r.cell_id, "run_id": r.run_id, "accuracy": doc["accuracy"],
                             "audits": doc.get("audits")})
    members["system.json"] = _dump(sorted(systems.values(), key=_system_key))
    members["models.json"] = _dump(sorted(models.values(), key=lambda m: (m["workload"], m["model_sha256"])))
    members["adapters.json"] = _dump(sorted(adapters.values(), key=lambda a: a["backend"]))
    members["accuracy.json"] = _dump(accuracy)
    from benchkit.results.records import utcnow

    created = utcnow().replace(microsecond=0)
    members["bundle.json"] = _dump({
        "format": "benchkit-bundle", "version": BUNDLE_FORMAT_VERSION, "benchkit_version": __version__,
        "created_at": created.isoformat().replace("+00:00", "Z"), "spec_name": spec_name, "spec_sha256": spec_sha,
        "spec_file": f"spec/{spec_file}", "run_id": runs[0], "records": len(recs),
    })
    members[MANIFEST] = manifest_text(members).encode()
    if key is not None:
        from benchkit.results.trust import load_private_key, sign_bytes

        members[MANIFEST + ".sig"] = _dump(sign_bytes(members[MANIFEST], None, load_private_key(key), MANIFEST))
    return write_tar(members, Path(out), int(created.timestamp()))


def adapter_distribution(name: str) -> dict[str, Any]:
    """The installed distribution of adapter ``name`` and the SHA-256 of each of its files, as adapters.json keeps them.

    Files come from the distribution's RECORD (each checked against the file
    installed here: an adapter edited after installation cannot be bundled);
    for an editable install or a folder on ``sys.path``, whose RECORD does not
    list the code, they are the adapter's package source as Python imports it.
    ``sha256`` is the SHA-256 of the ``sha256sum``-style list of the files.
    """
    import base64
    import importlib.util
    from importlib.metadata import entry_points

    from benchkit.workloads.model import file_sha256

    ep = next((e for e in entry_points(group="benchkit.backends") if e.name == name), None)
    if ep is None:
        raise BundleError(f"adapter {name!r} is not installed here: make the bundle where the records were run")
    module = ep.value.split(":")[0]
    dist = ep.dist
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError) as e:
        raise BundleError(f"adapter {name!r}: its module {module} cannot be found ({e})") from None
    if found is None or not found.origin:
        raise BundleError(f"adapter {name!r}: its module {module} cannot be found")
    origin = Path(found.origin).resolve()
    recorded = [f for f in ((dist.files or []) if dist else []) if f.hash is not None and f.hash.mode == "sha256"]
    files: list[dict[str, str]] = []
    if any(Path(dist.locate_file(f)).resolve() == origin for f in recorded):
        source, changed = "RECORD", []
        for f in recorded:
            want = base64.urlsafe_b64decode(f.hash.value + "=" * (-len(f.hash.value) % 4)).hex()
            path = Path(dist.locate_file(f))
            if not path.is_file() or file_sha256(path) != want:
                changed.append(str(f))
            files.append({"path": str(f), "sha256": want})
        if changed:
            raise BundleError(f"adapter {name!r}: installed files of {dist.name} differ from its RECORD "
                              f"({', '.join(changed[:3])}): reinstall it")
    else:
        source = "source"
        top = module.split(".")[0]
        top_spec = importlib.util.find_spec(top)
        locations = list(top_spec.submodule_search_locations or []) if top_spec else []
        if locations:
            root = Path(locations[0])
            paths = sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
            files = [{"path": f"{top}/{p.relative_to(root).as_posix()}", "sha256": file_sha256(p)} for p in paths]
        else:
            files = [{"path": origin.name, "sha256": file_sha256(origin)}]
    listing = "".join(f"{f['sha256']}  {f['path']}\n" for f in files)
    return {"name": dist.name if dist else None, "version": dist.version if dist else None, "module": module,
            "files_from": source, "files": files, "sha256": _sha256(listing.encode())}


def _system_key(s: dict[str, Any]) -> str:
    return json.dumps({k: s.get(k) for k in ("hostname", "cpu_model", "cpu_count", "machine", "os")}, sort_keys=True)


def manifest_text(members: dict[str, bytes]) -> str:
    """``sha256sum`` lines for every member except the manifest and its signature."""
    return "".join(f"{_sha256(data)}  {name}\n" for name, data in sorted(members.items())
                   if name not in (MANIFEST, MANIFEST + ".sig"))


def write_tar(members: dict[str, bytes], out: Path, mtime: int) -> Path:
    """A reproducible .tar.gz: sorted members under TOP/, fixed owner, mode and times."""
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for name in sorted(members):
            info = tarfile.TarInfo(f"{TOP}/{name}")
            info.size, info.mtime, info.mode = len(members[name]), mtime, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(members[name]))
    write_atomic(out, buf.getvalue())  # readers never see half a bundle; a full disk leaves nothing behind
    return out


# --------------------------------------------------------------------------- checking a bundle


@dataclass(frozen=True)
class RuleResult:
    rule: str
    passed: bool
    detail: str


@dataclass
class _Bundle:
    members: dict[str, bytes] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    records: dict[str, Any] = field(default_factory=dict)  # member name -> ResultRecord
    bad_records: dict[str, str] = field(default_factory=dict)

    def json(self, name: str) -> Any:
        return loads_json(self.members[name])


def read_bundle(path: str | Path) -> _Bundle:
    """Members of a bundle, read into memory (never extracted); unsafe entries are recorded as problems.

    Only a regular file is opened. A member larger than :data:`MAX_MEMBER_BYTES`, members adding up to more than
    :data:`MAX_TOTAL_BYTES`, or more than :data:`MAX_MEMBERS` entries end the reading with a problem (the archive
    rule fails); nothing past that point is decompressed."""
    p = Path(path)
    b = _Bundle()
    try:
        fd = open_regular(p, error=BundleError)
    except FileNotFoundError:
        raise BundleError(f"{p}: no such bundle") from None
    raw = open(fd, "rb")  # noqa: SIM115 - closed with the archive below
    try:
        tar = tarfile.open(fileobj=raw, mode="r:gz")
    except (tarfile.TarError, OSError, EOFError) as e:
        raw.close()
        raise BundleError(f"{p}: not a .tar.gz bundle ({e})") from None
    with raw, tar:
        total, count = 0, 0
        while True:
            try:
                m = tar.next()
            except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
                raise BundleError(f"{p}: damaged archive ({e})") from None
            if m is None:
                break
            count += 1
            if count > MAX_MEMBERS:
                b.problems.append(f"more than {MAX_MEMBERS:,} entries; not reading further")
                break
            pp = PurePosixPath(m.name)
            if pp.is_absolute() or ".." in pp.parts or not pp.parts or pp.parts[0] != TOP:
                b.problems.append(f"{m.name}: outside the {TOP}/ folder")
                continue
            if m.isdir():
                continue
            if not m.isfile():
                b.problems.append(f"{m.name}: not a regular file (links and devices are not allowed)")
                continue
            if m.size > MAX_MEMBER_BYTES or total + m.size > MAX_TOTAL_BYTES:
                b.problems.append(f"{m.name}: {m.size:,} bytes, more than a bundle member may hold "
                                  f"({MAX_MEMBER_BYTES:,} bytes, {MAX_TOTAL_BYTES:,} in all); not reading further")
                break
            total += m.size
            name = "/".join(pp.parts[1:])
            if name in b.members:
                b.problems.append(f"{m.name}: appears twice")
            try:
                data = tar.extractfile(m).read()
            except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
                raise BundleError(f"{p}: damaged archive ({e})") from None
            if len(data) != m.size:
                raise BundleError(f"{p}: damaged archive ({m.name} is cut short)")
            b.members[name] = data
    return b


Rule = Callable[[_Bundle, dict[str, Any]], RuleResult]


def _rule_archive(b: _Bundle, opts) -> RuleResult:
    if b.problems:
        return RuleResult("archive", False, "; ".join(b.problems))
    return RuleResult("archive", True, f"{len(b.members)} regular files under {TOP}/, no links or escaping paths")


def _rule_layout(b: _Bundle, opts) -> RuleResult:
    missing = [n for n in REQUIRED if n not in b.members]
    if not any(n.startswith("spec/") for n in b.members):
        missing.append("spec/<spec file>")
    if not any(n.startswith("records/") and n.endswith(".json") for n in b.members):
        missing.append("records/**/*.json")
    if missing:
        return RuleResult("layout", False, "missing " + ", ".join(missing))
    try:
        meta = b.json("bundle.json")
        for n in ("system.json", "models.json", "adapters.json", "accuracy.json"):
            b.json(n)
    except ValueError as e:
        return RuleResult("layout", False, f"a metadata file is not JSON ({e})")
    if meta.get("format") != "benchkit-bundle" or meta.get("version") != BUNDLE_FORMAT_VERSION:
        return RuleResult("layout", False, f"bundle.json: format {meta.get('format')!r} version "
                                           f"{meta.get('version')!r}, expected benchkit-bundle {BUNDLE_FORMAT_VERSION}")
    return RuleResult("layout", True, "bundle.json, spec, records, system, models, adapters, accuracy, manifest "
                                      "present")


def _rule_manifest(b: _Bundle, opts) -> RuleResult:
    if MANIFEST not in b.members:
        return RuleResult("manifest", False, f"no {MANIFEST}")
    listed: dict[str, str] = {}
    for i, line in enumerate(b.members[MANIFEST].decode(errors="replace").splitlines(), 1):
        m = re.fullmatch(r"([0-9a-f]{64})  (.+)", line)
        if not m:
            return RuleResult("manifest", False, f"{MANIFEST} line {i} is not '<sha256>  <path>': {line[:60]!r}")
        listed[m.group(2)] = m.group(1)
    problems = []
    for name, data in sorted(b.members.items()):
        if name in (MANIFEST, MANIFEST + ".sig"):
            continue
        if name not in listed:
            problems.append(f"{name} is not in the manifest")
        elif _sha256(data) != listed[name]:
            problems.append(f"{name}: SHA-256 differs from the manifest")
    problems += [f"{name} is listed but missing" for name in sorted(listed.keys() - b.members.keys())]
    if problems:
        return RuleResult("manifest", False, "; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)"
                                                                       if len(problems) > 5 else ""))
    return RuleResult("manifest", True, f"{len(listed)} files match their SHA-256")


def _load_records(b: _Bundle) -> None:
    from benchkit.results import records

    for name, data in b.members.items():
        if name.startswith("records/") and name.endswith(".json") and name not in b.records:
            try:
                b.records[name] = records.parse(loads_json(data), name)
            except (ValueError) as e:
                b.bad_records[name] = f"{name}: not JSON ({e})"
            except BenchkitError as e:
                b.bad_records[name] = str(e)


def _rule_records(b: _Bundle, opts) -> RuleResult:
    if not b.records and not b.bad_records:
        return RuleResult("records", False, "no records")
    if b.bad_records:
        return RuleResult("records", False, "; ".join(list(b.bad_records.values())[:3]))
    return RuleResult("records", True, f"{len(b.records)} records parse at a supported schema version")


def _rule_valid(b: _Bundle, opts) -> RuleResult:
    bad = [f"{r.cell_id}: {'; '.join(r.validity.reasons) or 'INVALID'}" for r in b.records.values()
           if not r.validity.valid]
    if not b.records:
        return RuleResult("valid", False, "no readable records")
    if bad:
        return RuleResult("valid", False, f"{len(bad)} INVALID: " + " | ".join(bad[:3]))
    return RuleResult("valid", True, f"all {len(b.records)} records VALID")


def _spec_member(b: _Bundle) -> tuple[str, bytes] | None:
    specs = [(n, d) for n, d in b.members.items() if n.startswith("spec/")]
    return specs[0] if len(specs) == 1 else None


def _rule_spec(b: _Bundle, opts) -> RuleResult:
    s = _spec_member(b)
    if s is None:
        return RuleResult("spec", False, "expected exactly one file under spec/")
    name, data = s
    digest = _sha256(data)
    try:
        meta = b.json("bundle.json")
    except (KeyError, ValueError):
        meta = {}
    bad = sorted({f"{r.cell_id} ({r.spec_name}, {r.spec_sha256[:12]}…)" for r in b.records.values()
                  if r.spec_sha256 != digest or r.spec_name != meta.get("spec_name")})
    if meta.get("spec_sha256") != digest:
        bad.insert(0, f"bundle.json says spec SHA-256 {str(meta.get('spec_sha256'))[:12]}…")
    if bad:
        return RuleResult("spec", False, f"{name} has SHA-256 {digest[:12]}…, but: " + "; ".join(bad[:3]))
    return RuleResult("spec", True, f"every record was run from {name} (SHA-256 {digest[:12]}…)")


def _rule_complete(b: _Bundle, opts) -> RuleResult:
    from benchkit.runner.plan import expand  # the spec's cells: planning only, no backend is touched
    from benchkit.spec import parse_spec

    s = _spec_member(b)
    if s is None or not b.records:
        return RuleResult("complete", False, "needs the spec and readable records")
    name, data = s
    try:
        loaded = parse_spec(data.decode(), name, Path("."))
    except (BenchkitError, UnicodeDecodeError) as e:
        return RuleResult("complete", False, f"the bundled spec does not load: {e}")
    profiles = {r.spec.get("profile") for r in b.records.values()}
    if len(profiles) != 1:
        return RuleResult("complete", False, f"records ran under several profiles: {sorted(map(str, profiles))}")
    expected = {c.cell_id for c in expand(loaded, profile=profiles.pop())}
    got: dict[str, int] = {}
    for r in b.records.values():
        got[r.cell_id] = got.get(r.cell_id, 0) + 1
    missing = sorted(expected - got.keys())
    extra = sorted(got.keys() - expected)
    dupes = sorted(c for c, n in got.items() if n > 1)
    problems = ([f"missing {', '.join(missing)}"] if missing else []) + \
               ([f"not in the spec: {', '.join(extra)}"] if extra else []) + \
               ([f"more than one record: {', '.join(dupes)}"] if dupes else [])
    if problems:
        return RuleResult("complete", False, "; ".join(problems))
    return RuleResult("complete", True, f"one record for each of the spec's {len(expected)} cells")


def _rule_samples(b: _Bundle, opts) -> RuleResult:
    """The reported statistics must be what the raw samples give (MLPerf's checker recomputes too)."""
    from benchkit import stats

    bad = []
    n = 0
    for r in b.records.values():
        if r.metrics is None:
            continue
        if not r.samples_ns:
            bad.append(f"{r.cell_id}: no raw samples")
            continue
        n += 1
        again = stats.summarize(r.samples_ns)
        if again != r.metrics.latency_ns or r.metrics.count != len(r.samples_ns):
            diff = [k for k, v in again.model_dump().items() if getattr(r.metrics.latency_ns, k) != v]
            bad.append(f"{r.cell_id}: reported {', '.join(diff) or 'count'} differ from the samples")
    if bad:
        return RuleResult("samples", False, "; ".join(bad[:3]))
    if n == 0:
        return RuleResult("samples", False, "no measured records")
    return RuleResult("samples", True, f"latency statistics of {n} records recomputed from their raw samples")


def _rule_system(b: _Bundle, opts) -> RuleResult:
    from benchkit.results.compare import fingerprint

    try:
        declared = b.json("system.json")
    except (KeyError, ValueError):
        return RuleResult("system", False, "system.json missing or not JSON")
    recs = list(b.records.values())
    prints = {json.dumps(fingerprint(r), sort_keys=True) for r in recs if r.backend is not None}
    if len(prints) > 1:
        return RuleResult("system", False, f"records come from {len(prints)} different systems or runtime builds; "
                                           "a submission describes one")
    keys = {_system_key(s) for s in declared} if isinstance(declared, list) else set()
    undeclared = sorted({r.system.hostname for r in recs if _system_key(r.system.model_dump()) not in keys})
    if undeclared:
        return RuleResult("system", False, f"system.json does not describe the system of records from "
                                           f"{', '.join(undeclared)}")
    return RuleResult("system", True, "one system, described in system.json")


def _rule_models(b: _Bundle, opts) -> RuleResult:
    try:
        declared = {(m["workload"], m["model_sha256"]) for m in b.json("models.json")}
    except (KeyError, TypeError, ValueError):
        return RuleResult("models", False, "models.json missing or malformed")
    used = {(r.workload.name, r.workload.model_sha256) for r in b.records.values() if r.workload is not None}
    by_name: dict[str, set[str]] = {}
    for name, sha in used:
        by_name.setdefault(name, set()).add(sha)
    problems = [f"{n}: {len(s)} different model files" for n, s in sorted(by_name.items()) if len(s) > 1]
    problems += [f"{n} ({s[:12]}…) not in models.json" for n, s in sorted(used - declared)]
    problems += [f"{n} ({s[:12]}…) listed but used by no record" for n, s in sorted(declared - used)]
    if problems:
        return RuleResult("models", False, "; ".join(problems[:4]))
    return RuleResult("models", True, f"{len(used)} model(s), one SHA-256 per workload, as declared")


def _rule_adapters(b: _Bundle, opts) -> RuleResult:
    try:
        declared = {a["backend"]: a for a in b.json("adapters.json")}
    except (KeyError, TypeError, ValueError):
        return RuleResult("adapters", False, "adapters.json missing or malformed")
    problems = []
    seen = set()
    for r in b.records.values():
        if r.backend is None:
            continue
        bk = r.backend
        seen.add(bk.id)
        d = declared.get(bk.id)
        want = {"name": bk.name, "runtime_version": bk.version, "adapter": bk.adapter,
                "adapter_version": bk.adapter_version, "device": bk.device}
        if d is None:
            problems.append(f"{bk.id} not in adapters.json")
        else:
            diff = [k for k, v in want.items() if d.get(k) != v]
            if diff:
                problems.append(f"{r.cell_id}: {', '.join(diff)} differ from adapters.json")
    problems += [f"{k} listed but used by no record" for k in sorted(declared.keys() - seen)]
    files = 0
    for k in sorted(declared.keys() & seen):
        why, n = _distribution_problem(declared[k])
        files += n
        if why:
            problems.append(f"{k}: {why}")
    if problems:
        return RuleResult("adapters", False, "; ".join(sorted(set(problems))[:4]))
    return RuleResult("adapters", True, f"{len(seen)} backend(s): versions and devices as declared; {files} adapter "
                                        "file(s) hashed, under the manifest's signature")


def _distribution_problem(a: dict[str, Any]) -> tuple[str | None, int]:
    """Why adapters.json's distribution of one adapter does not identify its code, and how many files it hashes."""
    d = a.get("distribution")
    if not isinstance(d, dict) or not isinstance(d.get("files"), list) or not d["files"]:
        return "no distribution with file hashes (bundle made by an older benchkit?)", 0
    try:
        listing = "".join(f"{f['sha256']}  {f['path']}\n" for f in d["files"])
        paths = {f["path"] for f in d["files"]}
        bad = [f["path"] for f in d["files"] if not re.fullmatch(r"[0-9a-f]{64}", str(f["sha256"]))]
    except (KeyError, TypeError):
        return "malformed file list", 0
    if bad or _sha256(listing.encode()) != d.get("sha256"):
        return "its file list does not match its SHA-256", len(paths)
    module = str(d.get("module") or str(a.get("adapter", "")).split(":")[0])
    want = {module.replace(".", "/") + ".py", module.replace(".", "/") + "/__init__.py"}
    if module.split(":")[0] != str(a.get("adapter", "")).split(":")[0] or not want & paths:
        return f"the adapter's module {a.get('adapter')!r} is not among the hashed files", len(paths)
    return None, len(paths)


def _rule_accuracy(b: _Bundle, opts) -> RuleResult:
    try:
        declared = {(a["cell_id"], a["run_id"]): a for a in b.json("accuracy.json")}
    except (KeyError, TypeError, ValueError):
        return RuleResult("accuracy", False, "accuracy.json missing or malformed")
    problems, passed, unchecked, without = [], 0, [], []
    for name, r in b.records.items():
        doc = loads_json(b.members[name])
        acc, audits = doc.get("accuracy"), doc.get("audits")
        entry = declared.get((r.cell_id, r.run_id))
        if acc is None:
            if r.metrics is not None:
                without.append(r.cell_id)
            if entry is not None:
                problems.append(f"{r.cell_id}: accuracy.json lists figures the record does not carry")
            continue
        if entry is None or entry.get("accuracy") != acc or entry.get("audits") != audits:
            problems.append(f"{r.cell_id}: accuracy.json differs from the record")
        gate = acc.get("passed") if isinstance(acc, dict) else None
        if gate is False:
            problems.append(f"{r.cell_id}: accuracy gate failed ({'; '.join(acc.get('failures') or []) or 'no detail'})")
        elif gate is None:
            unchecked.append(f"{r.cell_id} ({acc.get('skipped') or 'skipped'})")
        else:
            passed += 1
        if isinstance(audits, dict):
            failed = sorted(k for k, v in audits.items() if isinstance(v, dict) and v.get("passed") is False)
            if failed:
                problems.append(f"{r.cell_id}: audit(s) failed: {', '.join(failed)}")
    # A passed gate is a publication requirement: "not compared" is no pass.
    if without:
        problems.append(f"no accuracy figures in {len(without)} record(s): {', '.join(sorted(without)[:3])}")
    if unchecked:
        problems.append(f"accuracy not compared in {len(unchecked)} record(s): {', '.join(unchecked[:3])}")
    if problems:
        return RuleResult("accuracy", False, "; ".join(problems[:4]))
    return RuleResult("accuracy", True, f"{passed} record(s) passed the accuracy gate, as accuracy.json declares")


def _problems(problems: list[str], n: int = 3) -> str:
    return "; ".join(problems[:n]) + (f" (+{len(problems) - n} more)" if len(problems) > n else "")


def _measured(b: _Bundle) -> list[Any]:
    return [r for _, r in sorted(b.records.items()) if r.metrics is not None]


def _manifest_signature(b: _Bundle, pub) -> tuple[Any, str | None]:
    """(verification of MANIFEST.sha256.sig, or None; why it could not be read)."""
    from benchkit.results.trust import TrustError, verify_bytes

    data = b.members.get(MANIFEST + ".sig")
    if data is None:
        return None, f"the manifest is not signed (no {MANIFEST}.sig): make the bundle with --key"
    if MANIFEST not in b.members:
        return None, f"no {MANIFEST} for {MANIFEST}.sig to sign"
    try:
        sig = loads_json(data)
        if not isinstance(sig, dict) or sig.get("format") != "benchkit-signature":
            raise ValueError("not a benchkit signature")
        return verify_bytes(b.members[MANIFEST], sig, MANIFEST, pub), None
    except (ValueError, KeyError, TypeError, TrustError) as e:
        return None, f"{MANIFEST}.sig is unreadable ({e})"


def _rule_key(b: _Bundle, opts) -> RuleResult:
    """The manifest (every file's SHA-256) is signed, and by a key the reviewer trusts."""
    pub = opts.get("pubkey")
    v, why = _manifest_signature(b, pub)
    if v is None:
        return RuleResult("key", False, why)
    bad = [f"{c.name}: {c.detail}" for c in v.checks if not c.passed]
    if bad:
        return RuleResult("key", False, f"{MANIFEST}.sig: " + "; ".join(bad))
    if pub is not None:
        return RuleResult("key", True, f"the manifest, which lists every file's SHA-256, is signed by the trusted "
                                       f"key {v.key_id}")
    if opts.get("trust_bundle_key"):
        return RuleResult("key", True, f"signed by key {v.key_id}, taken from the bundle itself (--trust-bundle-key): "
                                       "this proves integrity only, not who signed")
    return RuleResult("key", False, f"UNTRUSTED: the manifest is signed by key {v.key_id}, which the bundle carries "
                                    "itself, and anyone can re-sign a bundle: pass the signer's public key with "
                                    "--pubkey (or --trust-bundle-key to accept the bundle's own key, insecure)")


def _rule_signatures(b: _Bundle, opts) -> RuleResult:
    """Record signatures, where present, verify and are by the manifest's signer."""
    from benchkit.results.trust import TrustError, verify_bytes

    sigs = {n: d for n, d in b.members.items() if n.endswith(".sig") and n != MANIFEST + ".sig"}
    pub = opts.get("pubkey")
    manifest_v, _ = _manifest_signature(b, pub)
    signer = manifest_v.key_id if manifest_v is not None else None
    if not sigs:
        return RuleResult("signatures", True, "no record signatures; the manifest signature covers the records")
    problems, n = [], 0
    for name, data in sorted(sigs.items()):
        target = name[: -len(".sig")]
        if target not in b.members:
            problems.append(f"{name}: signs a file that is not in the bundle")
            continue
        try:
            sig = loads_json(data)
            if not isinstance(sig, dict) or sig.get("format") != "benchkit-signature":
                raise ValueError("not a benchkit signature")
            v = verify_bytes(b.members[target], sig, target, pub)
        except (ValueError, KeyError, TypeError, TrustError) as e:
            problems.append(f"{name}: unreadable ({e})")
            continue
        n += 1
        problems += [f"{target}: {c.detail}" for c in v.checks if not c.passed]
        if pub is None and v.key_id != signer:
            problems.append(f"{target}: signed by key {v.key_id}, the manifest by {signer}")
    if problems:
        return RuleResult("signatures", False, _problems(problems, 4))
    who = "the trusted key" if pub is not None else f"the manifest's signer {signer}"
    return RuleResult("signatures", True, f"{n} record signature(s) verified, all by {who}")


def _rule_run(b: _Bundle, opts) -> RuleResult:
    """One run per bundle: a submission cannot pick its best cells out of several runs."""
    if not b.records:
        return RuleResult("run", False, "no readable records")
    runs = sorted({r.run_id for r in b.records.values()})
    try:
        declared = b.json("bundle.json").get("run_id")
    except (KeyError, ValueError, AttributeError):
        declared = None
    problems = []
    if len(runs) > 1:
        problems.append(f"records of {len(runs)} runs ({', '.join(runs[:3])}): a bundle holds one run")
    elif declared != runs[0]:
        problems.append(f"bundle.json names run {declared!r}, the records {runs[0]}")
    problems += [f"{name} is filed outside records/{r.spec_name}/{r.run_id}/" for name, r in sorted(b.records.items())
                 if PurePosixPath(name).parent != PurePosixPath("records", r.spec_name, r.run_id)]
    if problems:
        return RuleResult("run", False, _problems(problems))
    return RuleResult("run", True, f"every record is of run {runs[0]}")


def _rule_profile(b: _Bundle, opts) -> RuleResult:
    """Published results ran under the certify profile (audits always, CV and stability gates)."""
    if not b.records:
        return RuleResult("profile", False, "no readable records")
    bad = sorted(f"{r.cell_id} ({r.spec.get('profile')})" for r in b.records.values() if r.spec.get("profile") != "certify")
    if bad:
        return RuleResult("profile", False, f"not run under the certify profile: {_problems(bad)}")
    return RuleResult("profile", True, f"all {len(b.records)} records ran under the certify profile")


def _bundled_cells(b: _Bundle) -> dict[str, Any]:
    """Cell id -> the cell the bundled spec gives under the certify profile."""
    from benchkit.runner.plan import expand  # the spec's cells: planning only, no backend is touched
    from benchkit.spec import parse_spec

    name, data = _spec_member(b)
    return {c.cell_id: c for c in expand(parse_spec(data.decode(), name, Path(".")), profile="certify")}


def _rule_settings(b: _Bundle, opts) -> RuleResult:
    """Effective settings are the bundled spec's, at least the standard minimums, and the measurement met them."""
    from benchkit.spec import canonical_json, profile_defaults

    if _spec_member(b) is None or not b.records:
        return RuleResult("settings", False, "needs the spec and readable records")
    try:
        cells = _bundled_cells(b)
    except (BenchkitError, UnicodeDecodeError) as e:
        return RuleResult("settings", False, f"the bundled spec does not load: {e}")
    problems = []
    for r in _measured(b):
        s, kind, m = r.scenario.settings, r.scenario.kind, r.metrics
        cell = cells.get(r.cell_id)
        if cell is not None and canonical_json(s) != canonical_json(cell.scenario.settings()):
            want = cell.scenario.settings()
            diff = sorted(k for k in set(s) | set(want) if s.get(k) != want.get(k))
            problems.append(f"{r.cell_id}: settings {', '.join(diff)} are not what the bundled spec gives")
        std = profile_defaults("standard", kind)
        for k in ("min_duration_ms", "min_query_count"):
            if not isinstance(s.get(k), int) or s[k] < std[k]:
                problems.append(f"{r.cell_id}: {k} {s.get(k)} is below the standard minimum {std[k]}")
        if r.engine == "benchkit":
            spanned = m.extra.get("final_scheduled_ns", m.duration_ns) if kind == "server" else m.duration_ns
            counted = m.sample_count if kind == "offline" else m.count
            if spanned < int(s.get("min_duration_ms") or 0) * 1_000_000:
                problems.append(f"{r.cell_id}: measured {spanned / 1e6:.0f} ms < min_duration_ms {s.get('min_duration_ms')}")
            if counted < int(s.get("min_query_count") or 0):
                problems.append(f"{r.cell_id}: measured {counted} < min_query_count {s.get('min_query_count')}")
    if problems:
        return RuleResult("settings", False, _problems(problems))
    return RuleResult("settings", True, "settings as the bundled spec gives them, at or above the standard minimums "
                                        "(10 000 ms, 1 024 queries), and met by every measurement")


def _close(a: float | None, b: float | None, rel: float = 1e-9) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


def _figures_problems(r: Any) -> list[str]:
    """Every figure of a measured record that its raw samples and durations contradict."""
    import numpy as np

    from pydantic import TypeAdapter

    from benchkit import stats
    from benchkit.checks.latency import latency_verdict
    from benchkit.measure.dispatch import HEADLINE
    from benchkit.spec import Scenario

    m, kind, s = r.metrics, r.scenario.kind, r.scenario.settings
    scenario = TypeAdapter(Scenario).validate_python(s)
    if kind == "generative":
        from benchkit.checks.generation import figures_problems

        return figures_problems(r, scenario)
    x = np.asarray(r.samples_ns, dtype=np.int64)
    srt = np.sort(x)
    spq = (r.workload.effective_batch_size if r.workload is not None else None) or 1
    spq *= int(m.extra.get("calls_per_query", 1))  # a MultiStream query of several calls (measure.grouped_loop)
    out = []
    if m.count != x.size:
        out.append(f"count {m.count} but {x.size} samples")
    if r.engine == "benchkit" and m.sample_count != m.count * spq:
        out.append(f"sample_count {m.sample_count} is not count x batch ({m.count} x {spq})")
    elif m.sample_count > m.count * spq:
        out.append(f"sample_count {m.sample_count} exceeds count x batch ({m.count} x {spq})")
    if m.duration_ns <= 0:
        return out + [f"duration_ns {m.duration_ns}"]
    thr = stats.throughput_per_s(m.sample_count, m.duration_ns)
    if not _close(m.throughput_per_s, thr):
        out.append(f"throughput_per_s {m.throughput_per_s:.6g} but sample_count / duration gives {thr:.6g}")
    if not _close(m.queries_per_s, stats.throughput_per_s(m.count, m.duration_ns)):
        out.append(f"queries_per_s {m.queries_per_s:.6g} is not count / duration")
    name, unit, hib = HEADLINE[kind]
    if unit == "ns":
        pct = float(s.get("target_latency_percentile") or (90.0 if kind == "single_stream" else 99.0))
        name, value = f"latency_p{pct:g}_ns".replace(".", ""), float(stats.percentile_ns(srt, pct))
    else:
        value = thr
    if (m.headline.name, m.headline.unit, m.headline.higher_is_better) != (name, unit, hib) or \
            (r.engine == "benchkit" and not _close(m.headline.value, value)):
        out.append(f"headline {m.headline.name} {m.headline.value:.6g} but the samples give {name} {value:.6g}")
    flops = r.workload.flops if r.workload is not None else None
    if flops and m.achieved_flops_per_s is not None and not _close(m.achieved_flops_per_s, flops * m.throughput_per_s,
                                                                    0.5 / flops + 1e-9):
        out.append(f"achieved_flops_per_s {m.achieved_flops_per_s:.6g} is not flops x throughput")
    peak = r.backend.peak_flops_per_s if r.backend is not None else None
    if m.fraction_of_peak is not None and not (peak and m.achieved_flops_per_s is not None
                                               and _close(m.fraction_of_peak, m.achieved_flops_per_s / peak)):
        out.append(f"fraction_of_peak {m.fraction_of_peak:.6g} is not achieved_flops_per_s / peak")
    if r.engine == "benchkit":
        if kind == "server":
            from benchkit.measure.loops import StopRule
            from benchkit.measure.server import poisson_schedule_ns

            # The schedule is drawn from the seed; each latency runs from its scheduled time, so the
            # last completion, and with it the duration, follows exactly from the samples.
            offsets, _ = poisson_schedule_ns(float(s["target_qps"]), StopRule.of(scenario), int(r.spec["seed"]))
            if offsets.size != x.size:
                out.append(f"{x.size} queries, the seeded schedule has {offsets.size}")
            elif m.duration_ns != int((offsets + x).max()):
                out.append(f"duration_ns {m.duration_ns} but the schedule and samples end at {int((offsets + x).max())}")
        elif int(x.sum()) > m.duration_ns:
            # A closed loop issues each query when the previous one completed: its queries fit in its duration.
            out.append(f"duration_ns {m.duration_ns} is shorter than its queries back to back ({int(x.sum())} ns)")
        verdict = latency_verdict(scenario, srt)
        if m.early_stopping != verdict.early_stopping:
            out.append("early_stopping differs from what the samples give")
        if r.validity.valid and verdict.reasons:
            out.append(f"VALID, yet the samples say: {verdict.reasons[0]}")
    alt = r.audits.alternate_seed if r.audits is not None else None
    if alt is not None and not _close(alt.figures.get("value"), m.headline.value):
        out.append(f"the alternate_seed audit compared headline {alt.figures.get('value')}, not {m.headline.value:.6g}")
    if r.validity.valid and r.spec.get("profile") == "certify" and x.size >= 2:
        # the certify rules that rest on the samples alone (benchkit.checks.measurement), recomputed
        pct = scenario.latency_percentile if m.headline.unit == "ns" else None
        hs, d = stats.headline_stability(x, pct), stats.drift(x)
        if not hs.passed:
            out.append(f"VALID under certify, yet the headline is not pinned down: {hs.summary}")
        if d.drifted:
            out.append(f"VALID under certify, yet latency drifted: {d.summary}")
    return out


def _rule_figures(b: _Bundle, opts) -> RuleResult:
    """Counts, throughput, the headline, FLOP/s and early stopping recomputed from raw samples and durations."""
    problems, n = [], 0
    for r in _measured(b):
        if not r.samples_ns:
            continue  # the samples rule reports it
        n += 1
        problems += [f"{r.cell_id}: {p}" for p in _figures_problems(r)]
    if problems:
        return RuleResult("figures", False, _problems(problems))
    if n == 0:
        return RuleResult("figures", False, "no measured records with raw samples")
    return RuleResult("figures", True, f"counts, throughput, headline, FLOP/s and early stopping of {n} records agree "
                                       "with their samples and durations")


def _rule_audits(b: _Bundle, opts) -> RuleResult:
    """Every compliance audit ran and passed."""
    problems, n = [], 0
    names = ("timed_outputs", "repeated_input", "alternate_seed", "boundary")
    for r in _measured(b):
        n += 1
        if r.audits is None:
            problems.append(f"{r.cell_id}: no audits ran")
            continue
        missing = [a for a in names if getattr(r.audits, a) is None]
        failed = [a for a in names if getattr(r.audits, a) is not None and not getattr(r.audits, a).passed]
        if missing:
            problems.append(f"{r.cell_id}: {', '.join(missing)} did not run")
        if failed:
            problems.append(f"{r.cell_id}: {', '.join(failed)} failed")
    if problems or n == 0:
        return RuleResult("audits", False, _problems(problems) or "no measured records")
    return RuleResult("audits", True, f"{', '.join(names)} ran and passed in all {n} records")


def _rule_reference(b: _Bundle, opts) -> RuleResult:
    """The accuracy gate re-run here: benchkit's own build, the seed's inputs, a fresh ONNX Runtime reference."""
    from benchkit.checks.accuracy import recheck

    problems, details = [], []
    for r in _measured(b):
        if r.accuracy is None or r.accuracy.passed is not True:
            continue  # the accuracy rule reports those
        try:
            res = recheck(r, opts["workdir"])
        except (BenchkitError, ValueError) as e:
            problems.append(f"{r.cell_id}: not re-checked: {e}")
            continue
        (details if res.passed else problems).append(f"{r.cell_id}: {res.detail}")
    if problems:
        return RuleResult("reference", False, _problems(problems, 2))
    if not details:
        return RuleResult("reference", False, "no record with a passed accuracy gate to re-check")
    return RuleResult("reference", True, f"{len(details)} record(s) re-checked against a reference computed here; "
                                         f"{details[0]}")


def _rule_division(b: _Bundle, opts) -> RuleResult:
    """Closed division, under the current rules, and the model is benchkit's build of the standard workload."""
    from benchkit.checks.divisions import RULES_VERSION
    from benchkit.workloads import catalog
    from benchkit.workloads.model import model_sha256

    problems, n = [], 0
    for r in _measured(b):
        d = r.division
        if d is None:
            problems.append(f"{r.cell_id}: no division")
            continue
        if d.name != "closed":
            problems.append(f"{r.cell_id}: open ({'; '.join(d.reasons) or 'no reason given'}): certification is for "
                            "the closed division")
            continue
        if d.rules_version != RULES_VERSION:
            problems.append(f"{r.cell_id}: decided under rules {d.rules_version}, this benchkit applies {RULES_VERSION}")
            continue
        entry, _, variant = (d.standard_workload or "").partition(" ")
        try:
            built = model_sha256(catalog.materialize(entry, None, variant or "fp32", cache_dir=opts["workdir"]))
        except BenchkitError as e:
            problems.append(f"{r.cell_id}: the standard build {d.standard_workload!r} cannot be made here: {e}")
            continue
        if not (built == d.standard_sha256 == r.workload.model_sha256):
            problems.append(f"{r.cell_id}: claims closed, but benchkit's build of {d.standard_workload} here has SHA-256 "
                            f"{built[:16]}…, the record's model {r.workload.model_sha256[:16]}…")
            continue
        n += 1
    if problems or n == 0:
        return RuleResult("division", False, _problems(problems) or "no measured records")
    return RuleResult("division", True, f"all {n} records closed; each model is benchkit's own build, rebuilt here")


def _rule_submitter(b: _Bundle, opts) -> RuleResult:
    """A system file named the submitter, the system and its availability."""
    need = ("submitter", "system_name", "status")
    bad = sorted({f"{r.cell_id} (no {', '.join(k for k in need if not getattr(r.system, k))})"
                  for r in b.records.values() if not all(getattr(r.system, k) for k in need)})
    if not b.records:
        return RuleResult("submitter", False, "no readable records")
    if bad:
        return RuleResult("submitter", False, "no system file (run.system_file or --system-file): " + _problems(bad))
    r = next(iter(b.records.values()))
    return RuleResult("submitter", True, f"{r.system.submitter}: {r.system.system_name} ({r.system.status})")


def _rule_stability(b: _Bundle, opts) -> RuleResult:
    """The machine's state was read around every measurement, and nothing throttled or drifted."""
    problems, n = [], 0
    for r in _measured(b):
        n += 1
        if r.stability is None:
            problems.append(f"{r.cell_id}: no stability block")
        elif r.stability.flags:
            problems.append(f"{r.cell_id}: {r.stability.flags[0]}")
    if problems or n == 0:
        return RuleResult("stability", False, _problems(problems) or "no measured records")
    return RuleResult("stability", True, f"no stability flag in {n} records")


RULES: tuple[tuple[str, Rule, str], ...] = (
    ("archive", _rule_archive, "a .tar.gz of regular files under one folder, nothing escaping it"),
    ("layout", _rule_layout, "bundle.json, spec, records, system, models, adapters, accuracy and manifest present"),
    ("manifest", _rule_manifest, "every file listed in MANIFEST.sha256 with its SHA-256, nothing more or less"),
    ("key", _rule_key, "the manifest is signed, by --pubkey (else UNTRUSTED, unless --trust-bundle-key)"),
    ("signatures", _rule_signatures, "record signatures, where present, verify and are by the manifest's signer"),
    ("records", _rule_records, "every record parses at a supported schema version"),
    ("run", _rule_run, "every record is of one run"),
    ("spec", _rule_spec, "every record was run from the bundled spec (same name and SHA-256)"),
    ("complete", _rule_complete, "exactly one record for every cell of the spec"),
    ("profile", _rule_profile, "every record ran under the certify profile"),
    ("settings", _rule_settings, "settings from the bundled spec, at least the standard minimums, met"),
    ("samples", _rule_samples, "raw samples kept; latency statistics are what they give"),
    ("figures", _rule_figures, "counts, throughput, headline, FLOP/s, early stopping recomputed from the samples"),
    ("valid", _rule_valid, "every record is VALID"),
    ("audits", _rule_audits, "every compliance audit ran and passed"),
    ("accuracy", _rule_accuracy, "accuracy figures as declared; every accuracy gate compared and passed"),
    ("reference", _rule_reference, "the accuracy gate re-checked against a reference computed here"),
    ("division", _rule_division, "closed division; the model is benchkit's build, rebuilt here"),
    ("system", _rule_system, "all records from one system, described in system.json"),
    ("submitter", _rule_submitter, "a system file names the submitter, the system and its availability"),
    ("stability", _rule_stability, "no stability flag"),
    ("models", _rule_models, "one model SHA-256 per workload, as declared in models.json"),
    ("adapters", _rule_adapters, "adapters as declared in adapters.json, with their distributions' file hashes"),
)


def check_bundle(path: str | Path, pubkey: str | Path | None = None, require_accuracy: bool = True,
                 trust_bundle_key: bool = False) -> list[RuleResult]:
    """Apply every rule to a bundle; one result per rule, in order.

    ``require_accuracy`` is kept for old callers: a passed accuracy gate is a
    publication requirement, always checked. ``trust_bundle_key`` accepts the
    key the bundle carries when no ``pubkey`` is given (integrity only).
    """
    import tempfile

    b = read_bundle(path)
    _load_records(b)
    opts: dict[str, Any] = {"trust_bundle_key": trust_bundle_key}
    if pubkey is not None:
        from benchkit.results.trust import load_public_key

        opts["pubkey"] = load_public_key(pubkey)
    out = []
    # Models are rebuilt, and references computed, in a fresh folder: nothing cached on this machine is trusted.
    with tempfile.TemporaryDirectory(prefix="benchkit-check-bundle-") as work:
        opts["workdir"] = Path(work)
        for name, rule, _ in RULES:
            try:
                out.append(rule(b, opts))
            except Exception as e:  # noqa: BLE001 - a rule that cannot run on a damaged bundle fails, it does not crash
                out.append(RuleResult(name, False, f"could not be checked: {type(e).__name__}: {e}"))
    return out


def verdict(results: Sequence[RuleResult]) -> str:
    """PASS, FAIL, or UNTRUSTED (only the key rule failed, for want of a trusted key)."""
    failed = [r for r in results if not r.passed]
    if not failed:
        return "PASS"
    if [r.rule for r in failed] == ["key"] and failed[0].detail.startswith("UNTRUSTED"):
        return "UNTRUSTED"
    return "FAIL"


__all__ = ["BUNDLE_FORMAT_VERSION", "BundleError", "RULES", "RuleResult", "adapter_distribution", "check_bundle",
           "make_bundle", "manifest_text", "read_bundle", "verdict", "write_tar"]
