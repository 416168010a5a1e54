"""``servicebus://``: cloudq's adapter for Azure Service Bus queues.

Where the namespace comes from:

- ``servicebus://`` alone: a connection string from ``CLOUDQ_SERVICEBUS_CONNECTION``, else
  ``SERVICEBUS_CONNECTION_STRING`` (the local emulator's works:
  ``...;UseDevelopmentEmulator=true``);
- ``servicebus://NAMESPACE.servicebus.windows.net``: ``DefaultAzureCredential`` (managed
  identity, workload identity, ``az login``...) on that namespace.

The administration client (``ensure``, ``stats``) uses the same credential, or the connection
string in ``CLOUDQ_SERVICEBUS_ADMIN_CONNECTION`` where management is served elsewhere (the
emulator: port 5300). URL options: ``prefix=`` (queue-name prefix, also
``CLOUDQ_SERVICEBUS_PREFIX``), ``max_message_bytes=`` (premium tier).

How the contract maps (see the README for the reasons):

- a queue's dead-letter queue ``<name>-dlq`` is a queue of its own; ``ensure`` makes the queue
  forward its native dead letters there (``ForwardDeadLetteredMessagesTo``), so a message the
  broker gives up on (``MaxDeliveryCountExceeded``) lands beside the ones cloudq dead-letters
  with a new body;
- the lease of a ``receive`` is kept by this client: a message not acked, released or extended
  within its lease is abandoned when the lease ends (as a visibility timeout would); a lease
  longer than the queue's lock is held by renewing the lock. If the process dies, the queue's
  own lock duration (set by ``ensure`` to the lease) brings the message back;
- ``release`` with a delay schedules a copy and completes the original, so waiting does not
  burn the max delivery count; without a delay it abandons (delivery count + 1);
- FIFO queues (``*.fifo``, ``cloudq.adapters.wire.is_fifo``) are session queues: a message's
  group is its session id (``DEFAULT_SESSION`` without one). ``receive`` takes messages from
  sessions it holds (a session receiver each, accepted as the next available session), and
  receives from a session again only once all it took from it is settled, so a group never has
  two batches out at once and a message held back (``release`` with a delay keeps it locked
  until due, then abandons it: a copy would lose its place) holds back its group only. The lock
  of a session message is its session's: the lease keeper renews the session. A session that
  comes back empty is closed, which gives it back to the namespace.

The azure SDKs are imported when a broker is opened, never when ``cloudq`` is.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cloudq.adapters.base import (
    DEAD_LETTER_SUFFIX,
    AsyncSender,
    BrokerLimits,
    Delivery,
    OutgoingMessage,
    QueueSpec,
    QueueStats,
    dead_letter_queue_name,
)
from cloudq.adapters.skeleton import BrokerBase, QueueNotFoundError
from cloudq.adapters.urls import broker_url, env_setting, redact_url, url_count
from cloudq.adapters.wire import DEAD_LETTER_REASON_ATTRIBUTE as REASON_ATTRIBUTE
from cloudq.adapters.wire import is_fifo
from cloudq.clock import Clock
from cloudq.errors import BrokerError, ConfigurationError, MessageTooLarge
from cloudq.logsafe import get_logger
from cloudq_servicebus import limits as lim

logger = get_logger("cloudq.servicebus")

NATIVE_REASON = "DeadLetterReason"
NATIVE_DESCRIPTION = "DeadLetterErrorDescription"
_HIDDEN_ATTRIBUTES = frozenset({NATIVE_REASON, NATIVE_DESCRIPTION})
CONNECTION_ENV = ("CLOUDQ_SERVICEBUS_CONNECTION", "SERVICEBUS_CONNECTION_STRING")
ADMIN_CONNECTION_ENV = "CLOUDQ_SERVICEBUS_ADMIN_CONNECTION"
PREFIX_ENV = "CLOUDQ_SERVICEBUS_PREFIX"
_URL_OPTIONS = frozenset({"prefix", "max_message_bytes"})
CLOSE_TIMEOUT_SECONDS = 10.0
_ENTITY_OPERATIONS = frozenset({"send", "receive", "open_sender", "open_receiver"})
_QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
DEFAULT_SESSION = "default"
"""Session of a message sent to a FIFO queue without a group (SQS's default group, too)."""
T = TypeVar("T")


@dataclass(frozen=True)
class AsyncSettings:
    """How the broker was opened, for ``cloudq_servicebus.aio_sender`` to open the same
    namespace with the async client."""

    connection_string: str | None
    namespace: str | None
    credential: Any
    """The credential given (``None``: ``DefaultAzureCredential``)."""
    retry: dict[str, Any]


@dataclass(eq=False)
class _Receiver:
    """One SDK receiver per queue, with the lock every call on it takes, and a second one that
    only renews locks.

    Python's locks are not fair: a receive loop that takes the lock again at once could starve
    a settlement. Settling goes through ``urgent()``; a receive waits its turn (``wait_turn``)
    while any is pending, so a settlement waits at most one receive slice. Renewals do not
    wait even that: a renewal is a management request by lock token, valid from any link on
    the queue, so it goes through ``renewer`` (opened with the receiver, used under
    ``renew_lock``), which no receive ever holds. A busy machine can stretch a receive slice;
    it must not stretch the time a held lock goes unrenewed.
    """

    sdk: Any
    renewer: Any
    session_id: str | None = None
    """Set for a session receiver: its renewer is itself (a session is renewed on its link)."""
    unsettled: int = 0
    """Messages taken from this session and not yet settled (session receivers only)."""
    abandoned: bool = False
    """A message of this session was abandoned: the session is closed, not received from
    again, since its link may hold later messages already (sent on credit after a receive
    returned) that would then come before the abandoned one. Closing gives all back; the next
    accept starts at the session's first message."""
    lock: threading.RLock = field(default_factory=threading.RLock)
    renew_lock: threading.Lock = field(default_factory=threading.Lock)
    _pending: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition)

    @contextmanager
    def urgent(self) -> Iterator[None]:
        with self._cond:
            self._pending += 1
        try:
            with self.lock:
                yield
        finally:
            with self._cond:
                self._pending -= 1
                self._cond.notify_all()

    def wait_turn(self) -> None:
        with self._cond:
            while self._pending:
                self._cond.wait(lim.RECEIVE_SLICE_SECONDS)


