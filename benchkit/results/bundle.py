"""Certification bundles: pack a submission, and check one the way MLPerf's submission checker does.

``benchkit bundle RESULTS... -o bundle.tar.gz`` packs, under one top folder::

    bundle.json         what this is: format version, spec name and SHA-256, record count, creation time
    spec/<name>.yaml    the spec the records were run from (byte-exact)
    records/<spec>/<run>/<cell>.json  the records, byte-exact, with <cell>.json.sig where signed
    system.json         the system description(s) of the records
    models.json         every workload's model: name, SHA-256, file, precision, FLOPs
    adapters.json       every backend: adapter, adapter version, runtime version, device, options
    accuracy.json       the accuracy gate and audit figures records carry (``accuracy``, ``audits``), where present
    MANIFEST.sha256     SHA-256 of every other file (``sha256sum -c`` format)
    MANIFEST.sha256.sig optional: an Ed25519 signature over the manifest (``--key``)

The archive is reproducible: members sorted, owner and times fixed.

``benchkit check-bundle bundle.tar.gz`` reads it without extracting to disk
and applies each rule below, printing PASS or FAIL with the reason; it exits
1 if any rule failed and never prints an overall OK in that case.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from benchkit.errors import BenchkitError

BUNDLE_FORMAT_VERSION = 1  # 1: first version
TOP = "benchkit-bundle"
MANIFEST = "MANIFEST.sha256"
REQUIRED = ("bundle.json", MANIFEST, "system.json", "models.json", "adapters.json", "accuracy.json")


class BundleError(BenchkitError):
    """Records or a spec that cannot make a bundle, or a file that is not a bundle at all."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _dump(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()


# --------------------------------------------------------------------------- making a bundle


def _find_spec(spec_name: str, spec_sha256: str, given: Path | None) -> tuple[str, bytes]:
    from benchkit.spec import find_bundled_spec

    candidates = [given] if given else [p for p in (find_bundled_spec(spec_name),) if p]
    for p in candidates:
        data = Path(p).read_bytes()
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
    recs = [(p, p.read_bytes(), records.load(p)) for p in files]
    names = {(r.spec_name, r.spec_sha256) for _, _, r in recs}
    if len(names) != 1:
        raise BundleError("a bundle holds the records of one spec; these come from "
                          + ", ".join(f"{n} ({h[:12]}…)" for n, h in sorted(names)))
    ((spec_name, spec_sha),) = names
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
            members[rel + ".sig"] = sig.read_bytes()
        doc = json.loads(data)
        systems[_system_key(r.system.model_dump())] = r.system.model_dump()
        if r.workload is not None:
            w = r.workload
            models[f"{w.name}:{w.model_sha256}"] = {"workload": w.name, "model_sha256": w.model_sha256,
                                                    "model_file": w.model_file, "graph_precision": w.graph_precision,
                                                    "variant": w.variant, "source": w.source, "flops": w.flops}
        if r.backend is not None:
            b = r.backend
            adapters[b.id] = {"backend": b.id, "name": b.name, "runtime_version": b.version, "adapter": b.adapter,
                              "adapter_version": b.adapter_version, "device": b.device, "options": b.options}
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
        "spec_file": f"spec/{spec_file}", "records": len(recs),
    })
    members[MANIFEST] = manifest_text(members).encode()
    if key is not None:
        from benchkit.results.trust import load_private_key, sign_bytes

        members[MANIFEST + ".sig"] = _dump(sign_bytes(members[MANIFEST], None, load_private_key(key), MANIFEST))
    return write_tar(members, Path(out), int(created.timestamp()))


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
    tmp = out.with_name(out.name + ".part")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(out)  # readers never see half a bundle
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
        return json.loads(self.members[name])


def read_bundle(path: str | Path) -> _Bundle:
    """Members of a bundle, read into memory (never extracted); unsafe entries are recorded as problems."""
    p = Path(path)
    b = _Bundle()
    try:
        tar = tarfile.open(p, mode="r:gz")
    except FileNotFoundError:
        raise BundleError(f"{p}: no such bundle") from None
    except (tarfile.TarError, OSError, EOFError) as e:
        raise BundleError(f"{p}: not a .tar.gz bundle ({e})") from None
    with tar:
        try:
            entries = tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise BundleError(f"{p}: damaged archive ({e})") from None
        for m in entries:
            pp = PurePosixPath(m.name)
            if pp.is_absolute() or ".." in pp.parts or not pp.parts or pp.parts[0] != TOP:
                b.problems.append(f"{m.name}: outside the {TOP}/ folder")
                continue
            if m.isdir():
                continue
            if not m.isfile():
                b.problems.append(f"{m.name}: not a regular file (links and devices are not allowed)")
                continue
            name = "/".join(pp.parts[1:])
            if name in b.members:
                b.problems.append(f"{m.name}: appears twice")
            b.members[name] = tar.extractfile(m).read()
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
    except json.JSONDecodeError as e:
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
                b.records[name] = records.parse(json.loads(data), name)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
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
    except (KeyError, json.JSONDecodeError):
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
    except (KeyError, json.JSONDecodeError):
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
    except (KeyError, TypeError, json.JSONDecodeError):
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
    except (KeyError, TypeError, json.JSONDecodeError):
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
    if problems:
        return RuleResult("adapters", False, "; ".join(sorted(set(problems))[:4]))
    return RuleResult("adapters", True, f"{len(seen)} backend(s): versions and devices as declared")


