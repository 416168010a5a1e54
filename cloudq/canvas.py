"""Canvas: signatures, chains, groups and chords, as JSON that travels in envelopes.

- A chain needs no result backend: each task carries the rest of the chain in ``links`` and
  sends the next one with its result when it succeeds. A failure stops the chain and sends the
  error callbacks (``link_error``) with the failed task's id.
- A group is sent in batches through the adapter's batch send, not one call per task.
- A chord counts its header in the result backend with an atomic operation (no polling task, as
  Celery's ``chord_unlock``): the body runs once, when the last header task finishes, with the
  header results in order. A duplicate delivery of a header task neither fires the body twice
  nor early; a failed header task sends the chord's error callbacks once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from cloudq.errors import ConfigurationError
from cloudq.ids import new_id
from cloudq.result import GroupResult
from cloudq.storeseal import seal_chord_body

if TYPE_CHECKING:
    from cloudq.app import App
    from cloudq.envelope import Envelope
    from cloudq.result import AsyncResult

SEND_OPTIONS = frozenset(
    {"queue", "countdown", "eta", "expires", "priority", "task_id", "headers", "fifo_group"}
)


class Signature(BaseModel):
    """A task call to make later: ``add.s(2, 2)``. Immutable ones (``si``) ignore parent results."""

    model_config = ConfigDict(frozen=False, defer_build=True)

    task: str
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    immutable: bool = False
    links: list[Signature] = Field(default_factory=list)
    errlinks: list[Signature] = Field(default_factory=list)
    _app: App | None = PrivateAttr(default=None)

    def bind_app(self, app: App) -> Signature:
        self._app = app
        return self

    @property
    def app(self) -> App:
        if self._app is None:
            raise ConfigurationError(f"signature of {self.task!r} is not bound to an app")
        return self._app

    def clone(self) -> Signature:
        """A deep copy sharing the app (the app itself is never copied)."""
        copy = Signature.model_validate(self.model_dump())
        copy._app = self._app
        for sub in (*copy.links, *copy.errlinks):
            sub._app = self._app
        return copy

    def set(self, **options: Any) -> Signature:
        """A copy with send options changed: ``add.s(1, 2).set(queue="low", countdown=5)``."""
        unknown = set(options) - SEND_OPTIONS
        if unknown:
            raise ConfigurationError(f"unknown signature option(s) {sorted(unknown)}")
        copy = self.clone()
        copy.options.update(options)
        return copy

    def link(self, callback: Signature) -> Signature:
        """Run ``callback`` with this task's result when it succeeds; returns the callback."""
        self.links.append(callback)
        return callback

    def link_error(self, errback: Signature) -> Signature:
        """Run ``errback`` with the failed task's id when this task fails for good."""
        self.errlinks.append(errback)
        return errback

    def __or__(self, other: Signature | Chain) -> Chain:
        return Chain([self, *(other.tasks if isinstance(other, Chain) else [other])])

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def apply_async(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> AsyncResult:
        """Send it; ``args`` go before the signature's own (the parent result comes first)."""
        envelope = build_envelope(self.app, self, args, kwargs or {}, **options)
        self.app.send_envelopes([envelope])
        return self.app.AsyncResult(envelope.id, task_name=self.task)


def build_envelope(
    app: App,
    sig: Signature,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> Envelope:
    """The envelope for ``sig`` called with extra ``args`` (unless immutable) and options."""
    call_args = list(sig.args) if sig.immutable else [*args, *sig.args]
    call_kwargs = dict(sig.kwargs) if sig.immutable else {**sig.kwargs, **(kwargs or {})}
    options = {**sig.options, **overrides}
    task = app.tasks.get(sig.task)
    if task is None:
        raise ConfigurationError(
            f"signature names task {sig.task!r}, which app {app.main!r} does not have"
        )
    envelope = task.envelope(call_args, call_kwargs, **options)
    updates: dict[str, Any] = {}
    if sig.links:
        updates["links"] = [link.model_dump(mode="json") for link in sig.links]
    if sig.errlinks:
        updates["errlinks"] = [err.model_dump(mode="json") for err in sig.errlinks]
    return envelope.model_copy(update=updates) if updates else envelope


def signature_from(data: Mapping[str, Any], app: App) -> Signature:
    return Signature.model_validate(data).bind_app(app)


class Chain:
    """``chain(a.s(), b.s(), c.s())`` or ``a.s() | b.s()``: each gets the previous result."""

    def __init__(self, tasks: Iterable[Signature]) -> None:
        self.tasks = list(tasks)
        if not self.tasks:
            raise ConfigurationError("a chain needs at least one signature")

    def __or__(self, other: Signature | Chain) -> Chain:
        return Chain([*self.tasks, *(other.tasks if isinstance(other, Chain) else [other])])

    def link_error(self, errback: Signature) -> Signature:
        for sig in self.tasks:
            sig.errlinks.append(errback)
        return errback

    def nested(self) -> Signature:
        """The first signature, carrying the rest as nested links; ids assigned up front."""
        sigs = [s.clone() for s in self.tasks]
        for sig in sigs:
            sig.options.setdefault("task_id", new_id())
        for current, nxt in zip(reversed(sigs[:-1]), reversed(sigs[1:]), strict=True):
            current.links.append(nxt)
        return sigs[0]

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def apply_async(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> AsyncResult:
        """Send the first task; the result handle is the last task's."""
        first = self.nested()
        last_id = _last(first).options["task_id"]
        first.apply_async(args, kwargs, **options)
        return first.app.AsyncResult(last_id, task_name=self.tasks[-1].task)


def _last(sig: Signature) -> Signature:
    while sig.links:
        sig = sig.links[0]
    return sig


def chain(*tasks: Signature | Iterable[Signature]) -> Chain:
    flat: list[Signature] = []
    for item in tasks:
        flat.extend([item] if isinstance(item, Signature) else item)
    return Chain(flat)


class Group:
    """``group(add.s(i, i) for i in range(10))``: run in parallel, sent in batches."""

    def __init__(self, tasks: Iterable[Signature]) -> None:
        self.tasks = list(tasks)

    def envelopes(
        self, app: App, args: Sequence[Any], group_id: str, **extra: Any
    ) -> list[Envelope]:
        out = []
        for sig in self.tasks:
            envelope = build_envelope(app, sig, args)
            out.append(envelope.model_copy(update={"group_id": group_id, **extra}))
        return out

    def delay(self, *args: Any) -> GroupResult:
        return self.apply_async(args)

    def apply_async(self, args: Sequence[Any] = ()) -> GroupResult:
        if not self.tasks:
            raise ConfigurationError("a group needs at least one signature")
        app = self.tasks[0].app
        group_id = new_id()
        envelopes = self.envelopes(app, args, group_id)
        app.send_envelopes(envelopes)
        return GroupResult(group_id, [app.AsyncResult(e.id, task_name=e.task) for e in envelopes])


def group(*tasks: Signature | Iterable[Signature]) -> Group:
    flat: list[Signature] = []
    for item in tasks:
        flat.extend([item] if isinstance(item, Signature) else item)
    return Group(flat)


class Chord:
    """``chord(header)(body)``: the body gets the header's results, in order, exactly once."""

    def __init__(self, header: Iterable[Signature], body: Signature | None = None) -> None:
        self.header = Group(header)
        self.body = body

    def __call__(self, body: Signature) -> AsyncResult:
        self.body = body
        return self.apply_async()

    def apply_async(self, args: Sequence[Any] = ()) -> AsyncResult:
        if self.body is None:
            raise ConfigurationError("a chord needs a body: chord(header)(body)")
        app = self.body.app
        store = app.chord_store()
        body = self.body.clone()
        body.options.setdefault("task_id", new_id())
        chord_id = new_id()
        if not self.header.tasks:
            body.apply_async(([],))
        else:
            store.chord_start(
                chord_id,
                len(self.header.tasks),
                seal_chord_body(app.signing_keys, chord_id, body.model_dump(mode="json")),
                app.conf.result_expires,
            )
            envelopes = [
                e.model_copy(update={"chord_id": chord_id, "chord_index": i})
                for i, e in enumerate(self.header.envelopes(app, args, chord_id))
            ]
            app.send_envelopes(envelopes)
        return app.AsyncResult(body.options["task_id"], task_name=body.task)


def chord(header: Iterable[Signature], body: Signature | None = None) -> Chord:
    return Chord(header, body)
