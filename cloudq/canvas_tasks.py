"""The built-in tasks the canvas compiles to, registered on every app (named under ``cloudq.``
so they cannot clash with an app's own): a group or chord that follows a task in a chain, the
body closing a group that ends a chord header task, and ``task.map`` / ``task.starmap`` /
``task.chunks`` (Celery's ``celery.map``, ``celery.starmap``).

They run only what a verified envelope carried (``execute`` checks it before any task runs),
so what they send is signed as the producer's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cloudq.canvas import COLLECT_TASK, GROUP_TASK, MAP_TASK, STARMAP_TASK, Signature, expand
from cloudq.errors import NotRegistered

if TYPE_CHECKING:
    from cloudq.app import App
    from cloudq.task import Task


def register_builtins(app: App) -> None:
    @app.task(name=GROUP_TASK, ignore_result=True, bind=True)
    def send_group(self: Task[..., None], *parent: Any, **spec: Any) -> None:
        """Send a group (a chord if it has a body) with the parent's result. Its tasks are the
        parent's children, as if the parent had sent them: this hop is not their parent."""
        wire = Signature(task=GROUP_TASK, kwargs=spec).bind_app(app)
        family = {"parent_id": self.request.parent_id, "root_id": self.request.root_id}
        envelopes = expand(app, wire, parent)
        app.send_envelopes([e.model_copy(update=family) for e in envelopes])

    @app.task(name=COLLECT_TASK)
    def collect(results: list[Any]) -> list[Any]:
        """A chord body that returns its header's results as they are."""
        return results

    @app.task(name=MAP_TASK)
    def xmap(task: str, it: list[Any]) -> list[Any]:
        """Call ``task`` with each item, here, in order."""
        return [_call(app, task, [item]) for item in it]

    @app.task(name=STARMAP_TASK)
    def xstarmap(task: str, it: list[list[Any]]) -> list[Any]:
        """Call ``task`` with each item's elements as arguments."""
        return [_call(app, task, item) for item in it]


def _call(app: App, name: str, args: list[Any]) -> Any:
    """One call, its arguments checked as a worker checks a message's; its result as JSON."""
    task = app.tasks.get(name)
    if task is None:
        raise NotRegistered(f"task {name!r} is not registered on app {app.main!r}")
    loaded_args, loaded_kwargs = task.arguments.load(args, {})
    return task.arguments.dump_result(task.run_with(loaded_args, loaded_kwargs))
