"""Issue 26, finding 3: nothing raises out of ``execute`` while decoding, checking or planning.

Each case below used to raise out of ``execute``: the worker logged "could not settle", the
broker redelivered, the task ran again on every delivery and the message reached the DLQ with
no reason. Now each is a ``DeadLetter`` whose reason says what was wrong (or runs, where the
input is legitimate).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from cloudq import App
from cloudq.adapters.base import Delivery
from cloudq.claimcheck import ObjectStoreClaimChecks, pointer
from cloudq.envelope import Envelope, sign, verify
from cloudq.errors import SignatureError
from cloudq.execute import error_info, execute
from cloudq.outcome import Ack, DeadLetter, Defer, RetryAt
from cloudq.retry import MAX_RETRY_DELAY_SECONDS
from cloudq.testing import FakeClock

KEY = "k1"


def make_app(**settings: Any) -> App:
    name = uuid.uuid4().hex
    return App(
        "t", broker=f"memory://{name}", backend=f"memory://{name}", clock=FakeClock(), **settings
    )


def delivery_of(body: bytes, queue: str = "default") -> Delivery:
    return Delivery(queue=queue, body=body, message_id="m-1", receive_count=1)


def signed_body(app: App, envelope: Envelope) -> bytes:
    return sign(envelope, app.signing_keys).encode()


@pytest.mark.parametrize(
    "sig",
    [
        "hmac-sha256:" + "é" * 64,  # non-ASCII: hmac.compare_digest raised TypeError
        "hmac-sha256:\u0000\uffff",
        "hmac-sha256:" + "zz" * 32,  # ASCII, not hex
        "hmac-sha256:",
    ],
)
def test_a_malformed_signature_is_a_signature_error_and_a_dead_letter(sig: str) -> None:
    app = make_app(signing_keys=[KEY])

    @app.task(name="ok")
    def ok() -> None: ...

    envelope = ok.envelope([], {}).model_copy(update={"sig": sig})
    with pytest.raises(SignatureError):
        verify(envelope, [KEY])
    outcome = execute(delivery_of(envelope.encode()), app)
    assert isinstance(outcome, DeadLetter), outcome
    assert "signature" in outcome.reason
    assert outcome.envelope is None, "the original bytes are dead-lettered as they came"


class DictObjectStore(ObjectStoreClaimChecks):
    """An object store in a dict: the real URL checks of the cloud stores, no cloud."""

    scheme = "s3"

    def __init__(self) -> None:
        super().__init__("bucket", "cloudq")
        self.objects: dict[str, bytes] = {"secrets/other.json": b"{}"}

    def _upload(self, name: str, body: bytes, url: str) -> None:
        self.objects[name] = body

    def _download(self, name: str, url: str) -> bytes | None:
        return self.objects.get(name)

    def _delete(self, name: str, url: str) -> None:
        self.objects.pop(name, None)


@pytest.mark.parametrize(
    "url", ["s3://bucket/secrets/other.json", "s3://other-bucket/cloudq/x", "file:///etc/passwd"]
)
def test_a_claim_check_url_outside_the_store_is_a_dead_letter(url: str) -> None:
    app = make_app()
    app.__dict__["claim_checks"] = DictObjectStore()

    outcome = execute(delivery_of(pointer(url)), app)
    assert isinstance(outcome, DeadLetter), outcome
    assert "not under this store" in outcome.reason


def test_a_claim_checked_body_inside_the_store_still_runs() -> None:
    app = make_app()
    store = DictObjectStore()
    app.__dict__["claim_checks"] = store

    @app.task(name="ok")
    def ok() -> int:
        return 1

    url = store.put("one", ok.envelope([], {}).encode())
    assert isinstance(execute(delivery_of(pointer(url)), app), Ack)


@pytest.mark.parametrize(
    "countdown", [1e12, float("inf"), float("nan"), MAX_RETRY_DELAY_SECONDS * 2]
)
def test_a_retry_countdown_out_of_range_is_a_clear_dead_letter(countdown: float) -> None:
    """Decision: dead letter, not clamp. A countdown past the longest retry delay is a bug in
    the task (or a forged policy); clamping would schedule something nobody asked for, and a
    retry thousands of years out would hop through the queue forever."""
    app = make_app()

    @app.task(name="later", bind=True)
    def later(self: Any) -> None:
        self.retry(countdown=countdown)

    outcome = execute(delivery_of(later.envelope([], {}).encode()), app)
    assert isinstance(outcome, DeadLetter), outcome
    assert "retry delay" in outcome.reason and "out of range" in outcome.reason


def test_a_retry_countdown_within_range_is_kept_exactly() -> None:
    app = make_app()

    @app.task(name="later", bind=True)
    def later(self: Any) -> None:
        self.retry(countdown=MAX_RETRY_DELAY_SECONDS)

    outcome = execute(delivery_of(later.envelope([], {}).encode()), app)
    assert isinstance(outcome, RetryAt), outcome
    assert (outcome.when - app.clock.now()).total_seconds() == MAX_RETRY_DELAY_SECONDS


@pytest.mark.parametrize(
    "policy",
    [
        {"max_retries": None, "backoff": 1, "backoff_max": 1e308},  # 2**2999: OverflowError
        {"max_retries": None, "backoff": 0, "default_delay": 1e300},
    ],
)
def test_a_backoff_out_of_range_is_a_clear_dead_letter(policy: dict[str, Any]) -> None:
    """The policy and attempt travel in the message: even a verified one can ask the absurd."""
    app = make_app()

    @app.task(name="boom", autoretry_for=(ValueError,))
    def boom() -> None:
        raise ValueError("boom")

    data = json.loads(boom.envelope([], {}).encode())
    data.update(attempt=3000, retry=policy)
    outcome = execute(delivery_of(json.dumps(data).encode()), app)
    assert isinstance(outcome, DeadLetter), outcome
    assert "retry delay" in outcome.reason


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


def test_an_exception_whose_str_raises_still_dead_letters_with_its_type() -> None:
    app = make_app()

    @app.task(name="bad")
    def bad() -> None:
        raise Unprintable

    info = error_info(Unprintable())
    assert info.type.endswith("Unprintable") and "unprintable" in info.message
    outcome = execute(delivery_of(bad.envelope([], {}).encode()), app)
    assert isinstance(outcome, DeadLetter), outcome
    assert "Unprintable" in outcome.reason


def test_an_exception_whose_str_raises_is_retried_by_policy() -> None:
    app = make_app()

    @app.task(name="bad", autoretry_for=(Unprintable,), max_retries=1)
    def bad() -> None:
        raise Unprintable

    outcome = execute(delivery_of(bad.envelope([], {}).encode()), app)
    assert isinstance(outcome, RetryAt), outcome


@pytest.mark.parametrize("field", ["eta", "expires"])
@pytest.mark.parametrize(
    "when",
    [
        "0001-01-01T00:00:00+01:00",  # before datetime.min once in UTC
        "9999-12-31T23:59:59-14:00",  # after datetime.max once in UTC
    ],
)
def test_an_eta_or_expiry_beyond_the_datetime_range_is_a_dead_letter(field: str, when: str) -> None:
    app = make_app()

    @app.task(name="ok")
    def ok() -> None: ...

    data = json.loads(ok.envelope([], {}).encode())
    data[field] = when
    outcome = execute(delivery_of(json.dumps(data).encode()), app)
    assert isinstance(outcome, DeadLetter), outcome
    assert field in outcome.reason


@pytest.mark.parametrize("field", ["eta", "expires", "created_at"])
def test_a_naive_datetime_is_read_as_utc(field: str) -> None:
    """Another producer may write etas without an offset: read as UTC (as the event stream
    does), not a TypeError comparing them with the clock's aware time."""
    app = make_app()

    @app.task(name="ok")
    def ok() -> int:
        return 1

    data = json.loads(ok.envelope([], {}).encode())
    data[field] = "2031-01-01T00:00:00"  # after the fake clock's 2030-01-01
    outcome = execute(delivery_of(json.dumps(data).encode()), app)
    if field == "eta":
        assert isinstance(outcome, Defer), outcome
        assert outcome.until.utcoffset() is not None
    else:
        assert isinstance(outcome, Ack), outcome


def test_a_far_but_representable_eta_is_deferred() -> None:
    app = make_app()

    @app.task(name="ok")
    def ok() -> None: ...

    data = json.loads(ok.envelope([], {}).encode())
    data["eta"] = "9999-12-31T00:00:00+00:00"
    assert isinstance(execute(delivery_of(json.dumps(data).encode()), app), Defer)


def test_verify_raises_only_signature_errors_even_for_an_envelope_it_cannot_canonicalize() -> None:
    """An envelope built in code (not decoded) may hold what JSON cannot: still a SignatureError."""
    app = make_app()

    @app.task(name="ok")
    def ok() -> None: ...

    envelope = ok.envelope([], {}).model_copy(
        update={"args": [object()], "sig": "hmac-sha256:" + "0" * 64}
    )
    with pytest.raises(SignatureError, match="cannot be checked"):
        verify(envelope, [KEY])
