"""``dlq redrive`` signs only what it can prove is ours (issue 26, findings 2 and 8).

The rules on ``memory://``; the padded-message attack end to end on moto SQS.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from cloudq import App
from cloudq.adapters.base import OutgoingMessage, dead_letter_queue_name
from cloudq.cli import main
from cloudq.control.redrive import REASON_ATTRIBUTE, redrive
from cloudq.envelope import (
    HEADER_DEAD_LETTER_REASON,
    HEADER_ERROR_TRACEBACK,
    HEADER_ERROR_TYPE,
    decode,
    verify,
)
from cloudq.errors import MessageTooLarge
from cloudq.testing import process_one

KEYS = ["k-new", "k-old"]


def make_app(**settings: Any) -> App:
    name = uuid.uuid4().hex
    settings.setdefault("broker_url", f"memory://{name}")
    settings.setdefault("result_backend", f"memory://{name}")
    app = App("trust", **settings)

    @app.task(name="trust.fail", max_retries=0, queue="work")
    def fail(label: str) -> None:
        raise ValueError(f"failed on purpose: {label}")

    @app.task(name="trust.echo", queue="work")
    def echo(label: str) -> str:
        return label

    return app


@pytest.fixture
def app() -> Iterator[App]:
    app = make_app(signing_keys=KEYS)
    yield app
    app.close()


def forged(task: str = "trust.echo", **fields: Any) -> dict[str, Any]:
    """What an attacker with access to the queue (not to the keys) writes."""
    raw: dict[str, Any] = {"v": 1, "id": uuid.uuid4().hex, "task": task, "args": ["pwned"]}
    raw.update(queue="work", created_at="2030-01-01T00:00:00Z")
    raw["headers"] = {HEADER_DEAD_LETTER_REASON: "ValueError: failed on purpose"}
    raw.update(fields)
    return raw


def put_dead_letter(app: App, body: bytes, **attributes: str) -> None:
    """As the broker's own redrive policy leaves it: the sender's bytes and attributes."""
    dlq = dead_letter_queue_name("work")
    app.broker.send(dlq, [OutgoingMessage(body, attributes=dict(attributes))])


def main_queue(app: App) -> list[Any]:
    got = app.broker.receive("work", 10, 0, 30)
    return [decode(d.body) for d in got]


def test_a_forged_dead_letter_with_the_workers_reason_is_not_redriven(app: App) -> None:
    reason = {REASON_ATTRIBUTE: "ValueError: failed on purpose"}
    put_dead_letter(app, json.dumps(forged()).encode(), **reason)

    result = redrive(app, "work")

    assert result.moved == 0
    assert ["unsigned" in why for why in result.skipped.values()] == [True]
    assert main_queue(app) == [], "a forgery was signed and sent"
    assert app.broker.stats("work").dead_lettered == 1, "it stays in the dead-letter queue"


def test_worker_dead_letters_are_signed_and_only_what_verifies_moves(app: App) -> None:
    failed = app.tasks["trust.fail"].delay("a")
    assert process_one(app, "work") is not None
    dlq = dead_letter_queue_name("work")
    [dead] = app.broker.receive(dlq, 1, 0, 30)
    verify(decode(dead.body), KEYS)  # the worker's own signature, error headers included
    app.broker.release([dead], 0)
    # A signed dead letter changed after signing, and an unsigned one.
    tampered = decode(dead.body).model_copy(update={"args": ["changed"]}).encode()
    put_dead_letter(app, tampered, **{REASON_ATTRIBUTE: "x"})
    put_dead_letter(app, json.dumps(forged()).encode())

    result = redrive(app, "work")
    assert result.moved == 1
    [back] = main_queue(app)
    assert back.id == failed.id and back.attempt == 1 and HEADER_ERROR_TYPE not in back.headers
    verify(back, KEYS)
    whys = sorted(result.skipped.values())
    assert len(whys) == 2 and "does not match" in whys[0] and "unsigned" in whys[1]

    # --trust-unsigned moves the unsigned one (signed now), never the bad signature.
    moved = redrive(app, "work", trust_unsigned=True)
    assert moved.moved == 1 and len(moved.skipped) == 1
    assert "does not match" in next(iter(moved.skipped.values()))
    [trusted] = main_queue(app)
    assert trusted.args == ["pwned"]
    verify(trusted, KEYS)


def test_the_cli_flag_is_shown_and_passed(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    ref = f"trust_{uuid.uuid4().hex[:8]}"
    module = types.ModuleType(ref)
    module.app = app  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, ref, module)
    runner = CliRunner()
    help_text = runner.invoke(main, ["-A", ref, "dlq", "redrive", "--help"]).stdout
    assert "--trust-unsigned" in help_text
    put_dead_letter(app, json.dumps(forged()).encode())

    kept = runner.invoke(main, ["-A", ref, "dlq", "redrive", "-Q", "work"])
    assert kept.exit_code == 0 and "Redrove 0 message(s)" in kept.stdout
    assert "unsigned" in kept.stderr
    moved = runner.invoke(main, ["-A", ref, "dlq", "redrive", "-Q", "work", "--trust-unsigned"])
    assert moved.exit_code == 0 and "Redrove 1 message(s)" in moved.stdout


def test_redrive_skips_dead_letters_it_cannot_handle_and_goes_on() -> None:
    app = make_app(claim_check_url=f"memory://cc-{uuid.uuid4().hex}")
    signed = make_app(broker_url=app.conf.broker_url, signing_keys=KEYS)
    # A naive eta (another producer's) is read as UTC, so it is movable; one that leaves the
    # datetime range once in UTC cannot be read at all.
    naive = forged(eta="2020-01-01T00:00:00")
    put_dead_letter(app, json.dumps(naive).encode())
    put_dead_letter(app, json.dumps(forged(eta="0001-01-01T00:00:00+01:00")).encode())
    # A claim-check pointer nested too deep for the JSON parser.
    put_dead_letter(app, b'{"cloudq-claim-check": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    good = forged()
    put_dead_letter(app, json.dumps(good).encode())

    result = redrive(app, "work")
    assert result.moved == 2, result.skipped
    assert sorted(e.id for e in main_queue(app)) == sorted([naive["id"], good["id"]])
    whys = sorted(result.skipped.values())
    assert len(whys) == 2
    assert all(why.startswith("not a readable") for why in whys)

    # A signature that is not ASCII, on an app that signs.
    put_dead_letter(signed, json.dumps(forged(sig="hmac-sha256:\u00e9t\u00e9")).encode())
    checked = redrive(signed, "work")
    assert checked.moved == 0 and "malformed" in " ".join(checked.skipped.values())
    app.close()
    signed.close()


def test_a_dead_letter_copy_too_large_falls_back_to_one_that_fits(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker refuses copies over a size: first without the traceback, then the original."""
    sizes: list[int] = []
    real = app.broker.dead_letter

    def capped(cap: int) -> Any:
        def dead_letter(delivery: Any, reason: str, body: bytes | None = None) -> None:
            size = len(delivery.body if body is None else body)
            sizes.append(size)
            if size > cap:
                raise MessageTooLarge(f"{size} bytes")
            real(delivery, reason, body)

        return dead_letter

    dlq = dead_letter_queue_name("work")
    for cap, keeps_traceback in ((100_000, True), (1_500, False), (0, None)):
        sizes.clear()
        monkeypatch.setattr(app.broker, "dead_letter", capped(cap))
        if cap == 0:  # the original bytes always go: the cap here refuses only copies
            monkeypatch.setattr(app.broker, "dead_letter", capped_original(real, sizes))
        app.tasks["trust.fail"].delay("x" * 200)
        assert process_one(app, "work") is not None  # no MessageTooLarge out of settle
        [dead] = app.broker.receive(dlq, 1, 0, 30)
        env = decode(dead.body)
        verify(env, KEYS)
        if keeps_traceback is None:
            assert HEADER_ERROR_TYPE not in env.headers, "the original message"
        else:
            assert (HEADER_ERROR_TRACEBACK in env.headers) is keeps_traceback
            assert HEADER_ERROR_TYPE in env.headers
        app.broker.ack([dead])


