"""What vendors and projects test with: the adapter conformance kit and the ``pytest --benchkit`` plugin.

    from benchkit.conformance import conformance_tests
"""

from benchkit.conformance.kit import conformance_tests

__all__ = ["conformance_tests"]
