"""Celery's app signals (``app.on_after_configure.connect``): receivers called with the app."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Receiver = Callable[..., Any]


class Signal:
    """``@app.on_after_configure.connect`` registers a receiver; ``send`` calls each one with
    ``sender=`` and keyword arguments, in the order connected."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.receivers: list[Receiver] = []

    def __repr__(self) -> str:
        return f"<Signal {self.name}>"

    def connect(self, receiver: Receiver | None = None, **_: Any) -> Any:
        """Usable as ``@signal.connect``, ``@signal.connect(weak=False)`` or a call."""
        if receiver is None:
            return self.connect
        if receiver not in self.receivers:
            self.receivers.append(receiver)
        return receiver

    def disconnect(self, receiver: Receiver) -> None:
        if receiver in self.receivers:
            self.receivers.remove(receiver)

    def send(self, sender: Any, **kwargs: Any) -> list[tuple[Receiver, Any]]:
        return [(r, r(sender=sender, **kwargs)) for r in list(self.receivers)]
