"""Task arguments checked against the function's type hints: at ``delay()`` and in the worker.

At ``delay()`` values are validated and dumped to JSON (so a ``datetime`` or a pydantic model
travels as JSON and comes back typed), before anything is sent. Values that are not JSON (an
ORM object, a socket) are refused with a message that says to pass an id instead.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import TypeAdapter, ValidationError

from cloudq.errors import TaskArgumentError

_JSON_SCALARS = (str, int, float, bool, type(None))


def is_json(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` is made only of JSON types (dicts with string keys, lists, scalars)."""
    if isinstance(value, _JSON_SCALARS):
        return True
    if depth > 100:
        return False
    if isinstance(value, list | tuple):
        return all(is_json(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_json(v, depth + 1) for k, v in value.items())
    return False


class ArgumentSpec:
    """The typed signature of one task function (without ``self`` for bound tasks)."""

    def __init__(self, fn: Callable[..., Any], task_name: str, bound: bool) -> None:
        self.task_name = task_name
        sig = inspect.signature(fn)
        params = list(sig.parameters.values())
        if bound:
            if not params:
                raise TypeError(f"bound task {task_name!r} must take 'self' as first parameter")
            params = params[1:]
        self.signature = sig.replace(parameters=params)
        plain = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        self._plain = [p.name for p in params] if all(p.kind in plain for p in params) else None
        """Parameter names when all are plain positional ones: the fast path's signature."""
        self._required = max(
            (i + 1 for i, p in enumerate(params) if p.default is inspect.Parameter.empty),
            default=0,
        )
        try:
            hints = typing.get_type_hints(fn)
        except Exception:  # noqa: BLE001 - unresolvable hints: fall back to plain JSON checks
            hints = {}
        self._hints = {p.name: hints[p.name] for p in params if p.name in hints}
        self._return_hint = hints.get("return")
        self._adapters: dict[str, TypeAdapter[Any] | None] = {}

    def _adapter(self, name: str) -> TypeAdapter[Any] | None:
        if name not in self._adapters:
            hint = self._hints.get(name)
            adapter: TypeAdapter[Any] | None = None
            if hint is not None and hint is not Any:
                try:
                    adapter = TypeAdapter(hint)
                except Exception:  # noqa: BLE001 - a class pydantic cannot describe: JSON check
                    adapter = None
            self._adapters[name] = adapter
        return self._adapters[name]

    def _bind(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> inspect.BoundArguments:
        try:
            return self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TaskArgumentError(f"task {self.task_name!r}: {exc}") from None

    def _convert(
        self, bound: inspect.BoundArguments, dump: bool
    ) -> tuple[list[Any], dict[str, Any]]:
        for name, value in bound.arguments.items():
            kind = self.signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                bound.arguments[name] = tuple(self._one(name, v, dump) for v in value)
            elif kind is inspect.Parameter.VAR_KEYWORD:
                bound.arguments[name] = {k: self._one(name, v, dump) for k, v in value.items()}
            else:
                bound.arguments[name] = self._one(name, value, dump)
        return list(bound.args), dict(bound.kwargs)

    def _one(self, name: str, value: Any, dump: bool) -> Any:
        adapter = self._adapter(name)
        if adapter is not None:
            try:
                checked = adapter.validate_python(value)
                value = adapter.dump_python(checked, mode="json") if dump else checked
            except ValidationError as exc:
                first = exc.errors()[0]
                raise TaskArgumentError(
                    f"task {self.task_name!r} argument {name!r}: {first['msg']} "
                    f"(got {type(value).__name__} {_short(value)})"
                ) from None
            except Exception as exc:  # noqa: BLE001 - serialisation failures of odd values
                raise TaskArgumentError(
                    f"task {self.task_name!r} argument {name!r}: cannot be sent as JSON ({exc})"
                ) from None
        if dump and not is_json(value):
            raise TaskArgumentError(
                f"task {self.task_name!r} argument {name!r}: a {type(value).__name__} object is "
                "not JSON and cannot travel in a message; pass an id (e.g. order.id) and load "
                "the object inside the task"
            )
        return value

    def _positional(
        self, args: Sequence[Any], kwargs: Mapping[str, Any], dump: bool
    ) -> tuple[list[Any], dict[str, Any]] | None:
        """Positional arguments only, which bind as they are: what ``Signature.bind`` would
        give, without its cost on every task. None: take the general path."""
        names = self._plain
        if names is None or kwargs or not self._required <= len(args) <= len(names):
            return None
        return [self._one(names[i], v, dump) for i, v in enumerate(args)], {}

    def _checked(
        self, args: Sequence[Any], kwargs: Mapping[str, Any], dump: bool
    ) -> tuple[list[Any], dict[str, Any]]:
        fast = self._positional(args, kwargs, dump)
        return fast if fast is not None else self._convert(self._bind(args, kwargs), dump)

    def dump(
        self, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """Validate caller arguments and turn them into JSON values; raise ``TaskArgumentError``."""
        return self._checked(args, kwargs, dump=True)

    def load(
        self, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """JSON values from an envelope back into the types the function declares."""
        return self._checked(args, kwargs, dump=False)

    def dump_result(self, value: Any) -> Any:
        """A return value as JSON for the result backend; ``TypeError`` if it cannot be."""
        if self._return_hint not in (None, Any):
            try:
                return TypeAdapter(self._return_hint).dump_python(value, mode="json")
            except Exception:  # noqa: BLE001 - fall through to the generic encoder
                pass
        from pydantic_core import to_jsonable_python

        try:
            return to_jsonable_python(value)
        except Exception as exc:  # noqa: BLE001 - any encoder failure means: not JSON
            raise TypeError(f"result of type {type(value).__name__} is not JSON: {exc}") from None

    def load_result(self, value: Any) -> Any:
        """A stored JSON result back into the declared return type, where one is declared."""
        if self._return_hint in (None, Any):
            return value
        try:
            return TypeAdapter(self._return_hint).validate_python(value)
        except Exception:  # noqa: BLE001 - a result that no longer fits the hint: give it raw
            return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
