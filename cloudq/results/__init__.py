"""Result backends, found by URL scheme through the ``cloudq.backends`` entry points."""

from __future__ import annotations

from collections.abc import Callable

from cloudq.adapters import scheme_of
from cloudq.adapters.urls import redact_url
from cloudq.clock import Clock
from cloudq.distribution import install_hint
from cloudq.errors import AdapterNotFound
from cloudq.plugins import load_plugin
from cloudq.results.base import ErrorInfo, ResultBackend, State, TaskResult
from cloudq.stores import check

__all__ = ["ErrorInfo", "ResultBackend", "State", "TaskResult", "open_backend"]

ENTRY_POINT_GROUP = "cloudq.backends"
BackendFactory = Callable[[str, Clock], ResultBackend]
KNOWN_EXTRAS = {
    "redis": "redis",
    "rediss": "redis",
    "dynamodb": "sqs",
    "firestore": "pubsub",
    "azuretable": "servicebus",
}


def open_backend(url: str, clock: Clock) -> ResultBackend:
    """Open the result backend for ``url``, by its scheme's ``cloudq.backends`` entry point.

    :param url: the backend URL (``memory://``, ``redis://``, ``dynamodb://``, ``firestore://``,
        ``azuretable://``).
    :param clock: the app's clock (``cloudq.clock.FakeClock`` in tests).
    """
    scheme = scheme_of(url)
    if scheme == "memory":
        from cloudq.results.memory import open_memory_backend

        return open_memory_backend(url, clock)
    factory: BackendFactory | None = load_plugin(ENTRY_POINT_GROUP, scheme)
    if factory is not None:
        backend = factory(url, clock)
        check(backend, f"result backend {redact_url(url)!r}")
        return backend
    if scheme in KNOWN_EXTRAS:
        raise AdapterNotFound(
            f"no result backend for '{scheme}://' is installed: "
            f"{install_hint(KNOWN_EXTRAS[scheme])}"
        )
    raise AdapterNotFound(f"unknown result backend scheme '{scheme}://'")
