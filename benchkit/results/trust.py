"""Detached Ed25519 signatures over result records: keygen, sign, verify.

What is signed is the record's *canonical JSON*
(:func:`benchkit.spec.canonical_json`: keys sorted, no spaces, UTF-8) of
the JSON document in the file, so any change to any value, key or sample is
a different message. The signature file ``<record>.sig`` (JSON) also holds
the SHA-256 of that canonical content and of the file's exact bytes:
:func:`verify` checks all three, so an edit anywhere in the file - even one
that leaves the content equal, such as re-indenting - is reported.

Keys are raw Ed25519 keys in PEM files (PKCS#8 private key, mode 0600;
SubjectPublicKeyInfo public key). The signature file carries the public key
too, so a record can be checked for integrity anywhere; pass the public key
you trust (``--pubkey``) to check who signed it.

Needs the optional ``cryptography`` package: the ``sign`` extra.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchkit._fsutil import loads_json, read_bounded, write_atomic, write_error
from benchkit._install import install_hint
from benchkit.errors import BenchkitError

SIGNATURE_FORMAT_VERSION = 1  # 1: first version (ed25519 over canonical JSON; content and file SHA-256)
SIG_SUFFIX = ".sig"
MAX_KEY_BYTES = 64 << 10  # a PEM Ed25519 key is about 120 bytes
MAX_SIGNATURE_BYTES = 1 << 20  # a signature file is about 600 bytes


class TrustError(BenchkitError):
    """A key or signature file is missing, unreadable or of the wrong kind; or cryptography is not installed."""


def _crypto():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as e:
        raise TrustError(f"signing needs the cryptography package: {install_hint('sign')}") from e
    return serialization, ed25519


def canonical_bytes(document: Any) -> bytes:
    """The signed message: canonical JSON of a parsed JSON document, UTF-8."""
    from benchkit.spec import canonical_json

    return canonical_json(document).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def key_id(public_raw: bytes) -> str:
    """Short fingerprint of a public key: the first 16 hex digits of its SHA-256."""
    return sha256_hex(public_raw)[:16]


# --------------------------------------------------------------------------- keys


def keygen(path: str | Path, force: bool = False) -> tuple[Path, Path]:
    """Write a new Ed25519 private key to ``path`` (0600) and its public key to ``path.pub``."""
    serialization, ed25519 = _crypto()
    priv_path = Path(path)
    pub_path = priv_path.with_name(priv_path.name + ".pub")
    for p in (priv_path, pub_path):
        if p.exists() and not force:
            raise TrustError(f"{p}: already exists; not overwriting a key (use --force to replace it)")
    key = ed25519.Ed25519PrivateKey.generate()
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    # Both files whole or neither (a full disk leaves no empty key that a later keygen would refuse to replace, and
    # --force never pairs a new private key with the old public one): the public key is staged beside its place,
    # the private key written, then the public key renamed into place.
    staged = pub_path.with_name(f".{pub_path.name}.keygen")
    try:
        write_atomic(staged, pub)
        write_atomic(priv_path, priv, mode=0o600)
        try:
            os.replace(staged, pub_path)
        except OSError as e:
            raise write_error(pub_path, e) from None
    finally:
        staged.unlink(missing_ok=True)
    return priv_path, pub_path


def load_private_key(path: str | Path):
    serialization, ed25519 = _crypto()
    p = Path(path)
    try:
        key = serialization.load_pem_private_key(read_bounded(p, MAX_KEY_BYTES, error=TrustError, what="key"),
                                                 password=None)
    except FileNotFoundError:
        raise TrustError(f"{p}: no such key file (create one with: benchkit keygen --out {p})") from None
    except (ValueError, TypeError) as e:
        raise TrustError(f"{p}: not an unencrypted PEM private key ({e})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise TrustError(f"{p}: not an Ed25519 private key ({type(key).__name__})")
    return key


def load_public_key(path: str | Path):
    serialization, ed25519 = _crypto()
    p = Path(path)
    try:
        data = read_bounded(p, MAX_KEY_BYTES, error=TrustError, what="key")
    except FileNotFoundError:
        raise TrustError(f"{p}: no such public key file") from None
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        try:  # a private key given where the public one was expected: use its public half
            return load_private_key(p).public_key()
        except TrustError:
            raise TrustError(f"{p}: not a PEM public key") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise TrustError(f"{p}: not an Ed25519 public key ({type(key).__name__})")
    return key


def _raw_public(key) -> bytes:
    serialization, _ = _crypto()
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# --------------------------------------------------------------------------- sign / verify


def sign_bytes(data: bytes, document: Any, private_key, subject: str) -> dict[str, Any]:
    """The signature document for a file's bytes and its parsed JSON ``document`` (None: sign the bytes)."""
    from benchkit.results.records import utcnow

    message = data if document is None else canonical_bytes(document)
    pub = _raw_public(private_key.public_key())
    return {
        "format": "benchkit-signature",
        "version": SIGNATURE_FORMAT_VERSION,
        "algorithm": "ed25519",
        "signed": "bytes" if document is None else "canonical-json",
        "subject": subject,
        "content_sha256": sha256_hex(message),
        "file_sha256": sha256_hex(data),
        "public_key": base64.b64encode(pub).decode(),
        "key_id": key_id(pub),
        "signed_at": utcnow().isoformat().replace("+00:00", "Z"),
        "signature": base64.b64encode(private_key.sign(message)).decode(),
    }


