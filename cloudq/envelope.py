"""The envelope: one task invocation as versioned JSON on the wire. No pickle, ever.

``decode`` takes arbitrary bytes and returns an ``Envelope`` or raises ``EnvelopeError``; the
worker dead-letters what it cannot decode instead of crashing or retrying it forever.
Signing is HMAC-SHA256 over a canonical JSON form, with a list of keys so keys can rotate:
the first key signs, any key verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cloudq.adapters.wire import DEAD_LETTER_REASON_ATTRIBUTE
from cloudq.errors import EnvelopeError, SignatureError

ENVELOPE_VERSION: Literal[1] = 1
SIGNATURE_PREFIX = "hmac-sha256:"
_HEX_MAC = re.compile(r"[0-9a-f]{64}")
"""What follows the prefix: a SHA-256 hex digest. Checked before comparing: a non-ASCII
string makes ``hmac.compare_digest`` raise TypeError instead of saying "no match"."""

# Headers the core writes on a dead-lettered envelope.
HEADER_ERROR_TYPE = "cloudq-error-type"
HEADER_ERROR_MESSAGE = "cloudq-error-message"
HEADER_ERROR_TRACEBACK = "cloudq-error-traceback"
HEADER_DEAD_LETTER_REASON = DEAD_LETTER_REASON_ATTRIBUTE
"""The same name as the broker attribute: ``cloudq.adapters.wire`` defines it."""
TRACE_CONTEXT_HEADERS = ("traceparent", "tracestate")
"""W3C trace context (``cloudq.contrib.opentelemetry`` writes it at ``before_publish``, and the
running task's at ``before_execute``). A chain link, chord body or error callback sent after its
parent task carries the parent's, so the canvas stays one trace even where the process that
sends it never saw the parent's span (a processes-pool child ran it). Untrusted when read from
a message: a malformed value is ignored."""


def trace_context(headers: dict[str, str]) -> dict[str, str]:
    """The trace-context headers among ``headers``."""
    return {name: headers[name] for name in TRACE_CONTEXT_HEADERS if name in headers}


class RetryPolicy(BaseModel):
    """How failed attempts are retried; travels with the task so every consumer agrees."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    max_retries: int | None = Field(default=3, ge=0)
    """Retries after the first attempt; None retries forever (the broker's DLQ still guards)."""
    backoff: float = Field(default=0.0, ge=0)
    """Exponential backoff base in seconds (delay = backoff * 2**(attempt-1)); 0: fixed delay."""
    backoff_max: float = Field(default=600.0, ge=0)
    jitter: bool = False
    """Full jitter: a random delay between 0 and the computed one (spreads thundering herds)."""
    default_delay: float = Field(default=180.0, ge=0)
    """Delay when backoff is off and ``retry()`` names no countdown (Celery's default)."""


# One shared default (the model is frozen): a factory would build one per envelope, and again
# per encode, where ``exclude_defaults`` compares against it. Constructed unvalidated (its own
# defaults) so that importing cloudq does not build the model's validator.
_DEFAULT_RETRY = RetryPolicy.model_construct()


class Envelope(BaseModel):
    """One task invocation."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    v: Literal[1]
    """Wire format version; required on the wire so a future format is told apart."""
    id: str
    task: str
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    queue: str
    attempt: int = Field(default=1, ge=1)
    retry: RetryPolicy = _DEFAULT_RETRY
    eta: datetime | None = None
    expires: datetime | None = None
    created_at: datetime
    priority: int | None = None
    root_id: str | None = None
    parent_id: str | None = None
    links: list[dict[str, Any]] = Field(default_factory=list)
    """Signatures to send with this task's result when it succeeds (chains)."""
    errlinks: list[dict[str, Any]] = Field(default_factory=list)
    """Signatures to send when it fails for good."""
    fifo_group: str | None = None
    """Message group on FIFO queues: tasks of one group run in order, one at a time."""
    group_id: str | None = None
    chord_id: str | None = None
    chord_index: int | None = None
    """Position of this header task in its chord: the body gets results in this order."""
    headers: dict[str, str] = Field(default_factory=dict)
    sig: str | None = None

    @field_validator("eta", "expires", "created_at")
    @classmethod
    def _comparable(cls, value: datetime | None) -> datetime | None:
        """Times the worker compares with its clock and adds delays to: aware, and within the
        datetime range once in UTC. A naive time (another producer's) is read as UTC; one that
        overflows in UTC (year 1 at +01:00) would raise in that arithmetic, so it is refused."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise ValueError("outside the datetime range once converted to UTC") from None
        return value

    def encode(self) -> bytes:
        """The bytes that go on the wire."""
        return self.model_dump_json(exclude_defaults=True).encode()


def canonical_json(data: Any) -> bytes:
    """The one canonical form every cloudq HMAC covers: sorted keys, no spaces, UTF-8."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def mac(key: str, payload: bytes) -> str:
    """The signature of ``payload`` with ``key``, scheme prefix included."""
    return SIGNATURE_PREFIX + hmac.new(key.encode(), payload, hashlib.sha256).hexdigest()


def check_mac(given: str | None, payload: bytes, keys: Sequence[str], what: str) -> None:
    """Raise ``SignatureError`` unless one of ``keys`` made ``given`` over ``payload`` (the
    rotation rule: the first key signs, any key verifies). ``given`` is untrusted: any string
    (non-ASCII, not hex) is refused with a reason, never a TypeError."""
    if not given:
        raise SignatureError(f"{what} is unsigned and this app requires signed messages")
    if not given.startswith(SIGNATURE_PREFIX):
        raise SignatureError(f"{what} signature has an unknown scheme")
    if not _HEX_MAC.fullmatch(given.removeprefix(SIGNATURE_PREFIX)):
        raise SignatureError(f"{what} signature is malformed (not a SHA-256 hex digest)")
    sent = given.encode("ascii")
    if not any(hmac.compare_digest(sent, mac(key, payload).encode()) for key in keys):
        raise SignatureError(f"{what} signature does not match any configured key (tampered?)")


def _canonical(envelope: Envelope) -> bytes:
    return canonical_json(envelope.model_dump(mode="json", exclude={"sig"}))


def sign(envelope: Envelope, keys: Sequence[str]) -> Envelope:
    """A copy signed with the first key; unchanged when no keys are configured."""
    if not keys:
        return envelope
    return envelope.model_copy(update={"sig": mac(keys[0], _canonical(envelope))})


def verify(envelope: Envelope, keys: Sequence[str]) -> None:
    """Raise ``SignatureError`` unless a configured key signed this envelope as it is."""
    if not keys:
        return
    try:
        canonical = _canonical(envelope)
    except (TypeError, ValueError) as exc:  # serialization errors are ValueErrors
        raise SignatureError(f"envelope signature cannot be checked: {exc}") from None
    check_mac(envelope.sig, canonical, keys, "envelope")


def decode(data: bytes) -> Envelope:
    """Bytes from a queue to an ``Envelope``; anything else raises ``EnvelopeError``."""
    try:
        return Envelope.model_validate_json(data)
    except ValidationError as exc:
        raise EnvelopeError(_diagnose(data, exc)) from None
    except Exception as exc:  # noqa: BLE001 - the contract is one error type for any input
        raise EnvelopeError(f"not a cloudq envelope: {type(exc).__name__}: {exc}") from None


def _diagnose(data: bytes, exc: ValidationError) -> str:
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError):
        return "not a cloudq envelope: body is not JSON"
    if not isinstance(raw, dict):
        return f"not a cloudq envelope: body is JSON {type(raw).__name__}, not an object"
    version = raw.get("v")
    if version != ENVELOPE_VERSION:
        return (
            f"unsupported envelope version {version!r}; "
            f"this cloudq reads version {ENVELOPE_VERSION}"
        )
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "envelope"
    return f"malformed envelope: {where}: {first['msg']} ({exc.error_count()} error(s))"
