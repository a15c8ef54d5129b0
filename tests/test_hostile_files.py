"""Hostile files and unlucky disks: FIFOs, devices, deep JSON, links in and out of folders, archives that claim
gigabytes, a full disk. Each case ends in a clear message and its exit code, never a traceback or a hang; nothing is
written outside the chosen folder and nothing measured is lost.

In-process through ``benchkit.cli.main`` (a traceback would fail the test by escaping run_cli); cases that could
hang are guarded by :func:`never_blocks`, which unblocks a stuck reader after a few seconds so that the test fails
instead of hanging. Disk-full cases run on a small tmpfs (root only; skipped with the reason otherwise).
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import io
import json
import os
import re
import sqlite3
import stat
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pytest
from record_factory import make_record

import conftest
from benchkit.results import records

DEEP = b'{"a": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"


def run_cli(*args, **kw) -> conftest.CliResult:
    r = conftest.run_cli(*map(str, args), **kw)
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    return r


def refused(r: conftest.CliResult, *fragments: str, rc: int = 2) -> None:
    assert r.returncode == rc, (r.returncode, r.stdout, r.stderr)
    for f in fragments:
        assert f in r.stderr + r.stdout, (f, r.stdout, r.stderr)
    if rc == 2:  # one message (a run prints its progress first)
        assert r.stderr.count("benchkit: error: ") == 1, r.stderr


@contextlib.contextmanager
def never_blocks(fifo: Path, after_s: float = 5.0):
    """Fail, not hang, if anything waits on ``fifo``: after ``after_s`` a writer opens and closes it (EOF)."""
    done, blocked = threading.Event(), []

    def unblock() -> None:
        if done.wait(after_s):
            return
        blocked.append(True)
        for _ in range(50):
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                return
            except OSError:
                time.sleep(0.1)

    t = threading.Thread(target=unblock, daemon=True)
    t.start()
    try:
        yield
    finally:
        done.set()
        t.join()
    assert not blocked, f"a reader waited on {fifo}"


def tree(folder: Path) -> dict[str, bytes | str]:
    """Every entry under ``folder``: file bytes, or what a link or special file is."""
    out: dict[str, bytes | str] = {}
    for p in sorted(folder.rglob("*")):
        st = os.lstat(p)
        key = str(p.relative_to(folder))
        out[key] = (f"link->{os.readlink(p)}" if stat.S_ISLNK(st.st_mode) else p.read_bytes()
                    if stat.S_ISREG(st.st_mode) else f"mode {stat.S_IFMT(st.st_mode):o}")
    return out


@pytest.fixture
def rec_dir(tmp_path) -> Path:
    """A results folder with two good records."""
    d = tmp_path / "results"
    records.save(make_record([1000 + i for i in range(200)], workload="mlp"), d / "mlp.json")
    records.save(make_record([2000 + i for i in range(200)], workload="gemm"), d / "gemm.json")
    return d


# --------------------------------------------------------------------------- FIFOs and devices


def test_a_fifo_as_the_spec_is_refused_at_once(tmp_path):
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    with never_blocks(fifo):
        refused(run_cli("validate", fifo), "spec.yaml: a FIFO (named pipe), not a regular file")
        refused(run_cli("run", fifo, "--out", tmp_path / "out"), "a FIFO (named pipe), not a regular file")
    assert not (tmp_path / "out").exists()


def test_a_fifo_in_a_results_folder_hangs_nothing(rec_dir, tmp_path):
    fifo = rec_dir / "x.json"
    os.mkfifo(fifo)
    with never_blocks(fifo):
        refused(run_cli("show", fifo), "x.json: a FIFO (named pipe), not a regular file")
        refused(run_cli("compare", rec_dir, rec_dir), "x.json: a FIFO")
        refused(run_cli("report", rec_dir, "-o", tmp_path / "r.html"), "x.json: a FIFO")
        refused(run_cli("export", "pytest-benchmark", rec_dir, "-o", tmp_path / "e.json"), "x.json: a FIFO")
        r = run_cli("results", "list", rec_dir)  # the index skips what is not a regular file
        assert r.returncode == 0 and "synthetic" in r.stdout, r.stderr
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "e.json").exists()


def test_the_real_command_does_not_wait_on_a_fifo(rec_dir, tmp_path):
    """Once through a fresh process, bounded by a timeout: the in-process cases above cannot miss a hang."""
    import sys

    os.mkfifo(rec_dir / "x.json")
    p = subprocess.run([sys.executable, "-m", "benchkit", "compare", str(rec_dir), str(rec_dir)], capture_output=True,
                       text=True, timeout=60, cwd=conftest.ROOT)
    assert p.returncode == 2 and "x.json: a FIFO (named pipe), not a regular file" in p.stderr
    assert "Traceback" not in p.stderr


def test_a_record_linked_to_dev_zero_is_not_read(rec_dir):
    link = rec_dir / "zero.json"
    link.symlink_to("/dev/zero")
    refused(run_cli("show", link), "zero.json: a character device, not a regular file")
    refused(run_cli("compare", rec_dir, rec_dir), "zero.json: a symbolic link that leads out of")
    r = run_cli("results", "list", rec_dir)
    assert r.returncode == 0 and "zero.json: a symbolic link that leads out of" in r.stdout, r.stdout


# --------------------------------------------------------------------------- deep JSON


def test_json_nested_200000_deep_is_a_clear_error_everywhere(rec_dir, tmp_path):
    deep = tmp_path / "deep" / "deep.json"
    deep.parent.mkdir()
    deep.write_bytes(DEEP)
    msg = "not readable JSON (JSON nested deeper than 128 levels)"
    refused(run_cli("show", deep), msg)
    refused(run_cli("compare", deep, rec_dir / "mlp.json"), msg)
    refused(run_cli("report", deep, "-o", tmp_path / "r.html"), msg)
    refused(run_cli("export", "pytest-benchmark", deep, "-o", tmp_path / "e.json"), msg)
    refused(run_cli("sign", deep, "--key", tmp_path / "nokey"), "nokey")  # the key is checked first
    run_cli("keygen", "--out", tmp_path / "k")
    refused(run_cli("sign", deep, "--key", tmp_path / "k"), msg)
    refused(run_cli("bundle", deep, "-o", tmp_path / "b.tar.gz"), msg)
    r = run_cli("results", "list", deep.parent)
    assert r.returncode == 0 and "nested deeper than 128 levels" in r.stdout
    # a deep signature next to a good record: that record is reported, the others still checked
    sig = rec_dir / "mlp.json.sig"
    sig.write_bytes(DEEP)
    r = run_cli("verify", rec_dir)
    assert r.returncode == 1 and "UNREADABLE" in r.stdout and "nested deeper than 128" in r.stdout
    assert "2 record(s): 1 unsigned, 1 unreadable" in r.stdout
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "e.json").exists()
    assert not (tmp_path / "b.tar.gz").exists()


def test_the_depth_bound_ignores_brackets_inside_strings():
    from benchkit._fsutil import loads_json

    assert loads_json(json.dumps({"name": "[" * 10_000})) == {"name": "[" * 10_000}
    with pytest.raises(ValueError, match="nested deeper than 3"):
        loads_json("[[[[1]]]]", max_depth=3)


# --------------------------------------------------------------------------- links in and out


def test_links_inside_a_folder_are_read_links_out_are_refused(rec_dir, tmp_path):
    (rec_dir / "sub").mkdir()
    (rec_dir / "sub" / "again.json").symlink_to(rec_dir / "mlp.json")  # inside: fine
    r = run_cli("compare", rec_dir, rec_dir, "--format", "json")
    assert r.returncode == 0, r.stderr
    outside = tmp_path / "elsewhere"
    records.save(make_record(list(range(1000, 1100)), workload="secret"), outside / "secret.json")
    (rec_dir / "out.json").symlink_to(outside / "secret.json")
    refused(run_cli("compare", rec_dir, rec_dir), "out.json: a symbolic link that leads out of")
    refused(run_cli("report", rec_dir, "-o", tmp_path / "r.html"), "leads out of")
    r = run_cli("results", "list", rec_dir, "--format", "json")
    assert r.returncode == 0 and "secret" not in r.stdout
    r = run_cli("results", "list", rec_dir)
    assert "out.json: a symbolic link that leads out of" in r.stdout


def test_results_list_never_writes_through_a_linked_index(rec_dir, tmp_path):
    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE precious (x)")
    db.execute("INSERT INTO precious VALUES (42)")
    db.commit()
    db.close()
    before = other.read_bytes()
    index = rec_dir / ".index.sqlite"
    index.symlink_to(other)
    r = run_cli("results", "list", rec_dir)
    assert r.returncode == 0 and "synthetic" in r.stdout
    assert other.read_bytes() == before  # the target is untouched
    assert index.is_file() and not index.is_symlink()  # a fresh index in the link's place
    # a dangling link must not create its target
    index.unlink()
    index.symlink_to(tmp_path / "nowhere" / "made.sqlite")
    (tmp_path / "nowhere").mkdir()
    assert run_cli("results", "list", rec_dir).returncode == 0
    assert list((tmp_path / "nowhere").iterdir()) == []


# --------------------------------------------------------------------------- archives


def _tar_gz(entries: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    raw = io.BytesIO()
    for info, data in entries:
        raw.write(info.tobuf(format=tarfile.GNU_FORMAT))
        raw.write(data)
    raw.write(b"\0" * 1024)
    return gzip.compress(raw.getvalue())


def test_a_bundle_member_that_claims_two_gigabytes_is_not_read(tmp_path):
    big = tarfile.TarInfo("benchkit-bundle/records/s/r/x.json")
    big.size = 2 << 30  # the header says 2 GiB; the archive holds a few bytes of it
    p = tmp_path / "bomb.tar.gz"
    p.write_bytes(_tar_gz([(big, b"{" * 4096)]))
    before = tree(tmp_path)
    t0 = time.monotonic()
    r = run_cli("check-bundle", p)
    assert time.monotonic() - t0 < 30
    refused(r, "more than a bundle member may hold", rc=1)
    assert "FAIL  archive" in r.stdout and "FAILED" in r.stdout
    assert tree(tmp_path) == before  # nothing extracted anywhere


def test_bundle_entry_count_and_escaping_paths(tmp_path, monkeypatch):
    import benchkit.results.bundle as bundle

    monkeypatch.setattr(bundle, "MAX_MEMBERS", 10)
    entries = []
    for i in range(20):
        info = tarfile.TarInfo(f"benchkit-bundle/f{i}")
        info.size = 1
        entries.append((info, b"x" + b"\0" * 511))
    p = tmp_path / "many.tar.gz"
    p.write_bytes(_tar_gz(entries))
    assert "more than 10 entries" in "; ".join(bundle.read_bundle(p).problems)
    evil = tarfile.TarInfo("../../evil.txt")
    evil.size = 1
    p.write_bytes(_tar_gz([(evil, b"x" + b"\0" * 511)]))
    r = run_cli("check-bundle", p)
    refused(r, "outside the benchkit-bundle/ folder", rc=1)
    assert not (tmp_path.parent / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    fifo = tmp_path / "b.tar.gz"
    os.mkfifo(fifo)
    with never_blocks(fifo):
        refused(run_cli("check-bundle", fifo), "a FIFO (named pipe), not a regular file")


# --------------------------------------------------------------------------- what output escapes


HOSTILE_NAME = "x|y\n# Heading <img src=x onerror=alert(1)> @octocat [link](http://e.x) [red]red[/red] \x1b[2J"


def test_markdown_and_terminal_output_escape_names(tmp_path):
    base, cand = tmp_path / "base", tmp_path / "cand"
    for d, shift in ((base, 0), (cand, 500)):
        records.save(make_record([1000 + shift + i for i in range(300)], workload=HOSTILE_NAME,
                                 backend_label=HOSTILE_NAME), d / "r.json")
    r = run_cli("compare", base, cand, "--format", "markdown", "-o", tmp_path / "c.md")
    assert r.returncode in (0, 1), r.stderr
    md = (tmp_path / "c.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert rows and all(line.replace("\\|", "").count("|") == 13 for line in rows), rows
    assert [line for line in md.splitlines() if line.startswith("#")] == ["## benchkit compare: candidate / base"]
    body = md.split("\n", 1)[1].split("Ratios are")[0]  # the table (the method text links to the docs)
    assert not re.search(r"(?<!\\)[<\[`]", body), body  # no tag, link or code can open
    assert "@octocat" not in md and "\x1b" not in md
    r = run_cli("compare", base, cand)
    assert "[red]red[/red]" in r.stdout and "\x1b" not in r.stdout


def test_verify_checks_every_record_and_sums_up(rec_dir, tmp_path):
    run_cli("keygen", "--out", tmp_path / "k")
    records.save(make_record(list(range(5000, 5100)), workload="third"), rec_dir / "third.json")
    assert run_cli("sign", rec_dir / "mlp.json", rec_dir / "third.json", "--key", tmp_path / "k").returncode == 0
    third = rec_dir / "third.json"
    third.write_bytes(third.read_bytes().replace(b'"third"', b'"THIRD"'))
    r = run_cli("verify", rec_dir, "--pubkey", tmp_path / "k.pub")
    assert r.returncode == 1
    assert "VERIFIED" in r.stdout and "ALTERED" in r.stdout and "UNSIGNED" in r.stdout
    assert "3 record(s): 1 verified, 1 altered, 1 unsigned" in r.stdout
    assert "2 of 3 record(s) failed verification" in r.stderr


def test_a_device_file_is_never_quoted(tmp_path):
    spec = tmp_path / "s.yaml"
    write = conftest.write_tiny_add(tmp_path / "tiny.onnx")
    spec.write_text(f"""name: dev
