"""Celery's task and worker signals, fed by the hook bus (``cloudq.middleware``).

``from cloudq.signals import task_prerun`` then ``@task_prerun.connect`` (``sender=`` a task or
its name filters), with the keyword arguments Celery passes. A receiver that raises is logged
and the task goes on. While no receiver is connected to any signal a hook feeds, the bridge is
not called for that hook at all.

What differs from Celery, because the message is a cloud queue's: ``exchange`` is always ``""``
and ``routing_key`` is the cloudq queue name; ``body`` is the envelope as a dict; a header a
``before_task_publish`` receiver adds to ``headers`` travels with the task (a string value, in
``request.headers``) and the protocol fields (``id``, ``task``, ...) are read-only there.
"""

from __future__ import annotations

import os
from typing import Any

from cloudq.app_signals import Signal
from cloudq.middleware import Middleware, refresh_hooks

__all__ = [
    "after_task_publish",
    "beat_init",
    "before_task_publish",
    "celeryd_after_setup",
    "celeryd_init",
    "setup_logging",
    "task_failure",
    "task_postrun",
    "task_prerun",
    "task_received",
    "task_rejected",
    "task_retry",
    "task_revoked",
    "task_success",
    "worker_init",
    "worker_process_init",
    "worker_process_shutdown",
    "worker_ready",
    "worker_shutdown",
]


def _signal(name: str) -> Signal:
    return Signal(name, robust=True, on_change=refresh_hooks)


before_task_publish = _signal("before_task_publish")
after_task_publish = _signal("after_task_publish")
task_received = _signal("task_received")
task_prerun = _signal("task_prerun")
task_postrun = _signal("task_postrun")
task_success = _signal("task_success")
task_failure = _signal("task_failure")
task_retry = _signal("task_retry")
task_revoked = _signal("task_revoked")
task_rejected = _signal("task_rejected")
worker_init = _signal("worker_init")
celeryd_init = _signal("celeryd_init")
"""Sent with the worker's node name as sender (``connect(sender="w1@host")``), ``instance``
(the worker), ``conf`` and ``options``, as Celery's."""
celeryd_after_setup = _signal("celeryd_after_setup")
"""Sent with the node name once the worker's queues exist (``instance``, ``conf``)."""
worker_process_init = _signal("worker_process_init")
worker_process_shutdown = _signal("worker_process_shutdown")
worker_ready = _signal("worker_ready")
worker_shutdown = _signal("worker_shutdown")
beat_init = _signal("beat_init")
setup_logging = Signal("setup_logging", robust=False)
"""Connected: ``cloudq worker`` / ``beat`` call the receivers instead of configuring logging."""

FEEDS: dict[str, tuple[Signal, ...]] = {
    "before_publish": (before_task_publish,),
    "after_publish": (after_task_publish,),
    "received": (task_received,),
    "before_execute": (task_prerun,),
    "after_execute": (task_postrun, task_success, task_failure),
    "retry": (task_retry,),
    "revoked": (task_revoked,),
    "rejected": (task_rejected,),
    "worker_start": (worker_init, celeryd_init),
    "process_start": (worker_process_init,),
    "process_stop": (worker_process_shutdown,),
    "worker_ready": (celeryd_after_setup, worker_ready),
    "worker_stop": (worker_shutdown,),
    "beat_start": (beat_init,),
}
"""Which signals each hook sends."""

PROTOCOL_HEADERS = ("id", "task", "root_id", "parent_id", "group", "eta", "expires", "retries")


def _protocol(envelope: Any) -> dict[str, Any]:
    return {
        "id": envelope.id,
        "task": envelope.task,
        "root_id": envelope.root_id,
        "parent_id": envelope.parent_id,
        "group": envelope.group_id,
        "eta": envelope.eta.isoformat() if envelope.eta else None,
        "expires": envelope.expires.isoformat() if envelope.expires else None,
        "retries": envelope.attempt - 1,
    }


def _published(envelope: Any, headers: dict[str, Any], queue: str) -> dict[str, Any]:
    """The keyword arguments both publish signals share, shaped as Celery's message: the
    envelope as ``body``, its headers with the protocol fields on top, the queue as
    ``routing_key``."""
    return {
        "sender": envelope.task,
        "body": envelope.model_dump(mode="json", exclude={"sig"}),
        "exchange": "",
        "routing_key": queue,
        "headers": {**headers, **_protocol(envelope)},
    }