def capped_original(real: Any, sizes: list[int]) -> Any:
    """A broker that takes only the original bytes (``body=None``)."""

    def dead_letter(delivery: Any, reason: str, body: bytes | None = None) -> None:
        if body is not None:
            raise MessageTooLarge("copies do not fit")
        real(delivery, reason, None)

    return dead_letter


# --- the padded-message attack, end to end on moto SQS --------------------------------------------
@pytest.mark.integration
@pytest.mark.timeout(90)
def test_a_padded_forgery_the_broker_dead_letters_is_not_redriven_on_sqs(sqs_env: str) -> None:
    """Access to the main queue only: a message padded to the queue's size limit makes the
    worker's dead-letter copy fail; after maxReceiveCount SQS moves the original, with the
    sender's attributes, to the dead-letter queue. Redrive must not sign and send it."""
    import boto3  # type: ignore[import-untyped, unused-ignore]

    from cloudq.testing import start_worker, wait_for
    from cloudq_sqs.broker import wire_size

    prefix = f"t{uuid.uuid4().hex[:10]}-"
    app = make_app(
        broker_url=f"sqs://?prefix={prefix}",
        result_backend=f"memory://{prefix}",
        signing_keys=KEYS,
        queue_max_receive_count=2,
        queue_lease_seconds=2,
    )
    try:
        app.ensure_queue("work")
        raw = boto3.client("sqs", region_name="us-east-1")
        url = raw.get_queue_url(QueueName=f"{prefix}work")["QueueUrl"]
        attributes = {
            REASON_ATTRIBUTE: "ValueError: failed on purpose",
            "cloudq-task": "trust.echo",
        }
        body = forged(args=[""])
        # Headers redrive strips: its re-signed copy then fits where the worker's did not.
        body["headers"][HEADER_ERROR_TRACEBACK] = "t" * 500
        sizes = raw.get_queue_attributes(QueueUrl=url, AttributeNames=["MaximumMessageSize"])
        limit = int(sizes["Attributes"]["MaximumMessageSize"])  # the queue's own limit
        pad = limit - wire_size(json.dumps(body), attributes)
        body["args"] = ["p" * pad]
        text = json.dumps(body)
        assert wire_size(text, attributes) == limit
        raw.send_message(
            QueueUrl=url,
            MessageBody=text,
            MessageAttributes={
                k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
            },
        )

        with start_worker(app, ["work"], concurrency=1, poll_seconds=0.2):
            wait_for(
                lambda: app.broker.stats("work").dead_lettered == 1,
                timeout=60,
                message="the broker to move the forgery to the dead-letter queue",
            )
        stats = app.broker.stats("work")
        assert (stats.visible, stats.in_flight) == (0, 0)

        result = redrive(app, "work")

        assert result.moved == 0, "the forgery was signed and sent"
        assert ["unsigned" in why for why in result.skipped.values()] == [True]
        assert app.broker.receive("work", 10, 1, 30) == []
        assert app.broker.stats("work").dead_lettered == 1
    finally:
        app.close()


