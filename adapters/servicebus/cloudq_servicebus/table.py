"""``azuretable://TABLE``: task results in an Azure Storage table, one entity per task id.

Entity layout: PartitionKey = the task id, RowKey = ``""``; ``state`` (kept apart from the JSON
so a reader can judge a record without parsing it), ``record`` (``TaskResult`` JSON) and
``expires_at`` (epoch seconds, exact). Azure Tables has no TTL: ``get`` treats an entity past its
expiry (by the injected clock) as absent, and a lifecycle job may delete old rows.

Writes of a non-final state (RETRY, STARTED) never bury a final one: such a write reads the
entity and replaces it only if its ETag is unchanged and it is not a live final record
(optimistic concurrency, retried on a conflict), like DynamoDB's conditional put.

The same table is the shared and control store (chords, rate slots, beat claims, worker
heartbeats and commands): see ``cloudq_servicebus.table_shared``.

The table is Terraform's to create; ``?create=1`` creates it (tests and demos). The account:
see ``cloudq_servicebus.storage``. The azure SDK is imported when the backend is opened.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from cloudq.adapters.urls import redact_url, url_flag, url_options
from cloudq.clock import Clock
from cloudq.errors import BrokerError, CloudqError, ConfigurationError
from cloudq.logsafe import get_logger
from cloudq.results.base import READY_STATES, TaskResult, poll_until_ready
from cloudq_servicebus import storage
from cloudq_servicebus.table_shared import MAX_PROPERTY_CHARS, AzureTableShared

logger = get_logger("cloudq.servicebus.table")

ROW_KEY = ""
CONDITIONAL_TRIES = 50
"""Read-check-replace rounds for a non-final write before giving up on a busy record."""
CONFLICT_PAUSE_SECONDS = 0.005
"""First (jittered) pause after losing a race on one record; grows with each try, up to 0.1 s."""
_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")
_URL_OPTIONS = frozenset({"create", "account_url"})
_READY = frozenset(str(s) for s in READY_STATES)


class TableNotFoundError(BrokerError):
    """The table is missing: Terraform creates it (or ``azuretable://TABLE?create=1``)."""


class AzureTableBackend(AzureTableShared):
    """Results in Azure Tables, and the shared and control store (``AzureTableShared``);
    thread-safe like the SDK's TableClient."""

    def __init__(
        self,
        table: str,
        clock: Clock,
        *,
        connection_string: str | None = None,
        account_url: str | None = None,
        credential: Any = None,
        create: bool = False,
    ) -> None:
        from azure.core.exceptions import AzureError
        from azure.data.tables import TableClient

        if not _TABLE_NAME.fullmatch(table):
            raise ConfigurationError(
                f"{table!r} is not a valid Azure table name: 3 to 63 letters and digits, "
                "starting with a letter"
            )
        self._errors: tuple[type[Exception], ...] = (AzureError,)
        self.table = table
        self._clock = clock
        if account_url:
            if credential is None:
                from azure.identity import DefaultAzureCredential

                credential = DefaultAzureCredential()
            self._client = TableClient(account_url, table, credential=credential)
        else:
            assert connection_string is not None
            self._client = TableClient.from_connection_string(connection_string, table)
        if create:
            self.create_table()

    def __repr__(self) -> str:
        return f"AzureTableBackend({self.table!r})"

    def _error(self, operation: str, task_id: str | None, exc: Exception) -> BrokerError:
        from azure.core.exceptions import ResourceNotFoundError

        what = f" of {task_id!r}" if task_id else ""
        if isinstance(exc, ResourceNotFoundError) and "TableNotFound" in str(exc):
            return TableNotFoundError(
                f"Azure table {self.table!r} does not exist ({operation}{what}): result tables "
                f"are created by Terraform, or by azuretable://{self.table}?create=1"
            )
        return BrokerError(
            f"Azure Tables {operation}{what} on table {self.table!r} failed: {redact_url(str(exc))}"
        )

    def create_table(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        try:
            self._client.create_table()
            logger.info("created Azure table %r", self.table)
        except ResourceExistsError:
            pass
        except self._errors as exc:
            raise self._error("create_table", None, exc) from exc

    def _entity(self, result: TaskResult, expires_seconds: float | None) -> dict[str, Any]:
        record = result.model_dump_json()
        if len(record) > MAX_PROPERTY_CHARS:
            raise BrokerError(
                f"result of {result.task_id!r} is {len(record)} characters of JSON; an Azure "
                f"table property holds {MAX_PROPERTY_CHARS}: return a smaller result (e.g. a "
                "blob name)"
            )
        entity: dict[str, Any] = {
            "PartitionKey": result.task_id,
            "RowKey": ROW_KEY,
            "state": str(result.state),
            "record": record,
        }
        if expires_seconds is not None:
            entity["expires_at"] = self._clock.now().timestamp() + expires_seconds
        return entity

    def _live_final(self, entity: Any) -> bool:
        if entity.get("state") not in _READY:
            return False
        expiry = entity.get("expires_at")
        return expiry is None or float(expiry) > self._clock.now().timestamp()

    def _read_entity(self, partition: str, row: str) -> Any:
        """The entity, or None if there is none (a missing table is an error, not "none")."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return self._client.get_entity(partition, row)
        except ResourceNotFoundError as exc:
            if "TableNotFound" in str(exc):
                raise
            return None

    def _replace_if(
        self,
        partition: str,
        row: str,
        change: Callable[[Any], dict[str, Any] | None],
        what: str,
    ) -> tuple[Any, dict[str, Any] | None]:
        """Read-check-replace under the entity's ETag, retried when another writer got in between.

        ``change`` gets the current entity (None: absent) and returns the properties to write in
        its place, or None to leave it. Returns the entity read and the one written (None: none):
        the write happened only if nothing changed since the read (optimistic concurrency).
        """
        from azure.core import MatchConditions
        from azure.core.exceptions import (
            ResourceExistsError,
            ResourceModifiedError,
            ResourceNotFoundError,
        )
        from azure.data.tables import UpdateMode

        for attempt in range(CONDITIONAL_TRIES):
            if attempt:
                time.sleep(random.uniform(0, min(0.1, CONFLICT_PAUSE_SECONDS * attempt)))
            current = self._read_entity(partition, row)
            new = change(current)
            if new is None:
                return current, None
            entity = {**new, "PartitionKey": partition, "RowKey": row}
            try:
                if current is None:
                    self._client.create_entity(entity)
                else:
                    self._client.update_entity(
                        entity,
                        mode=UpdateMode.REPLACE,
                        etag=current.metadata["etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
                return current, entity
            except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
                continue
        raise BrokerError(
            f"Azure table {self.table!r}: {what} kept changing under concurrent writers; not "
            f"written after {CONDITIONAL_TRIES} tries"
        )

    def store(self, result: TaskResult, expires_seconds: float | None) -> None:
        from azure.data.tables import UpdateMode

        entity = self._entity(result, expires_seconds)

        def unless_final(current: Any) -> dict[str, Any] | None:
            if current is None or not self._live_final(current):
                return entity
            logger.debug(
                "kept the final record of %s: a late %s write was ignored",
                result.task_id,
                result.state,
            )
            return None

        try:
            if result.ready:
                self._client.upsert_entity(entity, mode=UpdateMode.REPLACE)
            else:
                what = f"the record of {result.task_id!r} ({result.state})"
                self._replace_if(result.task_id, ROW_KEY, unless_final, what)
        except self._errors as exc:
            raise self._error("store", result.task_id, exc) from exc

    def get(self, task_id: str) -> TaskResult | None:
        try:
            entity = self._read_entity(task_id, ROW_KEY)
        except self._errors as exc:
            raise self._error("get_entity", task_id, exc) from exc
        if entity is None:
            return None
        expiry = entity.get("expires_at")
        if expiry is not None and float(expiry) <= self._clock.now().timestamp():
            return None
        try:
            return TaskResult.model_validate_json(str(entity.get("record") or ""))
        except ValidationError as exc:
            raise CloudqError(
                f"Azure table {self.table!r}: the entity of {task_id!r} is not a cloudq result "
                f"record: {exc}"
            ) from exc

    def wait(self, task_id: str, timeout: float | None) -> TaskResult | None:
        """Poll with backoff: Azure Tables has no change notification to block on."""
        return poll_until_ready(self, task_id, timeout)

    def forget(self, task_id: str) -> None:
        try:
            self._client.delete_entity(task_id, ROW_KEY)
        except self._errors as exc:
            raise self._error("delete_entity", task_id, exc) from exc

    def close(self) -> None:
        self._client.close()


def open_table_backend(url: str, clock: Clock) -> AzureTableBackend:
    """The ``cloudq.backends`` entry point for ``azuretable://TABLE[?create=1&account_url=..]``.

    :param url: the table as host; options ``create`` (1: create the table if it is missing)
        and ``account_url`` (with ``DefaultAzureCredential``; else the connection string from
        the environment).
    :param clock: the app's clock (``cloudq.clock.FakeClock`` in tests).
    """
    parts = urlsplit(url)
    bad_host = not parts.netloc or "@" in parts.netloc
    if parts.scheme != "azuretable" or bad_host or parts.path not in ("", "/"):
        raise ConfigurationError(
            f"expected azuretable://TABLE[?create=1&account_url=...], got {redact_url(url)!r}: "
            "the table name is the host part; the account comes from "
            "AZURE_STORAGE_CONNECTION_STRING or "
            "account_url"
        )
    opts = url_options(parts.query, _URL_OPTIONS, "azuretable")
    account_url = opts.get("account_url") or None
    return AzureTableBackend(
        parts.netloc,
        clock,
        connection_string=None if account_url else storage.connection_string(url),
        account_url=account_url,
        create=url_flag("create", opts.get("create", "0"), url),
    )
