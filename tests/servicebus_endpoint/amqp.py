"""The AMQP 1.0 side of the endpoint, on python-qpid-proton's reactor.

What the ``azure-servicebus`` SDK does on the wire, and what this answers (each one breaks the
SDK if missed):

- SASL ANONYMOUS, then a put-token request on ``$cbs`` (the token is accepted, not verified);
  replies carry the request's message id as correlation id and ``status-code`` 202;
- a sender's target is ``amqps://host:port/queue``: normalised to the queue name; a list send
  arrives as ONE batch message with one encoded message per data section, unpacked here;
- peek-lock receivers attach with rcv-settle-mode *second*: a delivery's tag is its lock token
  (the UUID's little-endian bytes, as the SDK reads ``UUID(bytes_le=tag)``); the client sends its
  outcome unsettled and waits for ours, so every outcome is answered with a settled disposition
  (``rejected`` + ``com.microsoft:message-lock-lost`` when the lock is gone);
- proton decodes delivery tags as text, so the lock token rides on the delivery object instead;
- a session receiver attaches with the source filter ``com.microsoft:session-filter`` (a
  session id, or null for the next available session); the attach is answered once a session
  is locked for the link, with that filter set to the session's id and the link property
  ``com.microsoft:locked-until-utc`` (.NET ticks), or refused with ``com.microsoft:timeout``
  once the link's ``com.microsoft:timeout`` (milliseconds) has passed without one; closing the
  link releases the session;
- ``<queue>/$management`` takes renew-lock, renew-session-lock, schedule-message,
  cancel-scheduled-message, peek-message and update-disposition; replies carry
  ``statusCode`` / ``statusDescription`` (and ``errorCondition`` on failure) with the
  request's message id as correlation id.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

from proton import (
    UNDESCRIBED,
    Array,
    Condition,
    Data,
    Delivery,
    Endpoint,
    Event,
    Handler,
    Link,
    Message,
    Terminus,
    symbol,
    timestamp,
)
from proton.reactor import Container

from tests.servicebus_endpoint import codec
from tests.servicebus_endpoint.store import EndpointError, Store

logger = logging.getLogger("servicebus_endpoint.amqp")

CBS_NODE = "$cbs"
MANAGEMENT_SUFFIX = "/$management"
TICK_SECONDS = 0.02
"""How often locks are expired and schedules activated (and waiting receivers served)."""
MAX_MESSAGE_BYTES = 262_144
"""Standard tier's 256 KB, announced on sender links so the SDK sizes batches by it."""
INCOMING_CREDIT = 500
SESSION_FILTER = symbol("com.microsoft:session-filter")
LOCKED_UNTIL = symbol("com.microsoft:locked-until-utc")
OPERATION_TIMEOUT = symbol("com.microsoft:timeout")
DEFAULT_ACCEPT_TIMEOUT_SECONDS = 60.0
"""How long Service Bus waits for a session to become available when the client says nothing."""
DOTNET_EPOCH_TICKS = 621_355_968_000_000_000
"""0001-01-01 to 1970-01-01 in .NET ticks (100 ns): ``locked-until-utc`` is a .NET instant."""


F = TypeVar("F", bound=Callable[..., None])


