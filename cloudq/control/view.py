"""What the control plane sees of a worker, and may ask of it: two narrow Protocols.

``control/heartbeat.py`` reads a worker through ``WorkerView`` and commands it through
``WorkerCommands``; it never imports ``cloudq.worker`` (no circle between them), and a test can
hand it any object with these members.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from cloudq.app import App


class WorkerView(Protocol):
    """The read-only state a heartbeat record reports."""

    @property
    def app(self) -> App: ...

    @property
    def hostname(self) -> str: ...

    @property
    def queues(self) -> Sequence[str]: ...

    @property
    def pool_kind(self) -> str: ...

    @property
    def concurrency(self) -> int: ...

    @property
    def prefetch(self) -> int: ...

    @property
    def processed(self) -> int:
        """Tasks finished (succeeded, retried or dead-lettered) since the start."""
        ...

    @property
    def failed(self) -> int:
        """Tasks dead-lettered since the start."""
        ...

    @property
    def stopping(self) -> bool: ...

    def active_tasks(self) -> list[dict[str, Any]]:
        """The running tasks, as ``task_entry`` lists them."""
        ...

    def reserved_tasks(self) -> list[dict[str, Any]]:
        """The messages held but not started."""
        ...


class WorkerCommands(Protocol):
    """What control commands ask of a worker (``shutdown``, ``pool_grow``...)."""

    def stop(self) -> None: ...

    def grow(self, n: int) -> int: ...

    def shrink(self, n: int) -> int: ...

    def terminate(self, task_ids: set[str]) -> list[str]: ...


class ControlledWorker(WorkerView, WorkerCommands, Protocol):
    """A worker as its control plane knows it."""
