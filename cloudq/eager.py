"""``task.apply()``: the worker's path, run in the caller, retries included, without a broker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cloudq.adapters.base import Delivery
from cloudq.envelope import Envelope, sign
from cloudq.execute import execute
from cloudq.logsafe import get_logger
from cloudq.outcome import Ack, DeadLetter, Defer, RetryAt
from cloudq.result import EagerResult, rebuild_exception
from cloudq.results.base import ErrorInfo, State

if TYPE_CHECKING:
    from cloudq.task import Task

logger = get_logger("cloudq.eager")


def run_eagerly(task: Task[Any, Any], envelope: Envelope, throw: bool = False) -> EagerResult:
    """Execute until done or dead; retry delays are not waited for (as in Celery's ``apply``)."""
    while True:
        app = task.app
        body = sign(envelope, app.signing_keys).encode()
        delivery = Delivery(
            queue=envelope.queue, body=body, message_id=envelope.id, receive_count=1
        )
        outcome = execute(delivery, app, eager=True)
        match outcome:
            case RetryAt(envelope=nxt):
                envelope = nxt
            case Defer(envelope=nxt):
                envelope = nxt.model_copy(update={"eta": None})
            case Ack(result=result):
                if result is not None and result.error is not None:
                    return _failed(envelope.id, result.error, throw)
                value = task.arguments.load_result(result.result) if result else None
                return EagerResult(envelope.id, State.SUCCESS, value, None)
            case DeadLetter(reason=reason, result=result):
                error = (
                    result.error
                    if result and result.error
                    else ErrorInfo(type="cloudq.errors.TaskFailed", message=reason)
                )
                return _failed(envelope.id, error, throw)


def _failed(task_id: str, error: ErrorInfo, throw: bool) -> EagerResult:
    if throw:
        raise rebuild_exception(error)
    return EagerResult(task_id, State.FAILURE, None, error)
