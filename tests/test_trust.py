"""Signatures: keygen, sign, verify; every one-byte edit of a signed record is caught."""

from __future__ import annotations

import json
import stat
import sys

import pytest
from record_factory import lognormal_ns, make_record

from benchkit import cli
from benchkit.results import records
from benchkit.results.trust import (
    TrustError,
    keygen,
    load_private_key,
    load_public_key,
    read_signature,
    sign_bytes,
    sign_record,
    verify_bytes,
    verify_record,
)


@pytest.fixture
def signed(tmp_path):
    """A small real-shaped record (40 samples, ~4 KB), signed; and the key pair."""
    priv, pub = keygen(tmp_path / "keys" / "lab")
    rec = records.save(make_record(lognormal_ns(40, seed=9)), tmp_path / "r.json")
    sig = sign_record(rec, priv)
    return rec, sig, priv, pub


def test_keygen(tmp_path):
    priv, pub = keygen(tmp_path / "k")
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert pub.name == "k.pub" and b"BEGIN PUBLIC KEY" in pub.read_bytes()
    with pytest.raises(TrustError, match="already exists"):
        keygen(tmp_path / "k")
    keygen(tmp_path / "k", force=True)
    with pytest.raises(TrustError, match="not an unencrypted PEM private key"):
        load_private_key(pub)


def test_sign_and_verify(signed):
    rec, sig, _, pub = signed
    doc = read_signature(sig)
    assert doc["algorithm"] == "ed25519" and doc["signed"] == "canonical-json" and doc["subject"] == "r.json"
    v = verify_record(rec)
    assert v.ok and not v.trusted_key and [c.name for c in v.checks] == ["content", "file", "signature"]
    v = verify_record(rec, pub)
    assert v.ok and v.trusted_key and "key" in [c.name for c in v.checks]


def test_every_one_byte_edit_is_caught(signed):
    """Flip each byte of the record in turn: verification fails every time.

    Where the edit still leaves valid JSON (a digit, a letter in a string or
    key), the cryptographic check itself fails, not only the file hash.
    """
    rec, sig, _, pub = signed
    data = rec.read_bytes()
    sigdoc = read_signature(sig)
    key = load_public_key(pub)
    still_json = 0
    for i in range(len(data)):
        for mask in (0x01, 0x20):
            bad = bytearray(data)
            bad[i] ^= mask
            v = verify_bytes(bytes(bad), sigdoc, "r.json", key)
            assert not v.ok, (i, chr(data[i]), mask)
            try:
                json.loads(bytes(bad))
            except (ValueError, UnicodeDecodeError):
                continue
            still_json += 1
            failed = {c.name for c in v.checks if not c.passed}
            assert {"content", "signature"} <= failed, (i, chr(data[i]), mask, failed)
    assert still_json > len(data) // 4  # the loop really exercised content changes, not just broken JSON


def test_reformatting_is_reported_even_though_content_is_equal(signed):
    rec, *_ = signed
    rec.write_text(json.dumps(json.loads(rec.read_text()), indent=4))
    v = verify_record(rec)
    checks = {c.name: c.passed for c in v.checks}
    assert checks == {"content": True, "file": False, "signature": True} and not v.ok


def test_forged_signature_files(signed, tmp_path):
    rec, sig, _, pub = signed
    data = rec.read_bytes().replace(b'"count": 40', b'"count": 41', 1)
    rec.write_bytes(data)
    # An attacker updates both hashes in the .sig: the signature still gives it away.
    doc = read_signature(sig)
    from benchkit.results.trust import canonical_bytes, sha256_hex

    doc["content_sha256"] = sha256_hex(canonical_bytes(json.loads(data)))
    doc["file_sha256"] = sha256_hex(data)
    sig.write_text(json.dumps(doc))
    v = verify_record(rec, pub)
    assert [c.name for c in v.checks if not c.passed] == ["signature"]
    # ...or re-signs with a key of their own: fine for integrity, caught against the trusted key.
    mallory, _ = keygen(tmp_path / "mallory")
    sig.write_text(json.dumps(sign_bytes(data, json.loads(data), load_private_key(mallory), "r.json")))
    assert verify_record(rec).ok
    v = verify_record(rec, pub)
    assert not v.ok and "not with the trusted key" in [c.detail for c in v.checks if c.name == "key"][0]


def test_cli(signed, tmp_path, capsys):
    rec, sig, priv, pub = signed
    other = records.save(make_record(workload="gemm"), tmp_path / "more" / "g.json")
    assert cli.main(["sign", str(other.parent), "--key", str(priv)]) == 0
    assert cli.main(["verify", str(rec), str(other), "--pubkey", str(pub)]) == 0
    out = capsys.readouterr().out
    assert out.count("VERIFIED") == 2 and "PASS signature" in out
    rec.write_bytes(rec.read_bytes().replace(b'"valid": true', b'"valid": false'))
    assert cli.main(["verify", str(rec), str(other)]) == 1
    captured = capsys.readouterr()
    assert "ALTERED" in captured.out and "FAIL signature" in captured.out
    assert "1 of 2 record(s) failed verification" in captured.err
    sig.unlink()
    assert cli.main(["verify", str(rec)]) == 1
    assert "UNSIGNED" in capsys.readouterr().out
    assert cli.main(["sign", str(other), "--key", str(tmp_path / "nokey")]) == 2


def test_missing_cryptography_names_the_extra(signed, monkeypatch):
    rec, *_ = signed
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives", None)
    with pytest.raises(TrustError, match=r"pip install -e '.*\[sign\]'"):
        verify_record(rec)


def test_bytes_signature_as_bundles_use_it(tmp_path):
    """A bundle's manifest is signed as bytes: any edit, or another signer, fails against the trusted key."""
    lab, lab_pub = keygen(tmp_path / "lab")
    mallory, _ = keygen(tmp_path / "mallory")
    data = b"0" * 64 + b"  records/x.json\n"
    sig = sign_bytes(data, None, load_private_key(lab), "MANIFEST.sha256")
    assert sig["signed"] == "bytes"
    assert verify_bytes(data, sig, "MANIFEST.sha256", load_public_key(lab_pub)).ok
    assert not verify_bytes(data + b"1" * 64 + b"  extra\n", sig, "MANIFEST.sha256", load_public_key(lab_pub)).ok
    forged = sign_bytes(data, None, load_private_key(mallory), "MANIFEST.sha256")
    assert verify_bytes(data, forged, "MANIFEST.sha256").ok  # integrity alone: anyone can sign
    v = verify_bytes(data, forged, "MANIFEST.sha256", load_public_key(lab_pub))
    assert not v.ok and [c.name for c in v.checks if not c.passed] == ["key", "signature"]
