"""The vendor's CI: benchkit's conformance kit, one pytest test per check."""

from benchkit.conformance import conformance_tests

test_numpy_example_conformance = conformance_tests("numpy-example", cycles=5)


def test_report_through_the_fixture(benchkit_conformance):
    report = benchkit_conformance("numpy-example", only=["registry", "options"])
    assert report.passed, report.summary()
