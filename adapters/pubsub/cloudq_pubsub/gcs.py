"""``gs://BUCKET/PREFIX``: claim checks in Cloud Storage, for task messages over Pub/Sub's 10 MiB.

``put`` writes the body to ``PREFIX/KEY`` and returns ``gs://BUCKET/PREFIX/KEY``; the core sends
that URL on the queue instead of the body and ``delete``s the object after the final ack. Give
the bucket a lifecycle rule (Terraform) that deletes leftovers, e.g. bodies of dead letters.

``get`` and ``delete`` refuse URLs outside the store (``ObjectStoreClaimChecks``).

The bucket is Terraform's to create; ``?create=1`` creates it (tests and demos). ``?project=``
names the project for that, else ``GOOGLE_CLOUD_PROJECT``. Credentials are Application Default
Credentials; ``STORAGE_EMULATOR_HOST`` selects an emulator. google-cloud-storage is imported on
open only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from cloudq.adapters.urls import redact_url, url_flag, url_options
from cloudq.claimcheck import ObjectStoreClaimChecks
from cloudq.errors import BrokerError, ClaimCheckMissing, ConfigurationError
from cloudq.logsafe import get_logger
from cloudq_pubsub.broker import default_project

__all__ = ["BucketNotFoundError", "ClaimCheckMissing", "GCSClaimCheckStore", "open_gcs_store"]

logger = get_logger("cloudq.gcs")

_URL_OPTIONS = frozenset({"create", "project"})
# Bucket names: 3-63 characters (222 with dots), lowercase letters, digits, '-', '_' and '.'.
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")

T = TypeVar("T")


class BucketNotFoundError(BrokerError):
    """The bucket is missing: Terraform creates it (or ``gs://BUCKET/PREFIX?create=1``)."""


class GCSClaimCheckStore(ObjectStoreClaimChecks):
    """One Cloud Storage client; thread-safe like it."""

    scheme = "gs"

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        project: str | None = None,
        create: bool = False,
        client: Any = None,
    ) -> None:
        from google.api_core import exceptions as gexc

        if not _BUCKET_NAME.fullmatch(bucket):
            raise ConfigurationError(
                f"{bucket!r} is not a valid Cloud Storage bucket name: lowercase letters, "
                "digits, '-', '_' and '.', 3 to 63 characters"
            )
        super().__init__(bucket, prefix)
        self._gexc = gexc
        self._errors: tuple[type[Exception], ...] = (gexc.GoogleAPIError,)
        self.project = project or default_project()
        if client is None:
            from google.auth.exceptions import DefaultCredentialsError
            from google.cloud import storage  # type: ignore[attr-defined, unused-ignore]

            try:
                client = storage.Client(project=self.project)
            except DefaultCredentialsError as exc:
                raise ConfigurationError(
                    f"no Google credentials for Cloud Storage ({exc}): set up Application "
                    "Default Credentials, or STORAGE_EMULATOR_HOST for an emulator"
                ) from exc
        self._client = client
        self._objects = client.bucket(bucket)
        if create:
            self.create_bucket()

    def _call(self, operation: str, url: str, fn: Callable[..., T], *args: Any) -> T:
        """One storage call; google errors become ``BrokerError`` naming operation and object."""
        try:
            return fn(*args)
        except self._gexc.NotFound as exc:
            if operation == "upload":  # an upload finds no object to miss: the bucket is gone
                raise BucketNotFoundError(
                    f"Cloud Storage bucket {self.bucket!r} does not exist ({operation} of "
                    f"{url}): claim-check buckets are created by Terraform, or by the store "
                    f"itself with {self.base_url}?create=1 (tests and demos)"
                ) from exc
            raise BrokerError(f"Cloud Storage {operation} of {url} failed: {exc}") from exc
        except self._errors as exc:
            raise BrokerError(f"Cloud Storage {operation} of {url} failed: {exc}") from exc

    def create_bucket(self) -> None:
        """Create the bucket if missing; one that exists (ours) is fine."""
        try:
            self._client.create_bucket(self.bucket, project=self.project)
            logger.info("created Cloud Storage bucket %r", self.bucket)
        except self._gexc.Conflict:
            pass
        except self._errors as exc:
            raise BrokerError(
                f"Cloud Storage create_bucket of gs://{self.bucket} failed: {exc}"
            ) from exc

    # --- the object calls ----------------------------------------------------------------------
    def _upload(self, name: str, body: bytes, url: str) -> None:
        blob = self._objects.blob(name)
        self._call("upload", url, blob.upload_from_string, body, "application/octet-stream")

    def _download(self, name: str, url: str) -> bytes | None:
        try:
            data: bytes = self._objects.blob(name).download_as_bytes()
        except self._gexc.NotFound:
            return None
        except self._errors as exc:
            raise BrokerError(f"Cloud Storage download of {url} failed: {exc}") from exc
        return data

    def _delete(self, name: str, url: str) -> None:
        try:
            self._objects.blob(name).delete()
        except self._gexc.NotFound:
            pass
        except self._errors as exc:
            raise BrokerError(f"Cloud Storage delete of {url} failed: {exc}") from exc

    def close(self) -> None:
        self._client.close()


def open_gcs_store(url: str) -> GCSClaimCheckStore:
    """The ``cloudq.claimchecks`` entry point for ``gs://BUCKET/PREFIX?create=1&project=..``.

    :param url: the bucket as host, the object prefix as path; options ``create`` (1: create
        the bucket if it is missing) and ``project`` (the bucket's project, for ``create``).
    """
    parts = urlsplit(url)
    if parts.scheme != "gs" or not parts.netloc or parts.username or parts.password:
        raise ConfigurationError(
            f"expected gs://BUCKET/PREFIX[?create=1], got {redact_url(url)!r}; credentials come "
            "from Application Default Credentials"
        )
    options = url_options(parts.query, _URL_OPTIONS, "gs")
    return GCSClaimCheckStore(
        parts.netloc,
        parts.path,
        project=options.get("project") or None,
        create=url_flag("create", options.get("create", "0"), url),
    )
