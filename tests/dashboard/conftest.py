"""``stack``: one test's moto SQS queues with Redis or DynamoDB as the state store (both, by
parametrization, where a test takes ``store``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dashboard import dash_app
from tests.dashboard.harness import APP_REF
from tests.integration.stack import Stack, new_prefix


@pytest.fixture(params=["redis", "dynamodb"])
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def stack(
    request: pytest.FixtureRequest, store: str, sqs_env: str, tmp_path: Path
) -> Iterator[Stack]:
    prefix = new_prefix()
    if store == "redis":
        redis_url = request.getfixturevalue("redis_url")
        backend = f"{redis_url}?prefix=cloudq-{prefix}"
    else:
        backend = f"dynamodb://cq-dash-{uuid.uuid4().hex[:10]}?create=1"
    with Stack(
        tmp_path, f"sqs://?prefix={prefix}", backend, prefix, dash_app.make_app, APP_REF
    ) as s:
        yield s