def _task(app: Any, envelope: Any) -> Any:
    return app.tasks.get(envelope.task) if envelope is not None else None


class SignalsBridge(Middleware):
    """Sends the Celery signals from the hooks; asks for a hook only while one of its signals
    has a receiver."""

    def wants(self, hook: str) -> bool:
        return any(signal.receivers for signal in FEEDS.get(hook, ()))

    def before_publish(self, app: Any, **kw: Any) -> None:
        message = _published(kw["envelope"], kw["headers"], kw["queue"])
        before_task_publish.send(**message, properties={}, declare=[], retry_policy=None)
        for key, value in message["headers"].items():  # what a receiver added travels along
            if key not in PROTOCOL_HEADERS and isinstance(value, str):
                kw["headers"][key] = value

    def after_publish(self, app: Any, **kw: Any) -> None:
        envelope = kw["envelope"]
        after_task_publish.send(**_published(envelope, envelope.headers, kw["queue"]))

    def received(self, app: Any, **kw: Any) -> None:
        task_received.send(sender=kw.get("worker"), request=kw.get("request") or kw["envelope"])

    def before_execute(self, app: Any, **kw: Any) -> None:
        task, request = kw["task"], kw["request"]
        task_prerun.send(
            sender=task, task_id=request.id, task=task, args=request.args, kwargs=request.kwargs
        )

    def after_execute(self, app: Any, **kw: Any) -> None:
        task, request, state = kw["task"], kw["request"], str(kw["state"])
        exc = kw.get("exception")
        if state == "SUCCESS":
            task_success.send(sender=task, result=kw.get("result"))
        elif state == "FAILURE" and exc is not None:
            task_failure.send(
                sender=task,
                task_id=request.id,
                exception=exc,
                args=request.args,
                kwargs=request.kwargs,
                traceback=exc.__traceback__,
                einfo=kw.get("einfo"),
            )
        task_postrun.send(
            sender=task,
            task_id=request.id,
            task=task,
            args=request.args,
            kwargs=request.kwargs,
            retval=exc if exc is not None else kw.get("result"),
            state=state,
        )

    def retry(self, app: Any, **kw: Any) -> None:
        task_retry.send(
            sender=kw["task"], request=kw.get("request"), reason=kw.get("exception"), einfo=None
        )

    def revoked(self, app: Any, **kw: Any) -> None:
        task_revoked.send(
            sender=_task(app, kw["envelope"]),
            request=kw.get("request") or kw["envelope"],
            terminated=kw.get("terminated", False),
            signum=kw.get("signum"),
            expired=kw.get("expired", False),
        )

    def rejected(self, app: Any, **kw: Any) -> None:
        task_rejected.send(sender=None, message=kw["delivery"], exc=kw.get("reason"))

    def worker_start(self, app: Any, **kw: Any) -> None:
        worker = kw["worker"]
        worker_init.send(sender=worker)
        celeryd_init.send(sender=worker.hostname, instance=worker, conf=app.conf, options={})

    def process_start(self, app: Any, **kw: Any) -> None:
        worker_process_init.send(sender=None)

    def process_stop(self, app: Any, **kw: Any) -> None:
        worker_process_shutdown.send(
            sender=None, pid=kw.get("pid", os.getpid()), exitcode=kw.get("exitcode", 0)
        )

    def worker_ready(self, app: Any, **kw: Any) -> None:
        worker = kw["worker"]
        celeryd_after_setup.send(sender=worker.hostname, instance=worker, conf=app.conf)
        worker_ready.send(sender=worker)

    def worker_stop(self, app: Any, **kw: Any) -> None:
        worker_shutdown.send(sender=kw["worker"])

    def beat_start(self, app: Any, **kw: Any) -> None:
        beat_init.send(sender=kw["beat"])


_BRIDGE = SignalsBridge()


def bridge() -> SignalsBridge:
    """The one bridge every app's bus starts with."""
    return _BRIDGE
