"""Fuzz of the serverless entry points: the Lambda SQS handler, the Cloud Functions CloudEvent
handler and the Azure Functions Service Bus handler, with thousands of malformed and
semi-valid inputs (hypothesis).

No cloud: each handler gets its provider's broker class (the handlers check it) whose I/O is a
memory broker's, so retries, hops and dead letters land in memory. The properties:

- Lambda: a structurally invalid event (not a mapping, no ``Records`` list) raises
  ``MalformedEvent``; anything else returns, and every record is either settled (its
  outcome applied) or named in ``batchItemFailures``, never silently dropped.
- Cloud Functions: ``process_event`` returns the outcome it applied, or raises
  ``MalformedEvent`` (not a Pub/Sub message), ``ForeignQueue`` (not this app's topic),
  ``DeliveryHeld`` (deferred: nacked on
  purpose) or the error of an outcome that could not be applied (Pub/Sub redelivers); nothing
  else.
- Azure Functions: the function returns or raises ``BatchFailed`` naming the messages whose
  outcome could not be applied; every message is settled or named there.
"""

from __future__ import annotations

import base64
import importlib
import json
import logging
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import hypothesis
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cloudq import App
from cloudq.adapters.base import Delivery, OutgoingMessage, QueueSpec, QueueStats
from cloudq.adapters.memory import MemoryBroker
from cloudq.envelope import decode, sign, verify
from cloudq.errors import EnvelopeError, ForeignQueue, MalformedEvent
from cloudq.outcome import Ack, Defer, Outcome
from cloudq.pool import ProcessExecutor
from cloudq.settle import settle
from cloudq.testing import FakeClock
from tests.apps import trust_app

pytest.importorskip("boto3")
pytest.importorskip("google.pubsub_v1")
pytest.importorskip("azure.functions")

from azure.functions.servicebus import ServiceBusMessage

from cloudq_pubsub.broker import PubSubBroker
from cloudq_servicebus.broker import ServiceBusBroker
from cloudq_servicebus.functions import BatchFailed, functions_handler
from cloudq_sqs.broker import ENCODING_ATTRIBUTE, SQSBroker, decode_body

# The packages export functions named like these modules: import the modules themselves.
lambda_module = importlib.import_module("cloudq_sqs.lambda_handler")
pubsub_functions = importlib.import_module("cloudq_pubsub.functions")
servicebus_functions = importlib.import_module("cloudq_servicebus.functions")

