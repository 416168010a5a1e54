"""Every operations command against the memory broker and against moto SQS with Redis: real
workers in threads, the real CLI in-process, waits on conditions."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from cloudq.adapters.base import Delivery, OutgoingMessage, dead_letter_queue_name
from cloudq.control.events import emit_task_sent
from cloudq.envelope import HEADER_ERROR_TYPE, decode, verify
from cloudq.testing import process_one, wait_for
from tests.control.conftest import Ops

pytestmark = pytest.mark.timeout(60)


def active(ops: Ops, hostname: str) -> list[dict[str, Any]]:
    answer: dict[str, list[dict[str, Any]]] = ops.json("inspect", "active")
    return answer.get(hostname, [])


# --- status, inspect, control -------------------------------------------------------------------
def test_status_inspect_and_control_through_heartbeats(ops: Ops) -> None:
    with ops.worker(["default", "mail"], concurrency=1, prefetch=4) as worker:
        out = ops.ok("status")
        assert "->  w1@test: OK" in out and "1 node online." in out
        assert ops.json("status")["w1@test"]["queues"] == ["default", "mail"]

        registered = ops.ok("inspect", "registered")
        assert "* ops.add" in registered and "* ops.mail.send" in registered
        assert "* default" in ops.ok("inspect", "active_queues")
        assert "pong" in ops.ok("inspect", "ping")
        assert "- empty -" in ops.ok("inspect", "scheduled")

        # Three long tasks on one slot: one runs, the others wait (reserved).
        sleepers = [ops.app.tasks["ops.sleep"].delay(1.5) for _ in range(3)]
        wait_for(lambda: len(active(ops, "w1@test")) == 1, timeout=10, message="one active")
        (running,) = active(ops, "w1@test")
        assert running["name"] == "ops.sleep" and running["attempt"] == 1
        assert running["id"] in {s.id for s in sleepers}
        assert "* ops.sleep[" in ops.ok("inspect", "active")
        stats = ops.json("inspect", "stats")["w1@test"]
        assert stats["concurrency"] == 1 and stats["pool"] == "threads"

        # pool_grow: the waiting tasks start at once, on the new slots.
        out = ops.ok("control", "pool_grow", "2")
        assert "->  w1@test: OK" in out and "pool will grow to 3" in out
        wait_for(lambda: len(active(ops, "w1@test")) >= 2, timeout=10, message="grown pool")
        assert worker.concurrency == 3
        assert "pool will shrink to 2" in ops.ok("control", "pool_shrink")
        assert ops.json("inspect", "stats")["w1@test"]["concurrency"] == 2
        assert all(s.get(timeout=20) == 1.5 for s in sleepers)
        wait_for(lambda: len(worker._threads) == 2, timeout=10, message="a retired slot")

        # events on and off, as the record shows
        assert "task events enabled" in ops.ok("control", "enable_events")
        assert ops.json("status")["w1@test"]["events"] is True
        assert "task events disabled" in ops.ok("control", "disable_events")
        assert ops.json("status")["w1@test"]["events"] is False
        assert ops.json("control", "pool_shrink", "5")["w1@test"]["ok"] is True
        refused = ops.cli("control", "pool_shrink")
        assert refused.exit_code == 1 and "minimum" in refused.output

        # shutdown: the worker stops gracefully and leaves the list
        assert "->  w1@test: OK" in ops.ok("control", "shutdown", "-d", "w1")
        wait_for(lambda: worker.stopping, timeout=5, message="stop requested")
    gone = ops.cli("status")
    assert gone.exit_code == 69 and "No nodes replied" in gone.output


# --- events ---------------------------------------------------------------------------------------
def run_while_watching(ops: Ops, args: list[str], work: Any) -> str:
    """Run ``cloudq events ...`` and, once it reads the stream, ``work()`` in a thread."""
    backend: Any = ops.app.backend
    reading = threading.Event()
    real = backend.events_read

    def spy(cursor: str | None, timeout: float, count: int) -> tuple[str, list[str]]:
        got: tuple[str, list[str]] = real(cursor, timeout, count)
        reading.set()  # the first read set the cursor: later events are seen
        return got

    backend.events_read = spy
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            assert reading.wait(10), "events never read the stream"
            work()
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        out = ops.ok("events", *args)
    finally:
        thread.join(30)
        del backend.events_read
    assert not failures, failures
    return out


def test_events_dump_has_every_task_event_in_order(ops: Ops, tmp_path: Path) -> None:
    with ops.worker(["default", "fragile"], concurrency=2):
        ops.ok("control", "enable_events")
        ids: dict[str, str] = {}

        def work() -> None:
            add = ops.app.tasks["ops.add"].delay(2, 3)
            emit_task_sent(ops.app, [{"uuid": add.id, "name": "ops.add", "queue": "default"}])
            flaky = ops.app.tasks["ops.flaky"].delay(str(tmp_path / "flaky"))
            fail = ops.app.tasks["ops.fail"].delay("x")
            ids.update(add=add.id, flaky=flaky.id, fail=fail.id)
            assert add.get(timeout=10) == 5 and flaky.get(timeout=10) == "ok"
            with pytest.raises(ValueError):
                fail.get(timeout=10)

        out = run_while_watching(ops, ["--dump", "--duration", "4", "--refresh", "0.2"], work)
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    kinds = {key: [e["type"] for e in events if e.get("uuid") == i] for key, i in ids.items()}
    assert kinds["add"] == [
        "task-sent",
        "task-received",
        "task-started",
        "task-succeeded",
    ], kinds
    assert kinds["flaky"][:4] == ["task-received", "task-started", "task-retried", "task-received"]
    assert kinds["flaky"][-1] == "task-succeeded"
    assert kinds["fail"] == [
        "task-received",
        "task-started",
        "task-failed",
        "task-dead-lettered",
    ]
    succeeded = next(e for e in events if e["type"] == "task-succeeded" and e["uuid"] == ids["add"])
    assert succeeded["result"] == "5" and succeeded["hostname"] == "w1@test"
    failed = next(e for e in events if e["type"] == "task-failed")
    assert "ValueError: failed on purpose" in failed["traceback"]
    assert any(e["type"] == "worker-heartbeat" for e in events)


def test_events_table_and_call_sends_a_task_sent_event(ops: Ops) -> None:
    with ops.worker(["default"]):
        quiet = ops.cli("events", "--duration", "0.2", "--refresh", "0.1")
        assert "no live worker sends events" in quiet.output
        ops.ok("control", "enable_events")
        result: list[str] = []

        def work() -> None:
            task_id = ops.app.tasks["ops.add"].delay(1, 1).id
            result.append(task_id)
            assert ops.app.AsyncResult(task_id).get(timeout=10) == 2

        out = run_while_watching(ops, ["--duration", "3", "--refresh", "0.2"], work)
        assert "w1@test" in out
        (last,) = [t for t in out.split("cloudq events:") if result[0] in t][-1:]
        row = next(line for line in last.splitlines() if line.startswith(result[0]))
        assert "ops.add" in row and "SUCCESS" in row

        # call writes task-sent (read from the stream itself: one CLI at a time in-process)
        stream: Any = ops.app.backend
        cursor, _ = stream.events_read(None, 0.01, 1)
        sent = ops.ok("call", "ops.add", "--args", "[2, 2]").strip()
        assert ops.app.AsyncResult(sent).get(timeout=10) == 4
        kinds: list[str] = []

        def succeeded() -> bool:
            nonlocal cursor
            cursor, lines = stream.events_read(cursor, 0.2, 1000)
            kinds.extend(e["type"] for e in map(json.loads, lines) if e.get("uuid") == sent)
            return "task-succeeded" in kinds

        wait_for(succeeded, timeout=10, message="the task's events")
        assert kinds[:2] == ["task-sent", "task-received"]


# --- queues, purge ------------------------------------------------------------------------------
def test_queues_and_purge(ops: Ops) -> None:
    app = ops.app
    app.tasks["ops.add"].delay(1, 2)
    app.tasks["ops.add"].delay(1, 2)
    app.tasks["ops.add"].apply_async((1, 2), countdown=300)
    app.tasks["ops.mail.send"].delay("a@b.c")
    app.tasks["ops.add"].apply_async((1, 2), queue="extra")
    app.tasks["ops.fail"].delay("dead")
    assert process_one(app, "fragile") is not None  # dead-lettered
    held = app.broker.receive("mail", 1, 1, 60)
    assert len(held) == 1

    rows = {r["queue"]: r for r in ops.json("queues", "-Q", "extra")}
    assert list(rows) == ["default", "fragile", "mail", "extra"]
    assert (rows["default"]["ready"], rows["default"]["delayed"]) == (2, 1)
    assert rows["mail"]["in_flight"] == 1
    assert rows["fragile"]["dead_letters"] == 1
    assert rows["extra"]["ready"] == 1
    text = ops.ok("queues")
    assert text.splitlines()[0].split() == [
        "QUEUE",
        "READY",
        "IN",
        "FLIGHT",
        "DELAYED",
        "DEAD",
        "LETTERS",
    ]
    if ops.kind == "sqs":
        missing = ops.json("queues", "-Q", "never-made")[-1]
        assert missing["ready"] is None and "does not exist" in missing["error"]

    refused = ops.cli("purge", "-Q", "extra", input="n\n")
    assert refused.exit_code == 1 and "There is no undo" in refused.output
    assert app.broker.stats("extra").visible == 1, "nothing purged without a yes"
    assert "Purged 1 message(s) from 1 queue." in ops.ok("purge", "-Q", "extra", input="y\n")
    out = ops.ok("purge", "--yes")
    assert "from 3 queues" in out

    def empty() -> bool:
        rows = ops.json("queues", "-Q", "extra")
        return all(not (r["ready"] or r["in_flight"] or r["delayed"]) for r in rows)

    wait_for(empty, timeout=10, message="purged queues")


# --- dead letters ---------------------------------------------------------------------------------
def dead_letters(ops: Ops, count: int) -> list[str]:
    ids = [ops.app.tasks["ops.fail"].delay(f"n{i}").id for i in range(count)]
    for _ in range(count):
        assert process_one(ops.app, "fragile") is not None
    return ids


def test_dlq_list_shows_task_attempt_and_error_and_releases_them(ops: Ops) -> None:
    ids = dead_letters(ops, 3)
    out = ops.ok("dlq", "list", "-Q", "fragile")
    for task_id in ids:
        line = next(x for x in out.splitlines() if x.startswith(task_id))
        assert "ops.fail" in line and "builtins.ValueError: failed on purpose" in line
        assert line.split()[2] == "1", "the attempt"
    assert "3 dead letter(s) in fragile-dlq." in out
    listed = ops.json("dlq", "list", "-Q", "fragile", "--limit", "2")
    assert len(listed) == 2
    assert "Traceback (most recent call last)" in listed[0]["traceback"]
    assert listed[0]["reason"].startswith("builtins.ValueError: failed on purpose")
    # Released right after: all three can be read again at once.
    dlq = dead_letter_queue_name("fragile")
    got = ops.app.broker.receive(dlq, 10, 1, 30)
    assert sorted(decode(d.body).id for d in got) == sorted(ids)
    ops.app.broker.release(got, 0)


def received(ops: Ops, queue: str, count: int) -> list[Delivery]:
    out: list[Delivery] = []
    for _ in range(10):
        out += ops.app.broker.receive(queue, 10, 1, 30)
        if len(out) >= count:
            break
    return out


def test_dlq_redrive_resets_the_attempt_strips_errors_and_re_signs(
    request: pytest.FixtureRequest, ops: Ops
) -> None:
    from tests.control.conftest import make_ops

    signed = make_ops(request, ops.kind, signing_keys=["k1"])
    try:
        ids = dead_letters(signed, 3)
        # A forged, unsigned message: a worker dead-letters it unrun; redrive must not sign it.
        forged = ids[0].replace(ids[0][:8], "f0f0f0f0")
        raw = {"v": 1, "id": forged, "task": "ops.add", "args": [1, 1], "queue": "fragile"}
        raw["created_at"] = "2030-01-01T00:00:00Z"
        signed.app.broker.send("fragile", [OutgoingMessage(json.dumps(raw).encode())])
        assert process_one(signed.app, "fragile") is not None

        out = signed.ok("dlq", "redrive", "-Q", "fragile", "--limit", "2")
        assert "Redrove 2 message(s) from fragile-dlq to fragile." in out
        rest = signed.cli("dlq", "redrive", "-Q", "fragile")
        assert rest.exit_code == 0 and "Redrove 1 message(s)" in rest.stdout
        assert "left in fragile-dlq" in rest.stderr and "unsigned" in rest.stderr
        back = received(signed, "fragile", 3)
        envelopes = [decode(d.body) for d in back]
        assert sorted(e.id for e in envelopes) == sorted(ids)
        for env in envelopes:
            assert env.attempt == 1 and HEADER_ERROR_TYPE not in env.headers
            verify(env, ["k1"])  # signed anew
        signed.app.broker.release(back, 0)
        left = signed.json("dlq", "list", "-Q", "fragile")
        assert [d["task_id"] for d in left] == [forged]
        assert left[0]["reason"].startswith("envelope is unsigned")
        # The redriven tasks run (and, this task being what it is, fail again).
        with signed.worker(["fragile"]):
            wait_for(
                lambda: signed.app.broker.stats("fragile").dead_lettered == 4,
                timeout=20,
                message="redriven tasks ran",
            )
    finally:
        signed.close()


# --- result, call ---------------------------------------------------------------------------
def test_result_shows_state_and_result_or_traceback(ops: Ops) -> None:
    done = ops.app.tasks["ops.add"].delay(20, 22)
    failed = ops.app.tasks["ops.fail"].delay("r")
    process_one(ops.app)
    process_one(ops.app, "fragile")
    out = ops.ok("result", done.id)
    assert "state: SUCCESS" in out and "result: 42" in out
    assert ops.json("result", done.id)["result"] == 42
    out = ops.ok("result", failed.id)
    assert "state: FAILURE" in out and "error: builtins.ValueError: failed on purpose: r" in out
    assert "Traceback (most recent call last)" in out
    assert ops.json("result", failed.id)["error"]["type"] == "builtins.ValueError"
    assert ops.json("result", "no-such-id") == {"task_id": "no-such-id", "state": "PENDING"}
    assert "state: PENDING" in ops.ok("result", "no-such-id")

    sent = ops.ok("call", "ops.add", "--args", "[1, 2]", "-Q", "extra").strip()
    assert process_one(ops.app, "extra") is not None
    assert "result: 3" in ops.ok("result", sent)
