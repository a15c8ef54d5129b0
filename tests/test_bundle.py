"""Certification bundles: a publishable bundle passes every rule; each rule fails on purpose; each tampering fails.

The bundle under test is :func:`real_records.publishable_run`: a real certify run (audits, accuracy gate with its
kept outputs, division, system file, adapter) whose measurement is stretched to the publication minimums.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections.abc import Callable

import numpy as np
import pytest
from real_records import publishable_run
from record_factory import make_record

from benchkit import cli, stats
from benchkit.checks import accuracy
from benchkit.results import records
from benchkit.results.bundle import MANIFEST, RULES, TOP, BundleError, adapter_distribution, check_bundle, make_bundle, \
    manifest_text, read_bundle, verdict, write_tar
from benchkit.results.trust import keygen, load_private_key, sign_bytes, sign_record

SIG = MANIFEST + ".sig"


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A bundle signed by the lab (manifest and records), the lab's key pair, and another party's key."""
    tmp = tmp_path_factory.mktemp("bundle")
    spec, run_dir = publishable_run()
    priv, pub = keygen(tmp / "lab")
    mallory, mallory_pub = keygen(tmp / "mallory")
    signed_dir = tmp / "signed" / run_dir.name
    shutil.copytree(run_dir, signed_dir)
    for p in sorted(signed_dir.glob("*.json")):
        sign_record(p, priv)
    bundle = make_bundle([signed_dir], tmp / "signed.tar.gz", spec=spec, key=priv)
    return {"bundle": bundle, "priv": priv, "pub": pub, "mallory": mallory, "mallory_pub": mallory_pub,
            "spec": spec, "run_dir": run_dir}


def failing(path, **kw) -> set[str]:
    return {r.rule for r in check_bundle(path, **kw) if not r.passed}


def detail(path, rule, **kw) -> str:
    return {r.rule: r for r in check_bundle(path, **kw)}[rule].detail


def resign(members: dict[str, bytes], key) -> None:
    """Re-hash the manifest and sign it with `key` (None: leave it unsigned)."""
    members[MANIFEST] = manifest_text(members).encode()
    members.pop(SIG, None)
    if key is not None:
        members[SIG] = (json.dumps(sign_bytes(members[MANIFEST], None, load_private_key(key), MANIFEST)) + "\n").encode()


def mutate(src, dst, change: Callable[[dict[str, bytes]], None], key="lab", made=None):
    """Copy a bundle with `change` applied; by default re-hashed and re-signed by the lab (a dishonest submitter).

    `key`: "lab", a key path, None (re-hashed, unsigned) or False (manifest left exactly as it was).
    """
    members = dict(read_bundle(src).members)
    change(members)
    if key is not False:
        resign(members, made["priv"] if key == "lab" else key)
    return write_tar(members, dst, 0)


def record_names(members) -> list[str]:
    return sorted(n for n in members if n.startswith("records/") and n.endswith(".json"))


def edit_record(members, fn, which: int | None = 0) -> None:
    """Apply `fn` to one record (by index) or to all (None); drop the edited records' own signatures."""
    names = record_names(members)
    for name in names if which is None else [names[which]]:
        doc = json.loads(members[name])
        fn(doc)
        members[name] = (json.dumps(doc, indent=1) + "\n").encode()
        members.pop(name + ".sig", None)


def edit_json(members, name, fn) -> None:
    doc = json.loads(members[name])
    fn(doc)
    members[name] = json.dumps(doc, indent=1).encode()


def sync_accuracy_json(members) -> None:
    """accuracy.json copies each record's accuracy and audits blocks: keep it consistent with edited records."""
    entries = []
    for name in record_names(members):
        d = json.loads(members[name])
        entries.append({"cell_id": d["cell_id"], "run_id": d["run_id"], "accuracy": d["accuracy"], "audits": d["audits"]})
    members["accuracy.json"] = json.dumps(entries, indent=1).encode()


# --------------------------------------------------------------------------- the publishable bundle