def _guarded(method: F) -> F:
    """Log and survive a handler's error: one bad frame must not kill the whole endpoint."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            method(*args, **kwargs)
        except Exception:
            logger.exception("%s failed", method.__name__)

    return wrapper  # type: ignore[return-value]


def _address(terminus: Any) -> str:
    return str(terminus.address or "")


def _is_management(address: str) -> bool:
    return address.lower().endswith(MANAGEMENT_SUFFIX.lower())


def _elements(value: Any) -> list[Any]:
    if isinstance(value, Array):
        return list(value.elements)
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def _session_filter(terminus: Any) -> tuple[bool, str | None]:
    """(whether the source asks for a session, the session id or None for the next one)."""
    data = terminus.filter
    data.rewind()
    if not data.next():
        return False, None
    filters = data.get_object()
    if not isinstance(filters, dict) or SESSION_FILTER not in filters:
        return False, None
    value = filters[SESSION_FILTER]
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return True, None if value is None else str(value)


def _uuid(value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, bytes) and len(value) == 16:
        return uuid.UUID(bytes=value)
    return uuid.UUID(str(value))


class EndpointHandler(Handler):  # type: ignore[misc]
    """One handler for every connection: links are routed by their addresses."""

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store
        self.consumers: dict[str, list[Link]] = defaultdict(list)
        self.pending_sessions: list[tuple[Link, str, float]] = []
        """Session receivers waiting for a session: (link, address, give-up time)."""
        self.container: Container | None = None

    # --- lifecycle -----------------------------------------------------------------------
    def on_reactor_init(self, event: Event) -> None:
        self.container = event.container
        event.container.schedule(TICK_SECONDS, self)

    def on_timer_task(self, event: Event) -> None:
        try:
            self.store.tick()
            self.accept_pending()
            self.pump_all()
        except Exception:
            logger.exception("tick failed")
        event.container.schedule(TICK_SECONDS, self)

    @_guarded
    def on_connection_bound(self, event: Event) -> None:
        event.transport.require_auth(False)
        sasl = event.transport.sasl()
        sasl.allowed_mechs("ANONYMOUS PLAIN")

    def on_connection_remote_open(self, event: Event) -> None:
        if event.connection.state & Endpoint.LOCAL_UNINIT:
            event.connection.open()

    def on_session_remote_open(self, event: Event) -> None:
        if event.session.state & Endpoint.LOCAL_UNINIT:
            event.session.open()

    @_guarded
    def on_link_remote_open(self, event: Event) -> None:
        link = event.link
        if not link.state & Endpoint.LOCAL_UNINIT:
            return
        address = _address(link.remote_target if link.is_receiver else link.remote_source)
        entity = address != CBS_NODE and not _is_management(address)
        if entity and not self._queue_exists(address):
            self._refuse(link, address)
            return
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        if link.is_receiver:
            if entity:
                link.max_message_size = MAX_MESSAGE_BYTES
            link.open()
            link.flow(INCOMING_CREDIT)
            return
        if entity:
            wants_session, session_id = _session_filter(link.remote_source)
            if wants_session != self.store.requires_session(address):
                self._refuse_with(
                    link,
                    "com.microsoft:argument-error" if wants_session else "amqp:not-allowed",
                    f"The entity '{address}' "
                    + (
                        "does not require sessions: a session receiver cannot attach to it."
                        if wants_session
                        else "requires sessions: a receiver must accept a session."
                    ),
                )
                return
            if wants_session:
                link.session_owner = object()
                link.session_id = session_id
                timeout = dict(link.remote_properties or {}).get(OPERATION_TIMEOUT)
                wait = float(timeout) / 1000 if timeout else DEFAULT_ACCEPT_TIMEOUT_SECONDS
                self.pending_sessions.append((link, address, self.store.clock() + wait))
                self.accept_pending()
                return
            self.consumers[self._key(address)].append(link)
        link.open()

    def accept_pending(self) -> None:
        """Answer the session receivers still waiting: with a session, or refused at their
        timeout."""
        waiting, self.pending_sessions = self.pending_sessions, []
        for link, address, give_up in waiting:
            if link.state & Endpoint.REMOTE_CLOSED:
                continue
            try:
                got = self.store.accept_session(address, link.session_id, link.session_owner)
            except EndpointError as exc:
                self._refuse_with(link, exc.condition, exc.description)
                continue
            if got is None:
                if self.store.clock() >= give_up:
                    self._refuse_with(
                        link,
                        str(OPERATION_TIMEOUT),
                        f"No session available on '{address}' within the operation timeout.",
                    )
                else:
                    self.pending_sessions.append((link, address, give_up))
                continue
            session_id, until = got
            link.session_id = session_id
            link.session_address = address
            link.source.filter.clear()
            link.source.filter.put_map()
            link.source.filter.enter()
            link.source.filter.put_symbol(SESSION_FILTER)
            link.source.filter.put_string(session_id)
            link.source.filter.exit()
            link.properties = {LOCKED_UNTIL: _ticks(until)}
            self.consumers[self._key(address)].append(link)
            link.open()

    def _release_session(self, link: Link) -> None:
        owner = getattr(link, "session_owner", None)
        address = getattr(link, "session_address", None)
        if owner is not None and address is not None:
            link.session_address = None
            if self.store.release_session(address, link.session_id, owner):
                self.pump_all()

    @staticmethod
    def _refuse_with(link: Link, condition: str, description: str) -> None:
        link.source.type = Terminus.UNSPECIFIED  # refused: no source (Service Bus's way)
        link.open()
        link.condition = Condition(condition, description)
        link.close()

    def _queue_exists(self, address: str) -> bool:
        base, _ = Store.parse_address(address)
        try:
            self.store.get(base)
        except EndpointError:
            return False
        return True

    @staticmethod
    def _refuse(link: Link, address: str) -> None:
        """AMQP's refusal: attach with no terminus, then detach with the error."""
        link.open()
        link.condition = Condition(
            "amqp:not-found", f"The messaging entity '{address}' could not be found."
        )
        link.close()

    @staticmethod
    def _key(address: str) -> str:
        base, dead = Store.parse_address(address)
        return base + ("/$deadletterqueue" if dead else "")

    def _forget(self, link: Link) -> None:
        for links in self.consumers.values():
            if link in links:
                links.remove(link)
        self._release_session(link)

    def on_link_remote_close(self, event: Event) -> None:
        self._forget(event.link)
        if not event.link.state & Endpoint.LOCAL_CLOSED:
            event.link.close()

    def on_session_remote_close(self, event: Event) -> None:
        if not event.session.state & Endpoint.LOCAL_CLOSED:
            event.session.close()

    def on_connection_remote_close(self, event: Event) -> None:
        self._drop_connection(event.connection)
        if not event.connection.state & Endpoint.LOCAL_CLOSED:
            event.connection.close()

    def on_transport_closed(self, event: Event) -> None:
        if event.connection is not None:
            self._drop_connection(event.connection)

    def _drop_connection(self, connection: Any) -> None:
        for links in self.consumers.values():
            for link in [link for link in links if link.connection == connection]:
                links.remove(link)
                self._release_session(link)
        self.pending_sessions = [p for p in self.pending_sessions if p[0].connection != connection]

    # --- flow: hand messages to receivers with credit --------------------------------------
    @_guarded
    def on_link_flow(self, event: Event) -> None:
        link = event.link
        if link.is_sender:
            address = _address(link.source)
            if address != CBS_NODE and not _is_management(address):
                self.pump_link(link)
            if link.drain_mode:
                link.drained()

    def pump_all(self) -> None:
        for links in list(self.consumers.values()):
            for link in list(links):
                self.pump_link(link)

    def pump_link(self, link: Link) -> None:
        if not link.state & Endpoint.LOCAL_ACTIVE or not link.state & Endpoint.REMOTE_ACTIVE:
            return
        address = _address(link.source)
        presettled = link.snd_settle_mode == Link.SND_SETTLED
        owner = getattr(link, "session_owner", None)
        session = (link.session_id, owner) if owner is not None else None
        while link.credit > 0:
            try:
                taken = self.store.take(address, peek_lock=not presettled, session=session)
            except EndpointError:
                return
            if taken is None:
                return
            msg, raw = taken
            tag = msg.lock.bytes_le if msg.lock is not None else uuid.uuid4().bytes_le
            delivery = link.delivery(tag)
            delivery.lock_token = msg.lock
            delivery.address = address
            link.stream(raw)
            link.advance()
            if presettled:
                delivery.settle()

    # --- deliveries: incoming transfers and outcomes of ours -------------------------------
    @_guarded
    def on_delivery(self, event: Event) -> None:
        link = event.link
        delivery = event.delivery
        if link.is_receiver:
            self._incoming(link, delivery)
        else:
            self._outcome(delivery)

    def _incoming(self, link: Link, delivery: Delivery) -> None:
        if not delivery.readable or delivery.partial:
            return
        raw = link.recv(delivery.pending) or b""
        link.advance()
        if link.credit < INCOMING_CREDIT // 2:
            link.flow(INCOMING_CREDIT - link.credit)
        address = _address(link.target)
        try:
            if address == CBS_NODE or _is_management(address):
                request = Message()
                request.decode(raw)
                delivery.update(Delivery.ACCEPTED)
                delivery.settle()
                self._request(link, address, request)
                return
            sections = codec.split_sections(raw)
            messages = codec.unpack_batch(sections) or [raw]
            for one in messages:
                self.store.enqueue(address, one)
            delivery.update(Delivery.ACCEPTED)
        except EndpointError as exc:
            # With an info map: the SDK reads the rejected error's third field unguarded.
            info = {symbol("com.microsoft:tracking-id"): str(uuid.uuid4())}
            delivery.local.condition = Condition(exc.condition, exc.description, info)
            delivery.update(Delivery.REJECTED)
        except codec.CodecError as exc:
            delivery.local.condition = Condition("amqp:decode-error", str(exc))
            delivery.update(Delivery.REJECTED)
        delivery.settle()
        self.pump_all()

    def _outcome(self, delivery: Delivery) -> None:
        """A client's disposition on one of our deliveries: apply it, then answer and settle."""
        if getattr(delivery, "applied", False):
            if delivery.settled:  # the client settled after our answer: forget it
                delivery.settle()
            return
        state = delivery.remote_state
        if state not in (
            Delivery.ACCEPTED,
            Delivery.REJECTED,
            Delivery.RELEASED,
            Delivery.MODIFIED,
        ):
            return
        delivery.applied = True
        token: uuid.UUID | None = getattr(delivery, "lock_token", None)
        address: str = getattr(delivery, "address", "")
        error: EndpointError | None = None
        if token is not None:
            try:
                if state == Delivery.ACCEPTED:
                    self.store.complete(address, token)
                elif state == Delivery.RELEASED:
                    self.store.abandon(address, token, counted=False)
                elif state == Delivery.MODIFIED:
                    if delivery.remote.undeliverable:
                        raise EndpointError(
                            "amqp:not-implemented", "Deferral is not implemented by this endpoint."
                        )
                    self.store.abandon(address, token, counted=bool(delivery.remote.failed))
                else:
                    info = delivery.remote.condition.info if delivery.remote.condition else None
                    info = dict(info or {})
                    self.store.dead_letter(
                        address,
                        token,
                        str(info.get("DeadLetterReason") or ""),
                        str(info.get("DeadLetterErrorDescription") or ""),
                    )
            except EndpointError as exc:
                error = exc
        if not delivery.settled:
            if error is not None:
                delivery.local.condition = Condition(error.condition, error.description)
                delivery.update(Delivery.REJECTED)
            else:
                # Echo the outcome applied, without an error: the SDK treats a rejected outcome
                # that carries an error as a failed dead-lettering.
                delivery.update(state)
        delivery.settle()
        if error is None:
            self.pump_all()

    # --- request/response nodes: $cbs and <queue>/$management ------------------------------
    def _reply_link(self, request_link: Link, node: str) -> Link | None:
        """The client's receiver for ``node`` on this connection, its own session's first."""
        candidates = [
            link
            for link in _links(request_link.connection)
            if link.is_sender
            and _address(link.source) == node
            and link.state & Endpoint.LOCAL_ACTIVE
        ]
        same = [link for link in candidates if link.session == request_link.session]
        return (same or candidates or [None])[0]

    def _request(self, link: Link, node: str, request: Message) -> None:
        props = dict(request.properties or {})
        operation = str(props.get("operation") or "")
        if node == CBS_NODE:
            status_field, description_field = "status-code", "status-description"
            reply = {status_field: 202, description_field: "Accepted"}
            body: Any = None
        else:
            status_field, description_field = "statusCode", "statusDescription"
            try:
                status, body = self._management(node, operation, request.body)
                reply = {status_field: status, description_field: "OK" if status < 300 else ""}
            except EndpointError as exc:
                body = None
                reply = {
                    status_field: exc.status,
                    description_field: exc.description,
                    "errorCondition": symbol(exc.condition),
                }
            except Exception as exc:
                logger.exception("management operation %s on %s failed", operation, node)
                body = None
                reply = {
                    status_field: 500,
                    description_field: f"{type(exc).__name__}: {exc}",
                    "errorCondition": symbol("com.microsoft:internal-error"),
                }
        response = Message(body=body, correlation_id=request.id, properties=reply)
        target = self._reply_link(link, node)
        if target is None:
            logger.warning("no reply link for %s on this connection", node)
            return
        target.send(response)
        self.pump_all()

    def _management(self, node: str, operation: str, body: Any) -> tuple[int, Any]:
        entity = node[: -len(MANAGEMENT_SUFFIX)]
        request = dict(body or {})
        if operation == "com.microsoft:renew-lock":
            tokens = [_uuid(t) for t in _elements(request.get("lock-tokens", []))]
            expiries = [timestamp(int(self.store.renew(entity, t) * 1000)) for t in tokens]
            return 200, {"expirations": Array(UNDESCRIBED, Data.TIMESTAMP, *expiries)}
        if operation == "com.microsoft:renew-session-lock":
            until = self.store.renew_session(entity, str(request.get("session-id")))
            return 200, {"expiration": timestamp(int(until * 1000))}
        if operation == "com.microsoft:schedule-message":
            seqs = []
            for item in _elements(request.get("messages", [])):
                raw = bytes(dict(item)["message"])
                seqs.append(self.store.enqueue(entity, raw))
            return 200, {"sequence-numbers": Array(UNDESCRIBED, Data.LONG, *seqs)}
        if operation == "com.microsoft:cancel-scheduled-message":
            seqs = [int(s) for s in _elements(request.get("sequence-numbers", []))]
            self.store.cancel_scheduled(entity, seqs)
            return 200, {}
        if operation == "com.microsoft:peek-message":
            start = int(request.get("from-sequence-number", 0))
            count = int(request.get("message-count", 1))
            session = request.get("session-id")  # a session receiver browses its session only
            found = self.store.peek(entity, start, count, None if session is None else str(session))
            if not found:
                return 204, {}
            return 200, {"messages": [{"message": raw} for raw in found]}
        if operation == "com.microsoft:update-disposition":
            status = str(request.get("disposition-status"))
            for token in [_uuid(t) for t in _elements(request.get("lock-tokens", []))]:
                if status == "completed":
                    self.store.complete(entity, token)
                elif status == "abandoned":
                    self.store.abandon(entity, token)
                elif status == "suspended":
                    self.store.dead_letter(
                        entity,
                        token,
                        str(request.get("deadletter-reason") or ""),
                        str(request.get("deadletter-description") or ""),
                    )
                else:
                    raise EndpointError(
                        "amqp:not-implemented", f"disposition {status!r} is not implemented"
                    )
            return 200, {}
        raise EndpointError(
            "amqp:not-implemented",
            f"operation {operation!r} is not implemented by this test endpoint",
            501,
        )


def _ticks(seconds: float) -> int:
    """A UTC instant (Unix seconds) as .NET ticks."""
    return DOTNET_EPOCH_TICKS + int(seconds * 10_000_000)


def _links(connection: Any) -> list[Link]:
    out = []
    link = connection.link_head(0)
    while link is not None:
        out.append(link)
        link = link.next(0)
    return out
