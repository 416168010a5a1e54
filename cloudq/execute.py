"""``execute(delivery) -> Outcome``: all task logic, no queue calls.

Decode, verify, look the task up, check expiry and eta, run under time limits, decide between
done, retry and dead letter. Worker loops and serverless handlers only turn provider events into
deliveries and apply the outcome (``cloudq.settle``), so a task behaves the same everywhere.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cloudq import revoke, task_class
from cloudq.adapters.base import Delivery
from cloudq.canvas import chain_ahead
from cloudq.claimcheck import pointer_url
from cloudq.clock import Clock
from cloudq.envelope import (
    HEADER_DEAD_LETTER_REASON,
    HEADER_ERROR_MESSAGE,
    HEADER_ERROR_TRACEBACK,
    HEADER_ERROR_TYPE,
    Envelope,
    decode,
    verify,
)
from cloudq.errors import (
    ClaimCheckMissing,
    ClaimCheckRefused,
    EnvelopeError,
    Ignore,
    Reject,
    Retry,
    SoftTimeLimitExceeded,
    TaskArgumentError,
    TimeLimitExceeded,
)
from cloudq.idempotency import NO_CLAIM, Claim, admit
from cloudq.logsafe import get_logger
from cloudq.outcome import Ack, DeadLetter, Defer, Outcome, RetryAt
from cloudq.rate_limits import RATE_SLOT_HEADER
from cloudq.request import REQUEUE_HEADER, Request, current_request
from cloudq.results.base import ErrorInfo, State, TaskResult
from cloudq.results.children import record_children
from cloudq.results.extended import extended, fields
from cloudq.retry import backoff_delay, delay_out_of_range, max_retries_exceeded, retries_left
from cloudq.schedule_ticks import per_tick
from cloudq.send_task import WORKER_POLICY, WORKER_POLICY_HEADER
from cloudq.time_limits import run_with_limits

if TYPE_CHECKING:
    from cloudq.app import App
    from cloudq.task import Task

logger = get_logger("cloudq.execute")

RATE_SLACK_SECONDS = 0.005
"""A rate slot this close is taken as now: deferring costs more than the wait."""
MAX_TRACEBACK_HEADER_CHARS = 4_000
"""Tracebacks in dead-letter headers keep their last lines: providers cap message sizes."""
MAX_ERROR_HEADER_CHARS = 1_000
"""Error messages and reasons in dead-letter headers keep their first characters: an error
message may quote the arguments whole, and the dead letter must still fit the broker."""

DONE = Ack()
"""The outcome of most tasks (no result kept, nothing follows): one shared, frozen instance."""

Runner = Callable[[Callable[[], Any], float | None, float | None], Any]


def _message(exc: BaseException) -> str:
    """``str(exc)``, or a stand-in when the exception's own ``__str__`` raises."""
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - a task's broken exception must not break its failure
        return f"<unprintable {type(exc).__name__} object>"


def error_info(exc: BaseException) -> ErrorInfo:
    kind = type(exc)
    return ErrorInfo(
        type=f"{kind.__module__}.{kind.__qualname__}",
        message=_message(exc),
        traceback="".join(traceback.format_exception(exc)),
    )


def _record(
    env: Envelope,
    state: State,
    result: Any = None,
    error: ErrorInfo | None = None,
    clock: Clock | None = None,
) -> TaskResult:
    return TaskResult(
        task_id=env.id,
        state=state,
        task=env.task,
        result=result,
        error=error,
        attempt=env.attempt,
        children=record_children(env, state),
        parent_id=env.parent_id,
        root_id=env.root_id,
        group_id=env.group_id,
        chord_id=env.chord_id,
        chord_index=env.chord_index,
        chain_next=chain_ahead(env.links) if env.links else [],
        date_done=clock.now() if clock is not None and state != State.RETRY else None,
        **fields(env),
    )


def failure_outcome(
    env: Envelope, error: ErrorInfo, reason: str, clock: Clock, keep_result: bool
) -> DeadLetter:
    """Dead-letter ``env`` with the error in its headers (and a FAILURE record)."""
    headers = {
        **env.headers,
        HEADER_DEAD_LETTER_REASON: reason[:MAX_ERROR_HEADER_CHARS],
        HEADER_ERROR_TYPE: error.type,
        HEADER_ERROR_MESSAGE: error.message[:MAX_ERROR_HEADER_CHARS],
        HEADER_ERROR_TRACEBACK: error.traceback[-MAX_TRACEBACK_HEADER_CHARS:],
    }
    dead = env.model_copy(update={"headers": headers, "sig": None})
    record = _record(env, State.FAILURE, error=error, clock=clock) if keep_result else None
    logger.error("task %s[%s] failed for good: %s", env.task, env.id, reason)
    return DeadLetter(reason=reason, envelope=dead, result=record)