def test_good_bundle_passes_every_rule(made, capsys):
    results = check_bundle(made["bundle"], pubkey=made["pub"])
    assert [r.rule for r in results] == [name for name, _, _ in RULES]
    assert all(r.passed for r in results), [r for r in results if not r.passed]
    assert verdict(results) == "PASS"
    by = {r.rule: r.detail for r in results}
    assert "signed by the trusted key" in by["key"] and "2 record signature(s) verified" in by["signatures"]
    assert "re-checked against a reference computed here" in by["reference"]
    assert "rebuilt here" in by["division"] and "Example Labs" in by["submitter"]
    assert cli.main(["check-bundle", str(made["bundle"]), "--pubkey", str(made["pub"])]) == 0
    out = capsys.readouterr().out
    assert out.count("PASS  ") == len(RULES) and "FAIL" not in out and f"all {len(RULES)} rules PASS" in out
    m = read_bundle(made["bundle"]).members
    assert {"bundle.json", "system.json", "models.json", "adapters.json", "accuracy.json", MANIFEST, SIG,
            "spec/i13-certify.yaml"} <= set(m)
    assert json.loads(m["bundle.json"])["run_id"] == made["run_dir"].name
    (adapter,) = json.loads(m["adapters.json"])
    dist = adapter["distribution"]
    assert dist["module"] == "benchkit.backends.onnxruntime"
    assert "benchkit/backends/onnxruntime.py" in {f["path"] for f in dist["files"]}
    rec = json.loads(m[record_names(m)[0]])
    assert rec["samples_ns"] and rec["accuracy"]["measured_outputs"]["sampled"] is False


def test_without_a_trusted_key_the_verdict_is_untrusted(made, capsys):
    """The bundle's own key proves nothing: anyone can re-sign a bundle."""
    results = check_bundle(made["bundle"])
    assert [r.rule for r in results if not r.passed] == ["key"] and verdict(results) == "UNTRUSTED"
    assert cli.main(["check-bundle", str(made["bundle"])]) == 1
    out = capsys.readouterr().out
    assert "UNTRUSTED" in out and "--pubkey" in out and "rules PASS" not in out
    # An explicit, documented opt-in: integrity only.
    assert not failing(made["bundle"], trust_bundle_key=True)
    assert cli.main(["check-bundle", str(made["bundle"]), "--trust-bundle-key"]) == 0
    assert "INSECURE" in capsys.readouterr().out


# --------------------------------------------------------------------------- each rule fails on purpose


def _two_runs(m) -> None:
    """One cell's record replaced by the same cell from another run."""
    name = record_names(m)[0]
    doc = json.loads(m.pop(name))
    m.pop(name + ".sig", None)
    doc["run_id"] = "20260101T000000Z-other0"
    parts = name.split("/")
    m["/".join(parts[:2] + [doc["run_id"]] + parts[3:])] = (json.dumps(doc, indent=1) + "\n").encode()
    sync_accuracy_json(m)


def _double_throughput(d) -> None:
    m = d["metrics"]
    for k in ("throughput_per_s", "queries_per_s", "achieved_flops_per_s"):
        m[k] *= 2
    m["headline"]["value"] *= 2


def _outputs_of_a_cheat(d) -> None:
    """Kept outputs replaced by bf16-rounded ones, self-consistent (digest, encoding), figures left at 0.0."""
    from fakes.benchkit_cheating_adapters import _bf16

    stored = records.StoredOutputs.model_validate(d["accuracy"]["measured_outputs"])
    outs = [[_bf16(a.copy()) + np.float32(1e-3) for a in call] for call in accuracy.load_outputs(stored)]
    again = accuracy.store_outputs(outs, [], 0).model_dump()
    again["inputs_sha256"] = stored.inputs_sha256
    d["accuracy"]["measured_outputs"] = again


def _accuracy_json(m) -> None:
    run_id = json.loads(m[record_names(m)[0]])["run_id"]
    edit_json(m, "accuracy.json", lambda d: d.append({"cell_id": "tiny-add__onnxruntime__offline", "run_id": run_id,
                                                      "accuracy": {"passed": True}}))


def _adapter_hash(m) -> None:
    def fn(d):
        d[0]["distribution"]["files"][0]["sha256"] = "0" * 64
    edit_json(m, "adapters.json", fn)


def _no_submitter(m) -> None:
    edit_record(m, lambda d: d["system"].update(submitter=None), None)


