"""Claim checks: a payload over the broker's size limit travels in object storage.

The queue then carries a small JSON pointer (``{"cloudq-claim-check": "<url>"}``) instead of the
envelope. The consumer fetches the body transparently and deletes the object after the message's
final acknowledgement. Stores are found by URL scheme (``s3://bucket/prefix``,
``gs://bucket/prefix``, ``azblob://container/prefix``) in the ``cloudq.claimchecks`` entry points.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from cloudq.adapters import scheme_of
from cloudq.errors import AdapterNotFound, ClaimCheckMissing
from cloudq.plugins import load_plugin

POINTER_KEY = "cloudq-claim-check"
ENTRY_POINT_GROUP = "cloudq.claimchecks"
KNOWN_EXTRAS = {"s3": "sqs", "gs": "pubsub", "azblob": "servicebus"}


@runtime_checkable
class ClaimCheckStore(Protocol):
    """Where oversized bodies are parked."""

    def put(self, key: str, body: bytes) -> str:
        """Store ``body`` under ``key``; return the URL that ``get`` and ``delete`` take."""
        ...

    def get(self, url: str) -> bytes:
        """The stored body; raise if it is gone."""
        ...

    def delete(self, url: str) -> None:
        """Remove the object (idempotent)."""
        ...


ClaimCheckFactory = Callable[[str], ClaimCheckStore]


def open_claim_check_store(url: str) -> ClaimCheckStore:
    """The store for ``url``; ``memory://name`` is built in (shared per name in a process)."""
    scheme = scheme_of(url)
    if scheme == "memory":
        return _memory_stores.setdefault(url, MemoryClaimCheckStore(url))
    factory: ClaimCheckFactory | None = load_plugin(ENTRY_POINT_GROUP, scheme)
    if factory is not None:
        return factory(url)
    extra = KNOWN_EXTRAS.get(scheme)
    hint = f": pip install 'cloudq[{extra}]'" if extra else ""
    raise AdapterNotFound(f"no claim-check store for '{scheme}://' is installed{hint}")


def pointer(url: str) -> bytes:
    return json.dumps({POINTER_KEY: url}).encode()


def pointer_url(body: bytes) -> str | None:
    """The object URL if ``body`` is a claim-check pointer, else None (cheap for normal bodies)."""
    if POINTER_KEY.encode() not in body[:64]:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    url = data.get(POINTER_KEY) if isinstance(data, dict) else None
    return url if isinstance(url, str) else None


class MemoryClaimCheckStore:
    """``memory://``: objects in a dict, for tests and the demo."""

    def __init__(self, url: str) -> None:
        self.prefix = url.rstrip("/")
        self.objects: dict[str, bytes] = {}

    def put(self, key: str, body: bytes) -> str:
        url = f"{self.prefix}/{key}"
        self.objects[url] = body
        return url

    def get(self, url: str) -> bytes:
        try:
            return self.objects[url]
        except KeyError:
            raise ClaimCheckMissing(f"claim-check object {url} is gone") from None

    def delete(self, url: str) -> None:
        self.objects.pop(url, None)


_memory_stores: dict[str, MemoryClaimCheckStore] = {}
