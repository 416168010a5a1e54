"""The signal object behind Celery's app signals (``app.on_after_configure``) and its task and
worker signals (``cloudq.signals``): receivers called with ``sender=`` and keyword arguments."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cloudq.logsafe import get_logger

Receiver = Callable[..., Any]
logger = get_logger("cloudq.app_signals")


def _matches(wanted: Any, sender: Any) -> bool:
    """Celery filters on the sender object; a task's name matches its task too."""
    return wanted is None or wanted is sender or wanted == getattr(sender, "name", sender)


class Signal:
    """``@signal.connect`` registers a receiver (``sender=`` filters, ``dispatch_uid=`` keeps
    one per id); ``send`` calls each matching one, in the order connected. A ``robust`` signal
    (every task and worker signal, as Celery's) logs a receiver that raises and goes on; an app
    signal lets it raise, so a broken ``on_after_configure`` fails loudly."""

    def __init__(
        self, name: str, robust: bool = False, on_change: Callable[[], None] | None = None
    ) -> None:
        self.name = name
        self.robust = robust
        self._on_change = on_change
        self._receivers: list[tuple[Receiver, Any, Any]] = []

    def __repr__(self) -> str:
        return f"<Signal {self.name}>"

    @property
    def receivers(self) -> list[Receiver]:
        return [receiver for receiver, _, _ in self._receivers]

    def connect(
        self,
        receiver: Receiver | None = None,
        *,
        sender: Any = None,
        weak: bool = True,
        dispatch_uid: Any = None,
    ) -> Any:
        """Usable as ``@signal.connect``, ``@signal.connect(sender=add)`` or a call. ``weak``
        is accepted: receivers are held strongly (a lambda connected once stays connected)."""
        if receiver is None:
            return lambda fn: self.connect(fn, sender=sender, dispatch_uid=dispatch_uid)
        for known, known_sender, uid in self._receivers:
            same = uid == dispatch_uid if dispatch_uid is not None else known is receiver
            if same and known_sender is sender:
                return receiver
        self._receivers.append((receiver, sender, dispatch_uid))
        if self._on_change is not None:
            self._on_change()
        return receiver

    def disconnect(
        self, receiver: Receiver | None = None, *, sender: Any = None, dispatch_uid: Any = None
    ) -> None:
        self._receivers = [
            entry
            for entry in self._receivers
            if not (
                (entry[2] == dispatch_uid if dispatch_uid is not None else entry[0] is receiver)
                and (sender is None or entry[1] is sender)
            )
        ]
        if self._on_change is not None:
            self._on_change()

    def send(self, sender: Any, **kwargs: Any) -> list[tuple[Receiver, Any]]:
        answers: list[tuple[Receiver, Any]] = []
        for receiver, wanted, _ in list(self._receivers):
            if not _matches(wanted, sender):
                continue
            if not self.robust:
                answers.append((receiver, receiver(sender=sender, **kwargs)))
                continue
            try:
                answers.append((receiver, receiver(sender=sender, **kwargs)))
            except Exception as exc:
                logger.exception("signal %s: receiver %r raised", self.name, receiver)
                answers.append((receiver, exc))
        return answers