CASES: dict[str, tuple[Callable[[dict[str, bytes]], None], set[str]]] = {
    # rule: (the planted fault, other rules it knocks on)
    "layout": (lambda m: m.pop("models.json"), {"models"}),
    "signatures": (lambda m: m.update({n: m[n].replace(b'"signature": "', b'"signature": "AAAA')
                                       for n in m if n.endswith(".json.sig")}), set()),
    "records": (lambda m: edit_record(m, lambda d: d.update(schema_version=99)), {"complete"}),
    "run": (_two_runs, set()),
    "spec": (lambda m: m.update({"spec/i13-certify.yaml": m["spec/i13-certify.yaml"] + b"# edited\n"}), set()),
    "complete": (lambda m: (m.pop(record_names(m)[0] + ".sig"), m.pop(record_names(m)[0]), sync_accuracy_json(m)),
                 set()),
    "profile": (lambda m: edit_record(m, lambda d: d["spec"].update(profile="standard"), None), set()),
    "settings": (lambda m: edit_record(m, lambda d: d["scenario"]["settings"].update(min_query_count=100)), set()),
    "samples": (lambda m: edit_record(m, lambda d: d["metrics"]["latency_ns"].update(p99=1)), set()),
    "figures": (lambda m: edit_record(m, _double_throughput), set()),
    "valid": (lambda m: edit_record(m, lambda d: d["validity"].update(valid=False, reasons=["planted"])), set()),
    "audits": (lambda m: (edit_record(m, lambda d: d["audits"].update(repeated_input=None)), sync_accuracy_json(m)),
               set()),
    "accuracy": (_accuracy_json, set()),
    "reference": (lambda m: (edit_record(m, _outputs_of_a_cheat), sync_accuracy_json(m)), set()),
    "division": (lambda m: edit_record(m, lambda d: d["division"].update(name="open", reasons=["planted"])), set()),
    "system": (lambda m: edit_record(m, lambda d: d["system"].update(cpu_count=128)), set()),
    "submitter": (_no_submitter, set()),
    "stability": (lambda m: edit_record(m, lambda d: d["stability"]["flags"].append("cpu0 throttled")), set()),
    "models": (lambda m: edit_json(m, "models.json", lambda d: d[0].update(model_sha256="0" * 64)), set()),
    "adapters": (_adapter_hash, set()),
}


@pytest.mark.parametrize("rule", sorted(CASES))
def test_each_rule_fails_on_purpose(made, tmp_path, rule):
    """The lab itself plants each fault and re-signs the manifest: only the rule for that fault fails."""
    change, knock_on = CASES[rule]
    bad = mutate(made["bundle"], tmp_path / "b.tar.gz", change, made=made)
    got = failing(bad, pubkey=made["pub"])
    assert rule in got, got
    assert got - {rule} <= knock_on, got