def retry_or_fail(
    env: Envelope,
    exc: BaseException,
    clock: Clock,
    keep_result: bool,
    countdown: float | None = None,
    max_retries: int | None = None,
    exhausted: BaseException | None = None,
    *,
    eta: datetime | None = None,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
) -> Outcome:
    """The outcome of a failed attempt that may be retried: RetryAt, or DeadLetter when spent.

    ``exhausted`` is the error to report when no retry is left (default: ``exc``). ``eta``
    says when instead of a delay; ``args``/``kwargs`` (JSON) replace the next attempt's.
    """
    policy = env.retry
    if max_retries is not None:
        policy = policy.model_copy(update={"max_retries": max_retries})
    error = error_info(exc)
    if not retries_left(policy, env.attempt):
        error = error_info(exhausted) if exhausted is not None else error
        reason = f"max retries ({policy.max_retries}) exceeded: {error.type}: {error.message}"
        return failure_outcome(env, error, reason, clock, keep_result)
    if eta is not None:
        delay = max(0.0, (eta - clock.now()).total_seconds())
    else:
        delay = countdown if countdown is not None else backoff_delay(policy, env.attempt)
    refused = delay_out_of_range(delay)
    if refused is not None:
        return failure_outcome(
            env, error, f"{refused}: {error.type}: {error.message}", clock, keep_result
        )
    when = clock.now() + timedelta(seconds=delay)
    headers = {k: v for k, v in env.headers.items() if k != RATE_SLOT_HEADER}
    update: dict[str, Any] = {
        "attempt": env.attempt + 1,
        "eta": when,
        "sig": None,
        "headers": headers,
    }
    if args is not None:
        update["args"] = args
    if kwargs is not None:
        update["kwargs"] = kwargs
    nxt = env.model_copy(update=update)
    logger.warning(
        "task %s[%s] attempt %d failed (%s: %s); retry in %.1fs",
        env.task,
        env.id,
        env.attempt,
        error.type,
        error.message,
        delay,
    )
    record = _record(env, State.RETRY, error=error) if keep_result else None
    return RetryAt(envelope=nxt, when=when, result=record)


def outcome_for_error(
    env: Envelope, task: Task[Any, Any] | None, exc: BaseException, clock: Clock, keep_result: bool
) -> Outcome:
    """A raised error: retried if the task's ``autoretry_for`` covers it (with its
    ``retry_kwargs``, as Celery's), else dead-lettered."""
    if (
        task is not None
        and task.options.autoretry_for
        and isinstance(exc, task.options.autoretry_for)
        and not isinstance(exc, task.options.dont_autoretry_for)
    ):
        told = task.options.retry_kwargs or {}
        countdown = None if task.options.retry_backoff else told.get("countdown")
        return retry_or_fail(env, exc, clock, keep_result, countdown, told.get("max_retries"))
    error = error_info(exc)
    return failure_outcome(env, error, f"{error.type}: {error.message}", clock, keep_result)


def _call(
    task: Task[Any, Any],
    args: list[Any],
    kwargs: dict[str, Any],
    soft: float | None,
    hard: float,
    runner: Runner,
) -> Any:
    if not task.is_async:
        return runner(lambda: task.run_with(args, kwargs), soft, hard)
    import asyncio  # here, not at the top: a worker with no async task never loads it

    from cloudq import taskloop

    async def bounded() -> Any:
        # The limit cancels the coroutine on its own loop, which stays usable; the runner's hard
        # limit is the backstop for a body that blocks the loop (``taskloop`` replaces a loop
        # that such an interruption hit outside the coroutine).
        limit = soft if soft is not None else hard
        timeout = asyncio.timeout(limit)
        try:
            async with timeout:
                return await task.run_with(args, kwargs)
        except TimeoutError:
            if not timeout.expired():  # the body's own TimeoutError (a client's), not ours
                raise
            kind = SoftTimeLimitExceeded if soft is not None else TimeLimitExceeded
            raise kind(f"time limit ({limit}s) exceeded") from None

    # One loop per thread, kept across tasks (``cloudq.taskloop``): pools made on it live on.
    return runner(lambda: taskloop.run(task.app, bounded()), None, hard)


