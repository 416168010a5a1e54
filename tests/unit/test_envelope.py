"""The envelope on the wire: round trip, versions, signatures, and garbage in."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudq.clock import FakeClock
from cloudq.envelope import ENVELOPE_VERSION, Envelope, decode, sign, verify
from cloudq.errors import EnvelopeError, SignatureError


def make(**over: object) -> Envelope:
    data: dict[str, object] = {
        "v": ENVELOPE_VERSION,
        "id": "t1",
        "task": "shop.send",
        "args": [1, "a"],
        "kwargs": {"k": [1, None]},
        "queue": "default",
        "created_at": FakeClock().now(),
    }
    data.update(over)
    return Envelope.model_validate(data)


def test_round_trip_is_lossless() -> None:
    env = make(headers={"traceparent": "00-abc"}, attempt=3)
    assert decode(env.encode()) == env
    assert json.loads(env.encode())["v"] == ENVELOPE_VERSION


def test_other_version_is_named_in_the_error() -> None:
    body = json.dumps({**json.loads(make().encode()), "v": 99}).encode()
    with pytest.raises(EnvelopeError, match="unsupported envelope version 99"):
        decode(body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"[1,2]", "not an object"),
        (b'{"v": 1, "id": "x"}', "malformed envelope"),
        (b"", "not JSON"),
    ],
)
def test_malformed_bodies_raise_one_error_type(body: bytes, message: str) -> None:
    with pytest.raises(EnvelopeError, match=message):
        decode(body)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=512))
def test_decoder_takes_any_bytes(data: bytes) -> None:
    try:
        env = decode(data)
    except EnvelopeError:
        return
    assert isinstance(env, Envelope)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_decoder_takes_any_json_object(obj: dict[str, object]) -> None:
    with contextlib.suppress(EnvelopeError):
        decode(json.dumps(obj).encode())


@settings(max_examples=100, deadline=None)
@given(st.lists(json_values, max_size=4))
def test_signature_survives_the_wire_and_catches_changes(args: list[object]) -> None:
    env = sign(make(args=args), ["secret"])
    wire = decode(env.encode())
    verify(wire, ["secret"])
    with pytest.raises(SignatureError):
        verify(wire.model_copy(update={"args": [*args, "x"]}), ["secret"])
    with pytest.raises(SignatureError):
        verify(wire, ["other-key"])


def test_unsigned_is_refused_only_when_keys_are_set() -> None:
    verify(make(), [])
    with pytest.raises(SignatureError, match="unsigned"):
        verify(make(), ["k"])
