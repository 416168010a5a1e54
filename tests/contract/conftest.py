"""Wiring of the results contract: every backend under test behind one ``result_backend`` fixture.

To run the contract against another backend, write a fixture returning a ``BackendUnderTest``
and add one line to ``RESULT_BACKENDS``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import NamedTuple

import pytest

from cloudq.clock import FakeClock, SystemClock
from cloudq.results.base import ResultBackend
from cloudq.results.memory import open_memory_backend


class BackendUnderTest(NamedTuple):
    backend: ResultBackend
    fake_clock: FakeClock | None
    """The clock the backend expires records by, if a test may move it; None for real time."""


# backend name (the test id) -> name of the fixture that yields a BackendUnderTest
RESULT_BACKENDS = {
    "memory": "memory_result_backend",
    "redis": "redis_result_backend",
    "dynamodb": "dynamodb_result_backend",
    "firestore": "firestore_result_backend",
    "azuretable": "azuretable_result_backend",
}


@pytest.fixture
def memory_result_backend() -> Iterator[BackendUnderTest]:
    clock = FakeClock()
    backend = open_memory_backend(f"memory://contract-{uuid.uuid4().hex}", clock)
    yield BackendUnderTest(backend, clock)
    backend.close()


@pytest.fixture
def redis_result_backend(
    redis_url: str,
    redis_prefix: str,
) -> Iterator[BackendUnderTest]:
    from cloudq.results.redis import open_redis_backend

    backend = open_redis_backend(f"{redis_url}?prefix={redis_prefix}", SystemClock())
    yield BackendUnderTest(backend, None)
    backend.close()


@pytest.fixture(scope="session")
def dynamodb_table() -> str:
    """One table for the session: every contract test uses task ids of its own."""
    return f"cloudq-contract-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def dynamodb_result_backend(sqs_env: str, dynamodb_table: str) -> Iterator[BackendUnderTest]:
    """DynamoDB on moto. Expiry is judged by the clock in ``get`` (TTL deletion is lazy), so a
    fake clock checks it exactly and at once; ``?create=1`` makes the table on first use."""
    from cloudq_sqs.dynamodb import open_dynamodb_backend

    clock = FakeClock()
    backend = open_dynamodb_backend(f"dynamodb://{dynamodb_table}?create=1", clock)
    yield BackendUnderTest(backend, clock)
    backend.close()


@pytest.fixture
def firestore_result_backend(firestore_env: str) -> Iterator[BackendUnderTest]:
    """Firestore on its emulator, a collection per test. Expiry is judged by the clock in
    ``get`` (TTL deletion is lazy), so a fake clock checks it exactly and at once."""
    from cloudq_pubsub.firestore import open_firestore_backend

    clock = FakeClock()
    backend = open_firestore_backend(f"firestore://cloudq-test/contract-{uuid.uuid4().hex}", clock)
    yield BackendUnderTest(backend, clock)
    backend.close()


@pytest.fixture(params=list(RESULT_BACKENDS))
def result_backend_case(request: pytest.FixtureRequest) -> BackendUnderTest:
    case: BackendUnderTest = request.getfixturevalue(RESULT_BACKENDS[request.param])
    return case


@pytest.fixture
def result_backend(result_backend_case: BackendUnderTest) -> ResultBackend:
    return result_backend_case.backend


@pytest.fixture
def result_backend_clock(result_backend_case: BackendUnderTest) -> FakeClock | None:
    return result_backend_case.fake_clock


@pytest.fixture
def azuretable_result_backend(azure_storage_env: str) -> Iterator[BackendUnderTest]:
    """Azure Tables on Azurite. No TTL there: expiry is judged by the clock in ``get``, so a fake
    clock checks it exactly; a table of its own per test (``?create=1``)."""
    from cloudq_servicebus.table import open_table_backend

    clock = FakeClock()
    table = f"cloudq{uuid.uuid4().hex[:12]}"
    backend = open_table_backend(f"azuretable://{table}?create=1", clock)
    yield BackendUnderTest(backend, clock)
    backend.close()
