"""The SQS adapter against a real moto server over HTTP: every call of the adapter contract.

Timing tests use short real delays and wait on conditions with timeouts. Each test has queues
of its own (a unique prefix), kept shallow because moto's SQS slows down as a queue gets deep.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import pytest

from cloudq.adapters.base import (
    Broker,
    Delivery,
    OutgoingMessage,
    QueueSpec,
    dead_letter_queue_name,
)
from cloudq.clock import SYSTEM_CLOCK
from cloudq.errors import BrokerError, ConfigurationError, MessageTooLarge
from cloudq_sqs import limits as lim
from cloudq_sqs.broker import (
    REASON_ATTRIBUTE,
    PartialSendError,
    QueueNotFoundError,
    SQSBroker,
    open_sqs_broker,
    send_with_retries,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def drain(broker: Broker, queue: str, expected: int, lease: float = 30) -> list[Delivery]:
    """Receive until ``expected`` messages came (or 10 s passed), then check no more are waiting."""
    got: list[Delivery] = []
    deadline = time.monotonic() + 10
    while len(got) < expected and time.monotonic() < deadline:
        got += broker.receive(queue, 10, 1, lease)
    got += broker.receive(queue, 10, 0, lease)
    return got


@pytest.fixture
def broker(sqs_broker: Broker) -> SQSBroker:
    assert isinstance(sqs_broker, SQSBroker)
    return sqs_broker


@pytest.fixture
def raw(sqs_env: str) -> Any:
    """A plain boto3 client on the same moto, to look at queues behind the adapter's back."""
    import boto3  # type: ignore[import-untyped, unused-ignore]

    return boto3.client("sqs", region_name="us-east-1")  # boto3 itself ignores AWS_REGION


def url_of(raw: Any, broker: SQSBroker, queue: str) -> str:
    return str(raw.get_queue_url(QueueName=broker.physical_name(queue))["QueueUrl"])


