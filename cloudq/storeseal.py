"""Seals on what the result store keeps for later sends: the store is inside the signing boundary.

A worker signs what it sends. When what it sends comes back from the result store (a chord's
body, the header results the body gets, the stored result an idempotent task's links are
re-fired with), whoever can write that store could otherwise have the worker sign a message of
their making. So, with ``signing_keys`` set, each such value is stored sealed: an HMAC over the
canonical form of the value bound to what it belongs to (``chord-body`` + chord id,
``chord-part`` + chord id + index, ``result`` + task id), made and checked by the envelope's own
helpers (same keys, same rotation: the first key seals, any key opens). Reading a seal that does
not verify raises ``SignatureError``; the caller sends nothing from it.

Without ``signing_keys`` values are stored as they are, and read as they are: the store is then
trusted, as the queue is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cloudq.envelope import canonical_json, check_mac, mac
from cloudq.errors import SignatureError

SEAL_KEY = "cloudq-seal"
"""The sealed form: ``{"cloudq-seal": "<hmac>", "value": <value>}``."""
VALUE_KEY = "value"
RESULT_SEAL = "result"
"""The purpose of a SUCCESS record's seal (``TaskResult.seal``, over its result and task id)."""


def _payload(purpose: str, bound: Sequence[Any], value: Any) -> bytes:
    return canonical_json({"purpose": purpose, "bound": list(bound), "value": value})


def seal_of(keys: Sequence[str], purpose: str, bound: Sequence[Any], value: Any) -> str | None:
    """The seal of ``value`` (JSON data), or None when the app does not sign."""
    if not keys:
        return None
    return mac(keys[0], _payload(purpose, bound, value))


def check_seal(
    keys: Sequence[str], given: str | None, purpose: str, bound: Sequence[Any], value: Any
) -> None:
    """Raise ``SignatureError`` unless ``given`` seals ``value`` (nothing to check unsigned)."""
    if keys:
        check_mac(given, _payload(purpose, bound, value), keys, f"stored {purpose}")


def seal(keys: Sequence[str], purpose: str, bound: Sequence[Any], value: Any) -> Any:
    """``value`` as the store should keep it: sealed when the app signs, else unchanged."""
    if not keys:
        return value
    return {SEAL_KEY: seal_of(keys, purpose, bound, value), VALUE_KEY: value}


def unseal(keys: Sequence[str], purpose: str, bound: Sequence[Any], stored: Any) -> Any:
    """The value ``seal`` stored, checked; ``SignatureError`` if it was changed or is unsealed.

    Unsigned apps read a sealed value too (signing turned off after it was stored).
    """
    sealed = isinstance(stored, dict) and SEAL_KEY in stored
    if not keys:
        return stored[VALUE_KEY] if sealed and VALUE_KEY in stored else stored
    if not sealed or VALUE_KEY not in stored:
        raise SignatureError(f"stored {purpose} is unsealed and this app requires signed messages")
    given = stored[SEAL_KEY]
    check_seal(keys, given if isinstance(given, str) else "?", purpose, bound, stored[VALUE_KEY])
    return stored[VALUE_KEY]


def seal_chord_body(keys: Sequence[str], chord_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """A chord's body signature as ``chord_start`` should store it."""
    sealed: dict[str, Any] = seal(keys, "chord-body", [chord_id], body)
    return sealed


def open_chord_body(keys: Sequence[str], chord_id: str, stored: Any) -> dict[str, Any]:
    """The body ``seal_chord_body`` stored, checked; ``SignatureError`` otherwise."""
    body = unseal(keys, "chord-body", [chord_id], stored)
    if not isinstance(body, dict):
        raise SignatureError(f"stored chord-body of chord {chord_id} is not a signature")
    return body


def claimed_task_id(stored: Any) -> str | None:
    """The task id a stored chord body claims, sealed or not, unchecked: only to record its
    FAILURE where the caller waits when the body is refused (whoever can change the store can
    write that record anyway)."""
    data = stored.get(VALUE_KEY, stored) if isinstance(stored, dict) else None
    options = data.get("options") if isinstance(data, dict) else None
    task_id = options.get("task_id") if isinstance(options, dict) else None
    return task_id if isinstance(task_id, str) else None


def seal_chord_part(keys: Sequence[str], chord_id: str, index: int, value: Any) -> Any:
    return seal(keys, "chord-part", [chord_id, index], value)


def open_chord_parts(keys: Sequence[str], chord_id: str, stored: Sequence[Any]) -> list[Any]:
    """The header results in order, each checked against its chord id and position."""
    return [unseal(keys, "chord-part", [chord_id, i], v) for i, v in enumerate(stored)]