def open_body(delivery: Delivery, app: App) -> tuple[Envelope, bytes] | DeadLetter:
    """The delivery's envelope (fetched from claim-check storage if parked), verified, with the
    bytes it was read from; or the DeadLetter that says why it cannot be run. A storage outage
    raises: the message comes back.

    With signing on, the envelope must name the queue it arrived on: the signature covers
    ``env.queue``, so a captured message re-sent to another queue is refused here.
    """
    body = delivery.body
    claim = pointer_url(body)
    if claim is not None:
        if app.claim_checks is None:
            return DeadLetter(reason=f"body is parked at {claim} but claim_check_url is not set")
        try:
            body = app.claim_checks.get(claim)
        except ClaimCheckMissing as exc:
            return DeadLetter(reason=f"claim-check body missing: {exc}")
        except ClaimCheckRefused as exc:
            logger.error("dead-lettering message %s: %s", delivery.message_id, exc)
            return DeadLetter(reason=str(exc))
    try:
        env = decode(body)
        verify(env, app.signing_keys)
    except EnvelopeError as exc:
        logger.error("dead-lettering message %s: %s", delivery.message_id, exc)
        return DeadLetter(reason=str(exc))
    if app.signing_keys and env.queue != delivery.queue:
        reason = (
            f"envelope is signed for queue {env.queue!r} but arrived on {delivery.queue!r}: "
            "refused (a signed message re-sent to another queue)"
        )
        logger.error("dead-lettering message %s: %s", delivery.message_id, reason)
        return DeadLetter(reason=reason)
    return per_tick(env, delivery), body  # an exported schedule's tick: an id of its own


def open_envelope(delivery: Delivery, app: App) -> Envelope | DeadLetter:
    """``open_body`` without the bytes."""
    opened = open_body(delivery, app)
    return opened if isinstance(opened, DeadLetter) else opened[0]


def _over_rate(app: App, task: Task[Any, Any], env: Envelope, now: datetime) -> Defer | None:
    """Defer to the task's next free rate slot, unless it holds one already (came back)."""
    rate = task.rate
    if rate is None or RATE_SLOT_HEADER in env.headers:
        return None
    wait = app.rate_limiter.reserve(task.name, 1 / rate.per_second)
    if wait <= RATE_SLACK_SECONDS:
        return None
    until = now + timedelta(seconds=wait)
    held = env.model_copy(update={"headers": {**env.headers, RATE_SLOT_HEADER: until.isoformat()}})
    logger.debug("task %s[%s] over %s/s: deferred %.3fs", env.task, env.id, rate.per_second, wait)
    return Defer(envelope=held, until=until)


def execute(
    delivery: Delivery,
    app: App,
    clock: Clock | None = None,
    *,
    runner: Runner = run_with_limits,
    eager: bool = False,
    hard_limit: float | None = None,
) -> Outcome:
    """Decide what becomes of one delivery. Runs the task; never touches a queue.

    ``hard_limit`` lowers the task's time limit (a serverless handler passes the time left).
    ``eager`` (``task.apply()``) ignores the eta and keeps the result whatever the backend.
    """
    clock = clock or app.clock
    env = open_envelope(delivery, app)
    if isinstance(env, DeadLetter):
        app.hooks.emit("rejected", delivery=delivery, reason=env.reason)
        return env
    if app.conf.result_extended:
        with extended(env, delivery.queue):
            return _execute(delivery, app, env, clock, runner, eager, hard_limit)
    return _execute(delivery, app, env, clock, runner, eager, hard_limit)