def _rule_accuracy(b: _Bundle, opts) -> RuleResult:
    try:
        declared = {(a["cell_id"], a["run_id"]): a for a in b.json("accuracy.json")}
    except (KeyError, TypeError, json.JSONDecodeError):
        return RuleResult("accuracy", False, "accuracy.json missing or malformed")
    problems, passed, unchecked, without = [], 0, [], []
    for name, r in b.records.items():
        doc = json.loads(b.members[name])
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
    if opts.get("require_accuracy"):
        if without:
            problems.append(f"no accuracy figures in {len(without)} record(s): {', '.join(sorted(without)[:3])}")
        if unchecked:
            problems.append(f"accuracy not compared in {len(unchecked)} record(s): {', '.join(unchecked[:3])}")
    if problems:
        return RuleResult("accuracy", False, "; ".join(problems[:4]))
    notes = [f"{passed} record(s) passed the accuracy gate"]
    if unchecked:
        notes.append(f"{len(unchecked)} not compared")
    if without:
        notes.append(f"{len(without)} carry no accuracy figures")
    if unchecked or without:
        notes.append("--require-accuracy fails those")
    return RuleResult("accuracy", True, "; ".join(notes))


def _rule_signatures(b: _Bundle, opts) -> RuleResult:
    sigs = {n: d for n, d in b.members.items() if n.endswith(".sig")}
    pub = opts.get("pubkey")
    if not sigs:
        if pub is not None:
            return RuleResult("signatures", False, "--pubkey given but nothing in the bundle is signed")
        return RuleResult("signatures", True, "nothing signed (no .sig files)")
    from benchkit.results.trust import TrustError, verify_bytes

    problems, n = [], 0
    for name, data in sorted(sigs.items()):
        target = name[: -len(".sig")]
        if target not in b.members:
            problems.append(f"{name}: signs a file that is not in the bundle")
            continue
        try:
            sig = json.loads(data)
            if sig.get("format") != "benchkit-signature":
                raise ValueError("not a benchkit signature")
            v = verify_bytes(b.members[target], sig, target, pub)
        except (ValueError, KeyError, TrustError) as e:
            problems.append(f"{name}: unreadable ({e})")
            continue
        n += 1
        problems += [f"{target}: {c.detail}" for c in v.checks if not c.passed]
    if pub is not None:
        unsigned = [n for n in b.records if n + ".sig" not in b.members]
        problems += [f"{u}: not signed" for u in unsigned[:3]]
    if problems:
        return RuleResult("signatures", False, "; ".join(problems[:4]))
    who = " with the trusted key" if pub is not None else " (integrity only: pass --pubkey to check the signer)"
    return RuleResult("signatures", True, f"{n} signature(s) verified{who}")


RULES: tuple[tuple[str, Rule, str], ...] = (
    ("archive", _rule_archive, "a .tar.gz of regular files under one folder, nothing escaping it"),
    ("layout", _rule_layout, "bundle.json, spec, records, system, models, adapters, accuracy and manifest present"),
    ("manifest", _rule_manifest, "every file listed in MANIFEST.sha256 with its SHA-256, nothing more or less"),
    ("records", _rule_records, "every record parses at a supported schema version"),
    ("valid", _rule_valid, "every record is VALID"),
    ("spec", _rule_spec, "every record was run from the bundled spec (same name and SHA-256)"),
    ("complete", _rule_complete, "exactly one record for every cell of the spec"),
    ("samples", _rule_samples, "reported latency statistics are what the raw samples give"),
    ("system", _rule_system, "all records from one system, described in system.json"),
    ("models", _rule_models, "one model SHA-256 per workload, as declared in models.json"),
    ("adapters", _rule_adapters, "adapter and runtime versions and devices as declared in adapters.json"),
    ("accuracy", _rule_accuracy, "accuracy figures as declared; no accuracy gate or audit failed"),
    ("signatures", _rule_signatures, "every .sig verifies (and is by --pubkey, when given)"),
)


def check_bundle(path: str | Path, pubkey: str | Path | None = None,
                 require_accuracy: bool = False) -> list[RuleResult]:
    """Apply every rule to a bundle; one result per rule, in order."""
    b = read_bundle(path)
    _load_records(b)
    opts: dict[str, Any] = {"require_accuracy": require_accuracy}
    if pubkey is not None:
        from benchkit.results.trust import load_public_key

        opts["pubkey"] = load_public_key(pubkey)
    out = []
    for name, rule, _ in RULES:
        try:
            out.append(rule(b, opts))
        except Exception as e:  # noqa: BLE001 - a rule that cannot run on a damaged bundle fails, it does not crash
            out.append(RuleResult(name, False, f"could not be checked: {type(e).__name__}: {e}"))
    return out


__all__ = ["BUNDLE_FORMAT_VERSION", "BundleError", "RULES", "RuleResult", "check_bundle", "make_bundle",
           "manifest_text", "read_bundle", "write_tar"]
