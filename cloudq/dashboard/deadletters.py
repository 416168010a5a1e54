"""Dead letters for the dashboard: listed with their arguments (unless redacted).

The reading and redriving are ``cloudq.control.redrive``'s (``read_dead_letters``,
``redrive``, ``redrive_ids``), so the trust rules are the ones of ``cloudq dlq redrive``; this
module only adds what a page shows of each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cloudq.control.redrive import DeadLetterInfo, describe, envelope_of, read_dead_letters
from cloudq.dashboard.arguments import arguments_text

if TYPE_CHECKING:
    from cloudq.app import App


@dataclass(frozen=True)
class DeadLetterRow:
    info: DeadLetterInfo
    args: str | None
    """The arguments as shown (``arguments_text``: untrusted, escaped by the templates), None
    if the body is not a readable envelope."""

    def as_dict(self) -> dict[str, Any]:
        return {**self.info.as_dict(), "args": self.args}


def list_rows(app: App, queue: str, limit: int) -> list[DeadLetterRow]:
    """Up to ``limit`` dead letters read under a short lease and released at once."""
    rows = []
    for delivery in read_dead_letters(app, queue, limit):
        env = envelope_of(app, delivery)
        args = arguments_text(app, env.task, env.args, env.kwargs) if env is not None else None
        rows.append(DeadLetterRow(describe(app, delivery, queue), args))
    return rows
