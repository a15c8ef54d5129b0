"""The documentation cannot rot: reference pages match the models, the site builds strictly, every example runs.

Examples. Every fenced block of README.md and docs/**/*.md is handled by its
language tag; the blocks of one page run in order, in one fresh working
directory, so a later block can read what an earlier one wrote:

* ``bash``/``sh``/``shell``: run with ``bash -e -o pipefail``; ``console``: the
  lines starting with ``$ `` only. Two kinds of line are not run, because the
  environment under test already is their result: ``pip install ... &&`` is
  dropped from the front of a line (a line that only installs is dropped), and
  a line running ``python -m pytest`` is dropped (it is this very suite).
* ``benchkit`` on those lines is a console script that adds ``--inline`` to
  ``run`` (cells in this process tree without a worker start-up each;
  isolation is tested elsewhere) and ``--quick`` unless a profile is given
  (unset durations become seconds; durations a spec sets explicitly are kept).
* ``python``: run as a script with the repository on ``PYTHONPATH``.
* ``yaml``: must parse; a mapping with ``workloads`` is a spec and must pass
  ``benchkit validate``, as if it were a file in ``specs/`` (so
  ``model: models/...`` resolves as in the repository's own specs).

Each ``benchkit`` command and ``python`` block is its own process, forked
from a server that has already imported numpy, onnx, ONNX Runtime and
benchkit (tests/prefork.py: ~1.5 s of CPU saved per command); with
``BENCHKIT_DOCS_COLD=1`` each starts a fresh interpreter instead.
* ``toml`` and ``json``: must parse. Blocks without a language (command
  synopses, sample output) are prose.

The working directory mirrors the repository (symbolic links to its top-level
entries; ``specs/`` a real folder of links, ``results/`` empty), so commands
written for a checkout work unchanged and write nothing into it.

An HTML comment on the line before a fence changes how its block is treated:

* ``<!-- docs-test: skip REASON -->``: not run; only for inherently long or
  installing commands, with the reason stated;
* ``<!-- docs-test: file NAME -->``: the block is saved as NAME in the working
  directory (then a python file must import, a spec must validate) for later
  blocks to use;
* ``<!-- docs-test: exit 0,1 REASON -->``: the exit statuses accepted (default 0).

A block always fails when its output holds a Python traceback.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from benchkit import refdocs

from prefork import PreforkServer

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
BLOCK_TIMEOUT_S = 300

# --------------------------------------------------------------------------- generated reference


@pytest.mark.parametrize("which", ["spec", "result"])
def test_reference_page_matches_the_models(which):
    """`benchkit schema WHICH --markdown` (the real command) prints exactly the checked-in page."""
    page = DOCS / "reference" / f"{which}.md"
    out = subprocess.run([sys.executable, "-m", "benchkit", "schema", which, "--markdown"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == refdocs.markdown(which)
    assert page.is_file() and page.read_text(encoding="utf-8") == out.stdout, (
        f"docs/reference/{which}.md is out of date with the models; regenerate it with\n"
        f"    python -m benchkit schema {which} --markdown > docs/reference/{which}.md"
    )


@pytest.mark.parametrize("which", ["spec", "result"])
def test_every_field_is_documented(which):
    """Each field is described where it is declared; the page is only as good as the descriptions."""
    text = refdocs.markdown(which)
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) > 20
    # A tag field (type `"single_stream"`) says everything in its type column.
    bare = [r.split("|")[1].strip() for r in rows if r.rstrip().endswith("|  |") and '| `"' not in r]
    assert not bare, f"fields without a description in the {which} models: {', '.join(bare)}"


def test_every_model_reachable_has_a_section_and_every_link_a_target():
    for which in ("spec", "result"):
        text = refdocs.markdown(which)
        anchors = {_slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}
        links = set(re.findall(r"\]\(#([^)]+)\)", text))
        assert links and links <= anchors, links - anchors


@pytest.mark.parametrize(
    "name, unit",
    [("min_duration_ms", "ms"), ("target_latency_ns", "ns"), ("cell_timeout_s", "s"), ("memory_bytes", "bytes"),
     ("throughput_per_s", "1/s"), ("peak_flops_per_s", "FLOP/s"), ("memory_bandwidth_bytes_per_s", "bytes/s"),
     ("target_qps", "queries/s"), ("samples_ns", "ns"), ("count", ""), ("warmup_queries", ""), ("ns", "")],
)
def test_units_come_from_name_suffixes(name, unit):
    assert refdocs.unit_of(name) == unit


def test_schema_markdown_rejects_unknown_pages():
    with pytest.raises(ValueError, match="expected spec or result"):
        refdocs.markdown("nope")


# --------------------------------------------------------------------------- the site


def _nav_pages(nav) -> list[str]:
    out: list[str] = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        out += _nav_pages(value) if isinstance(value, list) else [value]
    return out


def _slug(heading: str) -> str:
    """Python-Markdown's toc slug (what MkDocs uses for heading ids)."""
    text = unicodedata.normalize("NFKD", re.sub(r"<[^>]+>", "", heading)).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def test_navigation_lists_every_page_and_every_link_resolves():
    """What `mkdocs build --strict` checks, without MkDocs: pages in the nav, links to existing pages and headings."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = _nav_pages(config["nav"])
    on_disk = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(nav) == on_disk
    headings = {p: {_slug(h) for h in re.findall(r"^#+ (.+?)\s*$", (DOCS / p).read_text(encoding="utf-8"), re.M)}
                for p in on_disk}
    for page in on_disk:
        text = re.sub(r"^```.*?^```", "", (DOCS / page).read_text(encoding="utf-8"), flags=re.M | re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            path, _, anchor = target.partition("#")
            resolved = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
            assert resolved in headings, f"{page}: link to missing page {target}"
            assert not anchor or anchor in headings[resolved], f"{page}: link to missing heading {target}"


def test_site_builds_in_strict_mode(tmp_path):
    """The site CI publishes: MkDocs + Material, --strict (a broken link, anchor or missing page fails)."""
    import importlib.util

    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        pytest.skip("mkdocs-material is not installed here: pip install -e '.[docs]' (CI installs it)")
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for page in ("index", "getting-started/index", "rules/index", "reference/spec/index", "reference/result/index"):
        assert (tmp_path / "site" / f"{page}.html").is_file(), page


# --------------------------------------------------------------------------- examples that run


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    body: str
    directive: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


# A fence may be indented (a block inside a list item): its body is dedented by the fence's indent.
_FENCE = re.compile(r"^([ \t]*)```([\w-]*)[^\n]*\n(.*?)^\1```[ \t]*$", re.M | re.S)
_DIRECTIVE = re.compile(r"^<!--\s*docs-test:\s*(.*?)\s*-->$")


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    out = []
    for m in _FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        d = _DIRECTIVE.match(before)
        indent = len(m.group(1))
        body = "".join(line[indent:] if line[:indent].strip() == "" else line
                       for line in m.group(3).splitlines(keepends=True))
        out.append(Block(page, text.count("\n", 0, m.start()) + 1, m.group(2).lower(), body,
                         d.group(1) if d else ""))
    return out


def _commands(block: Block) -> str:
    lines = block.body.splitlines()
    if block.lang == "console":
        lines = [ln[2:] for ln in lines if ln.startswith("$ ")]
    kept = []
    for line in lines:
        line = re.sub(r"^\s*pip install [^&#]*&&\s*", "", line)
        if re.match(r"^\s*pip install\b", line) or re.search(r"\bpython -m pytest\b", line):
            continue
        kept.append(line)
    return "\n".join(kept)


# `benchkit run ARGS` as the examples run it: inline, and --quick unless a profile is given.
_RUN_ARGS = ("(lambda a: ['run', *([] if '--inline' in a else ['--inline']), "
             "*([] if '--quick' in a or '--profile' in a else ['--quick']), *a[1:]] if a[:1] == ['run'] else a)")


def _pythonpath() -> str:
    return os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))


@pytest.fixture(scope="module")
def prefork(tmp_path_factory):
    """The fork server the examples' commands start from (None: BENCHKIT_DOCS_COLD=1, fresh interpreters)."""
    if os.environ.get("BENCHKIT_DOCS_COLD") == "1":
        yield None
        return
    server = PreforkServer({**os.environ, "PYTHONPATH": _pythonpath()}, tmp_path_factory.mktemp("prefork"))
    try:
        yield server
    finally:
        server.stop()


