"""The endpoint's queues: messages, locks, schedules and dead letters, with Service Bus rules.

Pure state, no I/O, one lock: the AMQP thread and the HTTP administration thread both call in.
Times are wall-clock seconds (``time.time``), as the protocol carries UTC instants.

Rules kept (from the Service Bus documentation):

- a queue is made by the administration API (or on first use with ``auto_create``); its
  ``<queue>/$deadletterqueue`` exists with it;
- peek-lock: a delivered message is locked for the queue's lock duration under a fresh lock
  token; complete deletes it; abandon and lock expiry count a delivery (``delivery_count`` + 1)
  and make it available again, or dead-letter it with ``MaxDeliveryCountExceeded`` once the count
  reaches the queue's max delivery count; release (AMQP ``released``) returns it uncounted;
- dead-lettering sets the application properties ``DeadLetterReason`` and
  ``DeadLetterErrorDescription``; the dead-letter queue has no max delivery count of its own;
- a scheduled message (``x-opt-scheduled-enqueue-time``) is invisible until its time; it can be
  cancelled by sequence number before then;
- sequence numbers grow per queue and never repeat;
- sessions (``RequiresSession``): a message's session is its ``group-id``; a receiver accepts
  one session (named, or the next available one: unlocked, with an available message) and holds
  its lock (``locked-until-utc``) until renewed, closed or expired; it gets only that session's
  messages, lowest sequence number first, and its messages' locks are the session's lock. A
  session lock that ends (expiry, receiver closed) unlocks its messages, counted as an abandon.
  Session state is not implemented.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from tests.servicebus_endpoint import codec

DEAD_LETTER_SUFFIX = "/$deadletterqueue"
MAX_DELIVERY_COUNT_REASON = "MaxDeliveryCountExceeded"
DEFAULT_LOCK_SECONDS = 60.0
DEFAULT_MAX_DELIVERY_COUNT = 10
MAX_LOCK_SECONDS = 300.0


class EndpointError(Exception):
    """An error the protocol layer reports with a Service Bus condition."""

    def __init__(self, condition: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.condition = condition
        self.description = description
        self.status = status


def lock_lost(token: uuid.UUID) -> EndpointError:
    return EndpointError(
        "com.microsoft:message-lock-lost",
        f"The lock supplied is invalid: {token} expired, or the message was already settled.",
        410,
    )


def session_lock_lost(session: str) -> EndpointError:
    return EndpointError(
        "com.microsoft:session-lock-lost",
        f"The session lock has expired on the MessageSession {session!r}, or it was released.",
        410,
    )


def not_found(entity: str) -> EndpointError:
    return EndpointError(
        "amqp:not-found", f"The messaging entity '{entity}' could not be found.", 404
    )


class State(Enum):
    AVAILABLE = 0
    SCHEDULED = 2
    LOCKED = 9


@dataclass
class Message:
    seq: int
    sections: list[codec.Section]
    enqueued_at: float
    state: State = State.AVAILABLE
    delivery_count: int = 0
    scheduled_at: float | None = None
    lock: uuid.UUID | None = None
    locked_until: float = 0.0
    extra_properties: dict[str, Any] = field(default_factory=dict)
    dead_letter_source: str | None = None
    session_id: str | None = None


@dataclass
class SessionLock:
    """A session held by one receiver (``owner``) until ``locked_until``."""

    owner: object
    locked_until: float


@dataclass
class QueueProperties:
    lock_seconds: float = DEFAULT_LOCK_SECONDS
    max_delivery_count: int = DEFAULT_MAX_DELIVERY_COUNT
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    max_size_mb: int = 1024
    forward_dead_letters_to: str | None = None
    """ForwardDeadLetteredMessagesTo: dead letters go to this queue instead of the sub-queue."""
    requires_session: bool = False


@dataclass
class SubQueue:
    """A queue or a dead-letter queue: messages by sequence number, available ones in a heap."""

    name: str
    messages: dict[int, Message] = field(default_factory=dict)
    available: list[int] = field(default_factory=list)
    scheduled: list[tuple[float, int]] = field(default_factory=list)
    locks: dict[uuid.UUID, int] = field(default_factory=dict)
    seq: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    sessions: dict[str, SessionLock] = field(default_factory=dict)

    def make_available(self, msg: Message) -> None:
        msg.state = State.AVAILABLE
        msg.lock = None
        heapq.heappush(self.available, msg.seq)


@dataclass
class Queue:
    name: str
    props: QueueProperties
    main: SubQueue
    dead: SubQueue

    def sub(self, dead: bool) -> SubQueue:
        return self.dead if dead else self.main


class Store:
    """Every queue of the namespace. ``changed`` is called (outside the lock) after any change
    that may let a waiting receiver get a message, so the AMQP layer can pump."""

    def __init__(self, auto_create: bool = False, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.RLock()
        self._queues: dict[str, Queue] = {}
        self.auto_create = auto_create
        self.clock = clock

    @contextmanager
    def locked(self) -> Iterator[None]:
        with self._lock:
            yield

    # --- entities ------------------------------------------------------------------------
    @staticmethod
    def parse_address(address: str) -> tuple[str, bool]:
        """``queue`` or ``queue/$deadletterqueue`` from any form the SDK uses: a bare path or a
        URL (``amqps://host:port/queue``), any case for the sub-queue suffix."""
        path = address
        if "://" in path:
            path = path.split("://", 1)[1]
            path = path.split("/", 1)[1] if "/" in path else ""
        path = path.strip("/")
        if path.lower().endswith(DEAD_LETTER_SUFFIX):
            return path[: -len(DEAD_LETTER_SUFFIX)], True
        return path, False

    def create(self, name: str, props: QueueProperties) -> Queue:
        with self._lock:
            if name in self._queues:
                raise EndpointError(
                    "com.microsoft:entity-already-exists", f"Entity '{name}' already exists.", 409
                )
            queue = Queue(name, props, SubQueue(name), SubQueue(name + DEAD_LETTER_SUFFIX))
            self._queues[name] = queue
            return queue

    def update(self, name: str, props: QueueProperties) -> Queue:
        with self._lock:
            queue = self.get(name)
            if props.requires_session != queue.props.requires_session:
                raise EndpointError(
                    "com.microsoft:argument-error",
                    f"RequiresSession of queue {name!r} cannot be changed after it is created.",
                )
            props.created_at = queue.props.created_at
            props.updated_at = self.clock()
            queue.props = props
            return queue

    def delete(self, name: str) -> None:
        with self._lock:
            if self._queues.pop(name, None) is None:
                raise not_found(name)

    def find(self, name: str) -> Queue | None:
        with self._lock:
            return self._queues.get(name)

    def get(self, name: str) -> Queue:
        with self._lock:
            queue = self._queues.get(name)
            if queue is None:
                if not self.auto_create or not name:
                    raise not_found(name)
                queue = self.create(name, QueueProperties())
            return queue

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._queues)

    # --- sending -------------------------------------------------------------------------
    def enqueue(self, name: str, raw: bytes, scheduled_at: float | None = None) -> int:
        """Store one encoded message; a scheduled enqueue time (given, or the message's own
        ``x-opt-scheduled-enqueue-time``) in the future keeps it invisible until then."""
        sections = codec.split_sections(raw)
        if scheduled_at is None:
            stamp = codec.message_annotations(sections).get("x-opt-scheduled-enqueue-time")
            if stamp is not None:
                scheduled_at = float(stamp) / 1000
        base, dead = self.parse_address(name)
        with self._lock:
            queue = self.get(base)
            sub = queue.sub(dead)
            session_id = codec.group_id(sections)
            if queue.props.requires_session and not dead and session_id is None:
                raise EndpointError(
                    "com.microsoft:argument-error",
                    f"The SessionId was not set on a message, and it cannot be sent to the entity "
                    f"{base!r}: entities that have session support enabled can only receive "
                    "messages that have the SessionId set.",
                )
            now = self.clock()
            msg = Message(
                seq=next(sub.seq),
                sections=sections,
                enqueued_at=now,
                session_id=session_id,
            )
            sub.messages[msg.seq] = msg
            if scheduled_at is not None and scheduled_at > now:
                msg.state = State.SCHEDULED
                msg.scheduled_at = scheduled_at
                heapq.heappush(sub.scheduled, (scheduled_at, msg.seq))
            else:
                sub.make_available(msg)
            return msg.seq

    def cancel_scheduled(self, name: str, seqs: list[int]) -> None:
        base, dead = self.parse_address(name)
        with self._lock:
            sub = self.get(base).sub(dead)
            for seq in seqs:
                msg = sub.messages.get(seq)
                if msg is None or msg.state is not State.SCHEDULED:
                    raise EndpointError(
                        "com.microsoft:message-not-found",
                        f"Scheduled message with sequence number {seq} not found.",
                        404,
                    )
                del sub.messages[seq]

    # --- receiving -----------------------------------------------------------------------
    def take(
        self, name: str, peek_lock: bool, session: tuple[str, object] | None = None
    ) -> tuple[Message, bytes] | None:
        """The next available message, locked (peek-lock) or removed (receive-and-delete),
        with the bytes to deliver; None if there is none. ``session`` (id, owner): only that
        session's messages, lowest sequence number first, under its lock."""
        base, dead = self.parse_address(name)
        with self._lock:
            queue = self.get(base)
            sub = queue.sub(dead)
            self._tick_sub(queue, sub)
            if session is not None:
                held = self._session(sub, *session)
                seqs = [
                    m.seq
                    for m in sub.messages.values()
                    if m.state is State.AVAILABLE and m.session_id == session[0]
                ]
                if not seqs:
                    return None
                msg = sub.messages[min(seqs)]
                return msg, self._deliver(queue, sub, msg, peek_lock, held.locked_until)
            while sub.available:
                seq = heapq.heappop(sub.available)
                msg = sub.messages.get(seq)
                if msg is None or msg.state is not State.AVAILABLE:
                    continue
                until = self.clock() + queue.props.lock_seconds
                return msg, self._deliver(queue, sub, msg, peek_lock, until)
            return None

    def _deliver(
        self, queue: Queue, sub: SubQueue, msg: Message, peek_lock: bool, locked_until: float
    ) -> bytes:
        extra: dict[str, Any] = {
            "x-opt-sequence-number": _long(msg.seq),
            "x-opt-enqueued-time": _timestamp(msg.enqueued_at),
        }
        if msg.dead_letter_source:
            extra["x-opt-deadletter-source"] = msg.dead_letter_source
        if peek_lock:
            msg.state = State.LOCKED
            msg.lock = uuid.uuid4()
            msg.locked_until = locked_until
            sub.locks[msg.lock] = msg.seq
            extra["x-opt-locked-until"] = _timestamp(msg.locked_until)
        else:
            del sub.messages[msg.seq]
        return codec.rebuild(msg.sections, msg.delivery_count, extra, msg.extra_properties)

    # --- sessions ------------------------------------------------------------------------
    def requires_session(self, name: str) -> bool:
        base, dead = self.parse_address(name)
        with self._lock:
            return not dead and self.get(base).props.requires_session

    def accept_session(
        self, name: str, session_id: str | None, owner: object
    ) -> tuple[str, float] | None:
        """Lock ``session_id`` (given None: the next available session, one that is unlocked
        and has an available message, oldest first) for ``owner``: its id and lock end. None
        when no session is available (the caller waits and asks again); a named session held
        by another receiver raises ``session-cannot-be-locked``."""
        base, dead = self.parse_address(name)
        with self._lock:
            queue = self.get(base)
            sub = queue.sub(dead)
            self._tick_sub(queue, sub)
            if session_id is None:
                ready = sorted(
                    (m.seq, m.session_id)
                    for m in sub.messages.values()
                    if m.state is State.AVAILABLE
                    and m.session_id is not None
                    and m.session_id not in sub.sessions
                )
                if not ready:
                    return None
                session_id = ready[0][1]
                assert session_id is not None
            elif session_id in sub.sessions:
                raise EndpointError(
                    "com.microsoft:session-cannot-be-locked",
                    f"The requested session {session_id!r} cannot be accepted. It may be locked "
                    "by another receiver.",
                    410,
                )
            until = self.clock() + queue.props.lock_seconds
            sub.sessions[session_id] = SessionLock(owner, until)
            return session_id, until

    def renew_session(self, name: str, session_id: str) -> float:
        """Move the session's lock end (and its locked messages') a lock duration on."""
        base, dead = self.parse_address(name)
        with self._lock:
            queue = self.get(base)
            sub = queue.sub(dead)
            self._tick_sub(queue, sub)
            held = sub.sessions.get(session_id)
            if held is None:
                raise session_lock_lost(session_id)
            held.locked_until = self.clock() + queue.props.lock_seconds
            for msg in sub.messages.values():
                if msg.state is State.LOCKED and msg.session_id == session_id:
                    msg.locked_until = held.locked_until
            return held.locked_until

    def release_session(self, name: str, session_id: str, owner: object) -> bool:
        """The receiver holding the session is gone: unlock the session and its locked
        messages (counted, as a lock lost). True if anything became available."""
        base, dead = self.parse_address(name)
        with self._lock:
            queue = self.find(base)
            if queue is None:
                return False
            sub = queue.sub(dead)
            held = sub.sessions.get(session_id)
            if held is None or held.owner is not owner:
                return False
            del sub.sessions[session_id]
            for token, seq in list(sub.locks.items()):
                msg = sub.messages.get(seq)
                if msg is not None and msg.lock == token and msg.session_id == session_id:
                    del sub.locks[token]
                    self._unlock(queue, sub, msg, counted=True)
            return True

    def _session(self, sub: SubQueue, session_id: str, owner: object) -> SessionLock:
        held = sub.sessions.get(session_id)
        if held is None or held.owner is not owner or held.locked_until <= self.clock():
            raise session_lock_lost(session_id)
        return held

    def _locked(self, sub: SubQueue, token: uuid.UUID) -> Message:
        seq = sub.locks.get(token)
        msg = sub.messages.get(seq) if seq is not None else None
        if msg is None or msg.lock != token or msg.locked_until <= self.clock():
            raise lock_lost(token)
        return msg

    def complete(self, name: str, token: uuid.UUID) -> None:
        base, dead = self.parse_address(name)
        with self._lock:
            sub = self.get(base).sub(dead)
            msg = self._locked(sub, token)
            del sub.locks[token]
            del sub.messages[msg.seq]

    def abandon(self, name: str, token: uuid.UUID, counted: bool = True) -> None:
        """Abandon (``counted``: delivery count + 1, may dead-letter) or release (uncounted)."""
        base, dead = self.parse_address(name)
        with self._lock:
            queue = self.get(base)
            sub = queue.sub(dead)
            msg = self._locked(sub, token)
            del sub.locks[token]
            self._unlock(queue, sub, msg, counted)

    def dead_letter(self, name: str, token: uuid.UUID, reason: str, description: str) -> None:
        base, dead = self.parse_address(name)
        with self._lock:
            queue = self.get(base)
            sub = queue.sub(dead)
            msg = self._locked(sub, token)
            del sub.locks[token]
            if dead:
                raise EndpointError(
                    "com.microsoft:argument-error",
                    "A message in a dead-letter queue cannot be dead-lettered again.",
                )
            self._move_to_dead_letter(queue, msg, reason, description)

    def renew(self, name: str, token: uuid.UUID) -> float:
        base, dead = self.parse_address(name)
        with self._lock:
            queue = self.get(base)
            msg = self._locked(queue.sub(dead), token)
            if msg.session_id is not None and queue.props.requires_session:
                raise EndpointError(
                    "com.microsoft:argument-error",
                    "A message of a session cannot have its lock renewed: renew the session's.",
                )
            msg.locked_until = self.clock() + queue.props.lock_seconds
            return msg.locked_until

    def peek(
        self, name: str, from_seq: int, count: int, session_id: str | None = None
    ) -> list[bytes]:
        """Up to ``count`` messages from sequence number ``from_seq`` on, whatever their state
        (active, locked, scheduled), without locking them: Service Bus's browse (of one
        session's messages when a session receiver asks)."""
        base, dead = self.parse_address(name)
        with self._lock:
            queue = self.get(base)
            sub = queue.sub(dead)
            self._tick_sub(queue, sub)
            out: list[bytes] = []
            seqs = sorted(
                s
                for s, m in sub.messages.items()
                if s >= from_seq and (session_id is None or m.session_id == session_id)
            )
            for seq in seqs[:count]:
                msg = sub.messages[seq]
                extra: dict[str, Any] = {
                    "x-opt-sequence-number": _long(msg.seq),
                    "x-opt-enqueued-time": _timestamp(msg.enqueued_at),
                    "x-opt-message-state": 2 if msg.state is State.SCHEDULED else 0,
                }
                if msg.scheduled_at is not None:
                    extra["x-opt-scheduled-enqueue-time"] = _timestamp(msg.scheduled_at)
                out.append(
                    codec.rebuild(msg.sections, msg.delivery_count, extra, msg.extra_properties)
                )
            return out

    # --- time ----------------------------------------------------------------------------
    def tick(self) -> bool:
        """Expire locks and activate due schedules everywhere; True if anything became
        available."""
        with self._lock:
            changed = False
            for queue in self._queues.values():
                changed |= self._tick_sub(queue, queue.main)
                changed |= self._tick_sub(queue, queue.dead)
            return changed

    def _tick_sub(self, queue: Queue, sub: SubQueue) -> bool:
        now = self.clock()
        changed = False
        while sub.scheduled and sub.scheduled[0][0] <= now:
            _, seq = heapq.heappop(sub.scheduled)
            msg = sub.messages.get(seq)
            if msg is not None and msg.state is State.SCHEDULED:
                msg.enqueued_at = now
                sub.make_available(msg)
                changed = True
        for token, seq in list(sub.locks.items()):
            msg = sub.messages.get(seq)
            if msg is None or msg.lock != token:
                del sub.locks[token]
            elif msg.locked_until <= now:
                del sub.locks[token]
                self._unlock(queue, sub, msg, counted=True)
                changed = True
        for session_id, held in list(sub.sessions.items()):
            if held.locked_until <= now:
                del sub.sessions[session_id]
                changed = True
        return changed

    def _unlock(self, queue: Queue, sub: SubQueue, msg: Message, counted: bool) -> None:
        if counted:
            msg.delivery_count += 1
        if counted and sub is queue.main and msg.delivery_count >= queue.props.max_delivery_count:
            self._move_to_dead_letter(
                queue,
                msg,
                MAX_DELIVERY_COUNT_REASON,
                f"Message could not be consumed after {queue.props.max_delivery_count} delivery "
                "attempts.",
            )
        else:
            sub.make_available(msg)

    def _move_to_dead_letter(
        self, queue: Queue, msg: Message, reason: str, description: str
    ) -> None:
        queue.main.messages.pop(msg.seq, None)
        target = queue.dead
        forward = queue.props.forward_dead_letters_to
        if forward:
            other = self._queues.get(self.parse_address(forward)[0])
            if other is not None:  # forwarding to a missing entity: Service Bus keeps it here
                target = other.main
        dead = Message(
            seq=next(target.seq),
            sections=msg.sections,
            enqueued_at=self.clock(),
            delivery_count=msg.delivery_count,
            extra_properties={
                **msg.extra_properties,
                "DeadLetterReason": reason,
                "DeadLetterErrorDescription": description,
            },
            dead_letter_source=queue.name,
        )
        target.messages[dead.seq] = dead
        target.make_available(dead)

    # --- counts (runtime properties) -----------------------------------------------------
    def counts(self, name: str) -> dict[str, int]:
        with self._lock:
            queue = self.get(name)
            self._tick_sub(queue, queue.main)
            self._tick_sub(queue, queue.dead)
            main = queue.main.messages.values()
            scheduled = sum(1 for m in main if m.state is State.SCHEDULED)
            size = sum(len(raw) for m in main for _, raw in m.sections)
            return {
                "ActiveMessageCount": len(queue.main.messages) - scheduled,
                "ScheduledMessageCount": scheduled,
                "DeadLetterMessageCount": len(queue.dead.messages),
                "TransferMessageCount": 0,
                "TransferDeadLetterMessageCount": 0,
                "SizeInBytes": size,
                "MessageCount": len(queue.main.messages) + len(queue.dead.messages),
            }


def _timestamp(seconds: float) -> Any:
    from proton import timestamp

    return timestamp(int(seconds * 1000))


def _long(value: int) -> int:
    """Python ints encode as AMQP long, the type of sequence numbers."""
    return value
