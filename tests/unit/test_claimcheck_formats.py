"""Claim-check pointers: cloudq's and the SQS Extended Client's, both read whatever is sent."""

from __future__ import annotations

import json
import uuid

import pytest

from cloudq import App
from cloudq.claimcheck import (
    EXTENDED_POINTER_CLASS,
    EXTENDED_SIZE_ATTRIBUTE,
    LEGACY_EXTENDED_POINTER_CLASS,
    check_format,
    pointer_message,
    pointer_url,
)
from cloudq.errors import ConfigurationError


def test_extended_pointer_is_the_libraries_format() -> None:
    body, attributes = pointer_message("s3://bkt/cloudq/k1", 300_000, "sqs-extended")
    assert json.loads(body) == [
        EXTENDED_POINTER_CLASS,
        {"s3BucketName": "bkt", "s3Key": "cloudq/k1"},
    ]
    assert attributes[EXTENDED_SIZE_ATTRIBUTE] == "300000"
    assert pointer_url(body) == "s3://bkt/cloudq/k1"


@pytest.mark.parametrize("cls", [EXTENDED_POINTER_CLASS, LEGACY_EXTENDED_POINTER_CLASS])
def test_both_extended_pointer_classes_are_read(cls: str) -> None:
    body = json.dumps([cls, {"s3BucketName": "b", "s3Key": "uuid-1"}]).encode()
    assert pointer_url(body) == "s3://b/uuid-1"


@pytest.mark.parametrize(
    "body",
    [
        b'["software.amazon.payloadoffloading.PayloadS3Pointer"]',
        b'["software.amazon.payloadoffloading.PayloadS3Pointer", {"s3BucketName": 1}]',
        b'["other.S3Pointer", {"s3BucketName": "b", "s3Key": "k"}]',
        b'["com.amazon.sqs.javamessaging.MessageS3Pointer", {"s3BucketName": "", "s3Key": "k"}]',
        b'["software.amazon.payloadoffloading.PayloadS3Pointer", ' + b"[" * 10_000,
        b'{"v": 1, "task": "PayloadS3Pointer"}',
    ],
)
def test_what_is_not_a_pointer_is_none_never_an_error(body: bytes) -> None:
    assert pointer_url(body) is None


def test_cloudq_pointer_unchanged() -> None:
    body, attributes = pointer_message("gs://b/p/k", 10)
    assert pointer_url(body) == "gs://b/p/k" and attributes == {"cloudq-claim-check": "gs://b/p/k"}


def test_extended_format_needs_s3() -> None:
    with pytest.raises(ConfigurationError, match="S3's format"):
        check_format("gs://b/p", "sqs-extended")
    with pytest.raises(ConfigurationError, match="claim_check_format 'zip'"):
        check_format("s3://b", "zip")


def test_a_misconfigured_format_parks_nothing() -> None:
    name = uuid.uuid4().hex
    app = App(
        "c",
        broker=f"memory://{name}?max_message_bytes=1000",
        claim_check_url=f"memory://{name}",
        claim_check_format="sqs-extended",
    )
    app.task(name="big")(lambda blob: None)
    with pytest.raises(ConfigurationError, match="S3's format"):
        app.tasks["big"].delay("x" * 5000)
    store = app.claim_checks
    assert store is not None and not store.objects  # type: ignore[attr-defined]
