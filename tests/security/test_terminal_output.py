"""What came from a message cannot drive the operator's terminal (issue 26, finding 10).

Every human-readable command prints message fields (task name, id, error, traceback, reason)
with their control characters escaped, piped or not; ``--json`` stays valid JSON whose text
holds no raw control character (the encoder escapes them) and decodes back to the sender's text.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from cloudq.adapters.base import OutgoingMessage, dead_letter_queue_name
from cloudq.control.output import cell, echo_json, table
from cloudq.control.redrive import REASON_ATTRIBUTE
from cloudq.control.store import control_store
from cloudq.envelope import HEADER_ERROR_MESSAGE, HEADER_ERROR_TRACEBACK, HEADER_ERROR_TYPE
from cloudq.results.base import ErrorInfo, State, TaskResult
from tests.control.conftest import Ops, make_ops

pytestmark = pytest.mark.timeout(60)

EVIL = "\x1b]0;pwned\x07\x1b[2J\rX\u202eY\x7f\x9b"
"""An OSC title change, a screen clear, a carriage return, a bidi override, DEL and a C1 CSI."""
RAW = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
"""Any control character but the newline that separates output lines."""


def assert_escaped(text: str) -> None:
    assert not RAW.search(text), repr(text)
    assert "\\x1b]0;pwned\\x07" in text, text


@pytest.fixture
def ops(request: pytest.FixtureRequest) -> Iterator[Ops]:
    stack = make_ops(request, "memory")
    try:
        yield stack
    finally:
        stack.close()


def test_cells_and_tables_escape_control_characters() -> None:
    assert cell(EVIL) == "\\x1b]0;pwned\\x07\\x1b[2J\\rX\\u202eY\\x7f\\x9b"
    assert_escaped(table(["A", "B"], [[EVIL, 1], ["ok", None]]))


def test_echo_json_escapes_and_stays_valid(capsys: pytest.CaptureFixture[str]) -> None:
    echo_json({"name": EVIL, EVIL: [EVIL]})
    out = capsys.readouterr().out
    assert not RAW.search(out), repr(out)
    assert json.loads(out) == {"name": EVIL, EVIL: [EVIL]}


def _dead_letter(ops: Ops, *, envelope: bool) -> None:
    queue = "fragile"
    ops.app.ensure_queue(queue)
    if envelope:
        body = json.dumps(
            {
                "v": 1,
                "id": f"id-{EVIL}",
                "task": f"task-{EVIL}",
                "queue": queue,
                "created_at": datetime.now(UTC).isoformat(),
                "headers": {
                    HEADER_ERROR_TYPE: f"Err{EVIL}",
                    HEADER_ERROR_MESSAGE: f"message {EVIL}",
                    HEADER_ERROR_TRACEBACK: f"Traceback (most recent call last):\n  line {EVIL}\n",
                },
            }
        ).encode()
    else:
        body = b"not an envelope"
    attributes = {REASON_ATTRIBUTE: f"reason {EVIL}", "cloudq-task": f"task-{EVIL}"}
    ops.app.broker.send(
        dead_letter_queue_name(queue), [OutgoingMessage(body=body, attributes=attributes)]
    )


@pytest.mark.parametrize("envelope", [True, False], ids=["envelope", "malformed"])
def test_dlq_list_escapes_message_fields(ops: Ops, envelope: bool) -> None:
    _dead_letter(ops, envelope=envelope)
    out = ops.ok("dlq", "list", "-Q", "fragile", "--traceback")
    assert_escaped(out)
    assert "1 dead letter(s)" in out
    if envelope:
        # A traceback keeps its own lines; only its other control characters are escaped.
        assert "Traceback (most recent call last):\n  line \\x1b]0;pwned" in out
    listed = ops.json("dlq", "list", "-Q", "fragile")
    assert listed[0]["reason"] == f"reason {EVIL}"


def _fake_worker(ops: Ops) -> None:
    entry = {"id": f"id-{EVIL}", "name": f"task-{EVIL}", "attempt": 1, "queue": f"q{EVIL}"}
    record = {
        "hostname": f"w1@{EVIL}",
        "kind": "worker",
        "queues": [f"q{EVIL}"],
        "active": [dict(entry, started=time.time())],
        "active_count": 1,
        "reserved": [entry],
        "reserved_count": 1,
        "registered": [f"task-{EVIL}"],
        "processed": 1,
        "failed": 0,
        "events": True,
        "timestamp": time.time(),
        "pool": "threads",
        "concurrency": 1,
    }
    control_store(ops.app).control_heartbeat(f"w1@{EVIL}", json.dumps(record), 60)


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["inspect", "active"],
        ["inspect", "reserved"],
        ["inspect", "registered"],
        ["inspect", "active_queues"],
        ["inspect", "stats"],
    ],
)
def test_status_and_inspect_escape_record_fields(ops: Ops, args: list[str]) -> None:
    _fake_worker(ops)
    assert_escaped(ops.ok(*args))
    as_json = ops.ok(*args, "--json")
    assert not RAW.search(as_json), repr(as_json)
    assert f"w1@{EVIL}" in json.loads(as_json)


def test_result_escapes_the_stored_record(ops: Ops) -> None:
    assert ops.app.backend is not None
    task_id = str(uuid.uuid4())
    error = ErrorInfo(
        type=f"Err{EVIL}",
        message=f"message {EVIL}",
        traceback=f"Traceback (most recent call last):\n  line {EVIL}\n",
    )
    record = TaskResult(task_id=task_id, state=State.FAILURE, task=f"task-{EVIL}", error=error)
    ops.app.backend.store(record, 60)
    out = ops.ok("result", task_id)
    assert_escaped(out)
    assert "Traceback (most recent call last):\n  line \\x1b]0;pwned" in out
    as_json = ops.ok("result", task_id, "--json")
    assert not RAW.search(as_json) and json.loads(as_json)["task"] == f"task-{EVIL}"

    done = TaskResult(task_id=task_id, state=State.SUCCESS, task="t", result=EVIL)
    ops.app.backend.store(done, 60)
    out = ops.ok("result", task_id)  # a result is shown as JSON, escaped by the encoder
    assert not RAW.search(out) and 'result: "\\u001b]0;pwned\\u0007' in out, out


def _events(ops: Ops) -> list[str]:
    base: dict[str, Any] = {"hostname": f"w1@{EVIL}", "timestamp": time.time()}
    task = {"uuid": f"id-{EVIL}", "name": f"task-{EVIL}", "attempt": 1}
    return [
        json.dumps({"type": "worker-online", **base}),
        json.dumps({"type": "task-received", **base, **task}),
        json.dumps({"type": "task-failed", **base, **task, "exception": f"E: {EVIL}"}),
    ]


def _watch(ops: Ops, args: list[str]) -> str:
    """``cloudq events ...`` while the events are appended, once it reads the stream."""
    backend: Any = ops.app.backend
    reading = threading.Event()
    real_read = backend.events_read

    def read(*a: Any, **k: Any) -> Any:
        reading.set()
        return real_read(*a, **k)

    backend.events_read = read
    lines = _events(ops)

    def append() -> None:
        if reading.wait(10):
            backend.events_append(lines, 1000)

    thread = threading.Thread(target=append, daemon=True)
    thread.start()
    try:
        return ops.ok("events", *args, "--duration", "1.5", "--refresh", "0.2")
    finally:
        thread.join(10)
        backend.events_read = real_read


def test_events_dump_is_escaped_json(ops: Ops) -> None:
    out = _watch(ops, ["--dump"])
    assert not RAW.search(out), repr(out)
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert any(e.get("exception") == f"E: {EVIL}" for e in events), out


def test_events_table_escapes_message_fields(ops: Ops) -> None:
    out = _watch(ops, [])
    assert "task-\\x1b]0;pwned" in out, out
    assert_escaped(out)
