"""``dynamodb://TABLE``: task results in a DynamoDB table, one item per task id.

Item layout (the table's only key is the string ``task_id``):

- ``state``: the record's state, kept outside the JSON so a condition expression can read it;
- ``record``: ``TaskResult.model_dump_json()``;
- ``expires_at``: epoch seconds as an integer, rounded up: DynamoDB's TTL attribute;
- ``expires_at_exact``: the same instant to the microsecond, which ``get`` judges by.

TTL deletion is lazy (AWS deletes expired items within days, not seconds), so ``get`` treats an
item whose expiry has passed by the injected clock as absent: ``expires_at`` only keeps the table
small, it never decides what a reader sees.

The table is Terraform's to create. ``?create=1`` creates it (on-demand billing, TTL on
``expires_at``) for tests and demos; without it a missing table is a clear error at the first
call, since a least-privilege role may lack DescribeTable and opening a backend must not need it.
Other options: ``?region=`` and ``?endpoint_url=``; otherwise boto3's own environment applies
(``AWS_ENDPOINT_URL_DYNAMODB`` / ``AWS_ENDPOINT_URL``, ``AWS_REGION``, the credential chain).

boto3 is imported when a backend is opened, never when ``cloudq`` is: Lambda cold starts matter.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from cloudq.adapters.urls import env_setting, redact_url, url_flag, url_options
from cloudq.clock import Clock
from cloudq.errors import BrokerError, CloudqError, ConfigurationError
from cloudq.logsafe import get_logger
from cloudq.results.base import READY_STATES, TaskResult, poll_until_ready
from cloudq_sqs.aws_errors import AWS_REGION_ENV, api_name, error_code
from cloudq_sqs.dynamodb_shared import KEY, TTL_ATTRIBUTE, DynamoDBShared

__all__ = ["DynamoDBBackend", "TableNotFoundError", "open_dynamodb_backend"]

logger = get_logger("cloudq.dynamodb")

STATE = "state"
RECORD = "record"
EXACT_EXPIRY = "expires_at_exact"

_URL_OPTIONS = frozenset({"region", "create", "endpoint_url"})
_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")
_READY = sorted(str(s) for s in READY_STATES)
# A late non-ready write (RETRY, STARTED from a duplicate delivery) must not bury a final state.
# An expired record counts as absent, so it may be replaced like a missing one.
_NOT_FINAL = (
    f"attribute_not_exists({KEY}) OR NOT (#state IN ({', '.join(f':r{i}' for i in range(3))})) "
    "OR #exact <= :now"
)
_MAX_ITEM_BYTES = 400 * 1024


class TableNotFoundError(BrokerError):
    """The DynamoDB table is missing: Terraform creates it (or ``dynamodb://TABLE?create=1``)."""


def _number(value: float) -> str:
    """A DynamoDB number: fixed notation (no exponent), microseconds kept."""
    return f"{value:.6f}"


class DynamoDBBackend(DynamoDBShared):
    """Results in DynamoDB; thread-safe like the boto3 client it holds."""

    def __init__(
        self,
        table: str,
        clock: Clock,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        create: bool = False,
        client: Any = None,
    ) -> None:
        from botocore.exceptions import (  # type: ignore[import-untyped, unused-ignore]
            BotoCoreError,
            ClientError,
        )

        if not _TABLE_NAME.fullmatch(table):
            raise ConfigurationError(
                f"{table!r} is not a valid DynamoDB table name: 3 to 255 letters, digits, "
                "'_', '-' and '.'"
            )
        self._errors: tuple[type[Exception], ...] = (BotoCoreError, ClientError)
        self.table = table
        self._clock = clock
        if client is None:
            import boto3  # type: ignore[import-untyped, unused-ignore]

            region = region or env_setting(*AWS_REGION_ENV)
            try:
                client = boto3.session.Session().client(
                    "dynamodb", region_name=region, endpoint_url=endpoint_url
                )
            except BotoCoreError as exc:
                raise ConfigurationError(
                    f"cannot create the DynamoDB client ({exc}); set AWS_REGION or "
                    "dynamodb://TABLE?region=..."
                ) from exc
        self._client = client
        if create:
            self.create_table()

    def __repr__(self) -> str:
        return f"DynamoDBBackend({self.table!r})"

    # --- errors -------------------------------------------------------------------------------
    def _error(self, operation: str, task_id: str | None, exc: Exception) -> BrokerError:
        code = error_code(exc)
        what = f" of {task_id!r}" if task_id is not None else ""
        if code == "ResourceNotFoundException":
            return TableNotFoundError(
                f"DynamoDB table {self.table!r} does not exist ({api_name(operation)}{what}): "
                "result tables are created by Terraform, or by the backend itself with "
                f"dynamodb://{self.table}?create=1 (tests and demos)"
            )
        if code == "ValidationException" and "size" in str(exc).lower():
            return BrokerError(
                f"DynamoDB {api_name(operation)}{what} on table {self.table!r} failed: the "
                f"record is over DynamoDB's {_MAX_ITEM_BYTES // 1024} KB item limit; return "
                f"a smaller result (e.g. an object-store key): {exc}"
            )
        return BrokerError(
            f"DynamoDB {api_name(operation)}{what} on table {self.table!r} failed: {exc}"
        )

    @contextmanager
    def _mapped(self, operation: str, task_id: str | None = None) -> Iterator[None]:
        """botocore errors become ``BrokerError`` naming the operation, table and task id."""
        try:
            yield
        except self._errors as exc:
            raise self._error(operation, task_id, exc) from exc

    # --- table creation -----------------------------------------------------------------------
    def create_table(self) -> None:
        """Create the table if missing (on demand, TTL on ``expires_at``); wait until active.

        Safe to race: a concurrent creator's ``ResourceInUseException`` just means "exists".
        """
        try:
            self._client.describe_table(TableName=self.table)
        except self._errors as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise self._error("describe_table", None, exc) from exc
            try:
                self._client.create_table(
                    TableName=self.table,
                    AttributeDefinitions=[{"AttributeName": KEY, "AttributeType": "S"}],
                    KeySchema=[{"AttributeName": KEY, "KeyType": "HASH"}],
                    BillingMode="PAY_PER_REQUEST",
                )
                logger.info("created DynamoDB table %r", self.table)
            except self._errors as exc2:
                if error_code(exc2) != "ResourceInUseException":
                    raise self._error("create_table", None, exc2) from exc2
        with self._mapped("describe_table"):
            waiter = self._client.get_waiter("table_exists")
            waiter.wait(TableName=self.table, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        with self._mapped("describe_time_to_live"):
            ttl = self._client.describe_time_to_live(TableName=self.table)
        status = ttl.get("TimeToLiveDescription", {}).get("TimeToLiveStatus", "DISABLED")
        if status == "DISABLED":
            with self._mapped("update_time_to_live"):
                self._client.update_time_to_live(
                    TableName=self.table,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
                )
        else:
            attribute = ttl["TimeToLiveDescription"].get("AttributeName")
            if attribute != TTL_ATTRIBUTE:
                logger.warning(
                    "DynamoDB table %r has TTL on %r, not %r: expired results are hidden but "
                    "never deleted",
                    self.table,
                    attribute,
                    TTL_ATTRIBUTE,
                )

    # --- the contract -------------------------------------------------------------------------
    def store(self, result: TaskResult, expires_seconds: float | None) -> None:
        """PutItem; a non-ready state is written only if no live final record is there.

        A duplicate delivery can finish (SUCCESS) while an older copy still reports RETRY or
        STARTED; the condition makes the late write a silent no-op instead of hiding the result.
        """
        now = self._clock.now().timestamp()
        item: dict[str, Any] = {
            KEY: {"S": result.task_id},
            STATE: {"S": str(result.state)},
            RECORD: {"S": result.model_dump_json()},
        }
        if expires_seconds is not None:
            expiry = now + expires_seconds
            item[TTL_ATTRIBUTE] = {"N": str(math.ceil(round(expiry, 6)))}
            item[EXACT_EXPIRY] = {"N": _number(expiry)}
        params: dict[str, Any] = {"TableName": self.table, "Item": item}
        if not result.ready:
            params["ConditionExpression"] = _NOT_FINAL
            params["ExpressionAttributeNames"] = {"#state": STATE, "#exact": EXACT_EXPIRY}
            params["ExpressionAttributeValues"] = {
                ":now": {"N": _number(now)},
                **{f":r{i}": {"S": state} for i, state in enumerate(_READY)},
            }
        try:
            self._client.put_item(**params)
        except self._errors as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                logger.debug(
                    "kept the final record of %s: a late %s write was ignored",
                    result.task_id,
                    result.state,
                )
                return
            raise self._error("put_item", result.task_id, exc) from exc

    def get(self, task_id: str) -> TaskResult | None:
        """A strongly consistent read; an item past its expiry is absent even if still stored."""
        with self._mapped("get_item", task_id):
            response = self._client.get_item(
                TableName=self.table, Key={KEY: {"S": task_id}}, ConsistentRead=True
            )
        item = response.get("Item")
        if not item:
            return None
        expiry = item.get(EXACT_EXPIRY, item.get(TTL_ATTRIBUTE))
        if expiry is not None and float(expiry["N"]) <= self._clock.now().timestamp():
            return None
        raw = item.get(RECORD, {}).get("S")
        try:
            if raw is None:
                raise ValueError(f"no string attribute {RECORD!r}")
            return TaskResult.model_validate_json(raw)
        except (ValidationError, ValueError) as exc:
            raise CloudqError(
                f"DynamoDB table {self.table!r}: the item of {task_id!r} is not a cloudq result "
                f"record: {exc}"
            ) from exc

    def wait(self, task_id: str, timeout: float | None) -> TaskResult | None:
        """Poll with backoff: DynamoDB has no change notification a client can block on, and
        Streams (shard iterators, a reader per shard) are far too heavy for one caller's wait."""
        return poll_until_ready(self, task_id, timeout)

    def forget(self, task_id: str) -> None:
        with self._mapped("delete_item", task_id):
            self._client.delete_item(TableName=self.table, Key={KEY: {"S": task_id}})

    def close(self) -> None:
        self._client.close()


def open_dynamodb_backend(url: str, clock: Clock) -> DynamoDBBackend:
    """The ``cloudq.backends`` entry point for ``dynamodb://TABLE?OPTIONS``.

    :param url: the table as host; options ``region``, ``create`` (1: create the table if it
        is missing, else Terraform's), ``endpoint_url`` (moto).
    :param clock: the app's clock (``cloudq.clock.FakeClock`` in tests).
    """
    parts = urlsplit(url)
    bad_host = not parts.netloc or "@" in parts.netloc
    if parts.scheme != "dynamodb" or bad_host or parts.path not in ("", "/"):
        raise ConfigurationError(
            f"expected dynamodb://TABLE[?region=..&create=1], got {redact_url(url)!r}: the table "
            "name is the host part; credentials, region and endpoint come from the AWS environment"
        )
    options = url_options(parts.query, _URL_OPTIONS, "dynamodb")
    return DynamoDBBackend(
        parts.netloc,
        clock,
        region=options.get("region") or None,
        endpoint_url=options.get("endpoint_url") or None,
        create=url_flag("create", options.get("create", "0"), url),
    )
