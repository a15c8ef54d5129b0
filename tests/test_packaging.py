"""Packaging: the licence the metadata names is shipped, and no install hint points at PyPI's unrelated `benchkit`."""

from __future__ import annotations

import re
from pathlib import Path

from benchkit._install import checkout, install_hint

ROOT = Path(__file__).resolve().parents[1]


def test_license_file_matches_metadata():
    # tomllib is 3.11+; the one line is enough here
    assert re.search(r'^license = \{ text = "Apache-2.0" \}$', (ROOT / "pyproject.toml").read_text(), re.M)
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text


def test_install_hint_names_this_checkout():
    hint = install_hint("openvino")
    assert checkout() == str(ROOT)
    assert hint.startswith(f"pip install -e '{ROOT}[openvino]'")


def test_no_message_installs_benchkit_by_name():
    # `pip install 'benchkit[x]'` or `pip install benchkit` would fetch another project from the index.
    bad = re.compile(r"pip install\s+['\"]?benchkit(\[|\b(?![-_/.]))")
    offenders = []
    for p in [*ROOT.glob("benchkit/**/*.py"), *ROOT.glob("docs/**/*.md"), ROOT / "README.md",
              *ROOT.glob("workloads/*.yaml")]:
        for n, line in enumerate(p.read_text().splitlines(), 1):
            if bad.search(line) and "no hint may say" not in line:
                offenders.append(f"{p.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
