"""Bad input, fuzzed: generated spec documents, YAML bombs, corrupted ONNX files and records always end in exit
code 2 with a one-line-headed message (or 0 when the document happens to be valid), never a traceback or a hang.

In-process through ``benchkit.cli.main`` for speed, with a fixed example budget; a few cases also through the
real command in a subprocess.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import conftest
from conftest import ROOT, write_tiny_add

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    write_tiny_add(d / "tiny.onnx")
    return d


def run_cli(*args: str) -> tuple[int, str, str]:
    r = conftest.run_cli(*args)
    return r.returncode, r.stdout, r.stderr


def assert_clean(rc: int, err: str) -> None:
    assert rc in (0, 2), err
    if rc == 2:
        assert err.startswith("benchkit: error: ") and "Traceback" not in err, err


VALID = {
    "name": "fuzzed",
    "seed": 1,
    "workloads": [{"name": "tiny", "model": "tiny.onnx", "dims": {}}],
    "backends": [{"name": "onnxruntime", "options": {"providers": ["CPUExecutionProvider"]}, "precision": "fp32"}],
    "scenarios": [{"kind": "single_stream", "min_duration_ms": 100, "min_query_count": 10},
                  {"kind": "offline", "batch_size": 4}],
    "run": {"profile": "quick", "max_memory_bytes": "1GiB", "repeats": 1, "power": {"meters": []}},
}
KEYS = ["name", "seed", "workloads", "backends", "scenarios", "run", "kind", "model", "options", "dims", "inputs",
        "shape", "batch_size", "min_duration_ms", "max_duration_ms", "min_query_count", "profile", "repeats",
        "max_memory_bytes", "power", "meters", "system_file", "precision", "label", "sha256", "variant", "params",
        "target_qps", "target_latency_ns", "idle_ms", "cell_timeout_s", "device_file", "isolation"]

scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10**40), max_value=10**40)
           | st.sampled_from([0, -1, 2**63, 2**64 + 1, 10**30, float("inf"), float("nan"), 1e308])
           | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
           | st.sampled_from(["auto", "quick", "certify", "single_stream", "offline", "server", "onnxruntime", "null",
                              "tiny.onnx", "../../etc/passwd", "/dev/zero", "8GiB", "∞", "ʎɐɯl", "\x00", "-1"]))
keys = st.sampled_from(KEYS) | st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
documents = st.recursive(scalars, lambda kids: st.lists(kids, max_size=5) | st.dictionaries(keys, kids, max_size=6),
                         max_leaves=40)


def _dump(doc, as_json: bool) -> str:
    if as_json:
        return json.dumps(doc, allow_nan=True)
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


@FUZZ
@given(doc=documents, as_json=st.booleans())
def test_random_documents(fuzz_dir, doc, as_json):
    path = fuzz_dir / "random.yaml"
    path.write_text(_dump(doc, as_json), encoding="utf-8")
    assert_clean(*_rc_err(run_cli("validate", str(path))))


def _rc_err(result):
    rc, _out, err = result
    return rc, err


@st.composite
def mutated(draw):
    """The valid spec with 1-3 random edits: replace a value, add a key, or delete one, anywhere in the tree."""
    doc = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        node, parents = doc, []
        while isinstance(node, (dict, list)) and node and draw(st.booleans()):
            k = draw(st.sampled_from(sorted(node, key=str) if isinstance(node, dict) else list(range(len(node)))))
            parents.append((node, k))
            node = node[k]
        if not parents:
            doc[draw(keys)] = draw(documents)
            continue
        container, k = parents[-1]
        action = draw(st.sampled_from(["replace", "add", "delete"]))
        if action == "replace":
            container[k] = draw(documents)
        elif action == "add" and isinstance(container, dict):
            container[draw(keys)] = draw(documents)
        elif isinstance(container, dict):
            del container[k]
        else:
            container.pop(k)
    return doc


@FUZZ
@given(doc=mutated(), as_json=st.booleans())
def test_mutated_valid_specs(fuzz_dir, doc, as_json):
    path = fuzz_dir / "mutated.yaml"
    path.write_text(_dump(doc, as_json), encoding="utf-8")
    assert_clean(*_rc_err(run_cli("validate", str(path))))


def test_the_unmutated_spec_is_valid(fuzz_dir):
    path = fuzz_dir / "valid.yaml"
    path.write_text(_dump(VALID, False))
    rc, out, err = run_cli("validate", str(path))
    assert rc == 0 and "valid: 1 workload(s)" in out, err


@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)
       | st.text(alphabet=st.sampled_from(list("[]{}:-,&*!|>'\"%@`#? \n\tab1")), max_size=300))
def test_raw_text(fuzz_dir, text):
    path = fuzz_dir / "raw.yaml"
    path.write_text(text, encoding="utf-8")
    assert_clean(*_rc_err(run_cli("validate", str(path))))


def _bomb(width: int, depth: int) -> str:
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, depth):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(width=st.integers(2, 12), depth=st.integers(2, 12))
def test_alias_bombs_of_any_shape(fuzz_dir, width, depth):
    path = fuzz_dir / "bomb.yaml"
    path.write_text(_bomb(width, depth))
    rc, _, err = run_cli("validate", str(path))
    assert rc == 2 and "Traceback" not in err
    if width ** depth > 200_000:
        assert "alias bomb" in err


ADVERSARIAL = {
    "billion_laughs": (_bomb(10, 9), "refusing what looks like an alias bomb"),
    "recursive_alias": ("name: &x [*x]\n", "YAML alias refers to itself"),
    "merge_key_bomb": ("a: &a {x: 1, y: 2}\nb: &b {<<: [*a, *a], z: *a}\n" + "".join(
        f"c{i}: &c{i} {{<<: *{'b' if i == 0 else f'c{i - 1}'}, k: [*{'b' if i == 0 else f'c{i - 1}'}] }}\n"
        for i in range(12)), ""),
    "deep_nesting": ("x: " + "[" * 5000 + "]" * 5000 + "\n", "YAML nesting"),
    "deep_but_parseable": ("x: " + "[" * 100 + "]" * 100 + "\n", "at most 64 allowed"),
    "huge_integer": ("seed: " + "9" * 6000 + "\n", "a value cannot be read"),
    "bad_timestamp": ("name: s\nseed: 2024-13-45\n", "a value cannot be read"),
    "python_object_tag": ("name: !!python/object/apply:os.system [echo hi]\n", "not valid YAML"),
    "huge_file": ("# " + "x" * (2 << 20) + "\n", "larger than 1,048,576 bytes"),
}


@pytest.mark.parametrize("case", sorted(ADVERSARIAL), ids=str)
def test_adversarial_yaml_in_process(fuzz_dir, case):
    text, expected = ADVERSARIAL[case]
    path = fuzz_dir / f"{case}.yaml"
    path.write_text(text)
    rc, _, err = run_cli("validate", str(path))
    assert rc == 2 and err.startswith("benchkit: error: ") and expected in err, err


@pytest.mark.parametrize("case", ["billion_laughs", "recursive_alias", "deep_nesting", "huge_integer"])
def test_adversarial_yaml_through_the_command(fuzz_dir, case):
    text, expected = ADVERSARIAL[case]
    path = fuzz_dir / f"sub-{case}.yaml"
    path.write_text(text)
    p = subprocess.run([sys.executable, "-m", "benchkit", "validate", str(path)], capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert p.returncode == 2 and "Traceback" not in p.stderr and expected in p.stderr, p.stderr
    assert p.stderr.startswith("benchkit: error: ")


def test_a_device_that_never_ends_is_not_read_forever():
    rc, _, err = run_cli("validate", "/dev/zero")
    assert rc == 2 and "/dev/zero: a character device, not a regular file" in err


# --------------------------------------------------------------------------- ONNX files


def _spec_for(fuzz_dir: Path, model: Path) -> Path:
    doc = copy.deepcopy(VALID)
    doc["workloads"][0]["model"] = str(model)
    p = fuzz_dir / f"spec-{model.stem}.yaml"
    p.write_text(_dump(doc, False))
    return p


def test_truncated_onnx_gives_a_clear_error(fuzz_dir):
    data = (fuzz_dir / "tiny.onnx").read_bytes()
    bad = fuzz_dir / "truncated.onnx"
    bad.write_bytes(data[: len(data) // 2])
    rc, _, err = run_cli("validate", str(_spec_for(fuzz_dir, bad)))
    assert rc == 2 and "truncated.onnx is not a valid ONNX model" in err, err
    empty = fuzz_dir / "empty.onnx"
    empty.write_bytes(b"")
    rc, _, err = run_cli("validate", str(_spec_for(fuzz_dir, empty)))
    assert rc == 2 and "empty.onnx is not a valid ONNX model" in err, err


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupted_onnx_bytes(fuzz_dir, data):
    raw = bytearray((fuzz_dir / "tiny.onnx").read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(1, len(raw)))]
    bad = fuzz_dir / "corrupt.onnx"
    bad.write_bytes(bytes(raw))
    rc, _, err = run_cli("validate", str(_spec_for(fuzz_dir, bad)))
    assert_clean(rc, err)


# --------------------------------------------------------------------------- records

GOLDEN = ROOT / "tests" / "data" / "record_v1.json"


def test_newer_schema_version_is_refused_with_a_message(tmp_path):
    data = json.loads(GOLDEN.read_text())
    data["schema_version"] = 99
    p = tmp_path / "future.json"
    p.write_text(json.dumps(data))
    for args in (["show", str(p)], ["compare", str(p), str(GOLDEN)]):
        rc, _, err = run_cli(*args)
        assert rc == 2 and "written by a newer benchkit (schema 99); upgrade benchkit" in err


def test_truncated_and_corrupted_records(tmp_path):
    text = GOLDEN.read_text()
    p = tmp_path / "r.json"
    p.write_text(text[: len(text) // 2])
    rc, _, err = run_cli("show", str(p))
    assert rc == 2 and "not readable JSON" in err
    p.write_bytes(b"\xff\xfe\x00garbage")
    rc, _, err = run_cli("show", str(p))
    assert rc == 2 and "not readable JSON" in err
    data = json.loads(text)
    data["metrics"]["latency_ns"]["p99"] = "fast"
    p.write_text(json.dumps(data))
    rc, _, err = run_cli("show", str(p))
    assert rc == 2 and "invalid record at metrics.latency_ns.p99" in err


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_records(tmp_path_factory, data):
    doc = json.loads(GOLDEN.read_text())
    node = doc
    while isinstance(node, dict) and node and data.draw(st.booleans()):
        k = data.draw(st.sampled_from(sorted(node)))
        if not isinstance(node[k], dict):
            break
        node = node[k]
    if isinstance(node, dict) and node:
        k = data.draw(st.sampled_from(sorted(node)))
        if data.draw(st.booleans()):
            node[k] = data.draw(documents)
        else:
            del node[k]
    p = tmp_path_factory.getbasetemp() / "mutated-record.json"
    p.write_text(json.dumps(doc, allow_nan=True))
    rc, _, err = run_cli("show", str(p))
    assert_clean(rc, err)


# --------------------------------------------------------------------------- record files and bundles, byte by byte

_NASTY = [b"[" * 300, b"{" * 300, b"\x00", b"\xff\xfe", b'"\\ud800"', b"1e999", b"-0", b"NaN", b"]", b"}", b",", b'"',
          b'{"a": ' * 50, b"9" * 5000]


@st.composite
def damaged(draw, data: bytes) -> bytes:
    """`data` with 1-4 edits: a byte changed, a slice cut out, nasty text inserted, or the end cut off."""
    raw = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if not raw:
            break
        i = draw(st.integers(0, len(raw) - 1))
        how = draw(st.sampled_from(["byte", "cut", "insert", "truncate"]))
        if how == "byte":
            raw[i] = draw(st.integers(0, 255))
        elif how == "cut":
            del raw[i:i + draw(st.integers(1, 64))]
        elif how == "insert":
            raw[i:i] = draw(st.sampled_from(_NASTY))
        else:
            del raw[i:]
    return bytes(raw)


@pytest.fixture(scope="module")
def signed_record(tmp_path_factory):
    from record_factory import make_record

    from benchkit.results import records
    from benchkit.results.trust import keygen, sign_record

    d = tmp_path_factory.mktemp("fuzz-records")
    rec = records.save(make_record([1000 + 7 * i for i in range(120)]), d / "clean" / "r.json")
    priv, _ = keygen(d / "key")
    sign_record(rec, priv)
    return rec


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_record_files(signed_record, data):
    """A record file damaged anywhere: show, compare, results list and verify end cleanly (verify: 1 when altered)."""
    d = signed_record.parent.parent / "damaged"
    d.mkdir(exist_ok=True)
    p = d / "r.json"
    p.write_bytes(data.draw(damaged(signed_record.read_bytes())))
    (d / "r.json.sig").write_bytes(signed_record.with_name("r.json.sig").read_bytes())
    rc, _, err = run_cli("show", str(p))
    assert_clean(rc, err)
    rc, _, err = run_cli("compare", str(p), str(signed_record), "--resamples", "100")
    assert rc in (0, 1, 2) and "Traceback" not in err, err
    rc, out, err = run_cli("results", "list", str(d))
    assert rc == 0, err
    rc, out, err = run_cli("verify", str(p))
    assert rc in (0, 1) and ("VERIFIED" in out if rc == 0 else "ALTERED" in out or "UNREADABLE" in out), out


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    """A small signed bundle (not a publishable one: the fuzz is about reading, not about the rules)."""
    from record_factory import make_record

    from benchkit.results.bundle import MANIFEST, manifest_text, write_tar
    from benchkit.results.trust import keygen, load_private_key, sign_bytes

    d = tmp_path_factory.mktemp("fuzz-bundle")
    recs = [make_record([1000 + i for i in range(100)], workload=w) for w in ("mlp", "gemm")]
    members = {"bundle.json": json.dumps({"format": "benchkit-bundle", "version": 2, "run_id": recs[0].run_id}).encode(),
               "spec/s.yaml": b"name: synthetic\n", "system.json": b"{}", "models.json": b"{}",
               "adapters.json": b"{}", "accuracy.json": b"[]"}
    members.update({f"records/{r.spec_name}/{r.run_id}/{r.cell_id}.json": (r.to_json() + "\n").encode() for r in recs})
    members[MANIFEST] = manifest_text(members).encode()
    priv, _ = keygen(d / "key")
    members[MANIFEST + ".sig"] = json.dumps(sign_bytes(members[MANIFEST], None, load_private_key(priv), MANIFEST)
                                            ).encode()
    return write_tar(members, d / "b.tar.gz", 0), members


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_bundles(small_bundle, data):
    """A bundle with a member replaced by a random document or damaged bytes, or the archive's own bytes damaged:
    check-bundle says FAILED (exit 1) or refuses the file (exit 2), never a traceback."""
    from benchkit.results.bundle import write_tar

    path, members = small_bundle
    out = path.with_name("damaged.tar.gz")
    if data.draw(st.booleans()):
        out.write_bytes(data.draw(damaged(path.read_bytes())))
    else:
        changed = dict(members)
        name = data.draw(st.sampled_from(sorted(changed)))
        changed[name] = (json.dumps(data.draw(documents), allow_nan=True).encode() if data.draw(st.booleans())
                         else data.draw(damaged(changed[name])))
        write_tar(changed, out, 0)
    rc, stdout, err = run_cli("check-bundle", str(out))
    assert rc in (1, 2) and "Traceback" not in err, err
    assert rc == 2 or "FAILED" in stdout or "UNTRUSTED" in stdout