def sign_record(record_path: str | Path, key_path: str | Path, out: str | Path | None = None) -> Path:
    """Sign a record file; write the detached signature to ``out`` (default ``<record>.sig``)."""
    from benchkit.results import records

    rp = Path(record_path)
    records.load(rp)  # only real records get signed
    data = read_bounded(rp, records.MAX_RECORD_BYTES, error=TrustError, what="record")
    sig = sign_bytes(data, loads_json(data), load_private_key(key_path), rp.name)
    sig_path = Path(out) if out else rp.with_name(rp.name + SIG_SUFFIX)
    records.write_atomic(sig_path, json.dumps(sig, indent=1) + "\n")
    return sig_path


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Verification:
    path: str
    key_id: str | None
    trusted_key: bool  # checked against a key the caller supplied
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.passed for c in self.checks)


def read_signature(sig_path: Path) -> dict[str, Any]:
    try:
        sig = loads_json(read_bounded(sig_path, MAX_SIGNATURE_BYTES, error=TrustError, what="signature file"))
    except FileNotFoundError:
        raise TrustError(f"{sig_path}: no signature file (sign with: benchkit sign RECORD --key KEY)") from None
    except ValueError as e:
        raise TrustError(f"{sig_path}: not a readable signature file ({e})") from None
    need = ("format", "version", "algorithm", "signed", "content_sha256", "file_sha256", "public_key", "signature")
    if not isinstance(sig, dict) or sig.get("format") != "benchkit-signature" or any(k not in sig for k in need):
        raise TrustError(f"{sig_path}: not a benchkit signature file (expected the fields {', '.join(need)})")
    if sig["version"] != SIGNATURE_FORMAT_VERSION or sig["algorithm"] != "ed25519":
        raise TrustError(f"{sig_path}: unsupported signature version {sig['version']!r} / algorithm "
                         f"{sig['algorithm']!r} (this benchkit reads version {SIGNATURE_FORMAT_VERSION}, ed25519)")
    return sig


def verify_bytes(data: bytes, sig: dict[str, Any], subject: str, pubkey=None) -> Verification:
    """Check a file's bytes against a signature document (see :func:`verify_record`)."""
    _, ed25519 = _crypto()
    from cryptography.exceptions import InvalidSignature

    checks: list[Check] = []
    if sig["signed"] == "canonical-json":
        try:
            message = canonical_bytes(loads_json(data))
        except ValueError as e:
            message = None
            checks.append(Check("content", False, f"the file is no longer valid JSON ({e})"))
    else:
        message = data
    if message is not None:
        got = sha256_hex(message)
        checks.append(Check("content", got == sig["content_sha256"],
                            "content SHA-256 matches the signed content" if got == sig["content_sha256"]
                            else f"content changed: SHA-256 {got[:16]}… is not the signed {sig['content_sha256'][:16]}…"))
    got_file = sha256_hex(data)
    checks.append(Check("file", got_file == sig["file_sha256"],
                        "file SHA-256 matches the signed file" if got_file == sig["file_sha256"]
                        else f"file bytes changed: SHA-256 {got_file[:16]}… is not the signed {sig['file_sha256'][:16]}…"))
    try:
        embedded = base64.b64decode(sig["public_key"], validate=True)
        signature = base64.b64decode(sig["signature"], validate=True)
        key = ed25519.Ed25519PublicKey.from_public_bytes(embedded)
    except (ValueError, TypeError) as e:
        checks.append(Check("signature", False, f"malformed key or signature in the signature file ({e})"))
        return Verification(subject, None, pubkey is not None, tuple(checks))
    trusted = False
    if pubkey is not None:
        trusted = True
        if _raw_public(pubkey) != embedded:
            checks.append(Check("key", False, f"signed with key {key_id(embedded)}, not with the trusted key "
                                              f"{key_id(_raw_public(pubkey))}"))
        else:
            checks.append(Check("key", True, f"signed with the trusted key {key_id(embedded)}"))
        key = pubkey
    if message is None:
        checks.append(Check("signature", False, "not checked: the content cannot be read"))
    else:
        try:
            key.verify(signature, message)
            checks.append(Check("signature", True, "Ed25519 signature over the content is valid"))
        except InvalidSignature:
            checks.append(Check("signature", False, "Ed25519 signature does not match the content"))
    return Verification(subject, key_id(embedded), trusted, tuple(checks))


def verify_record(record_path: str | Path, pubkey_path: str | Path | None = None,
                  sig_path: str | Path | None = None) -> Verification:
    """Verify a record against its detached signature: content hash, file hash, Ed25519 signature (and key)."""
    rp = Path(record_path)
    sp = Path(sig_path) if sig_path else rp.with_name(rp.name + SIG_SUFFIX)
    sig = read_signature(sp)
    from benchkit.results.records import MAX_RECORD_BYTES

    try:
        data = read_bounded(rp, MAX_RECORD_BYTES, error=TrustError, what="record")
    except FileNotFoundError:
        raise TrustError(f"{rp}: no such record file") from None
    pub = load_public_key(pubkey_path) if pubkey_path else None
    return verify_bytes(data, sig, str(rp), pub)


__all__ = ["Check", "SIG_SUFFIX", "TrustError", "Verification", "canonical_bytes", "keygen", "load_private_key",
           "load_public_key", "read_signature", "sign_bytes", "sign_record", "verify_bytes", "verify_record"]