@dataclass
class _Held:
    """A received, unsettled message: the lease cloudq promised and the lock the broker holds."""

    queue: str
    message: Any
    receiver: _Receiver
    lease_until: float
    lock_until: float
    lock_seconds: float
    """The queue's lock duration, as seen on receipt."""
    settled: bool = False
    guard: threading.Lock = field(default_factory=threading.Lock)
    """Held by a settlement or a renewal of this message: never both at once (a renewal racing
    a completion would find the lock gone and report it lost)."""


def _seconds_until(moment: dt.datetime | None, clock: Clock) -> float:
    if moment is None:
        return 0.0
    return (moment - dt.datetime.now(dt.UTC)).total_seconds()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _body(message: Any) -> bytes:
    body = message.body
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    return b"".join(bytes(part) for part in body)


class ServiceBusBroker(BrokerBase):
    """One Service Bus namespace. Thread-safe: every SDK object is used under its own lock."""

    provider = "Service Bus"
    groups_on_fifo = True  # FIFO queues are session queues; a group is a session
    reason_max_chars = lim.MAX_REASON_CHARS
    name_pattern = _QUEUE_NAME
    max_name_chars = lim.MAX_QUEUE_NAME_CHARS
    name_rule = (
        f"up to {lim.MAX_QUEUE_NAME_CHARS} letters, digits, '.', '-', '_' and '/', starting "
        "with a letter or digit (prefix included)"
    )

    def __init__(
        self,
        clock: Clock,
        *,
        connection_string: str | None = None,
        namespace: str | None = None,
        credential: Any = None,
        admin_connection_string: str | None = None,
        prefix: str = "",
        max_message_bytes: int | None = None,
    ) -> None:
        from azure.core.exceptions import AzureError
        from azure.servicebus import ServiceBusClient
        from azure.servicebus.exceptions import ServiceBusError
        from azure.servicebus.management import ServiceBusAdministrationClient

        if not connection_string and not namespace:
            raise ConfigurationError(
                "servicebus:// needs a namespace: set CLOUDQ_SERVICEBUS_CONNECTION (or "
                "SERVICEBUS_CONNECTION_STRING) to a connection string, or name the namespace in "
                "the URL (servicebus://NAME.servicebus.windows.net) to use DefaultAzureCredential"
            )
        self._errors: tuple[type[Exception], ...] = (ServiceBusError, AzureError)
        self._clock = clock
        self.prefix = prefix
        ceiling = max_message_bytes or lim.MAX_MESSAGE_BYTES
        self.limits = BrokerLimits(
            max_delay_seconds=None,
            max_lease_seconds=lim.MAX_LOCK_SECONDS,
            max_message_bytes=ceiling - lim.MESSAGE_OVERHEAD_BYTES,
            max_batch=lim.MAX_BATCH,
        )
        self._wire_limit = ceiling
        retry: dict[str, Any] = {
            "retry_total": lim.SDK_RETRY_TOTAL,
            "retry_backoff_factor": lim.SDK_RETRY_BACKOFF_SECONDS,
        }
        # Accepting the next available session gives up with OperationTimeoutError when none
        # is there, which the SDK would retry: session receivers come from a client that
        # does not, so an idle wait costs what was asked, not twice that and a backoff.
        no_retry = {**retry, "retry_total": 0}
        self._aio_settings = AsyncSettings(connection_string, namespace, credential, retry)
        try:
            if connection_string:
                self._client = ServiceBusClient.from_connection_string(connection_string, **retry)
                self._session_client = ServiceBusClient.from_connection_string(
                    connection_string, **no_retry
                )
                admin_cs = admin_connection_string or connection_string
                self._admin = ServiceBusAdministrationClient.from_connection_string(admin_cs)
                self.namespace = self._client.fully_qualified_namespace
            else:
                if credential is None:
                    from azure.identity import DefaultAzureCredential

                    credential = DefaultAzureCredential()
                assert namespace is not None
                self._client = ServiceBusClient(namespace, credential, **retry)
                self._session_client = ServiceBusClient(namespace, credential, **no_retry)
                if admin_connection_string:
                    self._admin = ServiceBusAdministrationClient.from_connection_string(
                        admin_connection_string
                    )
                else:
                    self._admin = ServiceBusAdministrationClient(namespace, credential)
                self.namespace = namespace
        except (ValueError, *self._errors) as exc:
            raise ConfigurationError(
                f"cannot open the Service Bus namespace: {redact_url(str(exc))}"
            ) from exc
        self._lock = threading.Lock()
        self._senders: dict[str, tuple[Any, threading.Lock]] = {}
        self._receivers: dict[str, _Receiver] = {}
        self._sessions: dict[str, list[_Receiver]] = {}
        """Open session receivers per FIFO queue."""
        self._held: dict[int, _Held] = {}
        self._held_cond = threading.Condition(threading.Lock())
        self._closed = threading.Event()
        self._admin_denied = False
        self._keeper = threading.Thread(
            target=self._keep_leases, name="cloudq-servicebus-leases", daemon=True
        )
        self._keeper.start()

    def __repr__(self) -> str:
        return f"ServiceBusBroker({self.namespace!r}, prefix={self.prefix!r})"

    def open_async_sender(self) -> AsyncSender | None:
        """An ``azure.servicebus.aio`` sender for the running loop (``cloudq.aio``), or
        ``None`` where the credential has no async form (``cloudq_servicebus.aio_sender``)."""
        from cloudq_servicebus.aio_sender import open_aio_sender

        return open_aio_sender(self, self._aio_settings)

    # --- naming and errors -------------------------------------------------------------------
    def _error(self, operation: str, queue: str, exc: Exception) -> BrokerError | MessageTooLarge:
        from azure.core.exceptions import ResourceNotFoundError
        from azure.servicebus.exceptions import (
            MessageSizeExceededError,
            MessagingEntityNotFoundError,
        )

        if isinstance(exc, MessagingEntityNotFoundError | ResourceNotFoundError):
            return self._not_found(operation, f"queue {self._name(queue)!r}")
        if isinstance(exc, MessageSizeExceededError):
            return MessageTooLarge(
                f"Service Bus {operation} on queue {self._name(queue)!r}: message over the "
                f"namespace's size limit ({self._wire_limit} bytes with headers): {exc}"
            )
        return super()._error(operation, queue, exc)

    def _call(self, operation: str, queue: str, fn: Callable[[], T]) -> T:
        """The skeleton's ``_call``, saying plainly when a link failed for a missing queue."""
        try:
            return super()._call(operation, queue, fn)
        except BrokerError as error:
            if type(error) is not BrokerError or operation not in _ENTITY_OPERATIONS:
                raise
            missing = self._missing_queue(operation, queue)
            if missing is None:
                raise
            raise missing from error.__cause__

    def _missing_queue(self, operation: str, queue: str) -> QueueNotFoundError | None:
        """A link to a missing queue fails with whatever the detach carried (often a generic
        error): ask the administration API whether the queue is there, to say so plainly."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self._admin.get_queue(self.physical_name(queue))
        except ResourceNotFoundError:
            return self._not_found(operation, f"queue {self._name(queue)!r}")
        except Exception:  # noqa: BLE001 - only a hint: the original error is raised anyway
            return None
        return None

    # --- SDK objects -------------------------------------------------------------------------
    # Each is opened (``__enter__``: connect, authenticate, attach, with the SDK's retries) when
    # made: a receive's own wait may be far too short to open a link in. One that failed is
    # dropped, so the next call opens a fresh one.
    def _sender(self, queue: str) -> tuple[Any, threading.Lock]:
        with self._lock:
            entry = self._senders.get(queue)
            if entry is None:
                name = self.physical_name(queue)
                sdk = self._call("open_sender", queue, lambda: self._open(name, sender=True))
                entry = self._senders[queue] = (sdk, threading.Lock())
            return entry

    def _receiver(self, queue: str) -> _Receiver:
        with self._lock:
            entry = self._receivers.get(queue)
            if entry is None:
                name = self.physical_name(queue)
                sdk = self._call("open_receiver", queue, lambda: self._open(name, sender=False))
                # The renewer is opened now, not at the first renewal: opening a connection can
                # take longer than the margin a renewal has before the lock lapses.
                try:
                    renewer = self._call(
                        "open_receiver", queue, lambda: self._open(name, sender=False)
                    )
                except BrokerError:
                    _quietly(sdk.close)
                    raise
                entry = self._receivers[queue] = _Receiver(sdk, renewer)
            return entry

    def _open(self, name: str, sender: bool) -> Any:
        sdk: Any
        if sender:
            sdk = self._client.get_queue_sender(name)
        else:
            sdk = self._client.get_queue_receiver(name, prefetch_count=0)
        sdk.__enter__()
        return sdk

    def _drop(
        self, queue: str, sender: bool, entry: tuple[Any, threading.Lock] | None = None
    ) -> None:
        """Close and forget the queue's sender or receiver; given ``entry`` (the sender that
        failed), only if it is still the current one: never a fresh one another thread opened."""
        with self._lock:
            if sender:
                if entry is not None and self._senders.get(queue) is not entry:
                    _quietly(entry[0].close)
                    return
                entry = self._senders.pop(queue, None)
                if entry is not None:
                    _quietly(entry[0].close)
            else:
                receiver = self._receivers.pop(queue, None)
                if receiver is not None:
                    _quietly(receiver.sdk.close)
                    _quietly(receiver.renewer.close)

    # --- ensure ------------------------------------------------------------------------------
    def ensure(self, spec: QueueSpec) -> None:
        """Create (or bring up to date) ``<name>-dlq`` and ``<name>``: lock duration = lease
        (5 s..5 min), max delivery count = ``max_receive_count``, native dead letters forwarded
        to ``<name>-dlq``. Without the Manage right this logs once and leaves queues to
        Terraform."""
        if spec.fifo and not is_fifo(spec.name):
            raise ConfigurationError(
                f"{spec.name!r}: FIFO queue names end in '.fifo' (they are session queues on "
                "Service Bus)"
            )
        if self._admin_denied:
            return
        lock = min(lim.MAX_LOCK_SECONDS, max(lim.MIN_LOCK_SECONDS, math.ceil(spec.lease_seconds)))
        dlq = dead_letter_queue_name(spec.name)
        self._ensure_one(dlq, lock, lim.DEAD_LETTER_MAX_DELIVERY_COUNT, None)
        self._ensure_one(
            spec.name,
            lock,
            spec.max_receive_count,
            self.physical_name(dlq),
            sessions=is_fifo(spec.name),
        )

    def _ensure_one(
        self, queue: str, lock: int, max_count: int, forward: str | None, sessions: bool = False
    ) -> None:
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceExistsError,
            ResourceNotFoundError,
        )

        name = self.physical_name(queue)
        settings: dict[str, Any] = {
            "lock_duration": dt.timedelta(seconds=lock),
            "max_delivery_count": max_count,
            "forward_dead_lettered_messages_to": forward,
        }
        try:
            try:
                current = self._admin.get_queue(name)
            except ResourceNotFoundError:
                try:
                    self._admin.create_queue(name, requires_session=sessions, **settings)
                    logger.info("created Service Bus queue %r", name)
                    return
                except ResourceExistsError:
                    current = self._admin.get_queue(name)
            if bool(current.requires_session) != sessions:
                raise ConfigurationError(
                    f"Service Bus queue {name!r} has requires_session="
                    f"{bool(current.requires_session)}, and it cannot change: cloudq's FIFO "
                    "queues ('.fifo' names) are session queues and the others are not; delete "
                    "and recreate it (or fix it in Terraform)"
                )
            forward_now = (current.forward_dead_lettered_messages_to or "").rstrip("/")
            wanted_forward = forward or ""
            if (
                current.lock_duration != settings["lock_duration"]
                or current.max_delivery_count != max_count
                or not forward_now.endswith(wanted_forward)
            ):
                current.lock_duration = settings["lock_duration"]
                current.max_delivery_count = max_count
                current.forward_dead_lettered_messages_to = forward
                self._admin.update_queue(current)
                logger.info("updated Service Bus queue %r to %s", name, settings)
        except ClientAuthenticationError as exc:
            self._deny_admin(exc)
        except HttpResponseError as exc:
            if exc.status_code in (401, 403):
                self._deny_admin(exc)
                return
            raise self._error("ensure", queue, exc) from exc
        except self._errors as exc:
            raise self._error("ensure", queue, exc) from exc

    def _deny_admin(self, exc: Exception) -> None:
        self._admin_denied = True
        logger.warning(
            "this identity may not manage Service Bus entities (%s): queues are expected to be "
            "made by Terraform (module terraform/azure); ensure() does nothing from now on",
            exc,
        )

    # --- send --------------------------------------------------------------------------------
    def _outgoing(self, queue: str, m: OutgoingMessage) -> Any:
        """The SDK message of a checked one (the skeleton's ``send`` checked it); on a FIFO
        queue its group is its session."""
        from azure.servicebus import ServiceBusMessage

        message_id = _fit_id(m.message_id or uuid.uuid4().hex)
        session_id = _fit_id(m.group or DEFAULT_SESSION) if is_fifo(queue) else None
        properties: dict[str | bytes, Any] = {k: v for k, v in m.attributes.items()}
        msg = ServiceBusMessage(
            m.body,
            message_id=message_id,
            session_id=session_id,
            application_properties=properties or None,
        )
        if m.delay_seconds > 0:
            when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=m.delay_seconds)
            msg.scheduled_enqueue_time_utc = when
        return msg

    def _send(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        """Send in as few batches as fit (by bytes). A failure after a first batch went out
        raises naming how many were sent."""
        outgoing = [self._outgoing(queue, m) for m in messages]
        sent = 0

        def run(entry: tuple[Any, threading.Lock]) -> bool:
            nonlocal sent
            sender, lock = entry
            with lock:
                if self._senders.get(queue) is not entry:
                    return False  # closed meanwhile by a failed send on another thread
                try:
                    if len(outgoing) == 1:
                        # As itself: a batch of one costs the client a third more CPU (delay()).
                        sender.send_messages(outgoing[0])
                        sent = 1
                        return True
                    batch = sender.create_message_batch()
                    count = 0
                    for msg in outgoing:
                        try:
                            batch.add_message(msg)
                        except ValueError:  # MessageSizeExceededError: batch full
                            if not count:
                                raise
                            sender.send_messages(batch)
                            sent += count
                            batch, count = sender.create_message_batch(), 0
                            batch.add_message(msg)
                        count += 1
                    sender.send_messages(batch)
                    sent += count
                except self._errors as exc:
                    # Dropped under its lock: a send waiting for it then sees it is gone.
                    if not isinstance(self._error("send", queue, exc), MessageTooLarge):
                        self._drop(queue, sender=True, entry=entry)
                    raise
            return True

        for _ in range(2):  # a second time only with a fresh sender, nothing sent yet
            entry = self._sender(queue)
            try:
                if self._call("send", queue, functools.partial(run, entry)):
                    return
            except BrokerError as exc:
                if sent:
                    raise BrokerError(
                        f"{exc} ({sent} of {len(messages)} messages had been sent before the error)"
                    ) from exc
                raise
        raise BrokerError(
            f"Service Bus send on queue {self.prefix + queue!r} failed: its connection failed "
            "twice on other threads meanwhile; nothing was sent"
        )

    # --- receive -----------------------------------------------------------------------------
    def receive(
        self, queue: str, max_messages: int, wait_seconds: float, lease_seconds: float
    ) -> list[Delivery]:
        if max_messages <= 0:
            return []
        want = min(max_messages, lim.MAX_BATCH)
        if is_fifo(queue):
            return self._receive_sessions(queue, want, wait_seconds, lease_seconds)
        receiver = self._receiver(queue)
        deadline = time.monotonic() + max(wait_seconds, lim.NO_WAIT_SECONDS)
        got: list[Any] = []
        while not got:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            slice_ = min(left, lim.RECEIVE_SLICE_SECONDS)
            receiver.wait_turn()
            with receiver.lock:
                try:
                    got = self._call(
                        "receive",
                        queue,
                        functools.partial(
                            receiver.sdk.receive_messages,
                            max_message_count=want,
                            max_wait_time=slice_,
                        ),
                    )
                except BrokerError:
                    self._drop(queue, sender=False)
                    raise
        return self._hold(queue, receiver, got, lease_seconds)

    def _hold(
        self, queue: str, receiver: _Receiver, got: Sequence[Any], lease_seconds: float
    ) -> list[Delivery]:
        """Deliveries of received messages, held (lease kept, lock renewed) until settled."""
        now = time.monotonic()
        deliveries = []
        for message in got:
            if receiver.session_id is not None:
                lock_left = _seconds_until(receiver.sdk.session.locked_until_utc, self._clock)
                receiver.unsettled += 1
            else:
                lock_left = _seconds_until(message.locked_until_utc, self._clock)
            held = _Held(
                queue=queue,
                message=message,
                receiver=receiver,
                lease_until=now + lease_seconds,
                lock_until=now + lock_left,
                lock_seconds=max(lock_left, 0.0),
            )
            delivery = self._delivery(queue, message, held)
            delivery.group = receiver.session_id
            deliveries.append(delivery)
        if deliveries:
            with self._held_cond:
                for d in deliveries:
                    self._held[id(d.handle)] = d.handle
                self._held_cond.notify_all()
        return deliveries

    def _receive_sessions(
        self, queue: str, want: int, wait_seconds: float, lease_seconds: float
    ) -> list[Delivery]:
        """Up to ``want`` messages from sessions: first the sessions held with nothing out,
        then newly accepted ones (next available), until the batch is full, no session is
        available, or the wait is over. A session that comes back empty is closed."""
        deadline = time.monotonic() + max(wait_seconds, lim.NO_WAIT_SECONDS)
        out: list[Delivery] = []
        while True:
            with self._lock:
                idle = [s for s in self._sessions.get(queue, []) if not s.unsettled]
            for session in idle:
                if session.abandoned:
                    self._close_session(queue, session)
                    continue
                if len(out) >= want:
                    return out
                out += self._from_session(queue, session, want - len(out), lease_seconds)
            for _ in range(want - len(out)):  # each accepted session gives one message at least
                left = deadline - time.monotonic()
                if left <= 0 and not out:
                    break
                wait = lim.NO_WAIT_SECONDS if out else max(left, lim.NO_WAIT_SECONDS)
                accepted = self._accept_session(queue, min(wait, lim.RECEIVE_SLICE_SECONDS))
                if accepted is None:
                    break
                out += self._from_session(queue, accepted, want - len(out), lease_seconds)
            if out or time.monotonic() >= deadline:
                return out

    def _accept_session(self, queue: str, wait: float) -> _Receiver | None:
        """The next available session of ``queue``, or None when none came within ``wait``."""
        from azure.servicebus import NEXT_AVAILABLE_SESSION
        from azure.servicebus.exceptions import OperationTimeoutError

        name = self.physical_name(queue)
        sdk = self._session_client.get_queue_receiver(
            name, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=wait, prefetch_count=0
        )
        try:
            self._call("open_receiver", queue, sdk.__enter__)
        except BrokerError as exc:
            _quietly(sdk.close)
            if isinstance(exc.__cause__, OperationTimeoutError):
                return None
            raise
        session = _Receiver(sdk, sdk, session_id=str(sdk.session.session_id))
        with self._lock:
            self._sessions.setdefault(queue, []).append(session)
        return session

    def _from_session(
        self, queue: str, session: _Receiver, count: int, lease_seconds: float
    ) -> list[Delivery]:
        """Receive from one held session; an empty or lost session is closed."""
        with session.lock:
            try:
                got = self._call(
                    "receive",
                    queue,
                    functools.partial(
                        session.sdk.receive_messages,
                        max_message_count=count,
                        max_wait_time=lim.NO_WAIT_SECONDS,
                    ),
                )
            except BrokerError as exc:
                logger.debug("session %s of %r dropped: %s", session.session_id, queue, exc)
                got = []
        if not got:
            self._close_session(queue, session)
            return []
        return self._hold(queue, session, got, lease_seconds)

    def _close_session(self, queue: str, session: _Receiver) -> None:
        with self._lock:
            sessions = self._sessions.get(queue, [])
            if session in sessions:
                sessions.remove(session)
        with session.lock:
            _quietly(session.sdk.close)

    def _delivery(self, queue: str, message: Any, held: _Held | None) -> Delivery:
        attributes = {_text(k): _text(v) for k, v in (message.application_properties or {}).items()}
        if REASON_ATTRIBUTE not in attributes and NATIVE_REASON in attributes:
            reason = attributes[NATIVE_REASON]
            description = attributes.get(NATIVE_DESCRIPTION)
            attributes[REASON_ATTRIBUTE] = f"{reason}: {description}" if description else reason
        return Delivery(
            queue=queue,
            body=_body(message),
            message_id=str(message.message_id or message.sequence_number),
            receive_count=(message.delivery_count or 0) + 1,
            handle=held,
            attributes={k: v for k, v in attributes.items() if k not in _HIDDEN_ATTRIBUTES},
            leased_until=held.lease_until if held is not None else 0.0,
        )

    # --- settlement ----------------------------------------------------------------------------
    def _held_of(self, deliveries: Sequence[Delivery]) -> Iterator[_Held]:
        for d in deliveries:
            if isinstance(d.handle, _Held) and not d.handle.settled:
                yield d.handle

    def _forget(self, held: _Held) -> None:
        with self._held_cond:
            if not held.settled and held.receiver.session_id is not None:
                held.receiver.unsettled -= 1
            held.settled = True
            self._held.pop(id(held), None)

    def _unless_lost(self, operation: str, held: _Held, fn: Callable[[], T]) -> T | None:
        """``_call`` on a held message. A lock already lost means the message is back on the
        queue: it is forgotten and logged, and None returned, not raised (at-least-once;
        raising would not bring the lock back)."""
        from azure.servicebus.exceptions import (
            MessageAlreadySettled,
            MessageLockLostError,
            SessionLockLostError,
        )

        try:
            return fn()
        except (MessageLockLostError, MessageAlreadySettled, SessionLockLostError) as exc:
            self._forget(held)
            logger.warning(
                "Service Bus %s on %r: message %s no longer locked (%s); it comes back to the "
                "queue",
                operation,
                self.prefix + held.queue,
                held.message.message_id,
                type(exc).__name__,
            )
            return None
        except self._errors as exc:
            raise self._error(operation, held.queue, exc) from exc

    def _settle(self, operation: str, helds: Iterable[_Held], method: str) -> None:
        """Complete or abandon (``method`` of the SDK receiver) each message, all of one
        receiver's in one ``urgent()`` turn: an acknowledgement batch pays that handshake once,
        not per message. Lock order everywhere: the receiver's lock, then a message's guard."""
        groups: dict[int, tuple[_Receiver, list[_Held]]] = {}
        for held in helds:
            groups.setdefault(id(held.receiver), (held.receiver, []))[1].append(held)
        for receiver, group in groups.values():
            if method == "abandon_message" and receiver.session_id is not None:
                receiver.abandoned = True
            action = getattr(receiver.sdk, method)
            with receiver.urgent():
                for held in group:
                    with held.guard:
                        if not held.settled:
                            self._unless_lost(
                                operation, held, functools.partial(action, held.message)
                            )
                            self._forget(held)

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        self._settle("complete", self._held_of(deliveries), "complete_message")

    def release(self, deliveries: Sequence[Delivery], delay_seconds: float = 0.0) -> None:
        """No delay: abandon (visible at once, delivery count + 1). With a delay: schedule a copy
        that long ahead, then complete the original: waiting must not count as a failed
        delivery toward the max delivery count."""
        for d in deliveries:
            if not isinstance(d.handle, _Held) or d.handle.settled:
                continue
            held = d.handle
            if delay_seconds <= 0:
                self._settle("abandon", [held], "abandon_message")
                continue
            if held.receiver.session_id is not None:
                # Kept locked until due, then abandoned by the keeper: it comes back first in
                # its session, which gives out nothing else meanwhile.
                held.lease_until = time.monotonic() + delay_seconds
                continue
            copy = OutgoingMessage(
                body=d.body,
                delay_seconds=delay_seconds,
                message_id=d.message_id,
                attributes={k: v for k, v in d.attributes.items() if k != REASON_ATTRIBUTE},
            )
            self.send(d.queue, [copy])
            self._settle("complete", [held], "complete_message")

    def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        """Move each lease end to ``seconds`` from now; renew the broker's lock now if it would
        lapse first (the keeper renews again while the lease lasts)."""
        now = time.monotonic()
        for d in deliveries:
            if not isinstance(d.handle, _Held) or d.handle.settled:
                continue
            held = d.handle
            held.lease_until = now + seconds
            d.leased_until = held.lease_until
            if held.lock_until < held.lease_until:
                self._renew(held)

    def _renew(self, held: _Held) -> None:
        receiver = held.receiver
        if receiver.session_id is not None:
            # A session is renewed on its own link (the SDK's objects are not thread-safe):
            # the receiver's lock first, then the guard, the order settlements take them in.
            with receiver.urgent(), held.guard:
                if held.settled:
                    return
                until = self._unless_lost(
                    "renew_session_lock", held, receiver.sdk.session.renew_lock
                )
                if not held.settled:
                    held.lock_until = time.monotonic() + _seconds_until(until, self._clock)
            return
        with held.guard, receiver.renew_lock:
            if held.settled:
                return
            renewer = receiver.renewer
            until = self._unless_lost(
                "renew_lock", held, lambda: renewer.renew_message_lock(held.message)
            )
            if not held.settled:  # settled: the lock was lost and the message forgotten
                held.lock_until = time.monotonic() + _seconds_until(until, self._clock)

    def _send_dead_letter(
        self, delivery: Delivery, dlq: str, body: bytes, attributes: dict[str, str]
    ) -> None:
        """A copy on ``<queue>-dlq``, a queue of its own. The skeleton then acks the original;
        a delivery not held here (an Azure Functions trigger's) is left for its host."""
        copy = OutgoingMessage(body=body, message_id=delivery.message_id, attributes=attributes)
        self.send(dlq, [copy])

    # --- the lease keeper --------------------------------------------------------------------
    def _keep_leases(self) -> None:
        """Abandon messages whose lease ran out; renew locks that would lapse within a lease."""
        while not self._closed.is_set():
            with self._held_cond:
                if not self._held:
                    self._held_cond.wait(1.0)
                    continue
                held = list(self._held.values())
            now = time.monotonic()
            for h in held:
                if h.settled:
                    self._forget(h)
                    continue
                try:
                    if now >= h.lease_until:
                        logger.debug("lease of %s ran out: abandoned", h.message.message_id)
                        self._settle("abandon", [h], "abandon_message")
                    elif h.lock_until < h.lease_until:
                        margin = min(lim.RENEW_MARGIN_SECONDS, h.lock_seconds / 2)
                        if h.lock_until - now <= margin:
                            self._renew(h)
                except Exception:
                    logger.exception("lease keeping failed for message %s", h.message.message_id)
            self._closed.wait(lim.KEEPER_TICK_SECONDS)

    # --- stats and purge ---------------------------------------------------------------------
    def _runtime(self, queue: str) -> Any:
        return self._call(
            "get_queue_runtime_properties",
            queue,
            lambda: self._admin.get_queue_runtime_properties(self.physical_name(queue)),
        )

    def stats(self, queue: str) -> QueueStats:
        """From the queue's runtime properties. Service Bus counts locked messages as active
        and cannot tell them apart: ``in_flight`` is the messages this client holds, and
        ``visible`` the active count less those."""
        props = self._runtime(queue)
        with self._held_cond:
            mine = sum(1 for h in self._held.values() if h.queue == queue and not h.settled)
        dead: int | None = props.dead_letter_message_count
        try:
            dlq = self._runtime(dead_letter_queue_name(queue))
            dead = (dead or 0) + dlq.active_message_count + dlq.scheduled_message_count
        except QueueNotFoundError:
            pass
        return QueueStats(
            queue=queue,
            visible=max(0, props.active_message_count - mine),
            in_flight=mine,
            delayed=props.scheduled_message_count,
            dead_lettered=dead,
        )

    def purge(self, queue: str) -> None:
        """Receive-and-delete until empty, then cancel scheduled messages (found by peeking);
        on a session queue, session by session until none is available. Messages locked by a
        consumer (or in a session it holds) are not reached: they come back when their lock
        ends. A session whose every message is scheduled is not offered, so its scheduled
        messages stay."""
        from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusReceiveMode
        from azure.servicebus.exceptions import OperationTimeoutError

        name = self.physical_name(queue)
        mode = ServiceBusReceiveMode.RECEIVE_AND_DELETE

        def run() -> None:
            if not is_fifo(queue):
                with self._client.get_queue_receiver(name, receive_mode=mode) as drain:
                    scheduled = _drain(drain)
                self._cancel_scheduled(queue, scheduled)
                return
            while True:
                sdk = self._session_client.get_queue_receiver(
                    name,
                    session_id=NEXT_AVAILABLE_SESSION,
                    receive_mode=mode,
                    max_wait_time=lim.RECEIVE_SLICE_SECONDS,
                )
                try:
                    with sdk as drain:
                        scheduled = _drain(drain)
                except OperationTimeoutError:
                    return  # no session left with a message to hand out
                self._cancel_scheduled(queue, scheduled)

        self._call("purge", queue, run)

    def _cancel_scheduled(self, queue: str, sequence_numbers: list[int]) -> None:
        if sequence_numbers:
            sender, lock = self._sender(queue)
            with lock:
                sender.cancel_scheduled_messages(sequence_numbers)

    def close(self) -> None:
        self._closed.set()
        with self._held_cond:
            self._held_cond.notify_all()
        with self._lock:
            senders, self._senders = list(self._senders.values()), {}
            receivers, self._receivers = list(self._receivers.values()), {}
            for sessions in self._sessions.values():
                receivers += sessions
            self._sessions = {}
        # Side by side: each SDK handler joins its keep-alive thread on close (up to a second).
        closers = [sender.close for sender, _ in senders]
        closers += [receiver.sdk.close for receiver in receivers]
        closers += [r.renewer.close for r in receivers if r.session_id is None]
        threads = [threading.Thread(target=_quietly, args=(fn,), daemon=True) for fn in closers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(CLOSE_TIMEOUT_SECONDS)
        _quietly(self._client.close)
        _quietly(self._session_client.close)
        _quietly(self._admin.close)


def _fit_id(value: str) -> str:
    """An id as Service Bus takes it (MessageId, SessionId: up to 128 characters); a longer
    one is hashed, which keeps equal ids equal."""
    if len(value) > lim.MAX_MESSAGE_ID_CHARS:
        return uuid.uuid5(uuid.NAMESPACE_URL, value).hex
    return value


def _drain(receiver: Any) -> list[int]:
    """Receive-and-delete everything ``receiver`` reaches; return the sequence numbers of the
    scheduled messages it peeked (a receive does not hand those out)."""
    from azure.servicebus import ServiceBusMessageState

    while receiver.receive_messages(
        max_message_count=lim.PURGE_BATCH, max_wait_time=lim.RECEIVE_SLICE_SECONDS
    ):
        pass
    scheduled: list[int] = []
    start = 0
    while True:
        page = receiver.peek_messages(lim.PURGE_BATCH, sequence_number=start)
        if not page:
            return scheduled
        scheduled += [
            int(m.sequence_number or 0) for m in page if m.state == ServiceBusMessageState.SCHEDULED
        ]
        start = int(page[-1].sequence_number or 0) + 1


def _quietly(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - closing must not raise over the real error
        logger.debug("ignored while closing: %r", exc)


def connection_string_from_env() -> str | None:
    return env_setting(*CONNECTION_ENV)


def open_servicebus_broker(url: str, clock: Clock) -> ServiceBusBroker:
    """The ``cloudq.adapters`` entry point for ``servicebus://[NAMESPACE][?OPTIONS]``.

    :param url: the namespace as host (``DefaultAzureCredential``), or none (the connection string
        in ``CLOUDQ_SERVICEBUS_CONNECTION``); options ``prefix`` (of every queue name; default
        ``CLOUDQ_SERVICEBUS_PREFIX``) and ``max_message_bytes`` (the tier's message size).
    :param clock: the app's clock (``cloudq.clock.FakeClock`` in tests).
    """
    host, options = broker_url(
        url,
        _URL_OPTIONS,
        usage="servicebus://[NAMESPACE.servicebus.windows.net][?prefix=...]",
        credentials="secrets come from CLOUDQ_SERVICEBUS_CONNECTION",
    )
    namespace = host or None
    connection = None if namespace else connection_string_from_env()
    return ServiceBusBroker(
        clock,
        connection_string=connection,
        namespace=namespace,
        admin_connection_string=os.environ.get(ADMIN_CONNECTION_ENV) or None,
        prefix=options.get("prefix", os.environ.get(PREFIX_ENV, "")),
        max_message_bytes=url_count(options, "max_message_bytes", url),
    )


__all__ = [
    "DEAD_LETTER_SUFFIX",
    "REASON_ATTRIBUTE",
    "QueueNotFoundError",
    "ServiceBusBroker",
    "open_servicebus_broker",
]
