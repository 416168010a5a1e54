"""Example apps (importable from the repository root, as the tests run them)."""
