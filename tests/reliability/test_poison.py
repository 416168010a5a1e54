"""Poison tasks and bad input: each ends in the dead-letter queue with its reason; the worker
keeps running and the good tasks around them run once."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from cloudq import App
from cloudq.adapters.base import OutgoingMessage
from cloudq.envelope import sign
from cloudq.errors import MessageTooLarge, TaskArgumentError
from tests.apps.ledger_app import POISON_MAX_RETRIES
from tests.reliability.figures import write_row
from tests.reliability.harness import Ledger, WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


LEASE = 5
"""Nothing here waits for a lease to run out (a crashed child is a failed attempt at once): a
lease well above the heartbeat keeps a busy 2-core machine from redelivering good tasks."""
MAX_RECEIVES = 3  # the broker's own redelivery limit (redrive policy): the crash safety net


def _poison_setup(ledger: Ledger, queue: str) -> tuple[App, WorkerProcess]:
    settings: dict[str, Any] = {
        "queue_lease_seconds": LEASE,
        "queue_max_receive_count": MAX_RECEIVES,
    }
    producer = ledger.producer(**settings)
    producer.ensure_queue(queue)
    worker = ledger.worker(queue, 4, pool="processes", **settings)
    worker.wait_ready()
    return producer, worker


def test_poison_tasks_end_in_the_dlq_after_max_retries_never_a_crash_loop(ledger: Ledger) -> None:
    """Raising, child-crashing and over-time tasks: 1 + max_retries runs each, then the DLQ
    with their error (a crashed child is a failed attempt with ``WorkerLostError``); the good
    tasks around them run once and the worker stays up."""
    started = time.monotonic()
    queue = "poison"
    producer, worker = _poison_setup(ledger, queue)
    expected = {
        "ledger.boom": r"RuntimeError: boom attempt",
        "ledger.crash": r"WorkerLostError",
        "ledger.hang": r"TimeLimitExceeded",
    }
    poison: dict[str, str] = {}
    for task in expected:
        for i in ledger.send(producer, task, 2, queue, prefix=task.split(".")[1]):
            poison[i] = task
    good = ledger.send(producer, "ledger.work", 20, queue, 0.0)
    ids = [*poison, *good]
    acc = ledger.wait_settled(ids, producer, queue, 90)
    print(f"\n{ledger.broker.name} poison: {acc.row()}")
    for i, reason in sorted(acc.dead.items()):
        print(f"  {poison.get(i)} {i}: {reason[:120]} runs={ledger.counts('start').get(i)}")

    assert acc.lost == []
    assert set(acc.dead) == set(poison), acc.dead
    assert acc.done_once == len(good) and acc.duplicates == {}
    starts = ledger.counts("start")
    for i, task in poison.items():
        pattern = expected[task]
        assert re.search(pattern, acc.dead[i]), (task, acc.dead[i])
        assert f"max retries ({POISON_MAX_RETRIES}) exceeded" in acc.dead[i], acc.dead[i]
        # Exactly 1 + max_retries runs: retried as configured, then stopped (no crash loop).
        assert starts.get(i) == POISON_MAX_RETRIES + 1, (task, starts.get(i), worker.log())
    assert worker.alive(), worker.log()
    fault = "poison (raise / child crash / hard limit) + good"
    write_row("ci", ledger.broker.name, fault, acc, time.monotonic() - started)


def test_bad_input_is_dead_lettered_with_its_reason_and_the_worker_goes_on(
    ledger: Ledger,
) -> None:
    """Rejected at ``delay()`` with nothing sent: an oversized payload without claim-check
    storage (``MessageTooLarge``), arguments that fail validation (``TaskArgumentError``).
    Dead-lettered with its reason: what reaches the queue anyway, from another producer or
    an attacker (malformed, unknown version, unknown task, tampered, unsigned, arguments
    that fail validation in the worker)."""
    started = time.monotonic()
    queue = "bad"
    keys = ["k-new", "k-old"]
    producer = ledger.producer(signing_keys=keys)
    producer.ensure_queue(queue)
    worker = ledger.worker(queue, 2, signing_keys=keys)
    worker.wait_ready()
    work = producer.tasks["ledger.work"]

    def envelope(task_id: str, task: str = "ledger.work") -> object:
        e = work.envelope([ledger.redis_url, ledger.run, 0.0], {}, queue=queue, task_id=task_id)
        return e.model_copy(update={"task": task}) if task != e.task else e

    # Refused by delay() itself: nothing may reach the queue.
    limit = producer.broker.limits.max_message_bytes
    refused: dict[str, str] = {}
    for task_id, args, error, pattern in [
        # the run key padded past the broker's limit: a str argument that validates
        ("oversized", (ledger.redis_url, "x" * limit, 0.0), MessageTooLarge, "claim_check_url"),
        ("invalid", (ledger.redis_url, ledger.run, "soon"), TaskArgumentError, "'seconds'"),
        ("missing", (ledger.redis_url,), TaskArgumentError, "missing a required argument"),
    ]:
        with pytest.raises(error, match=pattern) as info:
            work.apply_async(args, queue=queue, task_id=task_id)
        refused[task_id] = str(info.value)

    signed = sign(envelope("tampered"), keys)  # type: ignore[arg-type]
    tampered = signed.model_copy(update={"args": [ledger.redis_url, ledger.run, 5.0]})
    v2 = json.loads(envelope("v2").encode())  # type: ignore[attr-defined]
    v2["v"] = 2
    bodies = {
        "malformed": (b"\x00\xff{not json", r"not a cloudq envelope"),
        "v2": (json.dumps(v2).encode(), r"unsupported envelope version 2"),
        "unknown": (
            sign(envelope("unknown", "ledger.nope"), keys).encode(),  # type: ignore[arg-type]
            r"ledger\.nope",
        ),
        "tampered": (tampered.encode(), r"does not match any configured key"),
        "unsigned": (envelope("unsigned").encode(), r"unsigned"),  # type: ignore[attr-defined]
        "badargs": (  # what delay() refuses, sent by a producer that skipped the check
            sign(
                envelope("badargs").model_copy(  # type: ignore[attr-defined]
                    update={"args": [ledger.redis_url, ledger.run, "soon"]}
                ),
                keys,
            ).encode(),
            r"invalid arguments: .*'seconds'",
        ),
    }
    producer.broker.send(queue, [OutgoingMessage(body=b) for b, _ in bodies.values()])
    good = ledger.send(producer, "ledger.work", 10, queue, 0.0)  # signed by the producer
    decodable = ["unknown", "tampered", "unsigned", "badargs"]
    ledger.wait_settled([*good, *decodable], producer, queue, 60)
    acc = ledger.account([*good, *decodable], producer, queue)
    by_body = {body: reason for body, reason in ledger.foreign_dead}
    reasons = {name: acc.dead.get(name) or by_body.get(body) for name, (body, _) in bodies.items()}
    undecodable = len(ledger.foreign_dead)
    print(f"\n{ledger.broker.name} bad input: {acc.row()} (+{undecodable} undecodable)")
    for name, reason in reasons.items():
        print(f"  {name}: {reason}")
    for name, message in refused.items():
        print(f"  {name} (refused by delay()): {message[:150]}")

    for name, (_, pattern) in bodies.items():
        reason = reasons[name] or ""
        assert re.search(pattern, reason), (name, reason)
    assert acc.done_once == len(good) and acc.duplicates == {} and acc.lost == []
    assert ledger.counts("start").keys() == set(good), "no bad message ran"
    sent = {*ledger.dead_seen, *ledger.counts("start")}
    assert not sent & set(refused), "a delay() that raised sent its message"
    assert worker.alive(), worker.log()
    fault = f"bad input ({len(bodies)} kinds) + good; {len(refused)} refused by `delay()`"
    seconds = time.monotonic() - started
    arrived = len(good) + len(bodies)
    dead = len(acc.dead) + undecodable
    write_row("ci", ledger.broker.name, fault, acc, seconds, sent=arrived, dead=dead)