def test_archive_rule(made, tmp_path, capsys):
    # write_tar puts everything under TOP/: build this one by hand with an escaping member and a link.
    bad = tmp_path / "b.tar.gz"
    members = read_bundle(made["bundle"]).members
    with tarfile.open(bad, "w:gz") as tar:
        for name, data in list(members.items()) + [("../evil.json", b"{}")]:
            info = tarfile.TarInfo(name if name.startswith("..") else f"{TOP}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo(f"{TOP}/link.json")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    assert failing(bad, pubkey=made["pub"]) == {"archive"}
    assert cli.main(["check-bundle", str(bad), "--pubkey", str(made["pub"])]) == 1
    out = capsys.readouterr().out
    assert "FAIL  archive" in out and "FAILED:" in out and "rules PASS" not in out


# --------------------------------------------------------------------------- tampering


def test_edited_and_resigned_by_another_key(made, tmp_path, capsys):
    """Mallory doubles a throughput and re-signs the manifest and the records with a key of her own."""
    def change(m):
        edit_record(m, _double_throughput)
        for name in record_names(m):
            m[name + ".sig"] = json.dumps(sign_bytes(m[name], json.loads(m[name]), load_private_key(made["mallory"]),
                                                     name.rsplit("/", 1)[1])).encode()
    bad = mutate(made["bundle"], tmp_path / "mallory.tar.gz", change, key=made["mallory"], made=made)
    assert {"key", "signatures", "figures"} <= failing(bad, pubkey=made["pub"])
    assert "not with the trusted key" in detail(bad, "key", pubkey=made["pub"])
    # Without --pubkey it is not a pass: UNTRUSTED at best, and here the figures fail anyway.
    assert verdict(check_bundle(bad)) == "FAIL" and cli.main(["check-bundle", str(bad)]) == 1
    # Even a reviewer who trusts the bundle's key sees the doubled figure.
    assert failing(bad, trust_bundle_key=True) == {"figures"}
    capsys.readouterr()


@pytest.mark.parametrize("how", ["duration halved", "samples duplicated"])
def test_throughput_doubled_consistently_and_resigned_fails_recomputation(made, tmp_path, how):
    """A dishonest submitter, holding the trusted key, doubles a throughput and makes every stated figure agree."""
    def stretch(d):
        m, x = d["metrics"], np.asarray(d["samples_ns"], dtype=np.int64)
        if how == "duration halved":
            m["duration_ns"] //= 2
        else:
            x = np.concatenate([x, x])
            d["samples_ns"] = x.tolist()
            m.update(count=int(x.size), sample_count=int(x.size) * d["workload"]["effective_batch_size"],
                     latency_ns=stats.summarize(x).model_dump())
        thr = stats.throughput_per_s(m["sample_count"], m["duration_ns"])
        m.update(throughput_per_s=thr, queries_per_s=stats.throughput_per_s(m["count"], m["duration_ns"]),
                 achieved_flops_per_s=d["workload"]["flops"] * thr)
        m["headline"]["value"] = thr
        d["audits"]["alternate_seed"]["figures"]["value"] = thr

    def change(m):
        names = record_names(m)
        edit_record(m, stretch, next(i for i, n in enumerate(names) if n.endswith("offline.json")))
        sync_accuracy_json(m)
    bad = mutate(made["bundle"], tmp_path / "double.tar.gz", change, made=made)
    # Halved, the duration is also below the minimum the settings ask for.
    assert failing(bad, pubkey=made["pub"]) == ({"figures", "settings"} if how == "duration halved" else {"figures"})
    assert "shorter than its queries back to back" in detail(bad, "figures", pubkey=made["pub"])


def test_files_added_or_removed(made, tmp_path):
    src = made["bundle"]
    # Added or removed, the manifest left as it was: listed files are missing or unlisted.
    added = mutate(src, tmp_path / "a1.tar.gz", lambda m: m.update({"extra.txt": b"hi"}), key=False)
    assert failing(added, pubkey=made["pub"]) == {"manifest"}
    removed = mutate(src, tmp_path / "r1.tar.gz", lambda m: m.pop("system.json"), key=False)
    assert {"manifest", "layout"} <= failing(removed, pubkey=made["pub"])
    # ... the manifest re-hashed to match, but the signature is the lab's over the old manifest.
    members = dict(read_bundle(src).members)
    old_sig = members[SIG]

    def rehash_keep_sig(change):
        def fn(m):
            change(m)
            m[MANIFEST] = manifest_text(m).encode()
            m[SIG] = old_sig
        return fn
    added = mutate(src, tmp_path / "a2.tar.gz", rehash_keep_sig(lambda m: m.update({"extra.txt": b"hi"})), key=False)
    assert failing(added, pubkey=made["pub"]) == {"key"}
    assert "content changed" in detail(added, "key", pubkey=made["pub"])
    removed = mutate(src, tmp_path / "r2.tar.gz", rehash_keep_sig(
        lambda m: (m.pop(record_names(m)[0] + ".sig"), m.pop(record_names(m)[0]))), key=False)
    assert {"key", "complete"} <= failing(removed, pubkey=made["pub"])
    # No manifest signature at all.
    unsigned = mutate(src, tmp_path / "u.tar.gz", lambda m: None, key=None, made=made)
    assert failing(unsigned, pubkey=made["pub"]) == {"key"}
    assert "the manifest is not signed" in detail(unsigned, "key", pubkey=made["pub"])


def test_two_runs_mixed(made, tmp_path):
    bad = mutate(made["bundle"], tmp_path / "mixed.tar.gz", _two_runs, made=made)
    assert failing(bad, pubkey=made["pub"]) == {"run"}
    assert "records of 2 runs" in detail(bad, "run", pubkey=made["pub"])
    # make_bundle refuses them in the first place.
    other = tmp_path / "other" / "run2"
    shutil.copytree(made["run_dir"], other)
    p = sorted(other.glob("*.json"))[0]
    p.write_text(p.read_text().replace(made["run_dir"].name, "20260101T000000Z-other0"))
    with pytest.raises(BundleError, match="records of one run"):
        make_bundle([made["run_dir"], p], tmp_path / "x.tar.gz", spec=made["spec"])


def test_a_reference_poisoned_at_the_submitter_is_caught_by_the_reviewer(made, tmp_path):
    """A record whose gate passed against a poisoned reference (errors 0.0) keeps the outputs that betray it."""
    bad = mutate(made["bundle"], tmp_path / "poisoned.tar.gz",
                 lambda m: (edit_record(m, _outputs_of_a_cheat), sync_accuracy_json(m)), made=made)
    why = detail(bad, "reference", pubkey=made["pub"])
    assert "fail against onnxruntime" in why and "exceeds" in why


def test_accuracy_rule(made, tmp_path):
    """A failed gate, or one that compared nothing, fails: a passed gate is a publication requirement."""
    def set_accuracy(acc_fn):
        def fn(m):
            edit_record(m, lambda d: d.update(accuracy=acc_fn(d["accuracy"])))
            sync_accuracy_json(m)
        return fn

    failed = mutate(made["bundle"], tmp_path / "acc1.tar.gz", set_accuracy(
        lambda a: {**a, "passed": False, "failures": ["max_abs_error 0.5 > 1e-05"]}), made=made)
    assert failing(failed, pubkey=made["pub"]) == {"accuracy"}
    assert "accuracy gate failed (max_abs_error 0.5 > 1e-05)" in detail(failed, "accuracy", pubkey=made["pub"])
    skipped = mutate(made["bundle"], tmp_path / "acc2.tar.gz", set_accuracy(
        lambda a: {**a, "passed": None, "skipped": "no reference available"}), made=made)
    assert failing(skipped, pubkey=made["pub"]) == {"accuracy"}
    assert "accuracy not compared" in detail(skipped, "accuracy", pubkey=made["pub"])


def test_a_record_without_kept_outputs_is_not_rechecked(made, tmp_path):
    def fn(m):
        edit_record(m, lambda d: d["accuracy"].update(measured_outputs=None))
        sync_accuracy_json(m)
    bad = mutate(made["bundle"], tmp_path / "noout.tar.gz", fn, made=made)
    assert failing(bad, pubkey=made["pub"]) == {"reference"}
    assert "keeps no outputs of the gate" in detail(bad, "reference", pubkey=made["pub"])


# --------------------------------------------------------------------------- making bundles


def test_bundle_refuses_what_it_cannot_certify(made, tmp_path):
    spec, run_dir = made["spec"], made["run_dir"]
    other = records.save(make_record(spec_name="another"), tmp_path / "x" / "o.json")
    with pytest.raises(BundleError, match="records of one spec"):
        make_bundle([run_dir, other], tmp_path / "b.tar.gz", spec=spec)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(spec.read_text() + "# not the same bytes\n")
    with pytest.raises(BundleError, match="is not that of the spec the records were run from"):
        make_bundle([run_dir], tmp_path / "b.tar.gz", spec=wrong)
    with pytest.raises(BundleError, match="pass the file the records were run from with --spec"):
        make_bundle([run_dir], tmp_path / "b.tar.gz")
    bare = tmp_path / "bare" / "r.json"
    bare.parent.mkdir()
    doc = json.loads(sorted(run_dir.glob("*.json"))[0].read_text())
    doc["samples_ns"] = None
    bare.write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="no raw samples"):
        make_bundle([bare], tmp_path / "b.tar.gz", spec=spec)
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tarball")
    assert cli.main(["check-bundle", str(tmp_path / "junk.tar.gz")]) == 2


