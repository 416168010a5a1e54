"""Which configured feature needs which store contract, checked before the first message.

A feature whose promise spans processes would silently do less on a store that lacks its
contract: an ``idempotent=True`` task could run twice at once, a rate limit would hold per
process (per container on a serverless platform, however many the platform starts), beats
would send each tick once per beat. So ``cloudq worker``, the serverless handlers' first
invocation and ``cloudq beat`` call ``require()`` and refuse to start, naming the feature, the
store and what to configure.

Left as degrades, by decision: the control plane and task events (``ControlStore``,
``EventStore``: observability, not a task's semantics; a worker on a store without them runs
unseen by ``status``, or with ``-E`` sends no events, logged at start, and the dashboard says
so on its page), revocation and chords (refused with an error where they are asked for, so
nothing is silently skipped), and a beat with no result backend at all (Celery's model: one
beat, which the operator runs; logged at start).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cloudq.adapters.urls import redact_url
from cloudq.errors import ConfigurationError
from cloudq.stores.beat import BeatStore
from cloudq.stores.claims import ClaimStore
from cloudq.stores.rate_slots import RateLimiter

if TYPE_CHECKING:
    from cloudq.app import App

__all__ = ["Need", "beat_needs", "require", "task_needs"]

SHARED_BACKENDS = "redis://, dynamodb://, firestore://, azuretable:// or memory:// (one process)"
"""The built-in backends with the claims, rate slots and beat contracts."""


@dataclass(frozen=True)
class Need:
    """One configured feature and the store contract it cannot do without."""

    feature: str
    """What was configured (``task 'shop.pay' (idempotent=True)``)."""
    contract: type
    """The ``cloudq.stores`` Protocol the result backend must have."""
    lost: str
    """What the feature would silently fail to do without it."""


def task_needs(app: App) -> list[Need]:
    """What the app's tasks need wherever they run (worker or serverless handler)."""
    needs = []
    for task in sorted(app.tasks.values(), key=lambda t: t.name):
        if task.idempotent:
            needs.append(
                Need(
                    f"task {task.name!r} (idempotent=True)",
                    ClaimStore,
                    "two deliveries of one task id could run at the same time",
                )
            )
        if task.rate is not None:
            needs.append(
                Need(
                    f"task {task.name!r} (rate limit)",
                    RateLimiter,
                    "each process would limit itself alone, not all of them together",
                )
            )
    return needs


def beat_needs(app: App) -> list[Need]:
    """A beat's: shared claims, unless no result backend is set at all (one beat, logged)."""
    if not app.conf.result_backend:
        return []
    return [Need("beat", BeatStore, "every beat running would send each tick")]


def require(app: App, role: str, needs: Iterable[Need]) -> None:
    """``ConfigurationError`` naming every need the app's result backend does not meet.

    ``role`` says who refuses to start (``cloudq worker``, ``the Lambda handler``...). The
    backend is opened only when something needs it.
    """
    needs = list(needs)
    if not needs:
        return
    url = app.conf.result_backend
    backend = app.backend if url else None
    unmet = [n for n in needs if not isinstance(backend, n.contract)]
    if not unmet:
        return
    wanted = "; ".join(
        f"{n.feature} needs a store with {n.contract.__name__} (without it {n.lost})" for n in unmet
    )
    store = (
        f"result backend {redact_url(url)!r} ({type(backend).__name__}) lacks "
        + ("it" if len(unmet) == 1 else "them")
        if url
        else "no result backend is set"
    )
    raise ConfigurationError(
        f"{role} cannot start: {wanted}; and {store}. Set result_backend (App(backend=...) or "
        f"CLOUDQ_RESULT_BACKEND) to {SHARED_BACKENDS} (cloudq.stores says what each feature "
        "needs)"
    )
