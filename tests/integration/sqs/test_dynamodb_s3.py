"""DynamoDB results and S3 claim checks against a real moto server, beyond the contract suites.

Conditional writes (a late non-ready state never buries a final one), expiry judged on read
(DynamoDB's TTL deletes lazily), clear errors for missing tables, buckets and objects, and one
end-to-end claim check: a 2 MB argument through SQS + S3 + DynamoDB.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from cloudq import App
from cloudq.clock import FakeClock, SystemClock
from cloudq.errors import BrokerError, CloudqError, ConfigurationError
from cloudq.results.base import ErrorInfo, State, TaskResult
from cloudq.testing import process_one, wait_for
from cloudq_sqs.dynamodb import (
    EXACT_EXPIRY,
    TTL_ATTRIBUTE,
    DynamoDBBackend,
    TableNotFoundError,
    open_dynamodb_backend,
)
from cloudq_sqs.s3 import BucketNotFoundError, ClaimCheckMissing, S3ClaimCheckStore, open_s3_store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ERROR = ErrorInfo(type="builtins.ValueError", message="flaky")


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:12]}"


def record(task_id: str, state: State, **fields: Any) -> TaskResult:
    return TaskResult(task_id=task_id, state=state, task="t.work", **fields)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def table(sqs_env: str) -> str:
    return unique("cq-results")


@pytest.fixture
def backend(table: str, clock: FakeClock) -> Iterator[DynamoDBBackend]:
    made = open_dynamodb_backend(f"dynamodb://{table}?create=1", clock)
    yield made
    made.close()


@pytest.fixture
def aws(sqs_env: str) -> Any:
    """Plain boto3 clients on the same moto, to look behind the adapters' backs."""
    import boto3  # type: ignore[import-untyped, unused-ignore]

    class Clients:
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        s3 = boto3.client("s3", region_name="us-east-1")

    return Clients


@pytest.fixture
def store(sqs_env: str) -> Iterator[S3ClaimCheckStore]:
    made = open_s3_store(f"s3://{unique('cq-bucket')}/parked/?create=1")
    yield made
    made.close()


# --- DynamoDB: conditional writes ---------------------------------------------------------------


@pytest.mark.parametrize("final", [State.SUCCESS, State.FAILURE, State.REVOKED])
@pytest.mark.parametrize("late", [State.RETRY, State.STARTED, State.PENDING])
def test_late_non_ready_write_never_replaces_a_final_state(
    backend: DynamoDBBackend, final: State, late: State
) -> None:
    task_id = unique("task")
    done = record(task_id, final, result={"ok": 1}, attempt=2)
    backend.store(done, 60)
    backend.store(record(task_id, late, error=ERROR, attempt=1), 60)  # silent no-op
    assert backend.get(task_id) == done


def test_final_state_may_replace_a_final_state(backend: DynamoDBBackend) -> None:
    task_id = unique("task")
    backend.store(record(task_id, State.FAILURE, error=ERROR), None)
    success = record(task_id, State.SUCCESS, result=3, attempt=2)
    backend.store(success, None)
    assert backend.get(task_id) == success


def test_expired_final_record_counts_as_absent_for_writes(
    backend: DynamoDBBackend, clock: FakeClock
) -> None:
    task_id = unique("task")
    backend.store(record(task_id, State.SUCCESS, result=1), 10)
    clock.advance(11)
    started = record(task_id, State.STARTED)
    backend.store(started, 10)
    assert backend.get(task_id) == started


# --- DynamoDB: expiry ---------------------------------------------------------------------------


def test_expired_item_still_in_the_table_reads_as_absent(
    backend: DynamoDBBackend, clock: FakeClock, aws: Any, table: str
) -> None:
    task_id = unique("task")
    done = record(task_id, State.SUCCESS, result="x")
    backend.store(done, 0.3)
    item = aws.dynamodb.get_item(TableName=table, Key={"task_id": {"S": task_id}})["Item"]
    stored_at = clock.now().timestamp()
    assert item[TTL_ATTRIBUTE]["N"] == str(math.ceil(stored_at + 0.3)), "TTL: int, rounded up"
    assert float(item[EXACT_EXPIRY]["N"]) == pytest.approx(stored_at + 0.3)
    assert backend.get(task_id) == done
    clock.advance(0.31)
    assert backend.get(task_id) is None
    # DynamoDB (and moto) still hold the item: TTL deletion is lazy, the read hides it.
    assert "Item" in aws.dynamodb.get_item(TableName=table, Key={"task_id": {"S": task_id}})


def test_record_without_expiry_has_no_ttl_attribute(
    backend: DynamoDBBackend, aws: Any, table: str
) -> None:
    task_id = unique("task")
    backend.store(record(task_id, State.SUCCESS), None)
    item = aws.dynamodb.get_item(TableName=table, Key={"task_id": {"S": task_id}})["Item"]
    assert TTL_ATTRIBUTE not in item
    assert EXACT_EXPIRY not in item


def test_create_makes_an_on_demand_table_with_ttl(
    backend: DynamoDBBackend, aws: Any, table: str
) -> None:
    described = aws.dynamodb.describe_table(TableName=table)["Table"]
    assert described["KeySchema"] == [{"AttributeName": "task_id", "KeyType": "HASH"}]
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = aws.dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] in ("ENABLED", "ENABLING")
    assert ttl["AttributeName"] == TTL_ATTRIBUTE
    # Opening again with create=1 finds the table and leaves it be.
    open_dynamodb_backend(f"dynamodb://{table}?create=1", SystemClock()).close()


