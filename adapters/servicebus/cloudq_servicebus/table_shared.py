"""What workers, handlers and beats share through Azure Tables besides results: chord counters,
rate-limit slots, beat claims, and the control plane's heartbeats and command inboxes.

Entity layout, in the results table (task results are PartitionKey = task id, RowKey = ``""``):

- ``cloudq:chord:<id>``: RowKey ``""`` is the header (``size``, ``body``, ``fired``); RowKey
  ``p<index, 10 digits>`` is one finished header task (``result``), so parts sort in order.
- ``cloudq:rate:<key>``, ``cloudq:beat:<key>``, ``cloudq:marker:<key>``: RowKey ``""``.
- ``cloudq:ctl:workers``: one partition listing live workers, RowKey = the worker id, with the
  worker's ``record`` and its command inbox (``cmds``: JSON ``[[expires_at, command], ...]``).
  ``cloudq status`` is one partition query, never a scan of the results.
- ``cloudq:revoked``: one partition of revoked task ids (``cloudq revoke``), RowKey = the id,
  with ``task_id`` and ``expires_at``; a worker's refresh is one partition query.

Keys are escaped (``/ \\ # ?``, ``%`` and control characters as ``%XX``; long ones shortened by a
hash), since Azure Tables refuses those characters in keys. Azure Tables has no TTL: entities carry
``expires_at`` (epoch seconds by the injected clock), readers treat a past one as absent, and a
lifecycle job may delete them. There is no event stream (nothing cheap to tail; use Redis).

Every update is a read-check-replace under the entity's ETag (the backend's ``_replace_if``), so it
is correct with any number of writers: a chord fires once (``fired`` set only where it is false),
a beat tick is claimed once, a rate slot is taken once, and a heartbeat takes exactly the commands
it replaced. Rate slots are timed by the callers' clocks: keep them in sync (NTP).

A chord part is an entity of its own, so duplicate or concurrent parts never contend: each part
upserts its entity and counts the parts (a key-only partition query); the part that sees all of
them sets ``fired``. Long text (a chord body or result, a worker record) is split over properties
of ``MAX_PROPERTY_CHARS`` (``body``, ``body_1``, ...) up to ``MAX_TEXT_CHARS``; beyond that the
write is refused with an error (return a blob name instead): an entity holds at most 1 MiB.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from cloudq.clock import Clock
from cloudq.errors import BrokerError

MAX_PROPERTY_CHARS = 32_768
"""An Azure Tables string property holds 64 KiB of UTF-16: 32 K characters."""
MAX_TEXT_CHUNKS = 12
"""Properties one long text may span: 768 KiB, leaving room in the 1 MiB entity for the rest."""
MAX_TEXT_CHARS = MAX_TEXT_CHUNKS * MAX_PROPERTY_CHARS
MAX_KEY_CHARS = 200
"""Longer (escaped) keys are shortened with a hash: a key holds 1 KiB of UTF-16 at most."""
KEY_KEPT_CHARS = 100
RATE_KEEP_SECONDS = 3600.0
"""A rate entity counts as gone this long after its next free slot (nothing to space from)."""
WORKERS = "cloudq:ctl:workers"
REVOKED = "cloudq:revoked"
BATCH_ENTITIES = 100
"""Azure Tables' limit of operations in one transaction (one partition)."""
HEADER = ""
_KEY_UNSAFE = re.compile(r"[/\\#?%\x00-\x1f\x7f-\x9f]")


def _key(text: str) -> str:
    """``text`` as a valid, unique PartitionKey or RowKey."""
    safe = _KEY_UNSAFE.sub(lambda m: f"%{ord(m.group()):02X}", text)
    if len(safe) > MAX_KEY_CHARS:
        safe = f"{safe[:KEY_KEPT_CHARS]}~{hashlib.sha256(text.encode()).hexdigest()}"
    return safe


def _part_row(index: int) -> str:
    return f"p{index:010d}"


def _put_text(entity: dict[str, Any], name: str, text: str, what: str) -> dict[str, Any]:
    """Set ``name`` (and ``name_1``, ... if long) to ``text``; returns ``entity``."""
    step = MAX_PROPERTY_CHARS if text.isascii() else MAX_PROPERTY_CHARS // 2  # UTF-16 pairs
    chunks = [text[i : i + step] for i in range(0, len(text), step)] or [""]
    if len(chunks) > MAX_TEXT_CHUNKS:
        raise BrokerError(
            f"{what} is {len(text)} characters of JSON; an Azure table entity holds about "
            f"{MAX_TEXT_CHARS}: keep it smaller (e.g. pass a blob name)"
        )
    entity[name] = chunks[0]
    for i, chunk in enumerate(chunks[1:], 1):
        entity[f"{name}_{i}"] = chunk
    return entity


def _get_text(entity: Any, name: str) -> str:
    parts = [str(entity.get(name) or "")]
    while (chunk := entity.get(f"{name}_{len(parts)}")) is not None:
        parts.append(str(chunk))
    return "".join(parts)


