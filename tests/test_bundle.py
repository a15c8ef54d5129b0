"""Certification bundles: a good bundle passes every rule; each rule fails on purpose; the CLI says which."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections.abc import Callable

import pytest
from real_records import real_run
from record_factory import make_record

from benchkit import cli
from benchkit.results import records
from benchkit.results.bundle import (
    MANIFEST,
    RULES,
    TOP,
    BundleError,
    check_bundle,
    make_bundle,
    manifest_text,
    read_bundle,
    write_tar,
)
from benchkit.results.trust import keygen, sign_record


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A signed bundle of real records and their spec; the public key; an unsigned twin."""
    tmp = tmp_path_factory.mktemp("bundle")
    spec, run_dir = real_run()
    priv, pub = keygen(tmp / "lab")
    signed_dir = tmp / "signed"
    shutil.copytree(run_dir, signed_dir)
    for p in sorted(signed_dir.glob("*.json")):
        sign_record(p, priv)
    signed = make_bundle([signed_dir], tmp / "signed.tar.gz", spec=spec, key=priv)
    plain = make_bundle([run_dir], tmp / "plain.tar.gz", spec=spec)
    return signed, plain, pub, tmp


def failing(path, **kw) -> set[str]:
    return {r.rule for r in check_bundle(path, **kw) if not r.passed}


def mutate(src, dst, change: Callable[[dict[str, bytes]], None], fix_manifest: bool = True):
    """Copy a bundle with `change` applied to its members; re-hash the manifest unless told not to."""
    members = dict(read_bundle(src).members)
    change(members)
    if fix_manifest:
        members[MANIFEST] = manifest_text(members).encode()
        members.pop(MANIFEST + ".sig", None)
    return write_tar(members, dst, 0)


def first_record(members: dict[str, bytes]) -> str:
    return sorted(n for n in members if n.startswith("records/") and n.endswith(".json"))[0]


def edit_record(members, fn) -> None:
    name = first_record(members)
    doc = json.loads(members[name])
    fn(doc)
    members[name] = (json.dumps(doc, indent=1) + "\n").encode()


def edit_json(members, name, fn) -> None:
    doc = json.loads(members[name])
    fn(doc)
    members[name] = json.dumps(doc, indent=1).encode()


def test_good_bundle_passes_every_rule(made, capsys):
    signed, plain, pub, _ = made
    results = check_bundle(signed, pubkey=pub)
    assert [r.rule for r in results] == [name for name, _, _ in RULES]
    assert all(r.passed for r in results), [r for r in results if not r.passed]
    assert "3 signature(s) verified with the trusted key" in results[-1].detail
    assert not failing(plain)
    assert cli.main(["check-bundle", str(signed), "--pubkey", str(pub)]) == 0
    out = capsys.readouterr().out
    assert out.count("PASS  ") == len(RULES) and "FAIL" not in out and "all 13 rules PASS" in out
    names = set(read_bundle(signed).members)
    assert {"bundle.json", "system.json", "models.json", "adapters.json", "accuracy.json", MANIFEST,
            MANIFEST + ".sig", "spec/i6-real.yaml"} <= names
    assert sum(n.endswith(".json.sig") for n in names) == 2


def _archive(members):
    members["../evil.json"] = b"{}"


CASES = {
    "archive": _archive,
    "layout": lambda m: m.pop("models.json"),
    "records": lambda m: edit_record(m, lambda d: d.update(schema_version=99)),
    "valid": lambda m: edit_record(m, lambda d: d["validity"].update(valid=False, reasons=["planted"])),
    "spec": lambda m: m.update({"spec/i6-real.yaml": m["spec/i6-real.yaml"] + b"# edited\n"}),
    "complete": lambda m: m.pop(first_record(m)),
    "samples": lambda m: edit_record(m, lambda d: d["metrics"]["latency_ns"].update(p99=1)),
    "system": lambda m: edit_record(m, lambda d: d["system"].update(cpu_count=128)),
    "models": lambda m: edit_json(m, "models.json", lambda d: d[0].update(model_sha256="0" * 64)),
    "adapters": lambda m: edit_json(m, "adapters.json", lambda d: d[0].update(runtime_version="0.0.1")),
    "accuracy": lambda m: edit_json(m, "accuracy.json", lambda d: d.append(
        {"cell_id": "tiny-add__onnxruntime__offline", "run_id": json.loads(m[first_record(m)])["run_id"],
         "accuracy": {"passed": True}})),
}


