"""Fixtures of the reliability suite: a ``Ledger`` per test on its own broker queues.

``ledger`` is parametrized by broker: moto SQS, the gcloud Pub/Sub emulator and the project's
Service Bus test endpoint. Each ``<broker>_ledger`` fixture gives the ledger its broker URL (a
prefix of the test's own), the environment its worker subprocesses need, and its dead-letter
reader; a missing emulator skips (fails under CI=true) through the fixtures it uses.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.fixtures.pubsub_emulator import GCP_PROJECT
from tests.fixtures.servicebus_endpoint import ServiceBusEndpoint
from tests.reliability.harness import (
    Ledger,
    LedgerBroker,
    PubSubDeadLetters,
    ServiceBusDeadLetters,
)

SLOW = pytest.mark.skipif(
    os.environ.get("CLOUDQ_SLOW") != "1", reason="long run: set CLOUDQ_SLOW=1 (and -m slow)"
)
BROKERS = ["sqs", "pubsub", "servicebus"]


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


@pytest.fixture(params=BROKERS)
def ledger(request: pytest.FixtureRequest) -> Ledger:
    """The ledger on each broker the suite covers."""
    got: Ledger = request.getfixturevalue(f"{request.param}_ledger")
    return got
