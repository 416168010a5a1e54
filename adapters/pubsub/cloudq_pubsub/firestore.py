"""``firestore://PROJECT/COLLECTION``: task results in Firestore, one document per task id.

Document layout (native mode):

- ``task_id``: the id (the document id too, unless the id is not a valid document id: then
  ``sha256-<hex of the id>``);
- ``state``: the record's state, outside the JSON so a reader sees finality without parsing;
- ``record``: ``TaskResult.model_dump_json()``;
- ``expires_at``: a timestamp, absent for records that never expire. Give the collection a TTL
  policy on this field (Terraform) so old records are deleted; TTL deletion is lazy (within a day
  or so), so ``get`` treats a record past ``expires_at`` by the injected clock as absent.

A non-ready state (RETRY, STARTED) never buries a final one written by a duplicate delivery:
such writes read the document and write only if it is not final, with a precondition on the
document's update time (or on its absence), retried on conflict. Final states are plain writes.

Options: ``?database=`` (default ``(default)``). The project is the URL's host, else
``GOOGLE_CLOUD_PROJECT``; credentials are Application Default Credentials;
``FIRESTORE_EMULATOR_HOST`` selects the emulator. google-cloud-firestore is imported on open.

The same collection holds chord counters, rate slots, beat claims and worker heartbeats under
``cloudq:`` document ids (``firestore_shared``).
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import ValidationError

from cloudq.adapters.urls import redact_url, url_options
from cloudq.clock import Clock
from cloudq.errors import BrokerError, CloudqError, ConfigurationError
from cloudq.logsafe import get_logger
from cloudq.results.base import READY_STATES, TaskResult, poll_until_ready
from cloudq_pubsub.broker import default_project
from cloudq_pubsub.firestore_shared import FirestoreShared

__all__ = ["FirestoreBackend", "open_firestore_backend"]

logger = get_logger("cloudq.firestore")

DEFAULT_COLLECTION = "cloudq-results"
TASK_ID = "task_id"
STATE = "state"
RECORD = "record"
TTL_FIELD = "expires_at"
MAX_DOCUMENT_BYTES = 1_048_576
"""Firestore's document size limit (1 MiB): results bigger than that belong in object storage."""
MAX_DOCUMENT_ID_BYTES = 1_500
CONFLICT_TRIES = 50
"""Attempts of a conditional (non-ready) write against concurrent writers of the same id."""
CONFLICT_BACKOFF_SECONDS = 0.005
"""Largest first pause between conflicting attempts (jittered, grows linearly)."""

_URL_OPTIONS = frozenset({"database"})
_COLLECTION_ID = re.compile(r"[^/]{1,1500}")
_READY = frozenset(str(s) for s in READY_STATES)


def document_id(task_id: str) -> str:
    """The task id where Firestore accepts it as a document id, else a digest of it.

    Firestore refuses ``/``, ``.``, ``..``, ``__name__``-like ids and ids over 1500 bytes.
    """
    if (
        task_id
        and "/" not in task_id
        and task_id not in (".", "..")
        and not (task_id.startswith("__") and task_id.endswith("__"))
        and len(task_id.encode()) <= MAX_DOCUMENT_ID_BYTES
    ):
        return task_id
    return "sha256-" + hashlib.sha256(task_id.encode()).hexdigest()