@pytest.mark.parametrize("rule", sorted(CASES))
def test_each_rule_fails_on_purpose(made, tmp_path, rule, capsys):
    _, plain, _, _ = made
    if rule == "archive":
        # write_tar puts everything under TOP/: build this one by hand with an escaping member.
        bad = tmp_path / "b.tar.gz"
        members = read_bundle(plain).members
        with tarfile.open(bad, "w:gz") as tar:
            for name, data in list(members.items()) + [("../evil.json", b"{}")]:
                info = tarfile.TarInfo(name if name.startswith("..") else f"{TOP}/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            link = tarfile.TarInfo(f"{TOP}/link.json")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(link)
    else:
        bad = mutate(plain, tmp_path / "b.tar.gz", CASES[rule])
    got = failing(bad)
    assert rule in got, got
    # Every other rule stays green, except where the planted fault is also theirs to see: a
    # missing models.json (layout) fails models too; an unreadable record leaves its cell missing.
    knock_on = {"layout": {"models"}, "records": {"complete"}}
    assert got - {rule} <= knock_on.get(rule, set()), got
    assert cli.main(["check-bundle", str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL  {rule}" in out and "FAILED:" in out and "all 13 rules PASS" not in out


def test_manifest_rule(made, tmp_path):
    _, plain, _, _ = made
    # A file changed after packing (whitespace only: still valid JSON, every other rule still passes).
    bad = mutate(plain, tmp_path / "m1.tar.gz",
                 lambda m: m.update({"system.json": m["system.json"] + b"\n"}), fix_manifest=False)
    assert failing(bad) == {"manifest"}
    res = {r.rule: r for r in check_bundle(bad)}
    assert "system.json: SHA-256 differs from the manifest" in res["manifest"].detail
    # A file added that the manifest does not list.
    bad = mutate(plain, tmp_path / "m2.tar.gz", lambda m: m.update({"extra.txt": b"hi"}), fix_manifest=False)
    assert failing(bad) == {"manifest"}


def test_signature_rule(made, tmp_path):
    signed, _, pub, tmp = made
    # A signed record edited (a warning added), manifest re-hashed to hide it: the record's signature catches it.
    bad = mutate(signed, tmp_path / "s1.tar.gz",
                 lambda m: edit_record(m, lambda d: d["validity"]["warnings"].append("planted")))
    assert failing(bad) == {"signatures"}
    # Signed, but by someone else than the key we trust.
    _, other = keygen(tmp_path / "other")
    assert failing(signed, pubkey=other) == {"signatures"}
    # The manifest edited and its own signature left in place.
    bad = mutate(signed, tmp_path / "s2.tar.gz",
                 lambda m: m.update({MANIFEST: m[MANIFEST] + b"0" * 64 + b"  ghost\n"}), fix_manifest=False)
    assert {"manifest", "signatures"} <= failing(bad)
    # A trusted key demanded, nothing signed.
    assert failing(made[1], pubkey=pub) == {"signatures"}


def test_accuracy_rule(made, tmp_path):
    _, plain, _, _ = made
    name = first_record(read_bundle(plain).members)
    doc = json.loads(read_bundle(plain).members[name])
    assert doc["accuracy"]["passed"] is True  # real records carry the accuracy gate
    assert not failing(plain, require_accuracy=True)

    def set_accuracy(m, acc):
        edit_record(m, lambda d: d.update(accuracy=acc))
        edit_json(m, "accuracy.json", lambda entries: [e.update(accuracy=acc) for e in entries
                                                        if e["cell_id"] == doc["cell_id"]])

    # A failed gate, declared consistently in accuracy.json: the rule fails on the gate itself.
    failed_gate = {**doc["accuracy"], "passed": False, "failures": ["max_abs_error 0.5 > 1e-05"]}
    bad = mutate(plain, tmp_path / "acc1.tar.gz", lambda m: set_accuracy(m, failed_gate))
    assert failing(bad) == {"accuracy"}
    assert "accuracy gate failed (max_abs_error 0.5 > 1e-05)" in {r.rule: r for r in check_bundle(bad)}[
        "accuracy"].detail
    # A gate that compared nothing passes, unless accuracy is required.
    skipped = {**doc["accuracy"], "passed": None, "skipped": "no reference available"}
    bad = mutate(plain, tmp_path / "acc2.tar.gz", lambda m: set_accuracy(m, skipped))
    assert not failing(bad) and failing(bad, require_accuracy=True) == {"accuracy"}
    # No accuracy block at all (an older record): the same.
    bad = mutate(plain, tmp_path / "acc3.tar.gz", lambda m: (
        edit_record(m, lambda d: d.update(accuracy=None)),
        edit_json(m, "accuracy.json", lambda entries: entries.remove(
            next(e for e in entries if e["cell_id"] == doc["cell_id"])))))
    assert not failing(bad) and failing(bad, require_accuracy=True) == {"accuracy"}


def test_bundle_refuses_what_it_cannot_certify(tmp_path):
    spec, run_dir = real_run()
    other = records.save(make_record(spec_name="another"), tmp_path / "x" / "o.json")
    with pytest.raises(BundleError, match="records of one spec"):
        make_bundle([run_dir, other], tmp_path / "b.tar.gz", spec=spec)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(spec.read_text() + "# not the same bytes\n")
    with pytest.raises(BundleError, match="is not that of the spec the records were run from"):
        make_bundle([run_dir], tmp_path / "b.tar.gz", spec=wrong)
    with pytest.raises(BundleError, match="pass the file the records were run from with --spec"):
        make_bundle([run_dir], tmp_path / "b.tar.gz")
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tarball")
    assert cli.main(["check-bundle", str(tmp_path / "junk.tar.gz")]) == 2
