"""Claim checks: a payload over the broker's size limit travels in object storage.

The queue then carries a small JSON pointer instead of the envelope. The consumer fetches the
body transparently and deletes the object after the message's final acknowledgement. Stores are
found by URL scheme (``s3://bucket/prefix``, ``gs://bucket/prefix``, ``azblob://container/prefix``)
in the ``cloudq.claimchecks`` entry points.

Two pointer formats (``claim_check_format``); consumers read both, whatever the setting:

- ``cloudq`` (default): ``{"cloudq-claim-check": "<url>"}``, any store.
- ``sqs-extended``: the format of AWS's SQS Extended Client libraries (Java, Python),
  ``["software.amazon.payloadoffloading.PayloadS3Pointer", {"s3BucketName": ..., "s3Key": ...}]``
  with the ``ExtendedPayloadSize`` attribute, so that consumers written with those libraries
  read cloudq's large messages; their legacy ``MessageS3Pointer`` is read too. S3 only.
  Their objects sit at the bucket's root: the store's URL must have no prefix to read them
  (its checks refuse keys outside it).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

from cloudq.adapters import scheme_of
from cloudq.adapters.urls import redact_url
from cloudq.distribution import install_hint
from cloudq.errors import (
    AdapterNotFound,
    ClaimCheckMissing,
    ClaimCheckRefused,
    ConfigurationError,
)
from cloudq.logsafe import get_logger
from cloudq.plugins import load_plugin

if TYPE_CHECKING:
    from cloudq.adapters.base import Delivery
    from cloudq.app import App

logger = get_logger("cloudq.claimcheck")

POINTER_KEY = "cloudq-claim-check"
_POINTER_MARK = POINTER_KEY.encode()
FORMATS = ("cloudq", "sqs-extended")
EXTENDED_POINTER_CLASS = "software.amazon.payloadoffloading.PayloadS3Pointer"
LEGACY_EXTENDED_POINTER_CLASS = "com.amazon.sqs.javamessaging.MessageS3Pointer"
EXTENDED_SIZE_ATTRIBUTE = "ExtendedPayloadSize"
"""The Extended Client's marker attribute: the parked body's size in bytes."""
_EXTENDED_MARK = b"S3Pointer"
_EXTENDED_CLASSES = (EXTENDED_POINTER_CLASS, LEGACY_EXTENDED_POINTER_CLASS)
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
    """The store for ``url``, by its scheme's ``cloudq.claimchecks`` entry point.

    :param url: where oversized bodies are parked: ``s3://BUCKET/PREFIX``, ``gs://``,
        ``azblob://``, or ``memory://NAME`` (built in, shared per name in a process).
    """
    scheme = scheme_of(url)
    if scheme == "memory":
        return _memory_stores.setdefault(url, MemoryClaimCheckStore(url))
    factory: ClaimCheckFactory | None = load_plugin(ENTRY_POINT_GROUP, scheme)
    if factory is not None:
        return factory(url)
    extra = KNOWN_EXTRAS.get(scheme)
    hint = f": {install_hint(extra)}" if extra else ""
    raise AdapterNotFound(f"no claim-check store for '{scheme}://' is installed{hint}")


def pointer(url: str) -> bytes:
    return json.dumps({POINTER_KEY: url}).encode()


def check_format(url: str, fmt: str) -> None:
    """Refuse a format the store cannot carry, before anything is parked."""
    if fmt not in FORMATS:
        raise ConfigurationError(f"claim_check_format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "sqs-extended" and scheme_of(url) != "s3":
        raise ConfigurationError(
            "claim_check_format 'sqs-extended' is S3's format: claim_check_url must be "
            f"s3://bucket[/prefix], not {redact_url(url)!r}"
        )


def pointer_message(url: str, size: int, fmt: str = "cloudq") -> tuple[bytes, dict[str, str]]:
    """The body and attributes that stand for a body of ``size`` bytes parked at ``url``."""
    check_format(url, fmt)
    if fmt == "cloudq":
        return pointer(url), {POINTER_KEY: url}
    bucket, _, key = url.removeprefix("s3://").partition("/")
    body = json.dumps([EXTENDED_POINTER_CLASS, {"s3BucketName": bucket, "s3Key": key}])
    return body.encode(), {EXTENDED_SIZE_ATTRIBUTE: str(size), POINTER_KEY: url}


def _extended_url(data: object) -> str | None:
    if not (isinstance(data, list) and len(data) == 2 and data[0] in _EXTENDED_CLASSES):
        return None
    where = data[1]
    if not isinstance(where, dict):
        return None
    bucket, key = where.get("s3BucketName"), where.get("s3Key")
    if not (isinstance(bucket, str) and isinstance(key, str) and bucket and key):
        return None
    return f"s3://{bucket}/{key}"


def pointer_url(body: bytes) -> str | None:
    """The object URL if ``body`` is a claim-check pointer in either format, else None (cheap for
    normal bodies). An Extended Client pointer becomes ``s3://bucket/key``; the store then
    checks that it lies under its own bucket and prefix, as for ours."""
    head = body[:80]
    ours = _POINTER_MARK in head
    if not ours and _EXTENDED_MARK not in head:
        return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # off a queue: nested 10,000 deep is just not a pointer
        return None
    if not ours:
        return _extended_url(data)
    url = data.get(POINTER_KEY) if isinstance(data, dict) else None
    return url if isinstance(url, str) else None


def drop_parked(app: App, deliveries: Sequence[Delivery]) -> None:
    """Delete the parked bodies of ``deliveries``, which must be acknowledged for good already:
    deleted earlier, a failed ack's redelivery would find its body gone. Never raises (an
    orphan object costs storage until the bucket's lifecycle rule, not a task)."""
    store = app.claim_checks
    if store is None:
        return
    for delivery in deliveries:
        url = pointer_url(delivery.body)
        if url is None:
            continue
        try:
            store.delete(url)
        except Exception as exc:  # noqa: BLE001 - see above
            logger.warning("could not delete claim-check object %s: %s", url, exc)


