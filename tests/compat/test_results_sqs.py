"""Results end to end on moto SQS with Redis, through a real ``cloudq worker`` subprocess: the
task's own exception class comes back from ``get()``; an exception of a module only the worker
imported comes back as ``TaskFailed`` and that module is not imported here; ``children`` and a
saved group round-trip through Redis. This module is also the worker's app (``APP_REF``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloudq import App, group
from cloudq.errors import TaskFailed
from cloudq.result import GroupResult
from tests.integration.stack import Stack, new_prefix

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

APP_REF = "tests.compat.test_results_sqs"
WORKER_ONLY_MODULE = "wave"
"""A standard-library module the test process never imports; the worker's task does."""


class PaymentDeclined(Exception):
    """The task's own exception: defined here, so both processes have the class."""


def make_app(**settings: Any) -> App:
    if "CLOUDQ_BROKER_URL" not in os.environ:
        settings.setdefault("broker_url", "memory://results-sqs")
    if "CLOUDQ_RESULT_BACKEND" not in os.environ:
        settings.setdefault("result_backend", "memory://results-sqs")
    app = App("results", **settings)

    @app.task(name="results.pay", max_retries=0)
    def pay(order: int) -> None:
        raise PaymentDeclined(f"card declined for order {order}")

    @app.task(name="results.parse", max_retries=0)
    def parse() -> None:
        import wave

        raise wave.Error("file does not start with RIFF id")

    @app.task(name="results.leaf")
    def leaf(x: int) -> int:
        return x + 1

    @app.task(name="results.fan")
    def fan(n: int) -> int:
        for i in range(n):
            leaf.delay(i)
        return n

    return app


app = make_app()


@pytest.fixture
def stack(sqs_env: str, redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    prefix = new_prefix()
    backend_url = f"{redis_url}?prefix=cloudq-{prefix}"
    with Stack(tmp_path, f"sqs://?prefix={prefix}", backend_url, prefix, make_app, APP_REF) as s:
        yield s


def test_errors_children_and_groups_through_a_worker(stack: Stack) -> None:
    producer = stack.producer()
    producer.ensure_queue("default")
    stack.worker(["default"], concurrency=2).wait_ready()

    declined = producer.tasks["results.pay"].delay(42)
    with pytest.raises(PaymentDeclined, match="card declined for order 42") as raised:
        declined.get(timeout=30)
    assert "PaymentDeclined" in str(raised.value.__cause__)  # the worker's traceback
    assert declined.state == "FAILURE" and isinstance(declined.info, PaymentDeclined)

    assert WORKER_ONLY_MODULE not in sys.modules
    parsed = producer.tasks["results.parse"].delay()
    with pytest.raises(TaskFailed, match="RIFF") as failed:
        parsed.get(timeout=30)
    assert failed.value.exc_type == "wave.Error"
    assert WORKER_ONLY_MODULE not in sys.modules, "a record naming a module never imports it"

    fan = producer.tasks["results.fan"].delay(3)
    assert fan.get(timeout=30) == 3
    assert sorted(c.get(timeout=30) for c in fan.children) == [1, 2, 3]

    res = group(producer.tasks["results.leaf"].s(i) for i in range(3)).apply_async()
    res.save()
    again = GroupResult.restore(res.id, app=stack.producer())
    assert again is not None and again.join(timeout=30) == [1, 2, 3]
