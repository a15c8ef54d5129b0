pytest_plugins = ["benchkit.conformance.kit"]
