"""How to install an optional part of benchkit, said the same way in every message.

The name ``benchkit`` on the public package index belongs to an unrelated
project, so no hint may say ``pip install 'benchkit[...]'``: on a fresh
machine that installs someone else's code. benchkit installs from its
checkout; the hint names the checkout this copy was installed from when it can
tell (an editable install), else a placeholder for it.
"""

from __future__ import annotations

from pathlib import Path


def checkout() -> str:
    """The folder benchkit was installed from (editable install), or a placeholder saying what to put there."""
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file() and (root / "benchkit" / "__init__.py").is_file():
        return str(root)
    return "/path/to/benchkit-checkout"


def install_hint(extra: str) -> str:
    """``pip install -e '<checkout>[extra]'``: the optional dependencies of ``extra``, from benchkit's checkout."""
    return f"pip install -e '{checkout()}[{extra}]' (from the benchkit checkout; PyPI's 'benchkit' is another project)"