workloads: [{{name: t, model: {write}}}]
backends: [{{name: onnxruntime, device_file: /etc/passwd}}]
scenarios: [{{kind: single_stream}}]
""")
    r = run_cli("validate", spec)
    refused(r, "device file /etc/passwd is not a device descriptor")
    assert "root:" not in r.stderr and "/bin/" not in r.stderr


# --------------------------------------------------------------------------- file modes


def test_files_follow_the_umask_and_keys_stay_private(rec_dir, tmp_path):
    old = os.umask(0o022)
    try:
        rec = records.save(make_record([1, 2, 3]), tmp_path / "m" / "r.json")
        run_cli("keygen", "--out", tmp_path / "m" / "key")
        run_cli("compare", rec_dir, rec_dir, "--format", "markdown", "-o", tmp_path / "m" / "c.md")
        run_cli("report", rec_dir, "-o", tmp_path / "m" / "r.html")
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "m").iterdir()}
        assert modes == {"r.json": 0o644, "key": 0o600, "key.pub": 0o644, "c.md": 0o644, "r.html": 0o644}
        os.umask(0o077)
        records.save(make_record([1, 2, 3]), rec)
        assert stat.S_IMODE(rec.stat().st_mode) == 0o600
    finally:
        os.umask(old)


# --------------------------------------------------------------------------- a full disk


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs at tmp_path/disk, always unmounted; with fill() and free() to run it out of space."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()}")
    try:
        yield Disk(disk)
    finally:
        if subprocess.run(["umount", str(disk)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)


class Disk:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / ".filler"

    def fill(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            for size in (1 << 16, 4096, 1):
                while True:
                    try:
                        os.write(fd, b"\0" * size)
                    except OSError as e:
                        assert e.errno == errno.ENOSPC
                        break
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def leftovers(self) -> list[str]:
        """Temporary, partial or empty files: none may be left by a failed write."""
        return [str(p) for p in self.path.rglob("*") if p.is_file() and p != self.filler
                and (p.name.endswith((".tmp", ".part", ".partial")) or p.stat().st_size == 0)
                and not p.name.endswith(".lock")]


def test_a_full_disk_leaves_no_key_and_no_partial_file(small_disk, rec_dir):
    d = small_disk.path
    records.save(make_record(list(range(1000, 1200))), d / "rec" / "r.json")
    run_cli("keygen", "--out", rec_dir.parent / "k")
    small_disk.fill()
    before = tree(d)
    full = "the disk is full"
    refused(run_cli("keygen", "--out", d / "keys" / "lab"), full)
    assert not (d / "keys").exists() or not any((d / "keys").iterdir())
    refused(run_cli("sign", d / "rec" / "r.json", "--key", rec_dir.parent / "k"), full)
    refused(run_cli("compare", rec_dir, rec_dir, "--format", "markdown", "-o", d / "c.md"), full)
    refused(run_cli("report", rec_dir, "-o", d / "r.html"), full)
    refused(run_cli("export", "pytest-benchmark", rec_dir, "-o", d / "e.json"), full)
    refused(run_cli("export", "pytest-benchmark", rec_dir, "--storage", d / "storage"), full)
    assert small_disk.leftovers() == []
    after = {k: v for k, v in tree(d).items() if not k.startswith(("keys", "storage"))}
    assert after == before
    small_disk.free()
    assert run_cli("keygen", "--out", d / "keys" / "lab").returncode == 0  # no empty key stands in the way


RUN_SPEC = """\
name: hostile
seed: 3
workloads:
  - {name: a, model: tiny.onnx}
  - {name: b, model: tiny.onnx}
