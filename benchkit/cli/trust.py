"""Commands that sign and check: keygen, sign, verify, bundle, check-bundle."""

from __future__ import annotations

import sys



def cmd_keygen(args) -> int:
    from benchkit.results.trust import key_id, keygen, load_public_key

    priv, pub = keygen(args.out, args.force)
    from cryptography.hazmat.primitives import serialization

    raw = load_public_key(pub).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    print(f"private key {priv} (keep it secret), public key {pub}, key id {key_id(raw)}")
    return 0


def cmd_sign(args) -> int:
    from benchkit.results import records
    from benchkit.results.trust import load_private_key, sign_record

    load_private_key(args.key)  # a bad key fails before anything is written
    for p in records.find(args.records):
        print(f"signed {p} -> {sign_record(p, args.key)}")
    return 0


def cmd_verify(args) -> int:
    """Every record is checked and reported (VERIFIED, ALTERED, UNSIGNED or UNREADABLE), then a summary; exit 1
    if any is not VERIFIED. A bad --pubkey is an error before any record is read."""
    from benchkit._format import one_line
    from benchkit.results import records
    from benchkit.results.trust import TrustError, _crypto, load_public_key, verify_record

    _crypto()  # without cryptography nothing can be checked: one error, not one per record
    if args.pubkey:
        load_public_key(args.pubkey)
    files = [p for p in records.find(args.records) if not p.name.endswith(".sig")]
    counts = {"VERIFIED": 0, "ALTERED": 0, "UNSIGNED": 0, "UNREADABLE": 0}
    for p in files:
        try:
            v = verify_record(p, args.pubkey)
        except TrustError as e:
            state = "UNSIGNED" if "no signature file" in str(e) else "UNREADABLE"
            counts[state] += 1
            print(f"{state} {one_line(p)}: {one_line(e)}")
            continue
        for c in v.checks:
            print(f"  {'PASS' if c.passed else 'FAIL'} {c.name}: {one_line(c.detail)}")
        who = f"key {v.key_id}" + ("" if v.trusted_key else " (embedded in the signature; pass --pubkey to check "
                                                            "it is a key you trust)")
        print(f"{'VERIFIED' if v.ok else 'ALTERED'} {one_line(p)} ({who})")
        counts["VERIFIED" if v.ok else "ALTERED"] += 1
    failed = len(files) - counts["VERIFIED"]
    summary = ", ".join(f"{n} {state.lower()}" for state, n in counts.items() if n) or "no records"
    print(f"{len(files)} record(s): {summary}")
    if failed:
        print(f"benchkit: {failed} of {len(files)} record(s) failed verification", file=sys.stderr)
    return 1 if failed else 0


def cmd_bundle(args) -> int:
    from benchkit.results.bundle import make_bundle

    out = make_bundle(args.results, args.output, args.spec, args.key)
    print(f"bundle {out} ({out.stat().st_size:,} bytes); check it with: benchkit check-bundle {out}")
    return 0


def cmd_check_bundle(args) -> int:
    from benchkit.results.bundle import RULES, check_bundle, verdict

    results = check_bundle(args.bundle, args.pubkey, trust_bundle_key=args.trust_bundle_key)
    width = max(len(name) for name, _, _ in RULES)
    for r in results:
        print(f"{'PASS' if r.passed else 'FAIL'}  {r.rule:<{width}}  {r.detail}")
    failed = [r.rule for r in results if not r.passed]
    v = verdict(results)
    if v == "UNTRUSTED":
        print(f"UNTRUSTED: every other rule passes, but nothing says who signed {args.bundle}; check it with "
              "--pubkey SIGNER.pub")
        return 1
    if failed:
        print(f"FAILED: {len(failed)} of {len(results)} rules ({', '.join(failed)}) in {args.bundle}")
        return 1
    trusted = "" if args.pubkey else " (INSECURE: the signer's key was taken from the bundle, --trust-bundle-key)"
    print(f"all {len(results)} rules PASS for {args.bundle}{trusted}")
    return 0
