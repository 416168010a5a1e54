"""The adapter skeleton (``cloudq.adapters.skeleton``): the rules every broker shares, on a
recording broker with no provider behind it, on the memory broker, and where the wire names live.
"""

from __future__ import annotations

import pathlib
import re
import uuid
from collections.abc import Sequence

import pytest

from cloudq.adapters import wire
from cloudq.adapters.base import BrokerLimits, Delivery, OutgoingMessage, QueueSpec
from cloudq.adapters.memory import open_memory_broker
from cloudq.adapters.skeleton import BrokerBase, QueueNotFoundError, fit_reason
from cloudq.adapters.urls import broker_url, url_count, url_number
from cloudq.clock import SystemClock
from cloudq.errors import BrokerError, ConfigurationError, MessageTooLarge

ROOT = pathlib.Path(__file__).resolve().parents[2]


class Recording(BrokerBase):
    """A broker that records what the skeleton hands it; ``fail_copy`` makes the copy fail."""

    provider = "Test"
    name_pattern = re.compile(r"[a-z-]+(\.fifo)?")
    name_rule = "lower-case letters and '-'"
    reason_max_chars = 10
    max_attributes = 3
    reserved_attributes = 1

    def __init__(self, max_delay: float | None = 900, fail_copy: bool = False) -> None:
        self.limits = BrokerLimits(max_delay, 60, max_message_bytes=8, max_batch=3)
        self.prefix = "p-"
        self.sent: list[tuple[str, list[OutgoingMessage]]] = []
        self.letters: list[tuple[str, bytes, dict[str, str]]] = []
        self.acked: list[Delivery] = []
        self.fail_copy = fail_copy

    def _send(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        self.sent.append((queue, list(messages)))

    def _send_dead_letter(
        self, delivery: Delivery, dlq: str, body: bytes, attributes: dict[str, str]
    ) -> None:
        if self.fail_copy:
            raise BrokerError("the dead-letter queue is down")
        self.letters.append((dlq, body, attributes))

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        self.acked.extend(deliveries)


def delivery(**attributes: str) -> Delivery:
    return Delivery(
        queue="jobs", body=b"b", message_id="m1", receive_count=1, attributes=attributes
    )


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (OutgoingMessage(b"x", group="g"), ConfigurationError, "only on FIFO queues"),
        (OutgoingMessage(b"x", delay_seconds=-1), BrokerError, r"outside 0\.\.900"),
        (OutgoingMessage(b"x", delay_seconds=901), BrokerError, r"outside 0\.\.900"),
        (OutgoingMessage(b"x" * 9), MessageTooLarge, "nothing was sent"),
        (
            OutgoingMessage(b"x", attributes=dict.fromkeys("abc", "v")),
            ConfigurationError,
            "at most 2",
        ),
    ],
)
def test_a_bad_message_sends_nothing(bad: OutgoingMessage, error: type, match: str) -> None:
    broker = Recording()
    with pytest.raises(error, match=match):
        broker.send("jobs", [OutgoingMessage(b"fine"), bad])
    assert broker.sent == []


def test_batch_empty_and_fifo_groups() -> None:
    broker = Recording()
    broker.send("jobs", [])
    with pytest.raises(BrokerError, match="exceeds the batch of 3"):
        broker.send("jobs", [OutgoingMessage(b"x")] * 4)
    assert broker.sent == []
    broker.send("jobs.fifo", [OutgoingMessage(b"x", group="g")])
    assert [queue for queue, _ in broker.sent] == ["jobs.fifo"]


def test_no_native_delay_says_so() -> None:
    with pytest.raises(BrokerError, match="no native delay"):
        Recording(max_delay=0).send("jobs", [OutgoingMessage(b"x", delay_seconds=1)])


def test_dead_letter_copies_with_the_reason_then_acks() -> None:
    broker = Recording()
    d = delivery(k="v", **{wire.DEAD_LETTER_REASON_ATTRIBUTE: "old reason"})
    broker.dead_letter(d, "ValueError: a long reason", body=b"new")
    assert broker.letters == [
        ("jobs-dlq", b"new", {"k": "v", wire.DEAD_LETTER_REASON_ATTRIBUTE: "ValueError"})
    ]
    assert broker.acked == [d]