backends:
  - {name: onnxruntime, options: {providers: [CPUExecutionProvider]}}
scenarios:
  - {kind: single_stream, min_duration_ms: 20, min_query_count: 16}
run:
  profile: quick
  isolation: inline
  power: {meters: [], idle_ms: 0}
"""


@pytest.fixture
def run_spec(tmp_path) -> Path:
    conftest.write_tiny_add(tmp_path / "tiny.onnx")
    p = tmp_path / "spec.yaml"
    p.write_text(RUN_SPEC)
    return p


def _fill_once_the_run_dir_exists(monkeypatch, disk: Disk) -> list[Path]:
    from benchkit.runner import rundir

    real, made = rundir.create, []

    def create(*a, **k):
        run = real(*a, **k)
        made.append(run.path)
        disk.fill()
        return run

    monkeypatch.setattr(rundir, "create", create)
    return made


def test_run_on_a_full_disk_says_what_was_not_saved_and_resume_completes_it(small_disk, run_spec, monkeypatch):
    made = _fill_once_the_run_dir_exists(monkeypatch, small_disk)
    r = run_cli("run", run_spec, "--out", small_disk.path / "out")
    refused(r, "2 measured record(s) could not be written", "(the disk is full)", "a__onnxruntime__single_stream",
            "b__onnxruntime__single_stream", f"--resume {made[0]}")
    assert "NOT WRITTEN" in r.stderr  # said as it happened, on the progress console
    assert small_disk.leftovers() == [] and not list(made[0].glob("*.json"))
    small_disk.free()
    monkeypatch.undo()
    r = run_cli("run", run_spec, "--out", small_disk.path / "out", "--resume", made[0])
    assert r.returncode in (0, 1), r.stderr
    assert sorted(p.name for p in made[0].glob("*.json")) == ["a__onnxruntime__single_stream.json",
                                                              "b__onnxruntime__single_stream.json"]
    small_disk.fill()
    refused(run_cli("bundle", made[0], "-o", small_disk.path / "b.tar.gz", "--spec", run_spec), "the disk is full")
    assert small_disk.leftovers() == [] and not (small_disk.path / "b.tar.gz").exists()


def test_a_record_held_back_by_a_full_disk_is_written_when_space_returns(small_disk, run_spec, monkeypatch):
    made = _fill_once_the_run_dir_exists(monkeypatch, small_disk)
    real, failures = records.save, []

    def save(rec, path):
        try:
            return real(rec, path)
        except OSError:
            failures.append(path.name)
            small_disk.free()  # space comes back after the first failure
            raise

    monkeypatch.setattr(records, "save", save)
    r = run_cli("run", run_spec, "--out", small_disk.path / "out")
    assert r.returncode in (0, 1), r.stderr
    assert failures == ["a__onnxruntime__single_stream.json"]
    got = {p.name: records.load(p) for p in made[0].glob("*.json")}
    assert sorted(got) == ["a__onnxruntime__single_stream.json", "b__onnxruntime__single_stream.json"]
    assert all(rec.metrics is not None for rec in got.values())  # measured, kept, written
    assert small_disk.leftovers() == []


def test_nothing_outside_the_disk_was_touched_by_a_failed_run(small_disk, run_spec, monkeypatch, tmp_path):
    outside = {k: hashlib.sha256(v if isinstance(v, bytes) else v.encode()).hexdigest()
               for k, v in tree(tmp_path).items() if not k.startswith("disk")}
    _fill_once_the_run_dir_exists(monkeypatch, small_disk)
    run_cli("run", run_spec, "--out", small_disk.path / "out")
    now = {k: hashlib.sha256(v if isinstance(v, bytes) else v.encode()).hexdigest()
           for k, v in tree(tmp_path).items() if not k.startswith("disk")}
    assert now == outside


def test_a_run_that_cannot_start_on_a_full_disk_leaves_no_empty_run(small_disk, run_spec):
    small_disk.fill()
    r = run_cli("run", run_spec, "--out", small_disk.path / "out")
    refused(r, "the disk is full")
    assert list((small_disk.path / "out" / "hostile").iterdir()) == []  # no run for a --resume to pick by mistake


def test_bundle_takes_a_standard_spec_by_name(rec_dir, tmp_path):
    r = run_cli("bundle", rec_dir, "-o", tmp_path / "b.tar.gz", "--spec", "ci-smoke")
    refused(r, "ci-smoke.yaml: SHA-256", "is not that of the spec the records were run from")
    assert not (tmp_path / "b.tar.gz").exists()
