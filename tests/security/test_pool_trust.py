"""Issue 26, finding 1: the processes pool signs only what it verified.

The parent (``ProcessExecutor.run``) decoded the envelope without checking its signature and,
when the child died on it (a non-ASCII ``sig`` made the child's ``hmac.compare_digest`` raise),
built the retry from that unchecked envelope: settling signed it with the app's key, and the
forged task then ran. Now the parent opens and verifies the delivery with ``open_body`` (what
``execute`` uses) and dead-letters what fails without involving the child.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cloudq import App
from cloudq.adapters.base import Delivery
from cloudq.claimcheck import MemoryClaimCheckStore, pointer
from cloudq.envelope import Envelope, decode, sign, verify
from cloudq.errors import EnvelopeError
from cloudq.outcome import Ack, DeadLetter, RetryAt
from cloudq.pool import ProcessExecutor
from cloudq.settle import settle
from tests.apps import trust_app

APP_REF = "tests.apps.trust_app:app"


def verifies(body: bytes, app: App) -> bool:
    try:
        verify(decode(body), app.signing_keys)
    except EnvelopeError:
        return False
    return True


def everything_sent(app: App, queue: str, task_id: str) -> list[bytes]:
    """Every message of ``task_id`` on ``queue`` and its dead-letter queue, taken off them."""
    found = []
    for name in (queue, f"{queue}-dlq"):
        for delivery in app.broker.receive(name, 100, 0, 30):
            body = delivery.body
            try:
                same = decode(body).id == task_id
            except EnvelopeError:
                same = task_id.encode() in body
            if same:
                found.append(body)
            else:
                app.broker.release([delivery], 0)
    return found


def forged(kind: str) -> tuple[Envelope, Delivery]:
    """A message the app must refuse, of the given kind, for the task that kills its child."""
    app = trust_app.app
    env = app.tasks["die"].envelope([], {}, queue="default")
    queue = "default"
    if kind == "non-ascii sig":
        env = env.model_copy(update={"sig": "hmac-sha256:" + "é" * 64})
    elif kind == "unsigned":
        env = env.model_copy(update={"sig": None})
    elif kind == "other key":
        env = sign(env, ["not-the-apps-key"])
    elif kind == "re-queued":
        env, queue = sign(env, app.signing_keys), "elsewhere"
    return env, Delivery(queue, env.encode(), env.id, 1)


@pytest.mark.parametrize("kind", ["non-ascii sig", "unsigned", "other key", "re-queued"])
def test_the_parent_dead_letters_what_it_cannot_verify_and_signs_nothing(kind: str) -> None:
    app = trust_app.app
    env, delivery = forged(kind)
    executor = ProcessExecutor(app, APP_REF, None)
    try:
        outcome = executor.run(delivery)
        assert executor.pid is None, "the child was handed a message the parent never verified"
    finally:
        executor.close()
    assert isinstance(outcome, DeadLetter), outcome
    assert outcome.envelope is None, "the original bytes are dead-lettered as they came"
    settle(app, delivery, outcome)
    sent = everything_sent(app, delivery.queue, env.id)
    assert sent, "dead-lettered"
    assert not any(verifies(body, app) for body in sent if body != delivery.body)
    assert not any(verifies(body, app) for body in sent) or kind == "re-queued"


class CountingStore(MemoryClaimCheckStore):
    def __init__(self) -> None:
        super().__init__(f"memory://trust-{uuid.uuid4().hex}")
        self.gets = 0

    def get(self, url: str) -> bytes:
        self.gets += 1
        return super().get(url)


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[CountingStore]:
    counting = CountingStore()
    monkeypatch.setattr(trust_app.app, "claim_checks", counting, raising=False)
    yield counting


@pytest.fixture(scope="module")
def executor() -> Iterator[ProcessExecutor]:
    ex = ProcessExecutor(trust_app.app, APP_REF, None)
    yield ex
    ex.close()


def test_a_claim_checked_body_is_fetched_once_and_run_in_the_child(
    store: CountingStore, executor: ProcessExecutor
) -> None:
    """The child gets the body the parent fetched and verified (its app may have no store);
    the parent's delivery keeps its pointer, so settling deletes the parked object."""
    app = trust_app.app
    env = sign(app.tasks["ok"].envelope([21], {}, queue="default"), app.signing_keys)
    url = store.put(env.id, env.encode())
    delivery = Delivery("default", pointer(url), env.id, 1)
    outcome = executor.run(delivery)
    assert isinstance(outcome, Ack), outcome
    assert store.gets == 1, "downloaded twice"
    assert delivery.body == pointer(url)
    settle(app, delivery, outcome)
    assert url not in store.objects


def test_a_forged_claim_checked_body_is_dead_lettered_by_the_parent(store: CountingStore) -> None:
    app = trust_app.app
    env = app.tasks["die"].envelope([], {}, queue="default")
    url = store.put(env.id, env.encode())  # parked unsigned: anyone who can write there
    ex = ProcessExecutor(app, APP_REF, None)
    try:
        outcome = ex.run(Delivery("default", pointer(url), env.id, 1))
        assert ex.pid is None
    finally:
        ex.close()
    assert isinstance(outcome, DeadLetter) and "unsigned" in outcome.reason


def test_a_crash_is_retried_from_the_verified_envelope(executor: ProcessExecutor) -> None:
    app = trust_app.app
    env = sign(app.tasks["die"].envelope([], {}, queue="default"), app.signing_keys)
    outcome: Any = executor.run(Delivery("default", env.encode(), env.id, 1))
    assert isinstance(outcome, RetryAt), outcome
    assert "died" in (outcome.result.error.message if outcome.result else "died")
    assert outcome.envelope.model_copy(update={"attempt": 1, "eta": None, "sig": None}) == (
        env.model_copy(update={"sig": None})
    )