class FirestoreBackend(FirestoreShared):
    """Results in one Firestore collection; thread-safe like the client it holds. Also the shared
    and control store (chords, rate slots, beat claims, heartbeats): see ``firestore_shared``."""

    def __init__(
        self,
        project: str,
        collection: str,
        clock: Clock,
        *,
        database: str | None = None,
        client: Any = None,
    ) -> None:
        from google.api_core import exceptions as gexc

        if not _COLLECTION_ID.fullmatch(collection) or collection in (".", ".."):
            raise ConfigurationError(f"{collection!r} is not a valid Firestore collection id")
        self._gexc = gexc
        self._errors: tuple[type[Exception], ...] = (gexc.GoogleAPIError,)
        self.project = project
        self.collection = collection
        self._clock = clock
        if client is None:
            from google.auth.exceptions import DefaultCredentialsError
            from google.cloud import firestore

            try:
                client = firestore.Client(project=project, database=database)
            except DefaultCredentialsError as exc:
                raise ConfigurationError(
                    f"no Google credentials for Firestore ({exc}): set up Application Default "
                    "Credentials, or FIRESTORE_EMULATOR_HOST for the emulator"
                ) from exc
        self._client = client
        self._collection = client.collection(collection)

    def __repr__(self) -> str:
        return f"FirestoreBackend({self.project!r}, {self.collection!r})"

    # --- errors -------------------------------------------------------------------------------
    @contextmanager
    def _mapped(self, operation: str, task_id: str) -> Iterator[None]:
        """google errors become ``BrokerError`` naming the operation, collection and task id."""
        try:
            yield
        except self._errors as exc:
            hint = ""
            if isinstance(exc, self._gexc.InvalidArgument) and "size" in str(exc).lower():
                hint = (
                    f": the record is over Firestore's {MAX_DOCUMENT_BYTES // 1024} KiB document "
                    "limit; return a smaller result (e.g. an object-store key)"
                )
            raise BrokerError(
                f"Firestore {operation} of {task_id!r} in collection {self.collection!r} "
                f"(project {self.project!r}) failed{hint}: {exc}"
            ) from exc

    def _document(self, task_id: str) -> Any:
        return self._collection.document(document_id(task_id))

    def _expired(self, data: dict[str, Any]) -> bool:
        expiry = data.get(TTL_FIELD)
        return expiry is not None and expiry <= self._clock.now()

    # --- the contract -------------------------------------------------------------------------
    def store(self, result: TaskResult, expires_seconds: float | None) -> None:
        """Write the record; a non-ready one only where no live final record is (see above)."""
        data: dict[str, Any] = {
            TASK_ID: result.task_id,
            STATE: str(result.state),
            RECORD: result.model_dump_json(),
        }
        if expires_seconds is not None:
            data[TTL_FIELD] = self._clock.now() + timedelta(seconds=expires_seconds)
        ref = self._document(result.task_id)
        if result.ready:
            with self._mapped("set", result.task_id):
                ref.set(data)
            return
        self._store_unless_final(ref, result, data)

    def _store_unless_final(self, ref: Any, result: TaskResult, data: dict[str, Any]) -> None:
        from google.cloud import firestore

        if TTL_FIELD not in data:
            data = {**data, TTL_FIELD: firestore.DELETE_FIELD}
        conflicts = (self._gexc.FailedPrecondition, self._gexc.AlreadyExists, self._gexc.Aborted)
        for attempt in range(1, CONFLICT_TRIES + 1):
            with self._mapped("get", result.task_id):
                snapshot = ref.get()
            try:
                with self._mapped("write", result.task_id):
                    if not snapshot.exists:
                        created = {k: v for k, v in data.items() if v is not firestore.DELETE_FIELD}
                        ref.create(created)
                        return
                    current = snapshot.to_dict() or {}
                    if current.get(STATE) in _READY and not self._expired(current):
                        logger.debug(
                            "kept the final record of %s: a late %s write was ignored",
                            result.task_id,
                            result.state,
                        )
                        return
                    option = self._client.write_option(last_update_time=snapshot.update_time)
                    ref.update(data, option=option)
                    return
            except BrokerError as exc:
                if not isinstance(exc.__cause__, conflicts):
                    raise
            time.sleep(random.uniform(0, CONFLICT_BACKOFF_SECONDS * attempt))
        raise BrokerError(
            f"Firestore write of {result.task_id!r} in collection {self.collection!r}: still "
            f"conflicting with other writers after {CONFLICT_TRIES} attempts"
        )

    def get(self, task_id: str) -> TaskResult | None:
        """A strongly consistent read; a record past its expiry is absent even if still stored."""
        with self._mapped("get", task_id):
            snapshot = self._document(task_id).get()
        if not snapshot.exists:
            return None
        data = snapshot.to_dict() or {}
        if self._expired(data):
            return None
        raw = data.get(RECORD)
        try:
            if not isinstance(raw, str):
                raise ValueError(f"no string field {RECORD!r}")
            return TaskResult.model_validate_json(raw)
        except (ValidationError, ValueError) as exc:
            raise CloudqError(
                f"Firestore collection {self.collection!r}: the document of {task_id!r} is not a "
                f"cloudq result record: {exc}"
            ) from exc

    def wait(self, task_id: str, timeout: float | None) -> TaskResult | None:
        """Poll with backoff: a snapshot listener would hold a stream and threads per waiter."""
        return poll_until_ready(self, task_id, timeout)

    def forget(self, task_id: str) -> None:
        """Delete the document (deleting a missing one is no error in Firestore)."""
        with self._mapped("delete", task_id):
            self._document(task_id).delete()

    def close(self) -> None:
        self._client.close()


def open_firestore_backend(url: str, clock: Clock) -> FirestoreBackend:
    """The ``cloudq.backends`` entry point for ``firestore://PROJECT/COLLECTION?database=..``.

    :param url: the project as host, the collection as path; option ``database`` (default the
        project's default database).
    :param clock: the app's clock (``cloudq.clock.FakeClock`` in tests).
    """
    parts = urlsplit(url)
    if parts.scheme != "firestore" or parts.username or parts.password:
        raise ConfigurationError(
            f"expected firestore://PROJECT/COLLECTION[?database=..], got {redact_url(url)!r}; "
            "credentials come from Application Default Credentials"
        )
    options = url_options(parts.query, _URL_OPTIONS, "firestore")
    project = parts.netloc or default_project()
    if not project:
        raise ConfigurationError(
            f"{redact_url(url)!r} names no project: use firestore://PROJECT/COLLECTION or set "
            "GOOGLE_CLOUD_PROJECT"
        )
    collection = unquote(parts.path.strip("/")) or DEFAULT_COLLECTION
    if "/" in collection:
        raise ConfigurationError(
            f"{redact_url(url)!r}: the path is one collection id, not {collection!r} "
            "(subcollections are not supported)"
        )
    return FirestoreBackend(project, collection, clock, database=options.get("database") or None)
