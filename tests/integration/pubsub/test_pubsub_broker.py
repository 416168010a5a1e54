"""The Pub/Sub adapter against the real emulator, beyond the broker contract suite: URL and
naming rules, bodies and attributes, sizes, no native delay, ensure, holds, dead letters,
ordering keys, purge, and clear errors for missing queues and an unreachable service."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from cloudq.adapters.base import Broker, Delivery, OutgoingMessage, QueueSpec
from cloudq.clock import SYSTEM_CLOCK
from cloudq.errors import BrokerError, ConfigurationError, MessageTooLarge
from cloudq_pubsub import limits as lim
from cloudq_pubsub.broker import (
    MAX_RECEIVE_COUNT_LABEL,
    MESSAGE_ID_ATTRIBUTE,
    REASON_ATTRIBUTE,
    PubSubBroker,
    QueueNotFoundError,
    open_pubsub_broker,
)
from tests.fixtures.pubsub_emulator import GCP_PROJECT, free_port
from tests.processes import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
def broker(pubsub_broker: Broker) -> PubSubBroker:
    assert isinstance(pubsub_broker, PubSubBroker)
    return pubsub_broker


def drain(broker: Broker, queue: str, expected: int, lease: float = 30) -> list[Delivery]:
    """Receive until ``expected`` messages came (or 10 s passed), then one more look."""
    got: list[Delivery] = []
    deadline = time.monotonic() + 10
    while len(got) < expected and time.monotonic() < deadline:
        got += broker.receive(queue, 10, 1, lease)
    got += broker.receive(queue, 10, 0, lease)
    return got


# --- opening, configuration, naming ---------------------------------------------------------
def test_importing_cloudq_and_the_adapter_imports_no_google_sdk() -> None:
    # Namespace packages ("google", "google.cloud") come with the interpreter's .pth files;
    # what matters is that no SDK module is imported beyond what the bare interpreter has.
    bare = "import sys; print(sorted(sys.modules))"
    code = (
        "import sys, cloudq, cloudq.adapters, cloudq_pubsub, cloudq_pubsub.broker,"
        " cloudq_pubsub.firestore, cloudq_pubsub.gcs, cloudq_pubsub.functions;"
        "print(sorted(sys.modules))"
    )

    def modules(source: str) -> set[str]:
        out = subprocess.run([sys.executable, "-c", source], check=True, capture_output=True)
        return set(eval(out.stdout))  # a list of module names printed by ourselves

    sdk = ("google", "grpc", "functions_framework", "flask", "proto")
    new = modules(code) - modules(bare)
    assert not [m for m in new if m.split(".")[0] in sdk], sorted(new)


def test_opened_by_url_through_the_entry_point(pubsub_env: str) -> None:
    from cloudq.adapters import open_broker

    broker = open_broker(f"pubsub://{GCP_PROJECT}?prefix=app-&max_batch=100", SYSTEM_CLOCK)
    assert isinstance(broker, Broker) and isinstance(broker, PubSubBroker)
    assert (broker.project, broker.prefix) == (GCP_PROJECT, "app-")
    assert broker.limits.max_delay_seconds == 0, "Pub/Sub has no native delay"
    assert broker.limits.max_lease_seconds == 600
    assert broker.limits.max_message_bytes == lim.MAX_MESSAGE_BYTES - lim.RESERVED_ATTRIBUTE_BYTES
    assert broker.limits.max_batch == 100
    assert broker.topic_path("jobs") == f"projects/{GCP_PROJECT}/topics/app-jobs"
    assert broker.subscription_path("jobs") == f"projects/{GCP_PROJECT}/subscriptions/app-jobs"
    broker.close()
    default = open_pubsub_broker("pubsub://", SYSTEM_CLOCK)  # project from GOOGLE_CLOUD_PROJECT
    assert default.project == GCP_PROJECT and default.limits.max_batch == 10
    default.close()


def test_url_and_naming_rules(pubsub_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="does not know"):
        open_pubsub_broker("pubsub://p?bogus=1", SYSTEM_CLOCK)
    with pytest.raises(ConfigurationError, match="never from the URL"):
        open_pubsub_broker("pubsub://user:secret@p", SYSTEM_CLOCK)
    with pytest.raises(ConfigurationError, match=r"max_batch must be 1\.\.1000"):
        open_pubsub_broker("pubsub://p?max_batch=5000", SYSTEM_CLOCK)
    with pytest.raises(ConfigurationError, match="must be a number"):
        open_pubsub_broker("pubsub://p?timeout=soon", SYSTEM_CLOCK)
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    with pytest.raises(ConfigurationError, match="names no project"):
        open_pubsub_broker("pubsub://", SYSTEM_CLOCK)
    monkeypatch.setenv("CLOUDQ_PUBSUB_PREFIX", "shop-")
    broker = open_pubsub_broker("pubsub://p", SYSTEM_CLOCK)
    assert broker.physical_name("jobs") == "shop-jobs"
    assert broker.logical_name("projects/p/topics/shop-jobs") == "jobs"
    bare = open_pubsub_broker("pubsub://p?prefix=", SYSTEM_CLOCK)
    for bad in ("ab", "9jobs", "goog-jobs", "no spaces", "x" * 256):
        with pytest.raises(ConfigurationError, match="not a valid Pub/Sub"):
            bare.physical_name(bad)
    broker.close()
    bare.close()


# --- send / receive / ack -------------------------------------------------------------------
def test_batch_round_trips_bytes_ids_and_attributes(broker: PubSubBroker) -> None:
    broker.ensure(QueueSpec("jobs"))
    bodies = [f"task {i}".encode() for i in range(7)]
    bodies += [b"\x00\xff binary", "naïve ✓ \U0001f600".encode(), b""]
    messages = [
        OutgoingMessage(body, message_id=f"id-{i}", attributes={"trace": f"t{i}"})
        for i, body in enumerate(bodies)
    ]
    started = SYSTEM_CLOCK.monotonic()
    broker.send("jobs", messages)
    got = drain(broker, "jobs", 10, lease=30)
    by_id = {d.message_id: d for d in got}
    assert set(by_id) == {f"id-{i}" for i in range(10)}
    for i, body in enumerate(bodies):
        d = by_id[f"id-{i}"]
        assert (d.body, d.queue, d.receive_count, d.group) == (body, "jobs", 1, None)
        assert d.attributes == {"trace": f"t{i}"}, "the id attribute is the adapter's own"
        assert started + 30 <= d.leased_until <= SYSTEM_CLOCK.monotonic() + 30
    broker.ack(got)
    broker.ack(got[:2])  # acking again is harmless
    assert broker.receive("jobs", 10, 1, 1) == []


def test_messages_without_id_get_the_pubsub_message_id(broker: PubSubBroker) -> None:
    broker.ensure(QueueSpec("jobs"))
    broker.send("jobs", [OutgoingMessage(b"x")])
    (d,) = drain(broker, "jobs", 1)
    assert d.message_id.isdigit() and d.attributes == {}
    broker.ack([d])


def test_no_native_delay_and_checks_before_anything_is_sent(broker: PubSubBroker) -> None:
    broker.ensure(QueueSpec("jobs"))
    fine = OutgoingMessage(b"fine")
    cases: list[tuple[OutgoingMessage, type[Exception], str]] = [
        (OutgoingMessage(b"later", delay_seconds=5), BrokerError, "no native delay"),
        (OutgoingMessage(b"g", group="g1"), ConfigurationError, "only on FIFO queues"),
        (OutgoingMessage(b"a", attributes={"googx": "1"}), ConfigurationError, "attribute key"),
        (OutgoingMessage(b"a", attributes={"k": "v" * 1025}), ConfigurationError, "1024"),
        (OutgoingMessage(b"x" * (lim.MAX_MESSAGE_BYTES + 1)), MessageTooLarge, "nothing was"),
    ]
    for bad, error, match in cases:
        with pytest.raises(error, match=match):
            broker.send("jobs", [fine, bad])
    with pytest.raises(BrokerError, match="exceeds the batch"):
        broker.send("jobs", [fine] * 11)
    assert broker.receive("jobs", 10, 1, 30) == [], "a bad message sends nothing"


def test_messages_up_to_the_limit_and_requests_split_by_size(broker: PubSubBroker) -> None:
    """9 MiB messages pass the gRPC channel both ways (the SDK's emulator channel would stop at
    4 MiB); two of them cannot share one 10 MiB Publish request and are sent in two."""
    broker.ensure(QueueSpec("big"))
    big = [OutgoingMessage(bytes([i]) * (9 * 1024 * 1024), message_id=f"b{i}") for i in range(2)]
    broker.send("big", big)
    got = drain(broker, "big", 2)
    assert sorted(d.message_id for d in got) == ["b0", "b1"]
    assert all(len(d.body) == 9 * 1024 * 1024 for d in got)
    broker.ack(got)
    requests = list(PubSubBroker._requests([(m, 9 * 1024 * 1024) for m in big]))
    assert [len(r) for r in requests] == [1, 1]
    small = [(m, 100) for m in range(2500)]
    assert [len(r) for r in PubSubBroker._requests(small)] == [1000, 1000, 500]


# --- ensure ---------------------------------------------------------------------------------
def test_ensure_creates_topics_subscriptions_and_dead_letter_policy(
    broker: PubSubBroker, caplog: pytest.LogCaptureFixture
) -> None:
    spec = QueueSpec("jobs", lease_seconds=45, max_receive_count=3)
    broker.ensure(spec)
    broker.ensure(spec)  # idempotent
    sub = broker.subscriber.get_subscription(subscription=broker.subscription_path("jobs"))
    assert sub.topic == broker.topic_path("jobs")
    assert sub.ack_deadline_seconds == 45
    assert sub.dead_letter_policy.dead_letter_topic == broker.topic_path("jobs-dlq")
    assert sub.dead_letter_policy.max_delivery_attempts == 5, "Pub/Sub's minimum"
    assert sub.labels[MAX_RECEIVE_COUNT_LABEL] == "3", "cloudq's own limit, enforced on receive"
    assert not sub.enable_message_ordering
    dlq = broker.subscriber.get_subscription(subscription=broker.subscription_path("jobs-dlq"))
    assert dlq.topic == broker.topic_path("jobs-dlq")
    assert dlq.message_retention_duration.total_seconds() == lim.MESSAGE_RETENTION_SECONDS

    # A changed spec updates the existing subscription.
    broker.ensure(QueueSpec("jobs", lease_seconds=5, max_receive_count=20))
    sub = broker.subscriber.get_subscription(subscription=broker.subscription_path("jobs"))
    assert sub.ack_deadline_seconds == 10, "Pub/Sub's minimum for a subscription"
    assert sub.dead_letter_policy.max_delivery_attempts == 20
    # The emulator refuses label updates (the service takes them): then it is logged.
    refused = "could not update the labels" in caplog.text
    assert sub.labels[MAX_RECEIVE_COUNT_LABEL] == ("3" if refused else "20")


def test_missing_queue_is_a_clear_error(broker: PubSubBroker) -> None:
    with pytest.raises(QueueNotFoundError, match=r"Publish on projects/.*/topics/.*nowhere"):
        broker.send("nowhere", [OutgoingMessage(b"x")])
    with pytest.raises(QueueNotFoundError, match="created by ensure"):
        broker.receive("nowhere", 1, 0, 30)
    with pytest.raises(QueueNotFoundError):
        broker.stats("nowhere")


def test_unreachable_service_raises_broker_error_within_the_timeout(
    pubsub_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{free_port()}")  # nothing listens
    broker = open_pubsub_broker(f"pubsub://{GCP_PROJECT}?prefix=down-&timeout=1.5", SYSTEM_CLOCK)
    started = time.monotonic()
    with pytest.raises(BrokerError, match=r"Pub/Sub Publish on projects/cloudq-test/topics/down-q"):
        broker.send("q", [OutgoingMessage(b"x")])
    with pytest.raises(BrokerError, match=r"GetSubscription|Pull"):
        broker.receive("q", 1, 0, 30)
    assert time.monotonic() - started < 10
    broker.close()


# --- leases, holds, dead letters ------------------------------------------------------------
def test_release_holds_for_the_delay_and_counts_a_delivery_attempt(broker: PubSubBroker) -> None:
    broker.ensure(QueueSpec("jobs"))
    broker.send("jobs", [OutgoingMessage(b"x")])
    (d,) = drain(broker, "jobs", 1)
    released = time.monotonic()
    broker.release([d], 2)
    assert broker.receive("jobs", 1, 1, 30) == [], "held, not visible"
    (again,) = wait_for(lambda: broker.receive("jobs", 1, 1, 30), 10, "the held message")
    assert time.monotonic() - released >= 1.9
    assert again.receive_count == 2
    broker.ack([again])


def test_extend_is_capped_at_600_seconds(broker: PubSubBroker) -> None:
    broker.ensure(QueueSpec("jobs"))
    broker.send("jobs", [OutgoingMessage(b"x")])
    (d,) = drain(broker, "jobs", 1, lease=1)
    before = time.monotonic()
    broker.extend([d], 3600)
    assert before + 599 <= d.leased_until <= time.monotonic() + 600
    time.sleep(1.5)  # past the first lease: the message must still be hidden
    assert broker.receive("jobs", 1, 0, 30) == []
    broker.ack([d])


def test_dead_letter_keeps_id_attributes_and_a_truncated_reason(broker: PubSubBroker) -> None:
    broker.ensure(QueueSpec("jobs"))
    broker.send("jobs", [OutgoingMessage(b"orig", message_id="task-1", attributes={"k": "v"})])
    (d,) = drain(broker, "jobs", 1)
    broker.dead_letter(d, "ValueError: " + "é" * 2000)
    (dead,) = drain(broker, "jobs-dlq", 1)
    assert (dead.body, dead.message_id, dead.attributes["k"]) == (b"orig", "task-1", "v")
    reason = dead.attributes[REASON_ATTRIBUTE]
    assert reason.startswith("ValueError: é") and len(reason.encode()) <= 1024
    assert MESSAGE_ID_ATTRIBUTE not in dead.attributes
    assert broker.receive("jobs", 1, 1, 30) == [], "the original was acknowledged"


def test_fifo_queue_uses_ordering_keys(broker: PubSubBroker) -> None:
    broker.ensure(QueueSpec("orders.fifo"))
    sub = broker.subscriber.get_subscription(subscription=broker.subscription_path("orders.fifo"))
    assert sub.enable_message_ordering
    broker.send(
        "orders.fifo",
        [OutgoingMessage(f"{g}{i}".encode(), group=g) for i in range(3) for g in ("a", "b")],
    )
    broker.send("orders.fifo", [OutgoingMessage(b"plain")])
    got = drain(broker, "orders.fifo", 7)
    by_group: dict[str | None, list[bytes]] = {}
    for d in got:
        by_group.setdefault(d.group, []).append(d.body)
    assert by_group == {
        "a": [b"a0", b"a1", b"a2"],
        "b": [b"b0", b"b1", b"b2"],
        "default": [b"plain"],
    }
    broker.ack(got)


def test_purge_drops_visible_messages(broker: PubSubBroker) -> None:
    broker.ensure(QueueSpec("jobs"))
    broker.send("jobs", [OutgoingMessage(f"m{i}".encode()) for i in range(10)])
    broker.send("jobs", [OutgoingMessage(f"n{i}".encode()) for i in range(5)])
    broker.purge("jobs")
    assert broker.receive("jobs", 10, 1, 30) == []
    stats = broker.stats("jobs")
    assert (stats.visible, stats.in_flight, stats.delayed, stats.dead_lettered) == (None,) * 4


def test_max_batch_option_pulls_bigger_batches(
    pubsub_broker_factory: Callable[..., Broker],
) -> None:
    broker = pubsub_broker_factory(max_batch=50)
    broker.ensure(QueueSpec("bulk"))
    broker.send("bulk", [OutgoingMessage(f"m{i}".encode()) for i in range(50)])
    got: list[Delivery] = []
    sizes: list[int] = []

    def enough() -> bool:
        batch = broker.receive("bulk", 50, 1, 30)
        sizes.append(len(batch))
        got.extend(batch)
        return len(got) >= 50

    wait_for(enough, 10, "50 messages")
    assert max(sizes) > 10, f"pull batches of {sizes}"
    broker.ack(got)
