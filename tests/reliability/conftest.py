"""Fixtures of the reliability suite: a ``Ledger`` per test on its own broker queues.

``ledger`` is parametrized by broker: moto SQS, LocalStack's SQS (``sqs-localstack``), the gcloud
Pub/Sub emulator and the project's Service Bus test endpoint. Each ``<broker>_ledger`` fixture
gives the ledger its broker URL (a prefix of the test's own), the environment its worker
subprocesses need, and its dead-letter reader; a missing emulator skips (fails under CI=true)
through the fixtures it uses.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.fixtures.pubsub_emulator import GCP_PROJECT
from tests.fixtures.servicebus_endpoint import ServiceBusEndpoint, emulator_connection
from tests.reliability.harness import (
    Ledger,
    LedgerBroker,
    PubSubDeadLetters,
    ServiceBusDeadLetters,
)
from tests.reliability.proxy import Forwarder

SLOW = pytest.mark.skipif(
    os.environ.get("CLOUDQ_SLOW") != "1", reason="long run: set CLOUDQ_SLOW=1 (and -m slow)"
)
LEDGER_FIXTURES = {
    "sqs": "sqs_ledger",
    "sqs-localstack": "localstack_sqs_ledger",
    "pubsub": "pubsub_ledger",
    "servicebus": "servicebus_ledger",
}
BROKERS = list(LEDGER_FIXTURES)
DEFAULT_BROKERS = [b for b in BROKERS if b != "sqs-localstack"]
"""What ``ledger`` runs on unless a test parametrizes it itself: LocalStack only where a test
asks (the SIGKILL run; CI's time: adapters/sqs/README.md, "Two emulators"). ``outage_ledger``
runs on every broker, LocalStack's SQS included."""
SQS_ENVS = {"sqs": "moto_sqs_env", "sqs-localstack": "localstack_sqs_env"}
"""The SQS ledgers' servers: moto, LocalStack (its DynamoDB stays on moto: unused here)."""
PUBSUB_CALL_TIMEOUT = 2
"""``pubsub://...&timeout=``: how long a publish retries through an outage before it raises
(30 s by default)."""


def _prefix() -> str:
    return f"r{uuid.uuid4().hex[:10]}-"


def _open(broker: LedgerBroker, redis_url: str) -> Iterator[Ledger]:
    ledger = Ledger(broker, redis_url)
    try:
        yield ledger
    finally:
        ledger.close()


@pytest.fixture
def sqs_ledger(sqs_env: str, redis_url: str) -> Iterator[Ledger]:
    yield from _open(LedgerBroker("sqs", f"sqs://?prefix={_prefix()}"), redis_url)


@pytest.fixture
def localstack_sqs_ledger(localstack_sqs_env: str, redis_url: str) -> Iterator[Ledger]:
    broker = LedgerBroker("sqs-localstack", f"sqs://?prefix={_prefix()}")
    yield from _open(broker, redis_url)


@pytest.fixture
def pubsub_ledger(pubsub_env: str, redis_url: str) -> Iterator[Ledger]:
    broker = LedgerBroker(
        "pubsub",
        f"pubsub://{GCP_PROJECT}?prefix={_prefix()}",
        counts=False,
        dead_letters=PubSubDeadLetters,
    )
    yield from _open(broker, redis_url)


@pytest.fixture
def servicebus_ledger(servicebus_env: ServiceBusEndpoint, redis_url: str) -> Iterator[Ledger]:
    env = {"CLOUDQ_SERVICEBUS_CONNECTION": servicebus_env.connection}
    if servicebus_env.admin_connection:
        env["CLOUDQ_SERVICEBUS_ADMIN_CONNECTION"] = servicebus_env.admin_connection
    broker = LedgerBroker(
        "servicebus",
        f"servicebus://?prefix={_prefix()}",
        env=env,
        dead_letters=lambda app: ServiceBusDeadLetters(
            app, servicebus_env.connection, servicebus_env.admin_connection
        ),
    )
    yield from _open(broker, redis_url)


@pytest.fixture(params=DEFAULT_BROKERS)
def ledger(request: pytest.FixtureRequest) -> Ledger:
    """The ledger on each broker the suite covers."""
    got: Ledger = request.getfixturevalue(LEDGER_FIXTURES[request.param])
    return got


@pytest.fixture(params=BROKERS)
def outage_ledger(
    request: pytest.FixtureRequest, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Ledger, Forwarder]]:
    """A ledger whose producer and workers reach the broker through a ``Forwarder`` the test
    can cut and restore (the broker itself keeps running, and keeps its messages)."""
    name = request.param
    if name in SQS_ENVS:
        server = urlsplit(request.getfixturevalue(SQS_ENVS[name]))
        forwarder = Forwarder("127.0.0.1", server.port or 80)
        # Every failure reaches cloudq at once: botocore's own retries (5 attempts in its
        # legacy mode) would hide a short outage from the worker's backoff.
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        broker = LedgerBroker(
            name, f"sqs://?prefix={_prefix()}&endpoint_url=http://{forwarder.address}"
        )
    elif name == "pubsub":
        host, _, port = request.getfixturevalue("pubsub_env").rpartition(":")
        forwarder = Forwarder(host, int(port))
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", forwarder.address)
        broker = LedgerBroker(
            name,
            f"pubsub://{GCP_PROJECT}?prefix={_prefix()}&timeout={PUBSUB_CALL_TIMEOUT}",
            counts=False,
            dead_letters=PubSubDeadLetters,
        )
    else:
        endpoint: ServiceBusEndpoint = request.getfixturevalue("servicebus_env")
        found = re.search(r"Endpoint=sb://127\.0\.0\.1:(\d+);", endpoint.connection)
        if not endpoint.local or found is None:
            pytest.skip("the outage is staged in front of the local Service Bus test endpoint")
        forwarder = Forwarder("127.0.0.1", int(found.group(1)))
        connection = emulator_connection(forwarder.port)
        monkeypatch.setenv("CLOUDQ_SERVICEBUS_CONNECTION", connection)
        env = {"CLOUDQ_SERVICEBUS_CONNECTION": connection}
        if endpoint.admin_connection:  # administration (ensure, stats) stays reachable
            env["CLOUDQ_SERVICEBUS_ADMIN_CONNECTION"] = endpoint.admin_connection
        broker = LedgerBroker(
            name,
            f"servicebus://?prefix={_prefix()}",
            env=env,
            dead_letters=lambda app: ServiceBusDeadLetters(
                app, endpoint.connection, endpoint.admin_connection
            ),
        )
    forwarder.start()
    ledger = Ledger(broker, redis_url)
    try:
        yield ledger, forwarder
    finally:
        try:
            ledger.close()
        finally:
            forwarder.close()