def test_a_failed_dead_letter_copy_keeps_the_original() -> None:
    broker = Recording(fail_copy=True)
    with pytest.raises(BrokerError, match="down"):
        broker.dead_letter(delivery(), "boom")
    assert broker.acked == [], "acked without a copy: the message would be lost"


def test_naming_and_not_found() -> None:
    broker = Recording()
    assert broker.physical_name("jobs") == "p-jobs"
    assert broker.logical_name("p-jobs") == "jobs"
    with pytest.raises(ConfigurationError, match="not a valid Test queue name: lower-case"):
        broker.physical_name("No Spaces")
    error = broker._not_found("Send", "queue 'p-jobs'")
    assert isinstance(error, QueueNotFoundError) and "ensure()" in str(error)


@pytest.mark.parametrize(
    ("reason", "chars", "max_bytes", "expected"),
    [
        ("", None, None, "-"),
        ("abcdef", 3, None, "abc"),
        ("ééé", None, 5, "éé"),  # 2 bytes each: never half a character
        ("€uro", 10, 4, "€u"),  # 3 bytes + 1
        ("€uro", 10, 2, "-"),
        ("short", 100, 100, "short"),
    ],
)
def test_fit_reason(reason: str, chars: int | None, max_bytes: int | None, expected: str) -> None:
    assert fit_reason(reason, chars, max_bytes) == expected


def test_url_parsing_rules() -> None:
    url = "x://?n=2&f=0.5&bad=z&zero=0"
    options = {"n": "2", "f": "0.5", "bad": "z", "zero": "0"}
    assert url_count(options, "n", url) == 2
    assert url_number(options, "f", url) == 0.5
    assert url_count(options, "missing", url) is None
    assert url_number(options, "zero", url, zero=True) == 0
    with pytest.raises(ConfigurationError, match="must be a number"):
        url_number(options, "bad", url)
    with pytest.raises(ConfigurationError, match="must be positive"):
        url_count(options, "zero", url)
    with pytest.raises(ConfigurationError, match="whole number"):
        url_count(options, "f", url)
    assert broker_url("x://host?a=1", frozenset({"a"}), usage="u", credentials="c") == (
        "host",
        {"a": "1"},
    )
    for bad in ("x://user:secret@host", "x://host/path", "x://host"):
        with pytest.raises(ConfigurationError, match="never from the URL") as caught:
            broker_url(bad, frozenset(), usage="u", credentials="c", host=False)
        assert "secret" not in str(caught.value)


def test_memory_broker_refuses_a_group_on_a_standard_queue() -> None:
    """As every cloud does: a test on memory meets the refusal production would."""
    broker = open_memory_broker(f"memory://{uuid.uuid4().hex}", SystemClock())
    broker.ensure(QueueSpec("jobs"))
    with pytest.raises(ConfigurationError, match="only on FIFO queues"):
        broker.send("jobs", [OutgoingMessage(b"x", group="g")])
    assert broker.stats("jobs").visible == 0


def test_memory_dead_letter_keeps_the_attributes_of_a_delivery_not_in_flight() -> None:
    broker = open_memory_broker(f"memory://{uuid.uuid4().hex}", SystemClock())
    broker.ensure(QueueSpec("jobs"))
    broker.dead_letter(delivery(k="v"), "why")
    (dead,) = broker.receive("jobs-dlq", 10, 0, 30)
    assert dead.attributes == {"k": "v", wire.DEAD_LETTER_REASON_ATTRIBUTE: "why"}


def test_every_adapter_subclasses_the_skeleton() -> None:
    from cloudq.adapters.memory import MemoryBroker
    from cloudq_pubsub.broker import PubSubBroker
    from cloudq_servicebus.broker import ServiceBusBroker
    from cloudq_sqs.broker import SQSBroker

    for broker in (MemoryBroker, SQSBroker, PubSubBroker, ServiceBusBroker):
        assert issubclass(broker, BrokerBase), broker


@pytest.mark.parametrize("literal", ['"cloudq-dead-letter-reason"', '"cloudq-message-id"'])
def test_wire_names_are_written_once(literal: str) -> None:
    sources = [*ROOT.glob("cloudq/**/*.py"), *ROOT.glob("adapters/*/cloudq_*/**/*.py")]
    holders = [str(p.relative_to(ROOT)) for p in sources if literal in p.read_text()]
    assert holders == ["cloudq/adapters/wire.py"]
