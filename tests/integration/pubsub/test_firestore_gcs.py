"""Firestore results and Cloud Storage claim checks on their emulators, beyond the contract
suites: a late non-ready write never buries a final one, expiry judged on read, ids Firestore
refuses, clear errors; and one end-to-end claim check: an 11 MiB argument through Pub/Sub + GCS
+ Firestore."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from cloudq import App
from cloudq.clock import FakeClock
from cloudq.errors import ClaimCheckMissing, CloudqError, ConfigurationError, MessageTooLarge
from cloudq.results.base import ErrorInfo, State, TaskResult
from cloudq.testing import start_worker
from cloudq_pubsub import limits as lim
from cloudq_pubsub.firestore import (
    DEFAULT_COLLECTION,
    TTL_FIELD,
    FirestoreBackend,
    document_id,
    open_firestore_backend,
)
from cloudq_pubsub.gcs import BucketNotFoundError, GCSClaimCheckStore, open_gcs_store
from tests.fixtures.pubsub_emulator import GCP_PROJECT, unique_prefix

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ERROR = ErrorInfo(type="builtins.ValueError", message="flaky")


def record(task_id: str, state: State, **fields: Any) -> TaskResult:
    return TaskResult(task_id=task_id, state=state, task="t.work", **fields)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def backend(firestore_env: str, clock: FakeClock) -> Iterator[FirestoreBackend]:
    made = open_firestore_backend(f"firestore://{GCP_PROJECT}/r-{uuid.uuid4().hex[:10]}", clock)
    yield made
    made.close()


@pytest.fixture
def store(gcs_env: str) -> Iterator[GCSClaimCheckStore]:
    made = open_gcs_store(f"gs://cq-{uuid.uuid4().hex[:12]}/parked/?create=1")
    yield made
    made.close()


# --- Firestore ------------------------------------------------------------------------------
def test_a_late_non_ready_write_never_buries_a_final_record(backend: FirestoreBackend) -> None:
    task_id = f"task-{uuid.uuid4()}"
    backend.store(record(task_id, State.STARTED), None)
    backend.store(record(task_id, State.SUCCESS, result=42, attempt=2), 60)
    backend.store(record(task_id, State.RETRY, error=ERROR), None)  # a duplicate's late write
    backend.store(record(task_id, State.STARTED), None)
    got = backend.get(task_id)
    assert got is not None and (got.state, got.result) == (State.SUCCESS, 42)
    backend.store(record(task_id, State.FAILURE, error=ERROR), None)  # final over final: written
    got = backend.get(task_id)
    assert got is not None and got.state == State.FAILURE


def test_an_expired_final_record_is_absent_and_may_be_replaced(
    backend: FirestoreBackend, clock: FakeClock
) -> None:
    task_id = f"task-{uuid.uuid4()}"
    backend.store(record(task_id, State.SUCCESS, result="old"), 10)
    doc = backend._collection.document(task_id).get().to_dict()
    assert doc[TTL_FIELD] == clock.now() + timedelta(seconds=10), "the TTL policy's field"
    clock.advance(10)
    assert backend.get(task_id) is None, "past expires_at though TTL has not deleted it"
    backend.store(record(task_id, State.RETRY, error=ERROR), None)
    got = backend.get(task_id)
    assert got is not None and got.state == State.RETRY
    assert TTL_FIELD not in backend._collection.document(task_id).get().to_dict()


@pytest.mark.parametrize("task_id", ["a/b/c", "__name__", "..", "x" * 2000])
def test_ids_firestore_refuses_are_stored_under_a_digest(
    backend: FirestoreBackend, task_id: str
) -> None:
    assert document_id(task_id).startswith("sha256-")
    backend.store(record(task_id, State.SUCCESS, result=[task_id[:5]]), None)
    got = backend.get(task_id)
    assert got is not None and got.task_id == task_id
    backend.forget(task_id)
    assert backend.get(task_id) is None


def test_a_foreign_document_is_a_clear_error(backend: FirestoreBackend) -> None:
    backend._collection.document("not-ours").set({"hello": "world"})
    with pytest.raises(CloudqError, match="not a cloudq result record"):
        backend.get("not-ours")


def test_firestore_urls(firestore_env: str, clock: FakeClock) -> None:
    default = open_firestore_backend("firestore://", clock)
    assert (default.project, default.collection) == (GCP_PROJECT, DEFAULT_COLLECTION)
    default.close()
    for bad, match in [
        ("firestore://p/c?ttl=1", "does not know"),
        ("firestore://p/a/b", "one collection id"),
        ("firestore://u:pw@p/c", "Application Default Credentials"),
    ]:
        with pytest.raises(ConfigurationError, match=match):
            open_firestore_backend(bad, clock)


# --- Cloud Storage --------------------------------------------------------------------------
def test_gcs_put_get_delete_and_refusals(store: GCSClaimCheckStore) -> None:
    body = bytes(range(256)) * 1000
    url = store.put("task-1", body)
    assert url == f"{store.base_url}/task-1"
    assert store.get(url) == body
    store.delete(url)
    store.delete(url)  # idempotent
    with pytest.raises(ClaimCheckMissing, match="is gone"):
        store.get(url)
    for forged in (f"gs://{store.bucket}/other/x", "gs://someone-else/parked/x", "s3://b/k"):
        with pytest.raises(CloudqError, match="not under this store"):
            store.get(forged)
        with pytest.raises(CloudqError, match="not under this store"):
            store.delete(forged)


def test_gcs_missing_bucket_and_urls(gcs_env: str) -> None:
    missing = open_gcs_store(f"gs://cq-missing-{uuid.uuid4().hex[:8]}/p")
    with pytest.raises(BucketNotFoundError, match=r"\?create=1"):
        missing.put("k", b"x")
    missing.close()
    for bad, match in [
        ("gs:///p", "expected gs://BUCKET"),
        ("gs://b/p?region=x", "does not know"),
        ("gs://Bad_Bucket/p", "not a valid Cloud Storage bucket"),
    ]:
        with pytest.raises(ConfigurationError, match=match):
            open_gcs_store(bad)


# --- end to end: a payload over Pub/Sub's limit ------------------------------------------------
def test_an_11_mib_argument_travels_through_gcs(
    pubsub_env: str, firestore_env: str, store: GCSClaimCheckStore
) -> None:
    prefix = unique_prefix("cc")
    broker = f"pubsub://{GCP_PROJECT}?prefix={prefix}"
    backend = f"firestore://{GCP_PROJECT}/r-{prefix.rstrip('-')}"
    app = App("cc", broker=broker, backend=backend, claim_check_url=store.base_url)
    bare = App("cc", broker=broker)
    try:

        @app.task(name="size")
        def size(blob: str) -> int:
            return len(blob)

        @bare.task(name="size")
        def size_without_store(blob: str) -> int:
            return len(blob)

        payload = "x" * (lim.MAX_MESSAGE_BYTES + 1024 * 1024)
        with pytest.raises(MessageTooLarge, match="claim_check_url"):
            size_without_store.delay(payload)

        result = size.delay(payload)
        with start_worker(app, ["default"], concurrency=1, poll_seconds=0.5):
            assert result.get(timeout=30) == len(payload)
        parked = store._client.list_blobs(store.bucket, prefix=store.prefix + "/")
        assert list(parked) == [], "the parked body is deleted after the final ack"
    finally:
        app.close()
        bare.close()
