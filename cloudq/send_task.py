"""``app.send_task(name, args, kwargs, **options)``: send by name, without the task's code.

A producer that does not import the task cannot check the arguments against its signature:
they are only checked to be JSON here, and the worker checks them against the type hints when
it loads them (a mismatch is dead-lettered with its reason, never run). The retry policy is the
worker's own: the message says so, since the producer cannot know the task's options.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Unpack

from cloudq.arguments import is_json
from cloudq.envelope import RetryPolicy
from cloudq.errors import TaskArgumentError
from cloudq.ids import new_id

if TYPE_CHECKING:
    from cloudq.app import App
    from cloudq.result import AsyncResult
    from cloudq.task import SendOptions

WORKER_POLICY_HEADER = "cloudq-retry-policy"
"""Set on what ``send_task`` sends for a task it does not have: the worker applies its task's
retry policy instead of the placeholder the message carries. It can only select the worker's
own policy, so an untrusted message gains nothing by setting it."""
WORKER_POLICY = "worker"


def send_task(
    app: App,
    name: str,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    **options: Unpack[SendOptions],
) -> AsyncResult:
    """Send task ``name``, routed by ``task_routes`` as any other; returns its AsyncResult.

    A task registered in this process is sent as ``apply_async`` would (arguments checked),
    except that ``task_always_eager`` does not run it here (as in Celery)."""
    from cloudq import canvas

    call_args, call_kwargs = list(args or ()), dict(kwargs or {})
    send: dict[str, Any] = dict(options)
    link, link_error = send.pop("link", None), send.pop("link_error", None)
    task = app.tasks.get(name)
    if task is not None:
        envelope = task.envelope(call_args, call_kwargs, **send)
    else:
        for value in [*call_args, *call_kwargs.values()]:
            if not is_json(value):
                raise TaskArgumentError(
                    f"send_task {name!r}: a {type(value).__name__} argument is not JSON and "
                    "cannot travel in a message; pass an id and load the object in the task"
                )
        from cloudq.task import build_envelope

        conf = app.conf
        headers = {**(options.get("headers") or {}), WORKER_POLICY_HEADER: WORKER_POLICY}
        envelope = build_envelope(
            app,
            name,
            call_args,
            call_kwargs,
            retry=RetryPolicy(
                max_retries=conf.task_max_retries, default_delay=conf.task_default_retry_delay
            ),
            task_id=options.get("task_id") or new_id(),
            fifo_group=options.get("fifo_group"),
            priority=options.get("priority"),
            route_args=(call_args, call_kwargs),
            countdown=options.get("countdown"),
            eta=options.get("eta"),
            expires=options.get("expires"),
            queue=options.get("queue"),
            headers=headers,
        )
    envelope = canvas.with_links(envelope, link, link_error)
    app.send_envelopes([envelope])
    return app.AsyncResult(envelope.id, task_name=name)
