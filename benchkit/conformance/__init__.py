"""What vendors and projects test with: the adapter conformance kit and the ``pytest --benchkit`` plugin.

    from benchkit.conformance import conformance_tests

Imported lazily: pytest loads the plugin (``benchkit.conformance.pytest_plugin``) in every run of an environment
where benchkit is installed, so this package must import nothing heavy by itself.
"""

from __future__ import annotations

from typing import Any

__all__ = ["conformance_tests"]


def __getattr__(name: str) -> Any:
    if name == "conformance_tests":
        from benchkit.conformance.kit import conformance_tests

        return conformance_tests
    raise AttributeError(f"module 'benchkit.conformance' has no attribute {name!r}")
