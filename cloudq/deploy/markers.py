"""Requirement strings and environment markers (PEP 508), judged for the *target* runtime.

The package builder walks ``Requires-Dist`` to find what a function needs, and must judge
markers for Lambda's Linux, not for the build machine: a ``sys_platform == "win32"`` dependency
stays out even when built elsewhere. cloudq has no dependency on ``packaging``, so this is the
small subset of PEP 508 that ``Requires-Dist`` lines use.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cloudq.errors import ConfigurationError

__all__ = ["Requirement", "evaluate_marker", "normalize_name", "parse_requirement"]

_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'[^']*'|"[^"]*")
      | (?P<op>===|==|!=|<=|>=|~=|<|>|\(|\)|not\s+in\b|in\b)
      | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)
_VERSION_VARIABLES = frozenset({"python_version", "python_full_version", "implementation_version"})


def normalize_name(name: str) -> str:
    """PEP 503 normal form: ``Typing_Extensions`` and ``typing-extensions`` are one project."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Requirement:
    name: str
    extras: frozenset[str]
    marker: str


def parse_requirement(text: str) -> Requirement:
    """``name[extra] >=1 ; marker`` into its name, extras and marker (the version is not needed:
    the installed version is what gets packaged)."""
    spec, _, marker = text.partition(";")
    match = _NAME.match(spec)
    if not match:
        raise ConfigurationError(f"cannot read the requirement {text!r}")
    extras = frozenset(normalize_name(e) for e in (match.group(2) or "").split(",") if e.strip())
    return Requirement(normalize_name(match.group(1)), extras, marker.strip())


def _tokens(marker: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = marker.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise ConfigurationError(f"cannot read the environment marker {marker!r}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "op":
            value = " ".join(value.split())  # "not   in" -> "not in"
        tokens.append((kind, value))
        position = match.end()
    return tokens


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = re.match(r"\d+", piece)
        parts.append(int(digits.group()) if digits else 0)
    return tuple(parts)


_ORDER: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _compare(left: str, op: str, right: str, as_version: bool) -> bool:
    if op == "in":
        return left in right
    if op == "not in":
        return left not in right
    if op == "===":
        return left == right
    if not as_version:
        if op == "~=":
            raise ConfigurationError(f"'~=' needs versions, got {left!r} and {right!r}")
        return bool(_ORDER[op](left, right))
    a, b = _version(left), _version(right)
    width = max(len(a), len(b))
    a, b = a + (0,) * (width - len(a)), b + (0,) * (width - len(b))
    if op == "~=":  # compatible release: at least right, same leading parts but the last
        prefix = _version(right)[:-1]
        return a >= b and a[: len(prefix)] == prefix
    return bool(_ORDER[op](a, b))


class _Parser:
    def __init__(self, marker: str, environment: dict[str, str]) -> None:
        self.marker = marker
        self.tokens = _tokens(marker)
        self.position = 0
        self.environment = environment

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self) -> tuple[str, str]:
        token = self._peek()
        if token is None:
            raise ConfigurationError(f"environment marker {self.marker!r} ends too early")
        self.position += 1
        return token

    def parse(self) -> bool:
        value = self._or()
        if self._peek() is not None:
            raise ConfigurationError(f"unexpected {self._peek()} in marker {self.marker!r}")
        return value

    def _or(self) -> bool:
        value = self._and()
        while self._peek() == ("word", "or"):
            self._take()
            right = self._and()
            value = value or right
        return value

    def _and(self) -> bool:
        value = self._atom()
        while self._peek() == ("word", "and"):
            self._take()
            right = self._atom()
            value = value and right
        return value

    def _atom(self) -> bool:
        if self._peek() == ("op", "("):
            self._take()
            value = self._or()
            if self._take() != ("op", ")"):
                raise ConfigurationError(f"unbalanced parentheses in marker {self.marker!r}")
            return value
        left_kind, left = self._value()
        kind, op = self._take()
        if kind != "op" or op in ("(", ")"):
            raise ConfigurationError(f"expected a comparison in marker {self.marker!r}")
        right_kind, right = self._value()
        variables = {k for k, kind_ in ((left, left_kind), (right, right_kind)) if kind_ == "var"}
        left_value = self.environment[left] if left_kind == "var" else left
        right_value = self.environment[right] if right_kind == "var" else right
        if "extra" in variables:
            left_value, right_value = normalize_name(left_value), normalize_name(right_value)
        return _compare(left_value, op, right_value, bool(variables & _VERSION_VARIABLES))

    def _value(self) -> tuple[str, str]:
        kind, value = self._take()
        if kind == "string":
            return "string", value[1:-1]
        if kind == "word" and value in self.environment:
            return "var", value
        raise ConfigurationError(f"unknown marker variable {value!r} in {self.marker!r}")


def evaluate_marker(marker: str, environment: dict[str, str]) -> bool:
    """Whether ``marker`` holds in ``environment`` (which must define ``extra``, maybe "")."""
    if not marker.strip():
        return True
    return _Parser(marker, environment).parse()
