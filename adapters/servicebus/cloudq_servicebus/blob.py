"""``azblob://CONTAINER/PREFIX``: claim checks in Azure Blob Storage, for task messages over
Service Bus's size limit (256 KB on standard).

``put`` writes ``PREFIX/KEY`` and returns ``azblob://CONTAINER/PREFIX/KEY``; the queue carries
that URL instead of the body and the consumer ``delete``s the blob after the final ack. A
lifecycle rule (Terraform) should still expire leftovers, e.g. bodies of dead letters.

``get`` and ``delete`` refuse URLs outside the store (``ObjectStoreClaimChecks``).

The container is Terraform's to create; ``?create=1`` creates it (tests and demos). The account:
see ``cloudq_servicebus.storage``. The azure SDK is imported when the store is opened.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from cloudq.adapters.urls import redact_url, url_flag, url_options
from cloudq.claimcheck import ObjectStoreClaimChecks
from cloudq.errors import BrokerError, ConfigurationError
from cloudq.logsafe import get_logger
from cloudq_servicebus import storage

logger = get_logger("cloudq.servicebus.blob")

_CONTAINER = re.compile(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]")
_URL_OPTIONS = frozenset({"create", "account_url"})


class ContainerNotFoundError(BrokerError):
    """The container is missing: Terraform creates it (or ``azblob://C/P?create=1``)."""


class BlobClaimCheckStore(ObjectStoreClaimChecks):
    """One ContainerClient; thread-safe like it. Its ``bucket`` is the container."""

    scheme = "azblob"
    bucket_word = "container"

    def __init__(
        self,
        container: str,
        prefix: str = "",
        *,
        connection_string: str | None = None,
        account_url: str | None = None,
        credential: Any = None,
        create: bool = False,
    ) -> None:
        from azure.core.exceptions import AzureError
        from azure.storage.blob import ContainerClient

        if not _CONTAINER.fullmatch(container):
            raise ConfigurationError(
                f"{container!r} is not a valid blob container name: 3 to 63 lowercase letters, "
                "digits and single hyphens"
            )
        super().__init__(container, prefix)
        self._errors: tuple[type[Exception], ...] = (AzureError,)
        if account_url:
            if credential is None:
                from azure.identity import DefaultAzureCredential

                credential = DefaultAzureCredential()
            self._client = ContainerClient(account_url, container, credential=credential)
        else:
            assert connection_string is not None
            self._client = ContainerClient.from_connection_string(connection_string, container)
        if create:
            self.create_container()

    def _error(self, operation: str, url: str, exc: Exception) -> BrokerError:
        if "ContainerNotFound" in str(exc):
            return ContainerNotFoundError(
                f"blob container {self.bucket!r} does not exist ({operation} of {url}): "
                f"containers are created by Terraform, or by {self.base_url}?create=1"
            )
        # A SAS account_url may be echoed in the SDK's text: its sig= must not be.
        return BrokerError(f"Azure Blob {operation} of {url} failed: {redact_url(str(exc))}")

    def create_container(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        try:
            self._client.create_container()
            logger.info("created blob container %r", self.bucket)
        except ResourceExistsError:
            pass
        except self._errors as exc:
            raise self._error("create_container", self.base_url, exc) from exc

    # --- the object calls ----------------------------------------------------------------------
    def _upload(self, name: str, body: bytes, url: str) -> None:
        try:
            self._client.upload_blob(name, body, overwrite=True)
        except self._errors as exc:
            raise self._error("upload_blob", url, exc) from exc

    def _download(self, name: str, url: str) -> bytes | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            data: bytes = self._client.download_blob(name).readall()
        except ResourceNotFoundError as exc:
            if "ContainerNotFound" in str(exc):
                raise self._error("download_blob", url, exc) from exc
            return None
        except self._errors as exc:
            raise self._error("download_blob", url, exc) from exc
        return data

    def _delete(self, name: str, url: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self._client.delete_blob(name)
        except ResourceNotFoundError as exc:
            if "ContainerNotFound" in str(exc):
                raise self._error("delete_blob", url, exc) from exc
        except self._errors as exc:
            raise self._error("delete_blob", url, exc) from exc

    def close(self) -> None:
        self._client.close()


def open_blob_store(url: str) -> BlobClaimCheckStore:
    """The ``cloudq.claimchecks`` entry point for ``azblob://CONTAINER/PREFIX[?create=1]``.

    :param url: the container as host, the blob prefix as path; options ``create`` (1: create
        the container if it is missing) and ``account_url`` (with ``DefaultAzureCredential``;
        else the connection string from the environment).
    """
    parts = urlsplit(url)
    if parts.scheme != "azblob" or not parts.netloc or "@" in parts.netloc:
        raise ConfigurationError(
            "expected azblob://CONTAINER/PREFIX[?create=1&account_url=...], got "
            f"{redact_url(url)!r}; the "
            "account comes from AZURE_STORAGE_CONNECTION_STRING or account_url"
        )
    opts = url_options(parts.query, _URL_OPTIONS, "azblob")
    account_url = opts.get("account_url") or None
    return BlobClaimCheckStore(
        parts.netloc,
        parts.path,
        connection_string=None if account_url else storage.connection_string(url),
        account_url=account_url,
        create=url_flag("create", opts.get("create", "0"), url),
    )