def _execute(
    delivery: Delivery,
    app: App,
    env: Envelope,
    clock: Clock,
    runner: Runner,
    eager: bool,
    hard_limit: float | None,
) -> Outcome:
    hooks = app.hooks
    if hooks.active("received"):
        hooks.emit("received", envelope=env, delivery=None if eager else delivery)
    now = clock.now()
    task = app.tasks.get(env.task)
    keep = eager or (bool(app.conf.result_backend) and not (task and task.options.ignore_result))
    if env.expires is not None and env.expires <= now:
        logger.warning("task %s[%s] expired at %s; discarded", env.task, env.id, env.expires)
        error = ErrorInfo(
            type="cloudq.errors.TaskRevokedError", message=f"expired at {env.expires}"
        )
        hooks.emit("revoked", envelope=env, terminated=False, expired=True)
        return Ack(result=_record(env, State.REVOKED, error=error, clock=clock) if keep else None)
    if not eager and (revoked := revoke.check(app, env, clock, keep)) is not None:
        hooks.emit("revoked", envelope=env, terminated=False, expired=False)
        return revoked
    if task is None:
        error = ErrorInfo(type="cloudq.errors.UnknownTask", message=f"unknown task {env.task!r}")
        reason = f"unknown task {env.task!r}: not registered with app {app.main!r}"
        return failure_outcome(env, error, reason, clock, keep_result=False)
    if env.headers.get(WORKER_POLICY_HEADER) == WORKER_POLICY:  # app.send_task by name
        env = env.model_copy(update={"retry": task.retry_policy()})
    if not eager and env.eta is not None and env.eta > now:
        return Defer(envelope=env, until=env.eta)
    if not eager:
        over = _over_rate(app, task, env, now)
        if over is not None:
            return over

    try:
        args, kwargs = task.arguments.load(env.args, env.kwargs)
    except TaskArgumentError as exc:
        return failure_outcome(env, error_info(exc), f"invalid arguments: {exc}", clock, keep)

    hard = task.time_limit if hard_limit is None else min(task.time_limit, hard_limit)
    soft = task.soft_time_limit
    if soft is not None and soft >= hard:
        soft = None
    claim = admit(app, env, hard, now) if task.idempotent and not eager else NO_CLAIM
    if not isinstance(claim, Claim):
        return claim  # idempotent: already succeeded (skipped), or running elsewhere (deferred)
    request = Request(
        env, delivery_count=delivery.receive_count, args=args, kwargs=kwargs, eager=eager
    )
    token = current_request.set(request)
    try:
        return _run(app, task, env, request, args, kwargs, soft, hard, runner, claim, clock, keep)
    finally:
        current_request.reset(token)


def _run(
    app: App,
    task: Task[Any, Any],
    env: Envelope,
    request: Request,
    args: list[Any],
    kwargs: dict[str, Any],
    soft: float | None,
    hard: float,
    runner: Runner,
    claim: Claim,
    clock: Clock,
    keep: bool,
) -> Outcome:
    """Run the body under ``request`` and decide; Celery's handlers see the decision."""
    debug = logger.isEnabledFor(logging.DEBUG)
    if debug:
        logger.debug("task %s[%s] started (attempt %d)", env.task, env.id, env.attempt)
    hooked = task.hooked
    hooks = app.hooks
    if hooks.active("before_execute"):
        headers = dict(env.headers)
        hooks.emit("before_execute", envelope=env, task=task, request=request, headers=headers)
        if headers != env.headers:  # carried by what this run sends next: retry, chain links
            env = env.model_copy(update={"headers": {str(k): str(v) for k, v in headers.items()}})
    if hooked:
        task_class.before_start(task, env.id, args, kwargs)
    began = time.monotonic()
    failure: BaseException | None = None
    value: Any = None
    try:
        with claim:  # a failed attempt gives an idempotent task's claim back
            value = _call(task, args, kwargs, soft, hard, runner)
    except Retry as retry:
        outcome, failure = _retried(env, retry, clock, keep)
    except Ignore:
        logger.info("task %s[%s] ignored", env.task, env.id)
        _after_hooks(app, env, task, request, DONE, None, None, State.IGNORED)
        return DONE  # Celery's Ignore: acknowledged, the record left as it is, no handlers
    except Reject as reject:
        outcome = _rejected(app, env, reject, clock, keep)
        _after_hooks(app, env, task, request, outcome, reject, None, State.REJECTED)
        return outcome
    except BaseException as exc:  # a task's failure is data, never a worker crash
        if request.is_eager and isinstance(exc, KeyboardInterrupt):
            raise  # apply() runs in the caller's thread: a Ctrl-C there stops the caller
        if (revoked := revoke.stopped(app, env, exc, clock, keep)) is not None:
            hooks.emit("revoked", envelope=env, terminated=True, expired=False)
            return revoked  # revoke --terminate, raised in this thread
        # BaseException too (SystemExit, KeyboardInterrupt, custom ones): raised by the task,
        # they end that attempt. Shutdown signals never arrive as exceptions in a pool slot:
        # the worker's main thread handles them, and processes-pool children ignore SIGINT.
        failure = exc
        outcome = outcome_for_error(env, task, exc, clock, keep)
    else:
        if request.pending_retry is not None:  # self.retry(throw=False), then returned
            outcome, failure = _retried(env, request.pending_retry, clock, keep)
        else:
            # DEBUG: failures, retries and dead letters are logged one by one, successes are
            # counted (the worker's periodic INFO line); see ACTIVITY_LOG_SECONDS in worker.py.
            if debug:
                elapsed = time.monotonic() - began
                logger.debug("task %s[%s] succeeded in %.3fs", env.task, env.id, elapsed)
            outcome = _success(env, task, value, clock, keep)
    if hooked:
        task_class.after_run(task, env.id, args, kwargs, outcome, failure, value)
    _after_hooks(app, env, task, request, outcome, failure, value)
    return outcome


