"""Top-level test configuration: the sandbox fixtures (``sandbox``, ``faults``) for every test area."""

pytest_plugins = ["sandbox.pytest_plugin"]
