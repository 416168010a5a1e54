"""What workers, handlers and beats share through Firestore besides results: chord counters,
rate-limit slots, beat claims and markers, and the control plane's heartbeats and inboxes.

Documents live in the results collection, so its TTL policy on ``expires_at`` cleans them up too.
Their ids carry reserved prefixes that task ids (UUIDs) never have:

- ``cloudq:chord:<chord id>``: ``size``, ``body`` (JSON), ``results`` (index -> JSON), ``fired``;
- ``cloudq:rate:<key>``: ``slot``, the next free slot (Unix seconds);
- ``cloudq:beat:<key>``: a claim, live until ``expires_at``;
- ``cloudq:marker:<key>``: ``value``, the last tick sent (never expires);
- ``cloudq:ctl:worker:<worker id>``: ``worker``, ``record`` and ``commands`` (the inbox:
  ``command`` and ``expires_at`` each);
- ``cloudq:revoked:<task id>``: ``task_id``, live until ``expires_at`` (``cloudq revoke``),
  listed by the same kind of id-range query as workers.

A key Firestore refuses in a document id (``/``, or too long) is stored as ``sha256-<hex>``
after its prefix. Every read-modify-write runs in a Firestore transaction, so it stays correct
with any number of writers: a chord fires once (``fired`` is set in the transaction that records
the last part), a beat tick is claimed once, a rate slot is taken once. Transactions retry on
contention (in the SDK, then here with a jittered pause). Contention is costly (Firestore locks
what a transaction reads; the emulator makes a contended transaction wait seconds), so the
threads of one backend take a lock per document (striped) first: only other processes contend.
All parts of a chord write one document, so a chord's header finishes at the pace of one
document's transactions (tens a second), and its results share the 1 MiB document limit.

Expiry is judged by the injected clock (TTL deletion is lazy): a document past ``expires_at`` is
absent to readers. Rate slots are timed by the callers' clocks, as on DynamoDB: keep them in sync.

Workers are listed by a query on the ``cloudq:ctl:worker:`` id range (the built-in index on
document ids, never a scan of results); a reader deletes the documents it finds long expired.
There is no event stream here: Firestore has nothing cheap to tail (use Redis for
``cloudq events``).
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from cloudq.clock import Clock
from cloudq.errors import BrokerError

T = TypeVar("T")

PREFIX = "cloudq:"
WORKER_PREFIX = f"{PREFIX}ctl:worker:"
REVOKED_PREFIX = f"{PREFIX}revoked:"
BATCH_WRITES = 500
"""Firestore's limit of writes in one batch."""
TTL_FIELD = "expires_at"
MAX_DOCUMENT_ID_BYTES = 1_500
TRANSACTION_ROUNDS = 20
"""Rounds of a contended transaction (each the SDK's own attempts) before giving up."""
TRANSACTION_BACKOFF_SECONDS = 0.01
"""Largest first pause between contended rounds (jittered, grows linearly)."""
RATE_SLOT_KEEP_SECONDS = 3600.0
"""A rate document outlives its last reserved slot by this long (then the schedule restarts)."""
LOCK_STRIPES = 64
"""Locks the threads of one backend share per document: bounded, whatever the number of keys."""
STALE_WORKER_SECONDS = 600.0
"""A worker document expired this long ago is deleted by the reader that finds it. The margin
keeps a reader whose clock runs ahead from deleting a live worker (and its inbox)."""


def shared_id(kind: str, key: str) -> str:
    """``cloudq:<kind>:<key>``, with a digest of the key where Firestore refuses it."""
    name = f"{PREFIX}{kind}:{key}"
    if key and "/" not in key and len(name.encode()) <= MAX_DOCUMENT_ID_BYTES:
        return name
    return f"{PREFIX}{kind}:sha256-{hashlib.sha256(key.encode()).hexdigest()}"