def _after_hooks(
    app: App,
    env: Envelope,
    task: Task[Any, Any],
    request: Request,
    outcome: Outcome,
    failure: BaseException | None,
    value: Any,
    state: State | None = None,
) -> None:
    """The ``retry`` and ``after_execute`` hooks, with the state the run ended in."""
    hooks = app.hooks
    if isinstance(outcome, RetryAt) and hooks.active("retry"):
        hooks.emit(
            "retry", envelope=env, task=task, request=request, exception=failure, eta=outcome.when
        )
    if not hooks.active("after_execute"):
        return
    if state is None:
        state = (
            State.RETRY
            if isinstance(outcome, RetryAt | Defer)
            else State.FAILURE
            if failure is not None or isinstance(outcome, DeadLetter)
            else State.SUCCESS
        )
    hooks.emit(
        "after_execute",
        envelope=env,
        task=task,
        request=request,
        state=state,
        result=value,
        exception=failure,
    )


def _retried(
    env: Envelope, retry: Retry, clock: Clock, keep: bool
) -> tuple[Outcome, BaseException]:
    """``raise self.retry(...)``: the outcome, and the error its handlers are given."""
    exhausted = retry.exc or max_retries_exceeded(env.task, env.id, env.attempt)
    outcome = retry_or_fail(
        env,
        retry.exc or retry,
        clock,
        keep,
        retry.countdown,
        retry.max_retries,
        exhausted,
        eta=retry.eta,
        args=retry.args_override,
        kwargs=retry.kwargs_override,
    )
    return outcome, (exhausted if isinstance(outcome, DeadLetter) else retry.exc or retry)


def _rejected(app: App, env: Envelope, reject: Reject, clock: Clock, keep: bool) -> Outcome:
    """Celery's ``Reject``: ``requeue=True`` puts the message back (as a deferral due now, not
    an attempt; at most ``queue_max_receive_count`` times, then it is dead-lettered so it never
    loops); otherwise it is dead-lettered with the reason and a FAILURE record, as Celery 5.6
    records one (the task will never run again: waiting for it must not hang)."""
    said = "" if reject.reason is None else f": {reject.reason}"
    reason = f"rejected by the task{said}"
    if reject.requeue:
        try:  # the header is untrusted: a forged count must not extend the bound
            done = max(0, int(env.headers.get(REQUEUE_HEADER, "0")))
        except ValueError:
            done = 0
        limit = app.conf.queue_max_receive_count
        if done < limit:
            logger.info("task %s[%s] %s; requeued", env.task, env.id, reason)
            back = {**env.headers, REQUEUE_HEADER: str(done + 1)}
            return Defer(envelope=env.model_copy(update={"headers": back}), until=clock.now())
        reason = f"{reason}; requeued {done} times (queue_max_receive_count), dead-lettered"
    return failure_outcome(env, error_info(reject), reason, clock, keep)


def _success(env: Envelope, task: Task[Any, Any], value: Any, clock: Clock, keep: bool) -> Outcome:
    """A task returned ``value``: its record, and the envelope when a chain or chord follows."""
    follows = bool(env.links) or env.chord_id is not None
    if not keep and not follows:
        return DONE
    try:
        stored = task.arguments.dump_result(value)
    except TypeError as exc:
        logger.error("task %s[%s] succeeded but %s", env.task, env.id, exc)
        error = ErrorInfo(type="cloudq.errors.ResultEncodeError", message=str(exc))
        if follows:  # the chain or chord cannot go on without the result
            return failure_outcome(env, error, f"result not JSON: {exc}", clock, keep)
        return Ack(result=_record(env, State.FAILURE, error=error, clock=clock))
    record = _record(env, State.SUCCESS, result=stored, clock=clock) if keep else None
    return Ack(result=record, envelope=env if follows else None, value=stored)
