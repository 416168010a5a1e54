"""Shared test setup. Tools the integration tests need are started by fixtures; a missing tool
skips with its reason, except under CI=true where it fails (see tests/tools.py)."""

pytest_plugins = [
    "pytester",
    "cloudq.testing.pytest_plugin",
    "tests.fixtures.redis_server",
    "tests.fixtures.moto_server",
    "tests.fixtures.localstack",
    "tests.fixtures.servicebus_endpoint",
    "tests.fixtures.pubsub_emulator",
]
