"""URL options of brokers, result backends and stores: one parser, one set of error messages."""

from __future__ import annotations

from urllib.parse import parse_qs

from cloudq.errors import ConfigurationError

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off", ""})


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
    raise ConfigurationError(f"{url!r}: {name} must be 1 or 0, got {value!r}")
