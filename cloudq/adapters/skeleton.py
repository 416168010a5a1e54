"""The skeleton every adapter fills in: the rules all brokers share, written once.

``BrokerBase`` implements the parts of the ``Broker`` contract that do not depend on the
provider, as template methods (dramatiq's ``Broker``, Powertools' ``BasePartialProcessor``):

- ``send`` checks the batch and each message (an empty send does nothing; too many messages, a
  group on a queue without groups, a delay outside ``0..limits.max_delay_seconds``, and the
  provider's own rules in ``_check_message``), every message before the first is sent, then
  hands them to ``_send``;
- ``dead_letter`` copies the message to ``<queue>-dlq`` with its reason (``fit_reason``: one way
  of cutting it to what the provider takes), then acks the original: never lost;
- ``physical_name`` is prefix + name, checked against the provider's naming rule;
- ``_call`` turns the SDK's errors into ``BrokerError`` (``_error``), a missing queue into the one
  ``QueueNotFoundError``.

An adapter implements only its provider's calls and rules. Nothing here imports a cloud SDK.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import ClassVar, Generic, TypeVar

from cloudq.adapters.base import BrokerLimits, Delivery, OutgoingMessage
from cloudq.adapters.wire import DEAD_LETTER_REASON_ATTRIBUTE, dead_letter_queue_name, is_fifo
from cloudq.errors import BrokerError, ConfigurationError, MessageTooLarge

__all__ = ["AsyncSenderBase", "BrokerBase", "PartialSendError", "QueueNotFoundError", "fit_reason"]

T = TypeVar("T")
B = TypeVar("B", bound="BrokerBase")

ENSURE_HINT = (
    "queues are created by ensure() (the worker runs it at start unless create_missing_queues "
    "is off) or by Terraform"
)
"""What a missing queue's error tells the reader to do, on every provider."""


class QueueNotFoundError(BrokerError):
    """The named queue (or topic, subscription) is missing: ``ensure`` (the worker, unless
    ``create_missing_queues`` is off) or Terraform creates queues."""


class PartialSendError(BrokerError):
    """Some messages of a ``send`` were not accepted; the others were sent, exactly once.

    ``failed`` maps the index of each unsent message in the ``send`` call to the provider's
    reason, so a caller re-sends those alone instead of duplicating the rest.
    """

    def __init__(self, message: str, failed: dict[int, str]) -> None:
        super().__init__(message)
        self.failed = failed


def fit_reason(reason: str, max_chars: int | None = None, max_bytes: int | None = None) -> str:
    """A dead-letter reason cut to ``max_chars`` characters and ``max_bytes`` of UTF-8 (never
    inside a character); ``"-"`` for an empty one, since no provider keeps an empty value."""
    if max_chars is not None:
        reason = reason[:max_chars]
    if max_bytes is not None and len(reason) * 4 > max_bytes:  # cheap test: 4 bytes at most
        reason = reason.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")
    return reason or "-"


