"""URLs of brokers, result backends and stores: one option parser, one set of error messages,
and the one ``redact_url`` that every message, log line and ``repr`` showing a URL goes through.
"""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qs, urlsplit

from cloudq.errors import ConfigurationError

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off", ""})

_USERINFO = re.compile(r"(?<=//)[^\s?#]*@")
"""Everything between ``//`` and the host's ``@``: ``user:password``, or a bare token or
access key id, which cannot be told from a user name. A ``/`` is allowed in it, so a password
with an unencoded slash (a URL the parser gets wrong, so one that ends in an error) is hidden too.
"""

_SECRET_WORD = r"(?:pass|pwd|secret|token|sig|key|auth|credential)"
"""What the name of a field holding a secret contains (case-insensitive); it over-matches on
purpose (``keyspace``, ``SharedAccessKeyName``): hiding one harmless value costs nothing."""
_SECRET_NAME = re.compile(_SECRET_WORD, re.IGNORECASE)

_SEP = r"(?:[?&;#]|%26|%3[bBfF]|%23)"
_EQ = r"(?:=|%3[dD])"
_SECRET_PARAM = re.compile(
    rf"((?:^|{_SEP})\s*[\w.-]*?{_SECRET_WORD}[\w.-]*{_EQ})"
    rf"(.*?)(?={_SEP}|\s|$)",
    re.IGNORECASE,
)
"""A query parameter or connection-string field whose name says it holds a secret
(``?password=``, ``sig=``, ``token=``, ``SharedAccessKey=``, ``AccountKey=``), with its separators
also matched percent-encoded: a SAS URL inside an ``account_url=`` option is hidden too."""


def secret_name(name: str) -> bool:
    """Whether a parameter, field or option called ``name`` may hold a secret."""
    return _SECRET_NAME.search(name) is not None


def redact_url(url: str) -> str:
    """``url`` (or a connection string) with its secrets written as ``***``.

    For error messages, log lines, ``repr`` and CLI output. It is a text rewrite, not a parse,
    so it never raises, even on a URL too broken to parse (the one most likely to end in an
    error message), and it over-hides rather than under-hides: the whole user part goes (it may
    be a token), and so does any parameter named like a secret.
    """
    return _SECRET_PARAM.sub(r"\1***", _USERINFO.sub("***@", url))


def url_options(query: str, known: frozenset[str], scheme: str) -> dict[str, str]:
    """``?a=1&b=2`` as a dict (last value wins); an option not in ``known`` is an error."""
    found = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    unknown = set(found) - known
    if unknown:
        raise ConfigurationError(
            f"{scheme}:// does not know the option(s) {sorted(unknown)}; known: {sorted(known)}"
        )
    return found


def url_flag(name: str, value: str, url: str) -> bool:
    """A yes/no option: 1/0, true/false, yes/no, on/off."""
    lowered = value.lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    raise ConfigurationError(f"{redact_url(url)!r}: {name} must be 1 or 0, got {value!r}")


def env_setting(*names: str) -> str | None:
    """The first of the environment variables ``names`` that is set and not empty: where a
    setting the URL leaves out comes from, in the order the provider's own tools look."""
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def broker_url(
    url: str, known: frozenset[str], *, usage: str, credentials: str, host: bool = True
) -> tuple[str, dict[str, str]]:
    """A broker URL's host part and its options, for ``usage`` (the form, for the error).

    No broker takes a path, or a user or password: ``credentials`` says where they come from
    instead. ``host=False``: the URL takes options only.
    """
    parts = urlsplit(url)
    if "@" in parts.netloc or parts.path not in ("", "/") or (parts.netloc and not host):
        raise ConfigurationError(
            f"expected {usage}, got {redact_url(url)!r}: {credentials}, never from the URL"
        )
    return parts.netloc, url_options(parts.query, known, parts.scheme)


def url_number(options: dict[str, str], name: str, url: str, *, zero: bool = False) -> float | None:
    """A positive (``zero``: or 0) number option, or ``None`` when it is not given."""
    raw = options.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(
            f"{redact_url(url)!r}: {name} must be a number, got {raw!r}"
        ) from None
    if not (value >= 0 if zero else value > 0) or value == float("inf"):
        least = "0 or more" if zero else "positive"
        raise ConfigurationError(f"{redact_url(url)!r}: {name} must be {least}, got {raw!r}")
    return value


def url_count(options: dict[str, str], name: str, url: str, *, zero: bool = False) -> int | None:
    """A whole number option (bytes, seconds, a count), or ``None`` when it is not given."""
    value = url_number(options, name, url, zero=zero)
    if value is not None and not value.is_integer():
        raise ConfigurationError(
            f"{redact_url(url)!r}: {name} must be a whole number, got {options[name]!r}"
        )
    return None if value is None else int(value)