# --- DynamoDB: errors ---------------------------------------------------------------------------


def test_missing_table_is_a_clear_error(sqs_env: str) -> None:
    name = unique("cq-missing")
    backend = open_dynamodb_backend(f"dynamodb://{name}", SystemClock())  # opening makes no call
    calls = [
        lambda: backend.get("t1"),
        lambda: backend.store(record("t1", State.SUCCESS), None),
        lambda: backend.store(record("t1", State.RETRY), None),
        lambda: backend.forget("t1"),
    ]
    for call in calls:
        with pytest.raises(TableNotFoundError) as info:
            call()
        message = str(info.value)
        assert name in message
        assert "Terraform" in message
        assert "?create=1" in message
    backend.close()


@pytest.mark.parametrize(
    "url",
    [
        "dynamodb://",
        "dynamodb://tbl/extra",
        "dynamodb://ok-table?colour=blue",
        "dynamodb://ok-table?create=maybe",
        "dynamodb://a",  # too short for DynamoDB
    ],
)
def test_bad_urls_are_configuration_errors(sqs_env: str, url: str) -> None:
    with pytest.raises(ConfigurationError):
        open_dynamodb_backend(url, SystemClock())


def test_foreign_item_is_a_clear_error(backend: DynamoDBBackend, aws: Any, table: str) -> None:
    aws.dynamodb.put_item(
        TableName=table, Item={"task_id": {"S": "foreign"}, "record": {"S": "not json"}}
    )
    with pytest.raises(CloudqError, match="not a cloudq result record"):
        backend.get("foreign")


# --- S3 claim checks ----------------------------------------------------------------------------


def test_s3_round_trip(store: S3ClaimCheckStore, aws: Any) -> None:
    body = bytes(range(256)) * 40  # binary, not UTF-8
    url = store.put("task-1-1-abcd", body)
    assert url == f"s3://{store.bucket}/parked/task-1-1-abcd"
    assert store.get(url) == body
    listed = aws.s3.list_objects_v2(Bucket=store.bucket, Prefix="parked/")
    assert [o["Key"] for o in listed["Contents"]] == ["parked/task-1-1-abcd"]
    store.delete(url)
    assert aws.s3.list_objects_v2(Bucket=store.bucket, Prefix="parked/")["KeyCount"] == 0
    store.delete(url)  # idempotent


def test_s3_get_of_a_deleted_object_is_a_clear_error(store: S3ClaimCheckStore) -> None:
    url = store.put("gone", b"{}")
    store.delete(url)
    with pytest.raises(ClaimCheckMissing) as info:
        store.get(url)
    assert url in str(info.value)
    assert isinstance(info.value, CloudqError)
    assert isinstance(info.value, KeyError)  # like the memory store's


@pytest.mark.parametrize(
    "url",
    ["s3://other-bucket/parked/x", "s3://{bucket}/elsewhere/x", "s3://{bucket}/parked", "gs://x/y"],
)
def test_s3_refuses_urls_outside_the_store(store: S3ClaimCheckStore, url: str) -> None:
    url = url.format(bucket=store.bucket)
    with pytest.raises(CloudqError, match="not under this store"):
        store.get(url)
    with pytest.raises(CloudqError, match="not under this store"):
        store.delete(url)


def test_s3_missing_bucket_is_a_clear_error(sqs_env: str) -> None:
    bucket = unique("cq-nobucket")
    store = open_s3_store(f"s3://{bucket}/p")
    with pytest.raises(BucketNotFoundError, match=r"Terraform.*\?create=1") as info:
        store.put("k", b"body")
    assert bucket in str(info.value)
    with pytest.raises(BrokerError):
        store.get(f"s3://{bucket}/p/k")


@pytest.mark.parametrize("url", ["s3://", "s3://Bad_Bucket/p", "s3://ok-bucket/p?colour=red"])
def test_s3_bad_urls_are_configuration_errors(sqs_env: str, url: str) -> None:
    with pytest.raises(ConfigurationError):
        open_s3_store(url)


# --- end to end ---------------------------------------------------------------------------------


def test_claim_check_end_to_end(sqs_env: str, aws: Any) -> None:
    """A 2 MB argument (over SQS's limit) rides S3; the result lands in DynamoDB; the object
    is deleted after the ack."""
    bucket = unique("cq-e2e")
    app = App(
        "t",
        broker=f"sqs://?prefix={unique('t')}-",
        backend=f"dynamodb://{unique('cq-e2e')}?create=1",
        claim_check_url=f"s3://{bucket}/cq?create=1",
    )

    @app.task(name="t.measure")
    def measure(text: str) -> dict[str, Any]:
        return {"length": len(text), "head": text[:3], "tail": text[-3:]}

    text = "abc" + "x" * (2 * 1024 * 1024) + "xyz"
    try:
        handle = measure.delay(text)
        parked = aws.s3.list_objects_v2(Bucket=bucket, Prefix="cq/")
        assert parked["KeyCount"] == 1, "the body was not parked in S3"
        assert parked["Contents"][0]["Size"] > len(text)

        wait_for(lambda: process_one(app) is not None, timeout=10, message="message processed")
        assert handle.get(timeout=10) == {"length": len(text), "head": "abc", "tail": "xyz"}
        assert app.backend is not None
        done = app.backend.get(handle.id)
        assert done is not None
        assert done.state == State.SUCCESS
        assert done.date_done is None or done.date_done <= datetime.now(UTC)
        assert aws.s3.list_objects_v2(Bucket=bucket, Prefix="cq/")["KeyCount"] == 0
    finally:
        app.close()
