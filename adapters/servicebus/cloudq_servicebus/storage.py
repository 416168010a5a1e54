"""Where the Azure Storage account comes from, for the Table backend and the Blob store.

``?account_url=https://ACCOUNT.table.core.windows.net`` (or ``.blob.``) uses
``DefaultAzureCredential``; otherwise the connection string in ``AZURE_STORAGE_CONNECTION_STRING``
(the Functions host's ``AzureWebJobsStorage`` works too) is used, as the Azure SDKs do.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs

from cloudq.errors import ConfigurationError

CONNECTION_ENV = ("AZURE_STORAGE_CONNECTION_STRING", "AzureWebJobsStorage")
TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off", ""})


def options(query: str, known: frozenset[str], scheme: str) -> dict[str, str]:
    found = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    unknown = set(found) - known
    if unknown:
        raise ConfigurationError(
            f"{scheme}:// does not know the option(s) {sorted(unknown)}; known: {sorted(known)}"
        )
    return found


def flag(name: str, value: str, url: str) -> bool:
    lowered = value.lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    raise ConfigurationError(f"{url!r}: {name} must be 1 or 0, got {value!r}")


def connection_string(url: str) -> str:
    for name in CONNECTION_ENV:
        value = os.environ.get(name)
        if value:
            return value
    raise ConfigurationError(
        f"{url}: no storage account: set AZURE_STORAGE_CONNECTION_STRING, or give "
        "?account_url=https://ACCOUNT.<service>.core.windows.net to use DefaultAzureCredential"
    )