def _aborted(exc: BaseException, aborted: type[Exception]) -> bool:
    """Whether ``exc`` comes of a contention abort (the SDK wraps or chains it)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, aborted):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _timestamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class FirestoreShared:
    """Base of ``FirestoreBackend``: ``ChordStore``, ``RateLimiter``, ``BeatStore`` and
    ``ControlStore``."""

    project: str
    collection: str
    _client: Any
    _collection: Any
    _clock: Clock
    _gexc: Any

    def _mapped(self, operation: str, task_id: str) -> AbstractContextManager[None]:
        raise NotImplementedError

    def _expired(self, data: dict[str, Any]) -> bool:
        raise NotImplementedError

    def _shared(self, kind: str, key: str) -> Any:
        return self._collection.document(shared_id(kind, key))

    def _expiry(self, seconds: float) -> datetime:
        return self._clock.now() + timedelta(seconds=seconds)

    def _live(self, snapshot: Any) -> dict[str, Any] | None:
        """The document's fields, or None if it is missing or past its expiry."""
        if not snapshot.exists:
            return None
        data: dict[str, Any] = snapshot.to_dict() or {}
        return None if self._expired(data) else data

    def _stripe(self, ref: Any) -> threading.Lock:
        locks: list[threading.Lock] = self.__dict__.setdefault(
            "_shared_locks", [threading.Lock() for _ in range(LOCK_STRIPES)]
        )
        return locks[hash(ref.id) % LOCK_STRIPES]

    def _transact(self, operation: str, what: str, ref: Any, body: Callable[[Any], T]) -> T:
        """Run ``body(transaction)``, which reads and writes ``ref``, in a transaction, again on
        contention. The SDK retries only an aborted commit, at once: a read aborted under
        contention and the SDK's exhausted retries come back here."""
        from google.cloud import firestore

        run: Any = firestore.transactional(body)
        with self._stripe(ref):
            for attempt in range(1, TRANSACTION_ROUNDS + 1):
                try:
                    with self._mapped(operation, what):
                        result: T = run(self._client.transaction())
                        return result
                except (BrokerError, ValueError) as exc:
                    if not _aborted(exc, self._gexc.Aborted):
                        raise
                time.sleep(random.uniform(0, TRANSACTION_BACKOFF_SECONDS * attempt))
        raise BrokerError(
            f"Firestore {operation} of {what!r} in collection {self.collection!r} (project "
            f"{self.project!r}): still contended after {TRANSACTION_ROUNDS} rounds"
        )

    # --- chords ---------------------------------------------------------------------------------
    def chord_start(
        self, chord_id: str, size: int, body: dict[str, Any], expires_seconds: float | None
    ) -> None:
        data: dict[str, Any] = {
            "size": size,
            "body": json.dumps(body),
            "results": {},
            "fired": False,
        }
        if expires_seconds is not None:
            data[TTL_FIELD] = self._expiry(expires_seconds)
        ref = self._shared("chord", chord_id)

        def start(transaction: Any) -> None:
            if self._live(ref.get(transaction=transaction)) is None:
                transaction.set(ref, data)

        self._transact("chord start", chord_id, ref, start)

    def chord_part_done(
        self, chord_id: str, index: int, result: Any
    ) -> tuple[dict[str, Any], list[Any]] | None:
        """Record the part and, if it was the last one missing, set ``fired`` in the same
        transaction: a duplicate finds its part recorded, a late one finds ``fired``."""
        from google.cloud.firestore_v1.field_path import FieldPath

        ref = self._shared("chord", chord_id)
        part = str(index)
        value = json.dumps(result)

        def record(transaction: Any) -> tuple[dict[str, Any], list[Any]] | None:
            data = self._live(ref.get(transaction=transaction))
            if data is None or data.get("fired"):
                return None
            results: dict[str, str] = dict(data.get("results") or {})
            if part in results:
                return None  # a duplicate delivery: the part is counted already
            results[part] = value
            update: dict[str, Any] = {FieldPath("results", part).to_api_repr(): value}
            size = int(data["size"])
            if len(results) < size:
                transaction.update(ref, update)
                return None
            transaction.update(ref, {**update, "fired": True})
            ordered = [json.loads(results[str(i)]) for i in range(size)]
            return dict(json.loads(data["body"])), ordered

        return self._transact("chord part", chord_id, ref, record)

    def chord_fail(self, chord_id: str) -> dict[str, Any] | None:
        ref = self._shared("chord", chord_id)

        def fail(transaction: Any) -> dict[str, Any] | None:
            data = self._live(ref.get(transaction=transaction))
            if data is None or data.get("fired"):
                return None
            transaction.update(ref, {"fired": True})
            return dict(json.loads(data["body"]))

        return self._transact("chord fail", chord_id, ref, fail)

    # --- rate limits --------------------------------------------------------------------------
    def reserve(self, key: str, interval: float) -> float:
        """GCRA: take the later of the next free slot and now, and move the slot past it."""
        ref = self._shared("rate", key)

        def take(transaction: Any) -> float:
            data = self._live(ref.get(transaction=transaction))
            now = self._clock.now().timestamp()
            slot = max(float(data["slot"]), now) if data is not None else now
            following = slot + interval
            transaction.set(
                ref,
                {"slot": following, TTL_FIELD: _timestamp(following + RATE_SLOT_KEEP_SECONDS)},
            )
            return slot - now

        return self._transact("rate slot", key, ref, take)

    # --- beat ---------------------------------------------------------------------------------
    def claim(self, key: str, ttl_seconds: float) -> bool:
        ref = self._shared("beat", key)

        def take(transaction: Any) -> bool:
            if self._live(ref.get(transaction=transaction)) is not None:
                return False
            transaction.set(ref, {TTL_FIELD: self._expiry(ttl_seconds)})
            return True

        return self._transact("beat claim", key, ref, take)

    def unclaim(self, key: str) -> None:
        with self._mapped("beat unclaim", key):
            self._shared("beat", key).delete()

    def get_marker(self, key: str) -> str | None:
        with self._mapped("beat marker", key):
            snapshot = self._shared("marker", key).get()
        return str((snapshot.to_dict() or {})["value"]) if snapshot.exists else None

    def set_marker(self, key: str, value: str) -> None:
        with self._mapped("beat marker", key):
            self._shared("marker", key).set({"value": value})

    # --- control plane --------------------------------------------------------------------------
    def control_heartbeat(self, worker_id: str, record: str, ttl_seconds: float) -> list[str]:
        """Rewrite the worker's document with an empty inbox, taking the commands it held."""
        ref = self._shared("ctl:worker", worker_id)

        def beat(transaction: Any) -> list[str]:
            snapshot = ref.get(transaction=transaction)
            now = self._clock.now()
            held = (snapshot.to_dict() or {}).get("commands", []) if snapshot.exists else []
            transaction.set(
                ref,
                {
                    "worker": worker_id,
                    "record": record,
                    "commands": [],
                    TTL_FIELD: now + timedelta(seconds=ttl_seconds),
                },
            )
            return [str(c["command"]) for c in held if c[TTL_FIELD] > now]

        return self._transact("heartbeat", worker_id, ref, beat)

    def _id_range(self, prefix: str) -> Any:
        """The query for the documents whose id starts with ``prefix`` (the id index, no scan)."""
        from google.cloud.firestore import FieldFilter
        from google.cloud.firestore_v1.field_path import FieldPath

        name = FieldPath.document_id()
        start = self._collection.document(prefix)
        end = self._collection.document(prefix[:-1] + chr(ord(prefix[-1]) + 1))
        return self._collection.where(filter=FieldFilter(name, ">=", start)).where(
            filter=FieldFilter(name, "<", end)
        )

    def control_workers(self) -> dict[str, str]:
        query = self._id_range(WORKER_PREFIX)
        stale = self._clock.now() - timedelta(seconds=STALE_WORKER_SECONDS)
        found: dict[str, str] = {}
        with self._mapped("worker list", WORKER_PREFIX):
            snapshots = list(query.stream())
        for snapshot in snapshots:
            data = snapshot.to_dict() or {}
            if not self._expired(data):
                found[str(data["worker"])] = str(data["record"])
            elif data[TTL_FIELD] <= stale:
                self._delete_stale(snapshot)
        return found

    def _delete_stale(self, snapshot: Any) -> None:
        """Delete a long-expired worker document unless it was written since it was read."""
        option = self._client.write_option(last_update_time=snapshot.update_time)
        # FailedPrecondition: the worker came back meanwhile; NotFound: another reader was first.
        with (
            self._mapped("worker cleanup", snapshot.id),
            suppress(self._gexc.FailedPrecondition, self._gexc.NotFound),
        ):
            snapshot.reference.delete(option=option)

    def control_forget(self, worker_id: str) -> None:
        with self._mapped("worker forget", worker_id):
            self._shared("ctl:worker", worker_id).delete()

    def control_send(self, worker_id: str, command: str, ttl_seconds: float) -> None:
        """Append to the worker's inbox; a worker that is gone (no document) gets nothing."""
        ref = self._shared("ctl:worker", worker_id)

        def send(transaction: Any) -> None:
            snapshot = ref.get(transaction=transaction)
            if not snapshot.exists:
                return
            now = self._clock.now()
            held = [c for c in (snapshot.to_dict() or {}).get("commands", []) if c[TTL_FIELD] > now]
            entry = {"command": command, TTL_FIELD: now + timedelta(seconds=ttl_seconds)}
            transaction.update(ref, {"commands": [*held, entry]})

        self._transact("command", worker_id, ref, send)

    # --- revoked ids ----------------------------------------------------------------------------
    def revoke_add(self, task_ids: Sequence[str], ttl_seconds: float) -> None:
        expiry = self._expiry(ttl_seconds)
        for start in range(0, len(task_ids), BATCH_WRITES):
            batch = self._client.batch()
            for task_id in task_ids[start : start + BATCH_WRITES]:
                batch.set(self._shared("revoked", task_id), {"task_id": task_id, TTL_FIELD: expiry})
            with self._mapped("revoke", task_ids[start]):
                batch.commit()

    def revoke_list(self) -> list[str]:
        with self._mapped("revoked list", REVOKED_PREFIX):
            snapshots = list(self._id_range(REVOKED_PREFIX).stream())
        found: list[str] = []
        for snapshot in snapshots:
            data = snapshot.to_dict() or {}
            if not self._expired(data) and isinstance(data.get("task_id"), str):
                found.append(data["task_id"])
        return found
