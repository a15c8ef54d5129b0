pytest_plugins = ["benchkit.testing"]
