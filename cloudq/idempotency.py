"""``@app.task(idempotent=True)``: at most one run of a task id's body after it has succeeded.

At-least-once delivery runs a task again when a worker dies between running it and
acknowledging it, or when the broker hands one message to two consumers. For a task that opts
in, ``execute`` asks the result store before running the body:

1. **claim** ``idem:<task id>`` in the shared store for the task's hard time limit plus a grace
   (``claim(key, ttl)``, the same atomic call beat uses);
2. **read** the task id's result record. A ``SUCCESS`` record means the body already ran to the
   end and its result was stored: the delivery is acknowledged without running it again (chain
   links and the chord count are sent again from the stored result, so nothing after it is
   lost);
3. the claim was **held** by another execution and there is no success yet: that execution is
   running now (or died running, and its claim lapses at the end of its ttl). The delivery is
   deferred to the moment the claim has surely lapsed; it then finds the success, or runs.

A failed attempt gives its claim back at once (``unclaim``), so its retry runs without waiting;
a successful one keeps it until it lapses (its ``SUCCESS`` record answers from then on).

The gap that remains: a crash after the body returned but before its ``SUCCESS`` record was
stored runs the body again (the store never learnt that it finished). Close it inside the task,
by writing the task's effect and its own marker in one transaction, or by making the effect
itself idempotent. On a result backend without claims, step 1 is skipped: two deliveries that
arrive together may both run.

Only tasks that opt in pay for this: two store calls per delivery, none for other tasks.

What the store is trusted with: with ``signing_keys`` set, nothing that is sent. The links of a
skipped duplicate are sent (and signed) with the stored result, so settle seals a SUCCESS
record's result (``TaskResult.seal``, ``cloudq.storeseal``, bound to the task id) and the
duplicate re-fires its links only if the seal verifies; a record whose seal does not verify
(changed in the store, or stored before signing was on) is no proof of success, and the body
runs again (at-least-once, as if the record were missing). The store is still trusted to say
*that* a task without links succeeded: a forged SUCCESS record skips a run but sends nothing,
which anyone who can write the store could achieve by other means anyway (a deleted claim).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cloudq.adapters.urls import redact_url
from cloudq.envelope import Envelope
from cloudq.errors import ConfigurationError, SignatureError
from cloudq.logsafe import get_logger
from cloudq.outcome import Ack, Defer
from cloudq.results.base import State, TaskResult
from cloudq.stores.claims import ClaimStore
from cloudq.storeseal import RESULT_SEAL, check_seal

if TYPE_CHECKING:
    from cloudq.app import App
    from cloudq.task import Task

logger = get_logger("cloudq.idempotency")

CLAIM_GRACE_SECONDS = 2.0
"""A claim outlives the task's hard time limit by this much (the limit's own enforcement)."""
CLAIM_SLACK_SECONDS = 2.0
"""A deferred duplicate comes back this long after the claim's ttl: stores round ttls up."""

_warned: set[str] = set()


def claim_key(task_id: str) -> str:
    return f"idem:{task_id}"


def check_options(task: Task[Any, Any]) -> None:
    """Refuse ``idempotent=True`` where it could never work: at ``@app.task``, in every process
    that imports the task (producer, worker, serverless handler), before anything is sent."""
    key_fn = task.options.idempotency_key
    if key_fn is not None and not callable(key_fn):
        raise ConfigurationError(
            f"task {task.name!r}: idempotency_key takes a function of the task's arguments"
        )
    if task.options.ignore_result:
        raise ConfigurationError(
            f"task {task.name!r}: idempotent=True needs the task's SUCCESS record; it cannot be "
            "combined with ignore_result=True"
        )
    if not task.app.conf.result_backend:
        raise ConfigurationError(
            f"task {task.name!r}: idempotent=True needs a result backend to know which task ids "
            "already succeeded; set result_backend (App(backend='redis://...') or "
            "CLOUDQ_RESULT_BACKEND) before the task is declared"
        )


class Claim:
    """The claim an admitted delivery holds while its body runs: ``with claim:`` gives it back
    if the body raises (a failed attempt: its retry must not wait for the claim to lapse)."""

    __slots__ = ("app", "key")

    def __init__(self, app: App | None = None, key: str | None = None) -> None:
        self.app = app
        self.key = key

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None and self.app is not None:
            release(self.app, self.key)


NO_CLAIM = Claim()
"""What a task that did not opt in (or an eager run) holds: nothing."""


def admit(app: App, env: Envelope, hard: float, now: datetime) -> Ack | Defer | Claim:
    """Whether this delivery may run the body: ``Ack`` (already succeeded: skip), ``Defer``
    (another execution holds the claim), else the ``Claim`` it now holds (empty when the store
    has no claims). Raises if the store is unreachable: the message comes back."""
    backend = app.backend
    if backend is None:
        raise ConfigurationError(
            f"task {env.task!r} is idempotent but result_backend is not set any more"
        )
    claims = backend if isinstance(backend, ClaimStore) else None
    key = claim_key(env.id)
    ttl = math.ceil(hard + CLAIM_GRACE_SECONDS)
    held = claims.claim(key, ttl) if claims is not None else True
    if claims is None and app.conf.result_backend not in _warned:
        _warned.add(app.conf.result_backend or "")
        logger.warning(
            "idempotent tasks: result backend %r has no claims; a duplicate delivered while the "
            "first still runs is not held back (a backend with claims, e.g. redis://, does)",
            redact_url(app.conf.result_backend or ""),
        )
    record = backend.get(env.id)
    follows = bool(env.links) or env.chord_id is not None
    if record is not None and record.state == State.SUCCESS and _sendable(app, env, record):
        logger.info("skipped duplicate delivery of %s[%s]: already succeeded", env.task, env.id)
        return Ack(envelope=env if follows else None, value=record.result if follows else None)
    if not held:
        until = now + timedelta(seconds=ttl + CLAIM_SLACK_SECONDS)
        logger.info(
            "task %s[%s] is running elsewhere (claimed, no result yet): deferred to %s",
            env.task,
            env.id,
            until.isoformat(),
        )
        return Defer(envelope=env, until=until)
    return Claim(app, key) if claims is not None else NO_CLAIM


def _sendable(app: App, env: Envelope, record: TaskResult) -> bool:
    """Whether the links may be sent again from this SUCCESS record (see the module doc)."""
    if not (env.links or env.chord_id is not None):
        return True
    try:
        check_seal(app.signing_keys, record.seal, RESULT_SEAL, [env.id], record.result)
    except SignatureError as exc:
        logger.error(
            "task %s[%s]: its stored SUCCESS record is refused (%s); it runs again",
            env.task,
            env.id,
            exc,
        )
        return False
    return True


def release(app: App, key: str | None) -> None:
    """Give a claim back after a failed attempt (its retry runs at once); never raises."""
    if key is None:
        return
    backend = app.backend
    try:
        if isinstance(backend, ClaimStore):
            backend.unclaim(key)
    except Exception:
        logger.exception("could not release %s; it lapses by itself", key)


def release_for(app: App, task: Task[Any, Any] | None, task_id: str) -> None:
    """``release`` for an execution that died outside ``execute`` (a killed pool child)."""
    if task is not None and task.idempotent:
        release(app, claim_key(task_id))