# Standard specs the examples run in a shortened copy: the CI guide runs the gate suite four times (5 sessions of
# 1 s cells each, a minute of the test suite) to show the workflow; the workflow is the same with 2 sessions of
# 0.2 s cells. Each replacement must apply, so the copy cannot silently drift from the spec.
_SHORTENED = {"ci-gate.yaml": (("min_duration_ms: 1000", "min_duration_ms: 200"), ("repeats: 5", "repeats: 2"))}


def _shortened(spec: Path) -> str:
    text = spec.read_text(encoding="utf-8")
    for old, new in _SHORTENED[spec.name]:
        assert old in text, f"{spec}: the docs test shortens {old!r}, which the spec no longer has"
        text = text.replace(old, new)
    return text


def _workdir(tmp: Path, server: PreforkServer | None) -> tuple[Path, dict[str, str]]:
    """A mirror of the repository to run a page's commands in, and the environment to run them with."""
    work, bindir = tmp / "work", tmp / "bin"
    work.mkdir()
    bindir.mkdir()
    for entry in ROOT.iterdir():
        if entry.name in (".git", "results", "site", "specs") or entry.name.startswith("."):
            continue
        (work / entry.name).symlink_to(entry)
    (work / "specs").mkdir()
    for entry in (ROOT / "specs").iterdir():
        if entry.name in _SHORTENED:
            (work / "specs" / entry.name).write_text(_shortened(entry), encoding="utf-8")
        else:
            (work / "specs" / entry.name).symlink_to(entry)
    (work / "results").mkdir()
    if server is not None:
        server.client(bindir / "benchkit", rewrite=_RUN_ARGS)
        server.client(tmp / "python", kind="python")  # for the python blocks, not on PATH
    else:
        wrapper = bindir / "benchkit"
        wrapper.write_text(f"#!{sys.executable}\nimport sys\nfrom benchkit.cli import main\n"
                           f"sys.exit(main({_RUN_ARGS}(sys.argv[1:])))\n")
        wrapper.chmod(0o755)
        (tmp / "python").symlink_to(sys.executable)
    (bindir / "python").symlink_to(sys.executable)
    (tmp / "tmp").mkdir()
    env = {
        **os.environ,
        "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": _pythonpath(),
        "TMPDIR": str(tmp / "tmp"),  # mktemp in an example stays in the test's folder
        "NO_MKDOCS_2_WARNING": "1",
    }
    return work, env


