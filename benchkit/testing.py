"""Where adapter packages written against benchkit 0.1 found the conformance kit; it lives in
:mod:`benchkit.conformance.kit` now. Kept so their ``conftest.py`` (``pytest_plugins = ["benchkit.testing"]``)
and ``from benchkit.testing import conformance_tests`` keep working."""

from benchkit.conformance.kit import *  # noqa: F401,F403 - the kit's public names
from benchkit.conformance.kit import __all__  # noqa: F401

try:
    from benchkit.conformance.kit import benchkit_conformance  # noqa: F401 - the fixture, for pytest_plugins
except ImportError:  # pragma: no cover - pytest not installed
    pass