def test_adapter_distribution_from_record_and_edited_installs(tmp_path, monkeypatch):
    """An installed adapter is hashed from its RECORD, each file checked; one edited after install is refused."""
    import base64
    import hashlib
    import importlib

    site = tmp_path / "site"
    pkg = site / "acme_adapter"
    pkg.mkdir(parents=True)
    code = b"from benchkit.backends.null import NullBackend as AcmeBackend\n"
    (pkg / "__init__.py").write_bytes(code)
    info = site / "acme_adapter-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-adapter\nVersion: 1.2\n")
    (info / "entry_points.txt").write_text("[benchkit.backends]\nacme = acme_adapter:AcmeBackend\n")
    digest = base64.urlsafe_b64encode(hashlib.sha256(code).digest()).rstrip(b"=").decode()
    (info / "RECORD").write_text(f"acme_adapter/__init__.py,sha256={digest},{len(code)}\n"
                                 "acme_adapter-1.2.dist-info/RECORD,,\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    d = adapter_distribution("acme")
    assert (d["name"], d["version"], d["files_from"], d["module"]) == ("acme-adapter", "1.2", "RECORD", "acme_adapter")
    assert d["files"] == [{"path": "acme_adapter/__init__.py", "sha256": hashlib.sha256(code).hexdigest()}]
    (pkg / "__init__.py").write_bytes(code + b"# patched after install\n")
    with pytest.raises(BundleError, match="differ from its RECORD"):
        adapter_distribution("acme")
    with pytest.raises(BundleError, match="not installed here"):
        adapter_distribution("no-such-adapter")
