"""Find the adapter for a broker URL by its scheme, through the ``cloudq.adapters`` entry points.

A third party adds a broker the same way the bundled ones are added: an entry point named by
the URL scheme whose value is a factory ``(url, clock) -> Broker``.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from cloudq.adapters.base import Broker
from cloudq.adapters.urls import redact_url
from cloudq.clock import Clock
from cloudq.distribution import install_hint
from cloudq.errors import AdapterNotFound, ConfigurationError
from cloudq.logsafe import get_logger
from cloudq.plugins import load_plugin

logger = get_logger(__name__)

ENTRY_POINT_GROUP = "cloudq.adapters"
BrokerFactory = Callable[[str, Clock], Broker]

# Schemes the project ships, and the extra that installs each; named in the error when missing.
KNOWN_EXTRAS = {"sqs": "sqs", "pubsub": "pubsub", "servicebus": "servicebus"}


def _builtin(scheme: str) -> BrokerFactory | None:
    if scheme == "memory":
        from cloudq.adapters.memory import open_memory_broker

        return open_memory_broker
    return None


def scheme_of(url: str) -> str:
    scheme = urlsplit(url).scheme
    if not scheme:
        raise ConfigurationError(
            f"broker URL {redact_url(url)!r} has no scheme; expected e.g. 'memory://'"
        )
    return scheme


def find_factory(scheme: str) -> BrokerFactory:
    """The factory for ``scheme``, or ``AdapterNotFound`` naming what to install."""
    builtin = _builtin(scheme)
    if builtin is not None:
        return builtin
    factory: BrokerFactory | None = load_plugin(ENTRY_POINT_GROUP, scheme)
    if factory is not None:
        return factory
    if scheme in KNOWN_EXTRAS:
        raise AdapterNotFound(
            f"no adapter for '{scheme}://' is installed: {install_hint(KNOWN_EXTRAS[scheme])}"
        )
    known = ", ".join(sorted({"memory", *KNOWN_EXTRAS}))
    raise AdapterNotFound(
        f"unknown broker scheme '{scheme}://' (known: {known}); a third-party adapter registers "
        f"itself in the '{ENTRY_POINT_GROUP}' entry-point group"
    )


def open_broker(url: str, clock: Clock) -> Broker:
    """Open a broker connection for ``url``, by its scheme's ``cloudq.adapters`` entry point.

    :param url: the broker URL (``sqs://``, ``pubsub://``, ``servicebus://``, ``memory://``).
    :param clock: the app's clock (``cloudq.clock.FakeClock`` in tests).
    """
    broker = find_factory(scheme_of(url))(url, clock)
    logger.debug("opened broker %s for %s", type(broker).__name__, redact_url(url))
    return broker