def _without_text(entity: Any, name: str) -> dict[str, Any]:
    """A copy of ``entity``'s properties without text ``name`` (to replace it)."""
    return {k: v for k, v in entity.items() if k != name and not re.fullmatch(rf"{name}_\d+", k)}


class AzureTableShared:
    """Base of ``AzureTableBackend``: ``ChordStore``, ``RateLimiter``, ``BeatStore`` and
    ``ControlStore``."""

    table: str
    _client: Any
    _clock: Clock
    _errors: tuple[type[Exception], ...]

    def _error(self, operation: str, task_id: str | None, exc: Exception) -> BrokerError:
        raise NotImplementedError

    def _read_entity(self, partition: str, row: str) -> Any:
        raise NotImplementedError

    def _replace_if(
        self,
        partition: str,
        row: str,
        change: Callable[[Any], dict[str, Any] | None],
        what: str,
    ) -> tuple[Any, dict[str, Any] | None]:
        raise NotImplementedError

    @contextmanager
    def _mapped(self, operation: str, what: str) -> Iterator[None]:
        try:
            yield
        except self._errors as exc:
            raise self._error(operation, what, exc) from exc

    def _now(self) -> float:
        return self._clock.now().timestamp()

    def _live(self, entity: Any) -> bool:
        """The entity exists and has not expired (by the injected clock)."""
        if entity is None:
            return False
        expiry = entity.get("expires_at")
        return expiry is None or float(expiry) > self._now()

    def _live_entity(self, partition: str, row: str) -> Any:
        entity = self._read_entity(partition, row)
        return entity if self._live(entity) else None

    # --- chords ---------------------------------------------------------------------------------
    def chord_start(
        self, chord_id: str, size: int, body: dict[str, Any], expires_seconds: float | None
    ) -> None:
        header: dict[str, Any] = {
            "PartitionKey": f"cloudq:chord:{_key(chord_id)}",
            "RowKey": HEADER,
            "size": size,
            "fired": False,
        }
        _put_text(header, "body", json.dumps(body), f"the body of chord {chord_id!r}")
        if expires_seconds is not None:
            header["expires_at"] = self._now() + expires_seconds
        with self._mapped("chord start", chord_id):
            self._replace_if(
                header["PartitionKey"],
                HEADER,
                lambda current: None if self._live(current) else header,
                f"chord {chord_id!r}",
            )

    def chord_part_done(
        self, chord_id: str, index: int, result: Any
    ) -> tuple[dict[str, Any], list[Any]] | None:
        from azure.data.tables import UpdateMode

        partition = f"cloudq:chord:{_key(chord_id)}"
        with self._mapped("chord part", chord_id):
            header = self._live_entity(partition, HEADER)
            if header is None or header["fired"]:
                return None  # unknown, expired, fired or failed: nothing left to count
            size = int(header["size"])
            part: dict[str, Any] = {"PartitionKey": partition, "RowKey": _part_row(index)}
            _put_text(part, "result", json.dumps(result), f"part {index} of chord {chord_id!r}")
            if header.get("expires_at") is not None:
                part["expires_at"] = header["expires_at"]
            self._client.upsert_entity(part, mode=UpdateMode.REPLACE)  # a duplicate: same row
            if sum(1 for _ in self._parts(partition, size, select=["RowKey"])) < size:
                return None
            fired = self._fire(partition, chord_id)
            if fired is None:
                return None
            results = [json.loads(_get_text(p, "result")) for p in self._parts(partition, size)]
        return json.loads(_get_text(fired, "body")), results

    def _fire(self, partition: str, chord_id: str) -> Any:
        """Set the live header's ``fired`` where it is false: the header if this call did."""

        def fire(current: Any) -> dict[str, Any] | None:
            if not self._live(current) or current["fired"]:
                return None
            return {**current, "fired": True}

        current, won = self._replace_if(partition, HEADER, fire, f"chord {chord_id!r}")
        return None if won is None else current

    def _parts(self, partition: str, size: int, select: list[str] | None = None) -> Iterator[Any]:
        """The finished parts ``0 .. size-1``, in order (a range of one partition)."""
        return iter(
            self._client.query_entities(
                "PartitionKey eq @pk and RowKey ge @first and RowKey lt @end",
                parameters={"pk": partition, "first": _part_row(0), "end": _part_row(size)},
                select=select,
            )
        )

    def chord_fail(self, chord_id: str) -> dict[str, Any] | None:
        with self._mapped("chord fail", chord_id):
            failed = self._fire(f"cloudq:chord:{_key(chord_id)}", chord_id)
        return None if failed is None else dict(json.loads(_get_text(failed, "body")))

    # --- rate limits ----------------------------------------------------------------------------
    def reserve(self, key: str, interval: float) -> float:
        def take(current: Any) -> dict[str, Any]:
            now = self._now()
            slot = max(float(current["next"]), now) if self._live(current) else now
            return {
                "slot": slot,
                "next": slot + interval,
                "expires_at": slot + interval + RATE_KEEP_SECONDS,
            }

        with self._mapped("rate limit", key):
            _, taken = self._replace_if(
                f"cloudq:rate:{_key(key)}", HEADER, take, f"the rate slot of {key!r}"
            )
        assert taken is not None  # take always writes
        return max(0.0, float(taken["slot"]) - self._now())

    # --- beat -----------------------------------------------------------------------------------
    def claim(self, key: str, ttl_seconds: float) -> bool:
        def first(current: Any) -> dict[str, Any] | None:
            return None if self._live(current) else {"expires_at": self._now() + ttl_seconds}

        with self._mapped("beat claim", key):
            _, won = self._replace_if(
                f"cloudq:beat:{_key(key)}", HEADER, first, f"beat claim {key!r}"
            )
        return won is not None

    def unclaim(self, key: str) -> None:
        with self._mapped("beat unclaim", key):
            self._client.delete_entity(f"cloudq:beat:{_key(key)}", HEADER)

    def get_marker(self, key: str) -> str | None:
        with self._mapped("beat marker", key):
            entity = self._read_entity(f"cloudq:marker:{_key(key)}", HEADER)
        return None if entity is None else str(entity["value"])

    def set_marker(self, key: str, value: str) -> None:
        from azure.data.tables import UpdateMode

        entity = {"PartitionKey": f"cloudq:marker:{_key(key)}", "RowKey": HEADER, "value": value}
        with self._mapped("beat marker", key):
            self._client.upsert_entity(entity, mode=UpdateMode.REPLACE)

    # --- control plane --------------------------------------------------------------------------
    def control_heartbeat(self, worker_id: str, record: str, ttl_seconds: float) -> list[str]:
        """Replace the worker's entity (record, empty inbox) under the ETag it was read with, so
        the commands taken are exactly those the write removed: none is lost or taken twice."""
        now = self._now()
        fresh = {"worker": worker_id, "expires_at": now + ttl_seconds}
        _put_text(fresh, "record", record, f"the heartbeat record of {worker_id!r}")
        with self._mapped("heartbeat", worker_id):
            old, _ = self._replace_if(
                WORKERS, _key(worker_id), lambda _: fresh, f"worker {worker_id!r}"
            )
        return [command for expiry, command in _commands(old) if expiry > now]

    def control_workers(self) -> dict[str, str]:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError

        found: dict[str, str] = {}
        with self._mapped("worker list", WORKERS):
            for entity in self._client.query_entities(
                "PartitionKey eq @pk", parameters={"pk": WORKERS}
            ):
                if self._live(entity):
                    found[str(entity["worker"])] = _get_text(entity, "record")
                    continue
                with suppress(ResourceModifiedError):  # gone, unless it beat again meanwhile
                    self._client.delete_entity(
                        entity,
                        etag=entity.metadata["etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
        return found

    def control_forget(self, worker_id: str) -> None:
        with self._mapped("forget worker", worker_id):
            self._client.delete_entity(WORKERS, _key(worker_id))

    def control_send(self, worker_id: str, command: str, ttl_seconds: float) -> None:
        """Append to the worker's inbox; a worker that is gone (no live entity) gets nothing."""
        now = self._now()

        def append(current: Any) -> dict[str, Any] | None:
            if not self._live(current):
                return None
            queued = [[e, c] for e, c in _commands(current) if e > now]
            queued.append([now + ttl_seconds, command])
            text = json.dumps(queued)
            return _put_text(_without_text(current, "cmds"), "cmds", text, "a command inbox")

        with self._mapped("control command", worker_id):
            self._replace_if(WORKERS, _key(worker_id), append, f"worker {worker_id!r}")

    # --- revoked ids ----------------------------------------------------------------------------
    def revoke_add(self, task_ids: Sequence[str], ttl_seconds: float) -> None:
        expiry = self._now() + ttl_seconds
        rows = {_key(t): t for t in task_ids}  # one operation per row in a transaction
        ops = [
            ("upsert", {"PartitionKey": REVOKED, "RowKey": row, "task_id": t, "expires_at": expiry})
            for row, t in rows.items()
        ]
        for start in range(0, len(ops), BATCH_ENTITIES):
            with self._mapped("revoke", str(ops[start][1]["task_id"])):
                self._client.submit_transaction(ops[start : start + BATCH_ENTITIES])

    def revoke_list(self) -> list[str]:
        with self._mapped("revoked list", REVOKED):
            entities = list(
                self._client.query_entities("PartitionKey eq @pk", parameters={"pk": REVOKED})
            )
        return [str(e["task_id"]) for e in entities if self._live(e)]


def _commands(entity: Any) -> list[tuple[float, str]]:
    """The inbox of a worker's entity (None: no entity), oldest first."""
    if entity is None or entity.get("cmds") is None:
        return []
    return [(float(e), str(c)) for e, c in json.loads(_get_text(entity, "cmds"))]