def test_a_dead_letter_of_an_envelope_that_does_not_verify_is_not_signed(app: App) -> None:
    """A pool child killed at its time limit is dead-lettered from the parent's own decode,
    which does not verify: settle checks again before it signs."""
    from cloudq.execute import outcome_for_error
    from cloudq.settle import settle

    body = json.dumps(forged()).encode()
    app.broker.send("work", [OutgoingMessage(body)])
    [delivery] = app.broker.receive("work", 1, 0, 30)
    outcome = outcome_for_error(decode(body), None, TimeoutError("killed"), app.clock, False)
    settle(app, delivery, outcome)

    [dead] = app.broker.receive(dead_letter_queue_name("work"), 1, 0, 30)
    assert dead.body == body, "the original bytes, unsigned as they came"
    assert redrive(app, "work").moved == 0


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_workers_dead_letter_near_the_size_limit_still_goes_on_sqs(sqs_env: str) -> None:
    """The error headers push a copy over the limit: it goes without the traceback, signed,
    instead of raising and leaving the message to the broker's own redrive."""
    limit = 200_000
    prefix = f"t{uuid.uuid4().hex[:10]}-"
    app = make_app(
        broker_url=f"sqs://?prefix={prefix}&max_message_bytes={limit}", signing_keys=KEYS
    )
    try:
        app.ensure_queue("work")
        label = "x" * (limit - 4_000)
        sent = app.tasks["trust.fail"].delay(label)
        assert process_one(app, "work") is not None  # raised MessageTooLarge before
        got = app.broker.receive(dead_letter_queue_name("work"), 1, 1, 30)
        assert len(got) == 1
        env = decode(got[0].body)
        verify(env, KEYS)
        assert env.id == sent.id and env.args == [label]
        assert HEADER_ERROR_TYPE in env.headers and HEADER_ERROR_TRACEBACK not in env.headers
        assert app.broker.stats("work").in_flight == 0
    finally:
        app.close()
