"""Fixtures of the reliability suite: a ``Ledger`` per test on its own broker queues."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.reliability.harness import Ledger

SLOW = pytest.mark.skipif(
    os.environ.get("CLOUDQ_SLOW") != "1", reason="long run: set CLOUDQ_SLOW=1 (and -m slow)"
)


@pytest.fixture
def sqs_ledger(sqs_env: str, redis_url: str) -> Iterator[Ledger]:
    prefix = f"r{uuid.uuid4().hex[:10]}-"
    ledger = Ledger(f"sqs://?prefix={prefix}", redis_url, prefix)
    try:
        yield ledger
    finally:
        ledger.close()


@pytest.fixture(params=["sqs"])
def ledger(request: pytest.FixtureRequest) -> Ledger:
    """The ledger on each broker the suite covers (only moto SQS so far)."""
    got: Ledger = request.getfixturevalue(f"{request.param}_ledger")
    return got