def _run(args: list[str], block: Block, work: Path, env: dict[str, str], shown: str) -> None:
    allowed = {0}
    m = re.match(r"exit ([\d,]+)", block.directive)
    if m:
        allowed = {int(x) for x in m.group(1).split(",")}
    try:
        out = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.where}: example ran past {BLOCK_TIMEOUT_S} s:\n{shown}")
    output = out.stdout + out.stderr
    assert out.returncode in allowed and "Traceback (most recent call last)" not in output, (
        f"{block.where}: example exited {out.returncode} (expected {sorted(allowed)}):\n{shown}\n"
        f"--- output ---\n{output[-4000:]}"
    )


def _run_block(block: Block, index: int, work: Path, env: dict[str, str]) -> bool:
    """Run one block; False when there was nothing to run in it."""
    saved = None
    if block.directive.startswith("file "):
        saved = work / block.directive.split()[1]
        saved.write_text(block.body, encoding="utf-8")
    if block.lang in ("bash", "sh", "shell", "console"):
        script = _commands(block)
        if not script.strip():
            return False
        _run(["bash", "-e", "-o", "pipefail", "-c", script], block, work, env, script)
    elif block.lang == "python":
        python = str(work.parent / "python")
        if saved is not None:
            _run([python, "-c", f"import {saved.stem}"], block, work, env, block.body)
        else:
            script = work / f"_docs_block_{index}.py"
            script.write_text(block.body, encoding="utf-8")
            _run([python, str(script)], block, work, env, block.body)
    elif block.lang in ("yaml", "yml"):
        data = yaml.safe_load(block.body)
        if isinstance(data, dict) and "workloads" in data:
            spec = saved or work / "specs" / f"_docs_{block.page.stem}_{index}.yaml"
            if saved is None:
                spec.write_text(block.body, encoding="utf-8")
            _run([str(work.parent / "bin" / "benchkit"), "validate", str(spec)], block, work, env, block.body)
    elif block.lang == "toml":
        tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11")
        tomllib.loads(block.body)
    elif block.lang == "json":
        json.loads(block.body)
    else:
        return False
    return True