FUZZ = settings(
    max_examples=1_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
PREFIX = "fz-"


# --- the brokers: the provider's class, a memory broker's I/O ------------------------------
class _MemoryIO:
    """Every broker call goes to ``self.memory``; naming stays the provider class's own."""

    memory: MemoryBroker

    def ensure(self, spec: QueueSpec) -> None:
        self.memory.ensure(spec)

    def send(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        self.memory.send(queue, messages)

    def receive(
        self, queue: str, max_messages: int, wait_seconds: float, lease_seconds: float
    ) -> list[Delivery]:
        return self.memory.receive(queue, max_messages, wait_seconds, lease_seconds)

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        self.memory.ack(deliveries)

    def release(self, deliveries: Sequence[Delivery], delay_seconds: float = 0.0) -> None:
        self.memory.release(deliveries, delay_seconds)

    def extend(self, deliveries: Sequence[Delivery], seconds: float) -> None:
        self.memory.extend(deliveries, seconds)

    def dead_letter(self, delivery: Delivery, reason: str, body: bytes | None = None) -> None:
        self.memory.dead_letter(delivery, reason, body)

    def stats(self, queue: str) -> QueueStats:
        return self.memory.stats(queue)

    def purge(self, queue: str) -> None:
        self.memory.purge(queue)

    def close(self) -> None:
        pass


def _app(kind: type[Any], limits: str, **attributes: Any) -> App:
    """An app whose broker is a ``kind`` (as its handler requires) doing memory I/O."""
    name = f"fuzz-{uuid.uuid4().hex[:8]}"
    app = App(
        "fuzz",
        broker=f"memory://{name}?{limits}",
        backend=f"memory://{name}",
        clock=FakeClock(),
        task_time_limit=30,
    )
    memory = app.broker
    assert isinstance(memory, MemoryBroker)
    fake = object.__new__(type(f"Memory{kind.__name__}", (_MemoryIO, kind), {}))
    fake.memory = memory
    fake.limits = memory.limits
    fake.prefix = PREFIX
    for key, value in attributes.items():
        setattr(fake, key, value)
    app.__dict__["broker"] = fake

    @app.task(name="ok")
    def ok(x: int) -> int:
        return x * 2

    @app.task(name="boom")
    def boom() -> None:
        raise ValueError("boom")

    @app.task(name="flaky", autoretry_for=(ConnectionError,), max_retries=2, retry_backoff=1)
    def flaky(key: str) -> None:
        raise ConnectionError(key)

    @app.task(name="chained")
    def chained(items: list[int]) -> int:
        return sum(items)

    return app


class Settled(list[tuple[Delivery, Outcome]]):
    """The deliveries ``settle`` applied, with their outcomes; ``raised``: those it could not."""

    def __init__(self) -> None:
        super().__init__()
        self.raised: list[tuple[Delivery, BaseException]] = []


@contextmanager
def settling(module: Any) -> Iterator[Settled]:
    """Record what ``module.settle`` applied, or raised on, in the block.

    Patched per example: a function-scoped fixture lives across all of hypothesis's examples,
    so ``monkeypatch`` would wrap the wrapper of the example before, a thousand deep."""
    seen = Settled()
    real = module.settle

    def recording(app: App, delivery: Delivery, outcome: Outcome, ack: Any = None) -> None:
        try:
            real(app, delivery, outcome, ack)
        except Exception as exc:
            seen.raised.append((delivery, exc))
            raise
        seen.append((delivery, outcome))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "settle", recording)
        yield seen


@pytest.fixture(autouse=True, scope="module")
def quiet() -> Iterator[None]:
    """Thousands of dead letters and failures: keep their logs (and tracebacks) out."""
    logger = logging.getLogger("cloudq")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


# --- bodies: real envelopes, envelopes with fields broken, and junk ---------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
ENVELOPE_FIELDS = [
    "v", "id", "task", "args", "kwargs", "queue", "attempt", "retry", "eta", "expires",
    "created_at", "links", "errlinks", "headers", "chord_id", "chord_index", "group_id", "sig",
]  # fmt: skip


# Strategies are built once, here: building them inside draws grows hypothesis's caches
# without bound (it went past 17 GB in a thousand examples).
TASK_NAMES = st.sampled_from(["ok", "boom", "flaky", "chained", "missing"])
LINK_TASKS = st.sampled_from(["ok", "ok", "chained", "nope"])
COUNTDOWNS = st.sampled_from([None, 0, 5, 10_000])
EXPIRES = st.sampled_from([None, -5, 60])
BROKEN_FIELDS = st.lists(st.sampled_from(ENVELOPE_FIELDS), max_size=3, unique=True)
EXTRA_FIELDS = st.dictionaries(st.text(max_size=6), json_values, max_size=2)
ONE_IN_THREE = st.integers(0, 2)
ONE_IN_TEN = st.integers(0, 9)
ONE_IN_TWENTY = st.integers(0, 19)
ONE_IN_THIRTY = st.integers(0, 29)
BREAKS = st.sampled_from([0, 0, 0, 1, 2])  # mostly whole: the rest has to run too


def _break(draw: st.DrawFn, target: dict[str, Any], keep: frozenset[str] = frozenset()) -> None:
    """Delete, or replace with junk, up to two of ``target``'s keys (never those in ``keep``)."""
    keys = sorted(set(target) - keep)
    for _ in range(draw(BREAKS)):
        if not keys:
            return
        key = keys.pop(draw(st.integers(0, len(keys) - 1)))
        if draw(st.booleans()):
            del target[key]
        else:
            target[key] = draw(json_values)


@st.composite
def envelope_bodies(draw: st.DrawFn, app: App) -> bytes:
    """A real envelope for one of the app's tasks (or an unknown one), then maybe broken."""
    name = draw(TASK_NAMES)
    task = app.tasks["ok" if name == "missing" else name]
    args: list[Any] = {"ok": [3], "boom": [], "flaky": ["k"], "chained": [[1, 2]]}.get(name, [1])
    env = task.envelope(
        args,
        {},
        countdown=draw(COUNTDOWNS),
        expires=draw(EXPIRES),
    )
    if name == "missing":
        env = env.model_copy(update={"task": "nope.missing"})
    if name == "ok" and draw(st.booleans()):
        # ok's result (an int) fits ok, not chained (a list), and task "nope" does not exist:
        # a link that cannot be built fails at that link (its record and error callbacks).
        link = app.tasks["ok"].s().model_dump(mode="json")
        link["task"] = draw(LINK_TASKS)
        env = env.model_copy(update={"links": [link], "attempt": 2})
    data = json.loads(env.encode())
    for key in draw(BROKEN_FIELDS) if draw(ONE_IN_THREE) == 0 else []:
        if draw(st.booleans()):
            data.pop(key, None)
        else:
            data[key] = draw(json_values)
    if draw(st.booleans()):  # extra fields
        data.update(draw(EXTRA_FIELDS))
    return json.dumps(data).encode()


def bodies(app: App) -> st.SearchStrategy[bytes]:
    """Half of them envelopes (most of those valid), half junk."""
    junk = st.one_of(
        st.binary(max_size=64),
        st.text(max_size=64).map(str.encode),
        json_values.map(lambda v: json.dumps(v).encode()),
    )
    envelopes = envelope_bodies(app)
    return st.booleans().flatmap(lambda envelope: envelopes if envelope else junk)


# --- AWS Lambda: SQS events ------------------------------------------------------------------
SQS_APP = _app(SQSBroker, "max_delay_seconds=900&max_batch=10")
SQS_BODIES = bodies(SQS_APP)
SQS_ATTRIBUTES = st.dictionaries(
    st.text(max_size=8),
    st.one_of(st.fixed_dictionaries({"stringValue": st.text(max_size=8)}), json_values),
    max_size=2,
)
RECEIVE_COUNTS = st.integers(1, 5)
GOOD_ARNS = st.sampled_from(
    [
        f"arn:aws:sqs:eu-west-1:123456789012:{PREFIX}default",
        f"arn:aws:sqs:eu-west-1:123456789012:{PREFIX}jobs.fifo",
        "arn:aws:sqs:eu-west-1:123456789012:other",
        "",
    ]
)
ARNS = st.one_of(GOOD_ARNS, GOOD_ARNS, GOOD_ARNS, st.text(max_size=20))  # 3 in 4 well formed


class _Context:
    def __init__(self, left_ms: int) -> None:
        self.left_ms = left_ms
        self.function_name = "fuzz"
        self.aws_request_id = "req"

    def get_remaining_time_in_millis(self) -> int:
        return self.left_ms


@st.composite
def sqs_records(draw: st.DrawFn, index: int) -> dict[str, Any]:
    raw = draw(SQS_BODIES)
    attributes: dict[str, Any] = {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = base64.b64encode(raw).decode()
        attributes[ENCODING_ATTRIBUTE] = {"stringValue": "base64", "dataType": "String"}
    if draw(ONE_IN_TEN) == 0:  # a body that claims base64 and is not
        attributes[ENCODING_ATTRIBUTE] = {"stringValue": "base64", "dataType": "String"}
    attributes.update(draw(SQS_ATTRIBUTES))
    record: dict[str, Any] = {
        "messageId": f"m-{index}",
        "receiptHandle": f"h-{index}",
        "body": text,
        "attributes": {"ApproximateReceiveCount": str(draw(RECEIVE_COUNTS))},
        "messageAttributes": attributes,
        "eventSource": "aws:sqs",
        "eventSourceARN": draw(ARNS),
    }
    _break(draw, record, keep=frozenset({"receiptHandle"}))
    if draw(ONE_IN_TEN) == 0:
        del record["receiptHandle"]  # how the test finds a record again: missing, never junk
    return record


RECORD_COUNTS = st.integers(0, 6)
RECORDS = [sqs_records(i) for i in range(6)]


@st.composite
def sqs_events(draw: st.DrawFn) -> Any:
    n = draw(RECORD_COUNTS)
    records: list[Any] = [draw(RECORDS[i]) for i in range(n)]
    event: dict[str, Any] = {"Records": records}
    if draw(ONE_IN_TWENTY) == 0:
        event["Records"] = draw(json_values)  # structurally invalid, or no records
    if draw(ONE_IN_TWENTY) == 0:
        return draw(json_values)  # not an event at all
    return event


@given(
    event=sqs_events(),
    left_ms=st.one_of(st.none(), st.integers(0, 900_000)),
)
@example(event={"Records": [None, "x", 3]}, left_ms=None)
@example(event=[{"messageId": "m-0"}], left_ms=None)
@example(event={"Records": "nope"}, left_ms=None)
@example(
    event={
        "Records": [
            {
                "messageId": "m-0",
                "receiptHandle": "h-0",
                "body": "%%%not base64",
                "messageAttributes": {ENCODING_ATTRIBUTE: {"stringValue": "base64"}},
                "eventSourceARN": f"arn:aws:sqs:eu-west-1:1:{PREFIX}default",
            }
        ]
    },
    left_ms=None,
)
@FUZZ
def test_lambda_handler_settles_or_reports_every_record(event: Any, left_ms: int | None) -> None:
    context = None if left_ms is None else _Context(left_ms)
    handler = lambda_module.lambda_handler(SQS_APP)
    records = event.get("Records") if isinstance(event, dict) else None
    if (
        not isinstance(event, dict)
        or not isinstance(records, list)
        or not all(isinstance(r, dict) for r in records)
        or not all(isinstance(r.get("messageId"), str) and r["messageId"] for r in records)
    ):
        with pytest.raises(MalformedEvent, match="not an SQS event"):
            handler(event, context)
        return
    with settling(lambda_module) as applied:
        response = handler(event, context)
    settled = {d.handle: outcome for d, outcome in applied}
    for _, outcome in applied:
        hypothesis.event(type(outcome).__name__)
    if applied.raised:
        hypothesis.event("not applied: reported")
    assert set(response) == {"batchItemFailures"}
    failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    assert all(isinstance(f, str) for f in failed)
    ids = [str(r.get("messageId", "")) if isinstance(r, dict) else "" for r in records or []]
    assert set(failed) <= set(ids), "a failure names no record of the event"
    for index, record in enumerate(records or []):
        handle = f"h-{index}" if isinstance(record, dict) and "receiptHandle" in record else None
        outcome = settled.get(handle) if handle is not None else None
        reported = ids[index] in failed
        assert outcome is not None or reported, f"record {index} silently dropped: {record!r}"
        if outcome is not None and reported:  # applied, yet left to SQS: only a FIFO hold
            assert isinstance(outcome, Defer) or ids[index] == "" or ids.count(ids[index]) > 1
    for delivery, _ in applied.raised:  # not applied: SQS must redeliver it
        assert ids[int(str(delivery.handle).removeprefix("h-"))] in failed


# --- Google Cloud Functions: Pub/Sub CloudEvents -----------------------------------------------
PUBSUB_APP = _app(PubSubBroker, "max_delay_seconds=0&max_batch=100", project="fuzz")
PUBSUB_BODIES = bodies(PUBSUB_APP)
NOT_BASE64 = st.one_of(st.text(max_size=12), json_values)
PUBSUB_ATTRIBUTES = st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=2)
MESSAGE_IDS = st.text(min_size=1, max_size=8)
PUBLISH_TIMES = st.sampled_from(["2030-01-01T00:00:00Z", "2029-12-31T23:00:00", "", "yesterday"])
ORDERING_KEYS = st.text(max_size=6)
DELIVERY_ATTEMPTS = st.integers(1, 6)
GOOD_SOURCES = st.sampled_from(
    [
        f"//pubsub.googleapis.com/projects/fuzz/topics/{PREFIX}default",
        f"//pubsub.googleapis.com/projects/fuzz/topics/{PREFIX}jobs.fifo",
        "//pubsub.googleapis.com/projects/fuzz/topics/",
        "//storage.googleapis.com/projects/_/buckets/b",
    ]
)
SOURCES = st.one_of(GOOD_SOURCES, GOOD_SOURCES, GOOD_SOURCES, st.text(max_size=20))


@st.composite
def pubsub_events(draw: st.DrawFn) -> Any:
    raw = draw(PUBSUB_BODIES)
    data_field: Any = base64.b64encode(raw).decode()
    if draw(ONE_IN_TEN) == 0:
        data_field = draw(NOT_BASE64)
    message: dict[str, Any] = {
        "data": data_field,
        "attributes": draw(PUBSUB_ATTRIBUTES),
        "messageId": draw(MESSAGE_IDS),
        "publishTime": draw(PUBLISH_TIMES),
    }
    if draw(st.booleans()):
        message["orderingKey"] = draw(ORDERING_KEYS)
    data: dict[str, Any] = {
        "message": message,
        "subscription": f"projects/fuzz/subscriptions/{PREFIX}default",
    }
    if draw(st.booleans()):
        data["deliveryAttempt"] = draw(DELIVERY_ATTEMPTS)
    _break(draw, message)
    _break(draw, data)
    event: dict[str, Any] = {
        "id": "e-1",
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "source": draw(SOURCES),
        "time": "2030-01-01T00:00:00Z",
        "data": data,
    }
    if draw(ONE_IN_TWENTY) == 0:
        event["data"] = draw(json_values)
    if draw(ONE_IN_THIRTY) == 0:
        return draw(json_values)
    return event


@given(event=pubsub_events(), as_cloud_event=st.booleans())
@example(
    event={
        "source": f"//pubsub.googleapis.com/projects/fuzz/topics/{PREFIX}default",
        "data": {"message": {"data": "%%%", "messageId": "1"}},
    },
    as_cloud_event=False,
)
@example(
    event={
        "source": f"//pubsub.googleapis.com/projects/fuzz/topics/{PREFIX}default",
        "data": {"message": {"data": 5, "attributes": [1], "deliveryAttempt": "x"}},
    },
    as_cloud_event=False,
)
@FUZZ
def test_cloud_function_applies_an_outcome_or_raises_a_documented_error(
    event: Any, as_cloud_event: bool
) -> None:
    from cloudevents.http import CloudEvent

    if as_cloud_event and isinstance(event, dict) and "source" in event:
        attributes = {k: v for k, v in event.items() if k != "data"}
        if all(isinstance(v, str) for v in attributes.values()):
            event = CloudEvent({**attributes, "type": "t"}, event.get("data"))
            hypothesis.event("CloudEvent object")
    with settling(pubsub_functions) as seen:
        try:
            outcome = pubsub_functions.process_event(PUBSUB_APP, event)
        except pubsub_functions.DeliveryHeld:
            hypothesis.event("held")
            return  # deferred and nacked on purpose: Pub/Sub brings it back
        except Exception as exc:
            if seen.raised:  # the outcome could not be applied: raised for Pub/Sub to redeliver
                assert seen.raised[0][1] is exc
                hypothesis.event("not applied: redelivered")
                return
            assert isinstance(exc, MalformedEvent | ForeignQueue), f"undocumented {exc!r}"
            assert "Pub/Sub" in str(exc)  # names what is wrong with the event
            hypothesis.event("not a Pub/Sub event")
            return
    assert seen == [(seen[0][0], outcome)]
    hypothesis.event(type(outcome).__name__)


def test_cloud_function_entry_point_takes_a_cloud_event() -> None:
    from cloudevents.http import CloudEvent

    handler = pubsub_functions.cloud_function(PUBSUB_APP)
    env = PUBSUB_APP.tasks["ok"].envelope([2], {})
    event = CloudEvent(
        {"type": "t", "source": f"//pubsub.googleapis.com/projects/fuzz/topics/{PREFIX}default"},
        {"message": {"data": base64.b64encode(env.encode()).decode(), "messageId": "1"}},
    )
    handler(event)
    assert PUBSUB_APP.backend.get(env.id).result == 4  # type: ignore[union-attr]


# --- Azure Functions: Service Bus trigger messages ----------------------------------------------
SERVICEBUS_APP = _app(ServiceBusBroker, "max_batch=100")
SERVICEBUS_BODIES = bodies(SERVICEBUS_APP)
DELIVERY_COUNTS = st.one_of(st.none(), st.integers(-1, 20))
HAS_MESSAGE_ID = st.booleans()
HAS_SEQUENCE_NUMBER = st.booleans()
PROPERTY_VALUES = st.one_of(
    st.text(max_size=8), st.integers(), st.binary(max_size=8), st.booleans(), st.none(), st.floats()
)


PROPERTIES = st.dictionaries(
    st.one_of(st.text(max_size=6), st.binary(max_size=6)), PROPERTY_VALUES, max_size=3
)


@st.composite
def servicebus_messages(draw: st.DrawFn, index: int) -> ServiceBusMessage:
    return ServiceBusMessage(
        body=draw(SERVICEBUS_BODIES),
        message_id=f"sb-{index}" if draw(HAS_MESSAGE_ID) else None,
        delivery_count=draw(DELIVERY_COUNTS),
        sequence_number=1000 + index if draw(HAS_SEQUENCE_NUMBER) else None,
        application_properties=draw(PROPERTIES),
        user_properties={},
    )


BATCH_SIZES = st.integers(1, 5)
MESSAGES = [servicebus_messages(i) for i in range(5)]


@st.composite
def servicebus_batches(draw: st.DrawFn) -> Any:
    n = draw(BATCH_SIZES)
    batch = [draw(MESSAGES[i]) for i in range(n)]
    return batch if n > 1 or draw(st.booleans()) else batch[0]


@given(batch=servicebus_batches(), queue=st.sampled_from(["default", "jobs.fifo", "q-2"]))
@FUZZ
def test_servicebus_handler_settles_or_names_every_message(batch: Any, queue: str) -> None:
    handler = functions_handler(SERVICEBUS_APP, queue, time_limit=10)
    messages = batch if isinstance(batch, list) else [batch]
    failed: list[str] = []
    real_process = servicebus_functions.process_messages

    def recording_process(*args: Any, **kwargs: Any) -> list[str]:
        got: list[str] = real_process(*args, **kwargs)
        failed.extend(got)
        return got

    with settling(servicebus_functions) as applied, pytest.MonkeyPatch.context() as patch:
        patch.setattr(servicebus_functions, "process_messages", recording_process)
        try:
            handler(batch)
        except BatchFailed as exc:
            assert failed and all(i in str(exc) for i in failed), "BatchFailed names them"
        else:
            assert failed == []
    settled = {d.message_id: outcome for d, outcome in applied}
    for _, outcome in applied:
        hypothesis.event(type(outcome).__name__)
    if applied.raised:
        hypothesis.event("not applied: reported")
    for m in messages:
        key = str(m.message_id or m.sequence_number)
        assert key in settled or key in failed, f"message {key} silently dropped"
    for delivery, _ in applied.raised:
        assert delivery.message_id in failed, "not applied, yet completed by the host"


# --- regressions: what the fuzz found ---------------------------------------------------------
def _sqs_record(body: str, queue: str, **attributes: str) -> dict[str, Any]:
    return {
        "messageId": "m-1",
        "receiptHandle": "h-1",
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {
            k: {"stringValue": v, "dataType": "String"} for k, v in attributes.items()
        },
        "eventSourceARN": f"arn:aws:sqs:eu-west-1:123456789012:{PREFIX}{queue}",
    }


def test_lambda_event_that_is_not_sqs_is_refused_before_any_record_runs() -> None:
    """Found: a non-mapping record raised AttributeError mid-batch, after earlier records ran
    (the whole batch then came back and ran again)."""
    env = SQS_APP.tasks["ok"].envelope([5], {})
    good = _sqs_record(env.encode().decode(), "default")
    handler = lambda_module.lambda_handler(SQS_APP)
    for event in ({"Records": [good, None]}, {"Records": "x"}, [good], "event", {}):
        with pytest.raises(MalformedEvent, match="not an SQS event"):
            handler(event, None)
    assert SQS_APP.backend.get(env.id) is None  # type: ignore[union-attr]
    assert handler({"Records": []}, None) == {"batchItemFailures": []}


def test_body_flagged_base64_that_is_not_is_dead_lettered_with_its_reason() -> None:
    """Found: ``decode_body`` raised binascii.Error: the Lambda reported the record until SQS's
    redrive took it (no reason), and a worker's whole receive failed with it."""
    queue = f"b64-{uuid.uuid4().hex[:8]}"
    record = _sqs_record("%%% not base64 é", queue, **{ENCODING_ATTRIBUTE: "base64"})
    response = lambda_module.lambda_handler(SQS_APP)({"Records": [record]}, None)
    assert response == {"batchItemFailures": []}
    [dead] = SQS_APP.broker.receive(f"{queue}-dlq", 10, 0, 30)
    assert dead.attributes["cloudq-dead-letter-reason"].startswith("not a cloudq envelope")
    assert decode_body("abc", {ENCODING_ATTRIBUTE: "base64"}) == b"abc"  # bad padding
    assert decode_body("aGk=", {ENCODING_ATTRIBUTE: "base64"}) == b"hi"


def test_pubsub_malformed_message_is_a_malformed_event_naming_pubsub() -> None:
    """Found: attributes that are not a mapping, data that is not base64 text, a delivery
    attempt that is not a number raised AttributeError / TypeError / ValueError."""
    source = f"//pubsub.googleapis.com/projects/fuzz/topics/{PREFIX}default"
    for message in (
        {"data": "", "attributes": [1]},
        {"data": 5},
        {"data": "", "deliveryAttempt": "x"},
        {"data": "", "orderingKey": [1]},
    ):
        event = {"source": source, "data": {"message": message}}
        with pytest.raises(MalformedEvent, match="not a Pub/Sub CloudEvent"):
            pubsub_functions.process_event(PUBSUB_APP, event)


def test_pubsub_publish_time_without_a_zone_is_utc() -> None:
    """Found: a publish time without a zone raised TypeError (naive minus aware datetime)."""
    env = PUBSUB_APP.tasks["ok"].envelope([4], {})
    event = {
        "source": f"//pubsub.googleapis.com/projects/fuzz/topics/{PREFIX}default",
        "data": {
            "message": {
                "data": base64.b64encode(env.encode()).decode(),
                "messageId": "p-1",
                "publishTime": "2029-12-31T23:59:59",
            }
        },
    }
    pubsub_functions.process_event(PUBSUB_APP, event)
    assert PUBSUB_APP.backend.get(env.id).result == 8  # type: ignore[union-attr]


# --- the processes pool with signing on ---------------------------------------------------
# The parent of a processes-pool child builds follow-ups itself (a crashed child's retry, a
# hard limit's failure) and settling signs them: forged, re-queued, malformed and
# BaseException-raising messages must never raise out of the pool, and nothing sent for them
# may verify unless the message it came from verified (issue 26, findings 1, 4, 7).
POOL_FUZZ = settings(
    max_examples=300,  # each example crosses the pipe to a real child: keep the file quick
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TRUST = trust_app.app
POOL_TASKS = st.sampled_from(
    ["ok", "ok", "raise_base", "raise_base", "raise_base_async", "exit_retried", "pid"]
)
RARE_TASKS = st.sampled_from(["die", "overrun"])  # a child replaced, or a limit reached
BASE_KINDS = st.sampled_from(sorted(trust_app.RAISES))
FORGERIES = st.sampled_from(
    ["signed", "signed", "signed", "unsigned", "other key", "non-ascii sig", "not hex",
     "tampered", "re-queued", "broken"]
)  # fmt: skip
CALLBACKS = st.sampled_from([None, "link", "errlink"])


def origin_verifies(delivery: Delivery) -> bool:
    """The test's own oracle: the body decodes, its signature holds, it names its queue."""
    try:
        env = decode(delivery.body)
        verify(env, TRUST.signing_keys)
    except EnvelopeError:
        return False
    return env.queue == delivery.queue


def body_verifies(body: bytes) -> bool:
    try:
        verify(decode(body), TRUST.signing_keys)
    except EnvelopeError:
        return False
    return True


@st.composite
def pool_deliveries(draw: st.DrawFn) -> Delivery:
    name = draw(RARE_TASKS) if draw(ONE_IN_THIRTY) == 0 else draw(POOL_TASKS)
    args: list[Any] = {"ok": [3], "raise_base": [draw(BASE_KINDS)]}.get(name, [])
    if name == "raise_base_async":
        args = [draw(BASE_KINDS)]
    env = TRUST.tasks[name].envelope(args, {}, queue="default")
    callback = draw(CALLBACKS)
    if callback is not None:  # what settling would build and sign: the riskiest follow-ups
        link = TRUST.tasks["ok"].s(1).model_dump(mode="json")
        env = env.model_copy(update={"links" if callback == "link" else "errlinks": [link]})
    forgery = draw(FORGERIES)
    queue = "default"
    if forgery == "other key":
        env = sign(env, ["not-the-apps-key"])
    elif forgery == "non-ascii sig":
        env = env.model_copy(update={"sig": "hmac-sha256:" + "é" * 64})
    elif forgery == "not hex":
        env = env.model_copy(update={"sig": "hmac-sha256:" + "z" * 64})
    elif forgery != "unsigned":
        env = sign(env, TRUST.signing_keys)
    if forgery == "tampered":
        env = env.model_copy(update={"task": "die", "args": []})
    if forgery == "re-queued":
        queue = draw(st.sampled_from(["elsewhere", "default.fifo"]))
    body = env.encode()
    if forgery == "broken":
        data = json.loads(body)
        _break(draw, data, keep=frozenset({"sig"}))
        body = json.dumps(data).encode()
    return Delivery(queue, body, env.id, draw(RECEIVE_COUNTS))


@pytest.fixture(scope="module")
def pool_executor() -> Iterator[ProcessExecutor]:
    executor = ProcessExecutor(TRUST, "tests.apps.trust_app:app", None)
    yield executor
    executor.close()


@given(deliveries=st.lists(pool_deliveries(), min_size=1, max_size=3))
@example(deliveries=[Delivery("default", b"\xff\x00", "junk", 1)])
@POOL_FUZZ
def test_processes_pool_never_raises_and_signs_only_what_it_verified(
    pool_executor: ProcessExecutor, deliveries: list[Delivery]
) -> None:
    for delivery in deliveries:
        sent: list[bytes] = []
        with pytest.MonkeyPatch.context() as patch:  # what settling sends, not sent for real
            patch.setattr(TRUST.broker, "send", lambda q, ms: sent.extend(m.body for m in ms))
            patch.setattr(
                TRUST.broker, "dead_letter", lambda d, r, body=None: sent.append(body or b"")
            )
            patch.setattr(TRUST.broker, "ack", lambda ds: None)
            patch.setattr(TRUST.broker, "release", lambda ds, delay=0.0: None)
            try:
                outcome = pool_executor.run(delivery)
            except BaseException as exc:  # the property: nothing, BaseException included
                pytest.fail(f"{type(exc).__name__} out of the pool for {delivery.body!r}")
            hypothesis.event(f"{type(outcome).__name__}")
            if outcome is not None:
                settle(TRUST, delivery, outcome)
        if not origin_verifies(delivery):
            hypothesis.event("refused")
            assert not isinstance(outcome, Ack), outcome
            signed = [body for body in sent if body != delivery.body and body_verifies(body)]
            assert not signed, f"signed a follow-up of an unverified message: {signed!r}"