# --- opening and configuration ------------------------------------------------------------------
def test_importing_cloudq_imports_no_aws_sdk() -> None:
    code = (
        "import sys, cloudq, cloudq.adapters, cloudq_sqs, cloudq_sqs.broker;"
        "bad = [m for m in ('boto3', 'botocore') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_opened_by_url_through_the_entry_point(sqs_env: str) -> None:
    from cloudq.adapters import open_broker

    broker = open_broker("sqs://?region=eu-west-1&prefix=app-", SYSTEM_CLOCK)
    assert isinstance(broker, Broker)
    assert isinstance(broker, SQSBroker)
    assert broker.prefix == "app-"
    assert broker.limits.max_delay_seconds == 900
    assert broker.limits.max_lease_seconds == 43200
    assert broker.limits.max_message_bytes == 262144
    assert broker.limits.max_batch == 10
    broker.close()


def test_url_and_naming_rules(sqs_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="does not know"):
        open_sqs_broker("sqs://?bogus=1", SYSTEM_CLOCK)
    with pytest.raises(ConfigurationError, match="options only"):
        open_sqs_broker("sqs://AKIA:secret@eu-west-1", SYSTEM_CLOCK)
    monkeypatch.setenv("CLOUDQ_SQS_PREFIX", "shop-")
    broker = open_sqs_broker("sqs://", SYSTEM_CLOCK)
    assert broker.physical_name("jobs") == "shop-jobs"
    assert broker.physical_name(dead_letter_queue_name("jobs")) == "shop-jobs-dlq"
    assert broker.physical_name(dead_letter_queue_name("jobs.fifo")) == "shop-jobs-dlq.fifo"
    with pytest.raises(ConfigurationError, match="not a valid SQS queue name"):
        broker.physical_name("no spaces")
    with pytest.raises(ConfigurationError, match="not a valid SQS queue name"):
        broker.physical_name("x" * 80)
    broker.close()


# --- send / receive / ack -----------------------------------------------------------------------
def test_batch_send_receive_ack_round_trips_bodies_ids_and_attributes(broker: SQSBroker) -> None:
    broker.ensure(QueueSpec("jobs"))
    bodies = [f"task {i}".encode() for i in range(7)]
    bodies += [b"\x00\xff binary", "naïve ✓ \U0001f600".encode(), b"line\r\nbreak\ttab"]
    messages = [
        OutgoingMessage(body, message_id=f"id-{i}", attributes={"trace": f"t{i}"})
        for i, body in enumerate(bodies)
    ]
    started = SYSTEM_CLOCK.monotonic()
    broker.send("jobs", messages)

    got = drain(broker, "jobs", 10, lease=30)
    assert sorted(d.body for d in got) == sorted(bodies)
    by_id = {d.message_id: d for d in got}
    assert set(by_id) == {f"id-{i}" for i in range(10)}
    for i, body in enumerate(bodies):
        d = by_id[f"id-{i}"]
        assert d.body == body and d.queue == "jobs" and d.receive_count == 1
        assert d.attributes == {"trace": f"t{i}"}
        assert started + 30 <= d.leased_until <= SYSTEM_CLOCK.monotonic() + 30
    assert broker.stats("jobs").in_flight == 10

    broker.ack(got)
    stats = broker.stats("jobs")
    assert (stats.visible, stats.in_flight, stats.delayed) == (0, 0, 0)
    broker.ack(got[:2])  # acking again is harmless: those messages are gone


def test_messages_without_id_get_the_sqs_message_id(broker: SQSBroker) -> None:
    broker.ensure(QueueSpec("jobs"))
    broker.send("jobs", [OutgoingMessage(b"x")])
    (d,) = drain(broker, "jobs", 1)
    assert d.message_id and d.attributes == {}


def test_native_delay_holds_the_message_back(broker: SQSBroker) -> None:
    broker.ensure(QueueSpec("jobs"))
    sent = time.monotonic()
    broker.send("jobs", [OutgoingMessage(b"later", delay_seconds=1.2), OutgoingMessage(b"now")])
    first = broker.receive("jobs", 10, 0, 30)
    assert [d.body for d in first] == [b"now"]
    assert broker.stats("jobs").delayed == 1
    later = wait_for(lambda: broker.receive("jobs", 10, 1, 30), 10, "the delayed message")
    assert [d.body for d in later] == [b"later"]
    assert time.monotonic() - sent >= 1.2  # DelaySeconds = ceil(1.2) = 2


def test_delay_beyond_the_native_cap_is_refused(broker: SQSBroker) -> None:
    broker.ensure(QueueSpec("jobs"))
    with pytest.raises(BrokerError, match="delay"):
        broker.send("jobs", [OutgoingMessage(b"x", delay_seconds=901)])


# --- leases ---------------------------------------------------------------------------------------
def test_expired_lease_redelivers_with_receive_count_2(broker: SQSBroker) -> None:
    broker.ensure(QueueSpec("jobs"))
    broker.send("jobs", [OutgoingMessage(b"x", message_id="m1")])
    (first,) = drain(broker, "jobs", 1, lease=1)
    again = wait_for(lambda: broker.receive("jobs", 1, 1, 30), 10, "redelivery after the lease")
    assert again[0].message_id == "m1" and again[0].receive_count == 2
    assert again[0].handle != first.handle


def test_extend_keeps_the_message_invisible_and_release_shows_it_at_once(
    broker: SQSBroker,
) -> None:
    broker.ensure(QueueSpec("jobs"))
    broker.send("jobs", [OutgoingMessage(b"x")])
    (d,) = drain(broker, "jobs", 1, lease=1)
    before = d.leased_until
    broker.extend([d], 20)
    assert d.leased_until >= before + 18
    # Without the extension the message would be visible again after 1 s.
    assert broker.receive("jobs", 1, 2, 30) == []

    broker.release([d])
    t0 = time.monotonic()
    back = broker.receive("jobs", 1, 5, 30)
    assert len(back) == 1 and back[0].receive_count == 2
    assert time.monotonic() - t0 < 2


def test_release_with_delay(broker: SQSBroker) -> None:
    broker.ensure(QueueSpec("jobs"))
    broker.send("jobs", [OutgoingMessage(b"x")])
    (d,) = drain(broker, "jobs", 1)
    broker.release([d], delay_seconds=1)
    assert broker.receive("jobs", 1, 0, 30) == []
    wait_for(lambda: broker.receive("jobs", 1, 1, 30), 10, "the released message")


# --- dead letters -------------------------------------------------------------------------------
def test_dead_letter_moves_the_message_with_its_reason(broker: SQSBroker) -> None:
    broker.ensure(QueueSpec("jobs"))
    broker.send("jobs", [OutgoingMessage(b"poison", message_id="m1", attributes={"k": "v"})])
    (d,) = drain(broker, "jobs", 1)
    broker.dead_letter(d, "ValueError: bad input")
    dlq = dead_letter_queue_name("jobs")
    (dead,) = drain(broker, dlq, 1)
    assert dead.body == b"poison" and dead.message_id == "m1"
    assert dead.attributes == {"k": "v", REASON_ATTRIBUTE: "ValueError: bad input"}
    stats = broker.stats("jobs")
    assert (stats.visible, stats.in_flight) == (0, 0)


def test_dead_letter_replaces_the_body_and_truncates_a_long_reason(broker: SQSBroker) -> None:
    broker.ensure(QueueSpec("jobs"))
    broker.send("jobs", [OutgoingMessage(b"original")])
    (d,) = drain(broker, "jobs", 1)
    broker.dead_letter(d, "Traceback\x00 " + "x" * 100_000, body=b"annotated")
    (dead,) = drain(broker, dead_letter_queue_name("jobs"), 1)
    assert dead.body == b"annotated"
    reason = dead.attributes[REASON_ATTRIBUTE]
    assert reason.startswith("Traceback? x") and len(reason) == lim.MAX_REASON_CHARS


def test_redrive_policy_dead_letters_after_max_receives(broker: SQSBroker) -> None:
    broker.ensure(QueueSpec("jobs", lease_seconds=1, max_receive_count=2))
    broker.send("jobs", [OutgoingMessage(b"crashy", message_id="m1")])
    counts = []
    for _ in range(2):  # a worker that crashes: lease 0, the message is visible again at once
        got = wait_for(lambda: broker.receive("jobs", 1, 1, 0), 10, "a (re)delivery")
        counts.append(got[0].receive_count)
    assert counts == [1, 2]

    def moved() -> bool:
        assert broker.receive("jobs", 1, 0, 0) == []  # the third receive moves it, not delivers
        return broker.stats("jobs").dead_lettered == 1

    wait_for(moved, 10, "SQS to move the message to the dead-letter queue")
    (dead,) = drain(broker, dead_letter_queue_name("jobs"), 1)
    assert dead.body == b"crashy" and dead.message_id == "m1"


# --- ensure / stats / purge ---------------------------------------------------------------------
def test_ensure_is_idempotent_and_updates_changed_attributes(broker: SQSBroker, raw: Any) -> None:
    broker.ensure(QueueSpec("jobs", lease_seconds=30, max_receive_count=5))
    broker.ensure(QueueSpec("jobs", lease_seconds=30, max_receive_count=5))
    broker.ensure(QueueSpec("jobs", lease_seconds=45.5, max_receive_count=3))
    attrs = raw.get_queue_attributes(QueueUrl=url_of(raw, broker, "jobs"), AttributeNames=["All"])
    attrs = attrs["Attributes"]
    assert attrs["VisibilityTimeout"] == "46"
    policy = json.loads(attrs["RedrivePolicy"])
    assert int(policy["maxReceiveCount"]) == 3
    assert policy["deadLetterTargetArn"].endswith(":" + broker.physical_name("jobs-dlq"))


def test_stats_count_visible_in_flight_delayed_and_dead(broker: SQSBroker) -> None:
    broker.ensure(QueueSpec("jobs"))
    broker.send(
        "jobs",
        [
            OutgoingMessage(b"a"),
            OutgoingMessage(b"b"),
            OutgoingMessage(b"c"),
            OutgoingMessage(b"later", delay_seconds=900),
        ],
    )
    broker.receive("jobs", 1, 1, 30)
    other = broker.receive("jobs", 1, 1, 30)
    broker.dead_letter(other[0], "boom")
    stats = broker.stats("jobs")
    assert stats.queue == "jobs"
    assert (stats.visible, stats.in_flight, stats.delayed, stats.dead_lettered) == (1, 1, 1, 1)


def test_stats_without_a_dead_letter_queue(broker: SQSBroker, raw: Any) -> None:
    raw.create_queue(QueueName=broker.physical_name("bare"))
    assert broker.stats("bare").dead_lettered is None


def test_purge_and_sqs_one_purge_a_minute_rule(broker: SQSBroker) -> None:
    broker.ensure(QueueSpec("jobs"))
    broker.send("jobs", [OutgoingMessage(b"a"), OutgoingMessage(b"b")])
    broker.purge("jobs")
    assert broker.stats("jobs").visible == 0
    with pytest.raises(BrokerError, match="60 seconds"):
        broker.purge("jobs")


# --- FIFO -----------------------------------------------------------------------------------------
def test_fifo_deduplicates_on_message_id(broker: SQSBroker) -> None:
    broker.ensure(QueueSpec("jobs.fifo", fifo=True))
    long_id = "task id with spaces " + "x" * 200  # neither valid nor short: hashed, still deduped
    for _ in range(2):
        broker.send("jobs.fifo", [OutgoingMessage(b"once", message_id="task-1", group="g1")])
        broker.send("jobs.fifo", [OutgoingMessage(b"long", message_id=long_id)])
    got = drain(broker, "jobs.fifo", 2)
    assert sorted((d.body, d.message_id) for d in got) == [(b"long", long_id), (b"once", "task-1")]


def test_fifo_dead_letter_goes_to_the_fifo_dead_letter_queue(broker: SQSBroker) -> None:
    broker.ensure(QueueSpec("jobs.fifo"))
    broker.send("jobs.fifo", [OutgoingMessage(b"x", message_id="m1")])
    (d,) = drain(broker, "jobs.fifo", 1)
    broker.dead_letter(d, "boom")
    (dead,) = drain(broker, dead_letter_queue_name("jobs.fifo"), 1)
    assert dead.message_id == "m1" and dead.attributes[REASON_ATTRIBUTE] == "boom"
    assert broker.stats("jobs.fifo").dead_lettered == 1


def test_fifo_options_are_checked_before_sending(broker: SQSBroker) -> None:
    broker.ensure(QueueSpec("plain"))
    broker.ensure(QueueSpec("jobs.fifo", fifo=True))
    with pytest.raises(ConfigurationError, match="only on FIFO queues"):
        broker.send("plain", [OutgoingMessage(b"ok"), OutgoingMessage(b"x", group="g")])
    assert broker.stats("plain").visible == 0  # nothing of the batch was sent
    with pytest.raises(ConfigurationError, match="no per-message delay"):
        broker.send("jobs.fifo", [OutgoingMessage(b"x", message_id="m", delay_seconds=5)])
    with pytest.raises(ConfigurationError, match=r"end in '\.fifo'"):
        broker.ensure(QueueSpec("orders", fifo=True))


# --- limits and bad input -----------------------------------------------------------------------
def test_message_size_is_checked_against_the_queue_maximum(broker: SQSBroker, raw: Any) -> None:
    broker.ensure(QueueSpec("small"))
    raw.set_queue_attributes(
        QueueUrl=url_of(raw, broker, "small"), Attributes={"MaximumMessageSize": "2048"}
    )
    assert broker.limits.max_message_bytes == 262144  # nothing read yet: the classic default
    with pytest.raises(MessageTooLarge, match="2048"):
        broker.send("small", [OutgoingMessage(b"fits"), OutgoingMessage(b"x" * 3000)])
    assert broker.stats("small").visible == 0  # checked before anything was sent
    assert broker.limits.max_message_bytes == 2048
    broker.send("small", [OutgoingMessage(b"x" * 1500)])
    assert broker.stats("small").visible == 1


def test_a_1_mib_queue_takes_messages_over_256_kib(broker: SQSBroker) -> None:
    broker.ensure(QueueSpec("big"))  # moto, like SQS since 2025, defaults to 1 MiB
    body = b"y" * 400_000
    broker.send("big", [OutgoingMessage(body), OutgoingMessage(body), OutgoingMessage(body)])
    assert broker.limits.max_message_bytes == 1_048_576
    got = drain(broker, "big", 3)  # 1.2 MB in all: split over two SendMessageBatch calls
    assert [d.body for d in got] == [body] * 3


def test_bad_attributes_are_refused_before_sending(broker: SQSBroker) -> None:
    broker.ensure(QueueSpec("jobs"))
    for attributes in (
        {"AWS.trace": "x"},
        {"bad name": "x"},
        {"k": ""},
        {f"a{i}": "v" for i in range(8)},
    ):
        with pytest.raises(ConfigurationError):
            broker.send("jobs", [OutgoingMessage(b"x", attributes=attributes)])
    assert broker.stats("jobs").visible == 0


def test_partial_batch_failure_sends_the_others_exactly_once(broker: SQSBroker) -> None:
    broker.ensure(QueueSpec("jobs"))
    # A broker told a wrong delay cap lets SQS reject one entry of the batch (moto fails that
    # entry alone): the other nine must arrive, each once, and the error names the failed one.
    broker.limits = replace(broker.limits, max_delay_seconds=1000)
    messages = [OutgoingMessage(f"m{i}".encode()) for i in range(10)]
    messages[4] = OutgoingMessage(b"bad", delay_seconds=1000)
    with pytest.raises(PartialSendError) as caught:
        broker.send("jobs", messages)
    assert set(caught.value.failed) == {4} and "DelaySeconds" in caught.value.failed[4]
    got = drain(broker, "jobs", 9)
    assert sorted(d.body for d in got) == sorted(m.body for i, m in enumerate(messages) if i != 4)


def test_send_with_retries_resends_only_service_side_failures() -> None:
    """The retry loop alone, fed SQS-shaped responses (moto cannot fail an entry transiently)."""
    calls: list[list[str]] = []
    flaky = {"1": 1, "2": 99}  # entry id -> how many calls it fails on the service's side

    def call(entries: list[dict[str, Any]]) -> dict[str, Any]:
        ids = [e["Id"] for e in entries]
        calls.append(ids)
        failed = [i for i in ids if flaky.get(i, 0) >= len(calls)] + (["3"] if "3" in ids else [])
        return {
            "Successful": [{"Id": i} for i in ids if i not in failed],
            "Failed": [
                {"Id": i, "SenderFault": i == "3", "Code": "InternalError" if i != "3" else "Bad"}
                for i in failed
            ],
        }

    sleeps: list[float] = []
    failures = send_with_retries(call, [{"Id": str(i)} for i in range(5)], 3, 0.1, sleeps.append)
    assert calls == [["0", "1", "2", "3", "4"], ["1", "2"], ["2"]]
    assert sleeps == [0.1, 0.2]
    assert set(failures) == {"2", "3"}


def test_a_missing_queue_says_how_queues_are_made(broker: SQSBroker) -> None:
    with pytest.raises(QueueNotFoundError, match="ensure"):
        broker.send("nowhere", [OutgoingMessage(b"x")])
    with pytest.raises(QueueNotFoundError, match="Terraform"):
        broker.receive("nowhere", 1, 0, 30)


def test_an_unreachable_endpoint_is_a_broker_error(
    sqs_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import (  # type: ignore[import-untyped, unused-ignore]
        EndpointConnectionError,
    )

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    broker = open_sqs_broker(f"sqs://?endpoint_url=http://127.0.0.1:{port}", SYSTEM_CLOCK)
    with pytest.raises(BrokerError, match="jobs") as caught:
        broker.send("jobs", [OutgoingMessage(b"x")])
    assert isinstance(caught.value.__cause__, EndpointConnectionError)
    with pytest.raises(BrokerError, match="GetQueueUrl"):
        broker.receive("jobs", 1, 0, 30)
    broker.close()