def acknowledge(
    app: App, deliveries: Sequence[Delivery], ack: Callable[[Sequence[Delivery]], None]
) -> None:
    """``ack(deliveries)``, then, only once it returned, ``drop_parked``. The one rule for
    every path that acknowledges (settle, the worker's batched acks, redrive); a failed ack
    raises and deletes nothing."""
    ack(deliveries)
    drop_parked(app, deliveries)


class ObjectStoreClaimChecks(ABC):
    """A store in a cloud's object storage (S3, Cloud Storage, Azure Blob): the URLs, and the
    checks every such store must make the same way; subclasses make the three object calls.

    ``get`` and ``delete`` only take URLs under the store's own bucket and prefix: the URL comes
    off a queue, and a forged message must not make a worker read or delete any other object
    its credentials reach.
    """

    scheme: ClassVar[str]
    """The URL scheme: ``s3``, ``gs``, ``azblob``."""
    bucket_word: ClassVar[str] = "bucket"
    """What the provider calls a bucket (Azure: container), for messages."""

    def __init__(self, bucket: str, prefix: str) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact_url(self.base_url)!r})"

    @property
    def base_url(self) -> str:
        root = f"{self.scheme}://{self.bucket}"
        return f"{root}/{self.prefix}" if self.prefix else root

    def object_name(self, url: str) -> str:
        """The object name of ``url``, which must lie under this store's bucket and prefix."""
        head = f"{self.scheme}://{self.bucket}/"
        name = url[len(head) :] if url.startswith(head) else ""
        if not name or (self.prefix and not name.startswith(self.prefix + "/")):
            raise ClaimCheckRefused(
                f"claim-check URL {redact_url(url)!r} is not under this store "
                f"({redact_url(self.base_url)}/): refused, "
                "so that a forged message cannot reach other objects"
            )
        return name

    def put(self, key: str, body: bytes) -> str:
        name = f"{self.prefix}/{key}" if self.prefix else key
        url = f"{self.scheme}://{self.bucket}/{name}"
        self._upload(name, body, url)
        return url

    def get(self, url: str) -> bytes:
        """The parked body; ``ClaimCheckMissing`` if it is gone."""
        body = self._download(self.object_name(url), url)
        if body is None:
            raise ClaimCheckMissing(
                f"claim-check object {redact_url(url)} is gone (deleted after an earlier "
                "delivery, or "
                f"expired by the {self.bucket_word}'s lifecycle rule)"
            )
        return body

    def delete(self, url: str) -> None:
        """Delete the object; one already gone is fine (idempotent)."""
        self._delete(self.object_name(url), url)

    @abstractmethod
    def _upload(self, name: str, body: bytes, url: str) -> None:
        """Write the object (``url`` is for error messages)."""

    @abstractmethod
    def _download(self, name: str, url: str) -> bytes | None:
        """The object's bytes, or None if there is no such object (a missing bucket raises)."""

    @abstractmethod
    def _delete(self, name: str, url: str) -> None:
        """Delete the object; a missing object is not an error."""


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
            raise ClaimCheckMissing(f"claim-check object {redact_url(url)} is gone") from None

    def delete(self, url: str) -> None:
        self.objects.pop(url, None)


_memory_stores: dict[str, MemoryClaimCheckStore] = {}
