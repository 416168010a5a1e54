"""Task arguments checked against the function's type hints: at ``delay()`` and in the worker.

At ``delay()`` values are validated and dumped to JSON (so a ``datetime`` or a pydantic model
travels as JSON and comes back typed), before anything is sent. Values that are not JSON (an
ORM object, a socket) are refused with a message that says to pass an id instead.

Validation is strict: ``"2"`` is not an ``int`` and ``2.5`` is not one either (lax coercion
would run ``add(2, "2")`` as ``add(2, 2)``). Values that have a JSON form of their own (a
``datetime``, a ``UUID``, a model from a dict, an enum from its value) are accepted in that
form, as pydantic's strict mode accepts them from JSON. Arguments keep the shape the caller
gave them: positional ones stay positional, keyword ones keyword.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError, to_json

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

    def __init__(
        self,
        fn: Callable[..., Any],
        task_name: str,
        bound: bool,
        *,
        context: Mapping[str, Any] | None = None,
        dump_kwargs: Mapping[str, Any] | None = None,
        check: bool = True,
        typed_results: bool = True,
    ) -> None:
        self.task_name = task_name
        self._check = check
        """``typing=False`` (Celery's option): values must be JSON, nothing more is checked."""
        self._typed_results = typed_results
        """Results read back as the declared type; off with ``pydantic=True``, whose results
        Celery gives back as the dumped dict."""
        self._context = dict(context) if context is not None else None
        """Passed to pydantic validators (``@app.task(pydantic=True, pydantic_context=...)``)."""
        self._dump_kwargs = {"mode": "json", **(dump_kwargs or {})}
        """How a result is dumped (``pydantic_dump_kwargs``); always to JSON."""
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
        self._positional_names = [p.name for p in params if p.kind in plain]
        self._var_args = next(
            (p.name for p in params if p.kind is inspect.Parameter.VAR_POSITIONAL), None
        )
        self._var_kwargs = next(
            (p.name for p in params if p.kind is inspect.Parameter.VAR_KEYWORD), None
        )
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
        self, args: Sequence[Any], kwargs: Mapping[str, Any], dump: bool
    ) -> tuple[list[Any], dict[str, Any]]:
        """Check each value against the parameter it binds to, keeping the caller's shape."""
        self._bind(args, kwargs)  # arity and names: a clear error before any value is checked
        names = self._positional_names
        out_args = [
            self._one(names[i] if i < len(names) else str(self._var_args), v, dump)
            for i, v in enumerate(args)
        ]
        params = self.signature.parameters
        out_kwargs = {
            k: self._one(k if k in params else str(self._var_kwargs), v, dump)
            for k, v in kwargs.items()
        }
        return out_args, out_kwargs

    def _validate(self, adapter: TypeAdapter[Any], value: Any) -> Any:
        """Strict validation; a value that is not the type itself may be its JSON form."""
        try:
            return adapter.validate_python(value, strict=True, context=self._context)
        except ValidationError as exc:
            try:
                text = to_json(value)
            except PydanticSerializationError:
                raise exc from None
            return adapter.validate_json(text, strict=True, context=self._context)

    def _one(self, name: str, value: Any, dump: bool) -> Any:
        adapter = self._adapter(name)
        if adapter is not None:
            try:
                checked = self._validate(adapter, value)
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
        if not self._check:
            return self._unchecked(args, kwargs, dump)
        fast = self._positional(args, kwargs, dump)
        return fast if fast is not None else self._convert(args, kwargs, dump)

    def _unchecked(
        self, args: Sequence[Any], kwargs: Mapping[str, Any], dump: bool
    ) -> tuple[list[Any], dict[str, Any]]:
        values = [*args, *kwargs.values()]
        if dump and not all(is_json(v) for v in values):
            raise TaskArgumentError(
                f"task {self.task_name!r}: an argument is not JSON and cannot travel in a "
                "message; pass an id (e.g. order.id) and load the object inside the task"
            )
        return list(args), dict(kwargs)

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
                return TypeAdapter(self._return_hint).dump_python(value, **self._dump_kwargs)
            except Exception:  # noqa: BLE001 - fall through to the generic encoder
                pass
        from pydantic_core import to_jsonable_python

        try:
            return to_jsonable_python(value)
        except Exception as exc:  # noqa: BLE001 - any encoder failure means: not JSON
            raise TypeError(f"result of type {type(value).__name__} is not JSON: {exc}") from None

    def load_result(self, value: Any) -> Any:
        """A stored JSON result back into the declared return type, where one is declared."""
        if self._return_hint in (None, Any) or not self._typed_results:
            return value
        try:
            return TypeAdapter(self._return_hint).validate_python(value)
        except Exception:  # noqa: BLE001 - a result that no longer fits the hint: give it raw
            return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