@pytest.mark.slow  # every page's examples, the smoke suite four times
@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_run(page, tmp_path, prefork):
    found = blocks(page)
    work, env = _workdir(tmp_path, prefork)
    ran = 0
    for i, block in enumerate(found):
        if block.directive.startswith("skip"):
            assert len(block.directive.split()) > 2, f"{block.where}: a skipped example must state why"
            continue
        ran += _run_block(block, i, work, env)
    runnable = [b for b in found if b.lang in ("bash", "console", "python", "yaml") and not b.directive.startswith("skip")]
    assert ran or not runnable, f"{page.name}: no example ran"


def test_the_block_parser_reads_directives_and_languages(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("text\n\n<!-- docs-test: exit 0,1 noisy -->\n```bash\nbenchkit --version\n```\n\n```\nplain\n```\n"
                    "- item\n\n  ```yaml\n  run:\n    profile: quick\n  ```\n")
    got = blocks(page)
    assert [(b.lang, b.directive, b.body) for b in got] == [
        ("bash", "exit 0,1 noisy", "benchkit --version\n"), ("", "", "plain\n"),
        ("yaml", "", "run:\n  profile: quick\n")]
    assert _commands(Block(page, 1, "bash", "pip install -e . && benchkit run x\npip install y\npython -m pytest\n", "")) \
        == "benchkit run x"
    assert _commands(Block(page, 1, "console", "$ benchkit show r.json\noutput line\n", "")) == "benchkit show r.json"


def test_docstrings_are_rendered_as_markdown():
    text = refdocs.markdown("result")
    assert ":func:" not in text and "``" not in text
    assert "follow `percentile_ns`" in text


def test_forked_commands_behave_as_fresh_processes(tmp_path, prefork):
    """The fork server cannot hide a failure: exit status, traceback, cwd, environment and TMPDIR are each
    command's own."""
    if prefork is None:
        pytest.skip("BENCHKIT_DOCS_COLD=1: fresh interpreters")
    work, env = _workdir(tmp_path, prefork)
    python, benchkit = str(tmp_path / "python"), str(tmp_path / "bin" / "benchkit")

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, cwd=work, env={**env, **extra}, capture_output=True, text=True, timeout=120)

    script = work / "probe.py"
    script.write_text("import os, sys, tempfile\nprint(os.getcwd(), os.environ['PROBE'], tempfile.gettempdir(),"
                      " sys.argv[1:], sys.path[0])\nsys.exit(int(sys.argv[1]))\n")
    r = run(python, str(script), "3", PROBE="one", TMPDIR=str(tmp_path))
    assert r.returncode == 3 and r.stdout.split() == [str(work), "one", str(tmp_path), "['3']", str(work)], r.stderr
    r = run(python, str(script), "0", PROBE="two")
    assert r.returncode == 0 and r.stdout.split()[1:3] == ["two", str(tmp_path / "tmp")], r.stderr
    r = run(python, "-c", "raise RuntimeError('boom')")
    assert r.returncode == 1 and "Traceback (most recent call last)" in r.stderr and "boom" in r.stderr
    r = run(benchkit, "show", "no-such-record.json")
    assert r.returncode == 2 and r.stderr == "benchkit: error: no-such-record.json: no such record file\n"
    r = run(benchkit, "validate", "specs/ci-smoke.yaml")
    assert r.returncode == 0 and "specs/ci-smoke.yaml: valid" in r.stdout, r.stderr
    r = run("bash", "-e", "-o", "pipefail", "-c", "benchkit run --out r no/such.yaml | cat")
    assert r.returncode == 2 and "spec file not found" in r.stderr
