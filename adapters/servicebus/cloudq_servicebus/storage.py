"""Where the Azure Storage account comes from, for the Table backend and the Blob store.

``?account_url=https://ACCOUNT.table.core.windows.net`` (or ``.blob.``) uses
``DefaultAzureCredential``; otherwise the connection string in ``AZURE_STORAGE_CONNECTION_STRING``
(the Functions host's ``AzureWebJobsStorage`` works too) is used, as the Azure SDKs do.
"""

from __future__ import annotations

import os

from cloudq.adapters.urls import redact_url
from cloudq.errors import ConfigurationError

CONNECTION_ENV = ("AZURE_STORAGE_CONNECTION_STRING", "AzureWebJobsStorage")


def connection_string(url: str) -> str:
    for name in CONNECTION_ENV:
        value = os.environ.get(name)
        if value:
            return value
    raise ConfigurationError(
        f"{redact_url(url)}: no storage account: set AZURE_STORAGE_CONNECTION_STRING, or give "
        "?account_url=https://ACCOUNT.<service>.core.windows.net to use DefaultAzureCredential"
    )
