"""A task's exception, rebuilt from its record for the caller: the one rule of what may be.

A result record is untrusted input (whoever can write the store writes it), so its error type
is only ever *looked up*, never loaded: the class must already be defined in a module this
process has imported (``sys.modules``), found through the module's and classes' own ``__dict__``
(a module's lazy ``__getattr__`` could import), be the class of that exact name (no alias, no
``<locals>``), subclass ``Exception`` (never ``BaseException`` alone: ``SystemExit`` would stop
the caller), and accept the message as its one argument. Anything else is ``TaskFailed``, which
names the type and carries the message. Nothing is imported, unpickled or evaluated.
"""

from __future__ import annotations

import sys
from types import MappingProxyType, ModuleType

from cloudq.errors import RemoteTraceback, TaskFailed
from cloudq.results.base import ErrorInfo

__all__ = ["rebuild_exception", "rebuildable_class"]


def _lookup(module: ModuleType, qualname: str) -> object:
    found: object = module
    for part in qualname.split("."):
        namespace = getattr(found, "__dict__", None)  # modules' and classes' own names only
        if not isinstance(namespace, dict | MappingProxyType):
            return None
        found = namespace.get(part)
        if found is None:
            return None
    return found


def rebuildable_class(type_name: str) -> type[Exception] | None:
    """The ``Exception`` subclass ``type_name`` (``module.QualName``) names, if it is one of a
    module already imported; None otherwise."""
    parts = type_name.split(".")
    for cut in range(len(parts) - 1, 0, -1):  # the longest imported module prefix first
        module = sys.modules.get(".".join(parts[:cut]))
        if module is None:
            continue
        qualname = ".".join(parts[cut:])
        cls = _lookup(module, qualname)
        if (
            isinstance(cls, type)
            and issubclass(cls, Exception)
            and cls.__module__ == module.__name__
            and cls.__qualname__ == qualname
        ):
            return cls
        return None
    return None


def rebuild_exception(error: ErrorInfo) -> BaseException:
    """The task's exception for the caller (see the module's rule), with the worker's
    traceback as its ``__cause__``."""
    cls = rebuildable_class(error.type)
    exc: BaseException
    if cls is None or cls is TaskFailed:
        exc = TaskFailed(error.type, error.message)
    else:
        try:
            exc = cls(error.message)
        except Exception:  # noqa: BLE001 - a constructor that wants more than a message
            exc = TaskFailed(error.type, error.message)
    if error.traceback:
        exc.__cause__ = RemoteTraceback(error.traceback)
    return exc