class BrokerBase(ABC):
    """Shared checks, dead-lettering, naming and error mapping of a broker (see the module).

    A subclass sets ``limits`` (and ``prefix``) in its ``__init__``, and implements ``_send``,
    ``_send_dead_letter`` and the rest of the ``Broker`` protocol with its provider's calls.
    """

    provider: ClassVar[str] = "broker"
    """The provider's name as error messages show it (``SQS``, ``Pub/Sub``, ``Service Bus``)."""
    groups_on_fifo: ClassVar[bool] = True
    """Whether FIFO queues take message groups; False: no queue takes one (no sessions)."""
    reason_max_chars: ClassVar[int | None] = None
    """Longest dead-letter reason kept, in characters (``None``: no such limit)."""
    reason_max_bytes: ClassVar[int | None] = None
    """Most UTF-8 bytes of a dead-letter reason (``None``: no such limit)."""
    name_pattern: ClassVar[re.Pattern[str] | None] = None
    """The provider's rule for a physical queue name; ``None``: any name."""
    name_rule: ClassVar[str] = ""
    """That rule in words, for the error."""
    max_name_chars: ClassVar[int | None] = None
    max_attributes: ClassVar[int | None] = None
    """Attributes a message may carry on the provider (``None``: no such limit)."""
    reserved_attributes: ClassVar[int] = 0
    """Of those, the slots cloudq keeps for its own (message id, reason, encoding...)."""

    limits: BrokerLimits
    prefix: str = ""
    _errors: tuple[type[Exception], ...] = ()
    """The SDK's error types that ``_call`` maps to ``BrokerError``."""

    # --- naming ---------------------------------------------------------------------------------
    def physical_name(self, queue: str) -> str:
        """The provider's name of a queue: prefix + name, checked against its rule."""
        name = self.prefix + queue
        self._check_name(name)
        return name

    def logical_name(self, physical: str) -> str:
        """The cloudq queue of a provider name (the inverse of ``physical_name``)."""
        return physical.removeprefix(self.prefix)

    def _check_name(self, name: str) -> None:
        if not self._valid_name(name):
            raise ConfigurationError(
                f"{name!r} is not a valid {self.provider} queue name: {self.name_rule}"
            )

    def _valid_name(self, name: str) -> bool:
        """The provider's naming rule: ``name_pattern`` and ``max_name_chars`` by default."""
        if self.max_name_chars is not None and len(name) > self.max_name_chars:
            return False
        return self.name_pattern is None or self.name_pattern.fullmatch(name) is not None

    def _name(self, queue: str) -> str:
        """The physical name for messages, even where the name itself is invalid."""
        try:
            return self.physical_name(queue)
        except ConfigurationError:
            return self.prefix + queue

    # --- errors ---------------------------------------------------------------------------------
    def _call(self, operation: str, queue: str, fn: Callable[[], T]) -> T:
        """One SDK call; the SDK's errors become ``BrokerError`` naming operation and queue."""
        try:
            return fn()
        except self._errors as exc:
            raise self._error(operation, queue, exc) from exc

    def _error(self, operation: str, queue: str, exc: Exception) -> BrokerError | MessageTooLarge:
        """The error to raise for ``exc``; a provider maps its own codes, then calls this."""
        return BrokerError(
            f"{self.provider} {operation} on queue {self._name(queue)!r} failed: {exc}"
        )

    def _not_found(self, operation: str, what: str, detail: str = "") -> QueueNotFoundError:
        """A missing queue, said the same way everywhere; ``what`` names it (queue or path)."""
        why = f" ({detail})" if detail else ""
        return QueueNotFoundError(
            f"{self.provider} {operation} on {what}: it does not exist{why}; {ENSURE_HINT}"
        )

    def _too_large(
        self, queue: str, size: int, limit: int, counted: str = "body"
    ) -> MessageTooLarge:
        return MessageTooLarge(
            f"message of {size} bytes ({counted}) exceeds the {limit} bytes {self.provider} queue "
            f"{self._name(queue)!r} accepts; nothing was sent"
        )

    # --- send -----------------------------------------------------------------------------------
    def send(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        """Check the batch and every message, then ``_send`` them: a bad one sends nothing."""
        if self.check_send(queue, messages):
            self._send(queue, messages)

    def check_send(self, queue: str, messages: Sequence[OutgoingMessage]) -> bool:
        """``send``'s checks, shared with ``AsyncSenderBase.send``: raise for a bad batch or
        message; False for an empty one (nothing to send)."""
        if not messages:
            return False
        batch = self.limits.max_batch
        if len(messages) > batch:
            raise BrokerError(
                f"send of {len(messages)} messages exceeds the batch of {batch} on {self.provider}"
            )
        fifo = is_fifo(queue)
        cap = self.limits.max_delay_seconds
        for m in messages:
            if m.group is not None and not (fifo and self.groups_on_fifo):
                raise ConfigurationError(self._group_refused(queue, m.group))
            delay = m.delay_seconds
            if delay < 0 or (cap is not None and delay > cap):
                raise BrokerError(self._delay_refused(queue, delay))
            self._check_attribute_count(m.attributes)
            self._check_message(queue, m)
        return True

    def _check_attribute_count(self, attributes: dict[str, str]) -> None:
        if self.max_attributes is None:
            return
        room = self.max_attributes - self.reserved_attributes
        if len(attributes) > room:
            raise ConfigurationError(
                f"{self.provider} allows {self.max_attributes} attributes per message and cloudq "
                f"keeps {self.reserved_attributes}: at most {room} may be set, "
                f"got {len(attributes)}"
            )

    def _group_refused(self, queue: str, group: str) -> str:
        if not self.groups_on_fifo:
            return (
                f"message group {group!r} given for {self.provider} queue {queue!r}: cloudq uses "
                f"no message groups on {self.provider}"
            )
        return (
            f"message group {group!r} given for {queue!r}, a standard queue: groups exist only "
            "on FIFO queues (names ending in '.fifo')"
        )

    def _delay_refused(self, queue: str, delay: float) -> str:
        cap = self.limits.max_delay_seconds
        text = f"delay {delay}s outside 0..{cap}s for {self.provider} queue {queue!r}"
        if cap == 0:
            text += (
                f": {self.provider} has no native delay (limits.max_delay_seconds is 0, and the "
                "core holds messages due later)"
            )
        return text

    def _check_message(self, queue: str, m: OutgoingMessage) -> None:
        """The provider's own rules for one message; by default, its body fits."""
        if len(m.body) > self.limits.max_message_bytes:
            raise self._too_large(queue, len(m.body), self.limits.max_message_bytes)

    @abstractmethod
    def _send(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        """Send checked messages (at most ``limits.max_batch``) with the provider's calls."""

    # --- dead letters ---------------------------------------------------------------------------
    def dead_letter(self, delivery: Delivery, reason: str, body: bytes | None = None) -> None:
        """Send a copy (with ``body`` if given) to ``<queue>-dlq`` carrying the reason, then ack
        the original: never lose it. A failed copy raises, and the original stays."""
        dlq = dead_letter_queue_name(delivery.queue)
        payload = delivery.body if body is None else body
        attributes = {
            k: v for k, v in delivery.attributes.items() if k != DEAD_LETTER_REASON_ATTRIBUTE
        }
        room = self._reason_room(delivery, dlq, payload, attributes)
        attributes[DEAD_LETTER_REASON_ATTRIBUTE] = fit_reason(
            self._clean_reason(reason), self.reason_max_chars, room
        )
        self._send_dead_letter(delivery, dlq, payload, attributes)
        self.ack([delivery])

    def _reason_room(
        self, delivery: Delivery, dlq: str, body: bytes, attributes: dict[str, str]
    ) -> int | None:
        """Bytes the reason may take in this dead letter (by default ``reason_max_bytes``)."""
        return self.reason_max_bytes

    def _clean_reason(self, reason: str) -> str:
        """The reason as the provider can carry it (SQS: XML characters only)."""
        return reason

    @abstractmethod
    def _send_dead_letter(
        self, delivery: Delivery, dlq: str, body: bytes, attributes: dict[str, str]
    ) -> None:
        """Send the dead letter (``attributes`` carry the reason) to ``dlq``."""

    @abstractmethod
    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Delete the messages for good (the contract's ``ack``)."""


class AsyncSenderBase(ABC, Generic[B]):
    """The skeleton of an ``AsyncSender`` (``cloudq.adapters.base``): the broker's own checks
    (``check_send``) and error mapping (``_error``) around the provider's async calls, so an
    awaited send refuses and fails exactly as ``broker.send`` does. One per event loop."""

    def __init__(self, broker: B) -> None:
        self.broker = broker

    async def send(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        if self.broker.check_send(queue, messages):
            await self._send(queue, messages)

    async def _call(self, operation: str, queue: str, fn: Callable[[], Awaitable[T]]) -> T:
        """``BrokerBase._call`` awaited: the SDK's errors become the broker's ``BrokerError``."""
        try:
            return await fn()
        except self.broker._errors as exc:
            raise self.broker._error(operation, queue, exc) from exc

    @abstractmethod
    async def _send(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        """Send checked messages with the provider's async calls."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close the async client (on its loop)."""
