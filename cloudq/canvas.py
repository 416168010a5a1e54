"""Canvas: signatures, chains, groups and chords, compiled at send time into JSON that travels
in envelopes, so the worker runs nothing it does not already run.

- Any canvas (``a | group(b, c) | d``, a chord inside a chain, a group inside a group) is
  compiled by ``to_wire`` into one signature with every task id assigned up front: chain steps
  are ``links`` (marked ``chain_step``, so a user's ``link`` callbacks stay callbacks), a group
  or chord that follows a task is a link to the built-in ``cloudq.group`` task (registered on
  every app by ``cloudq.canvas_tasks``), which sends it with the parent's result.
- A chain needs no result backend. A failure stops it; ``fail_downstream`` writes FAILURE for
  every id after it, so the caller's ``get()`` raises instead of waiting on PENDING.
- A group is sent in batches through the adapter's batch send, not one call per task.
- A chord counts its header in the result backend with an atomic operation (no polling task, as
  Celery's ``chord_unlock``): the body runs once, when the last header task finishes, with the
  header results in order. A failed header task fails the body with ``ChordError``.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from cloudq.envelope import HEADER_ERROR_MESSAGE, HEADER_ERROR_TRACEBACK, HEADER_ERROR_TYPE
from cloudq.errors import ConfigurationError, SignatureError
from cloudq.ids import new_id
from cloudq.logsafe import get_logger
from cloudq.result import GroupResult
from cloudq.results.base import ErrorInfo, State, TaskResult
from cloudq.storeseal import open_chord_body, seal_chord_body

if TYPE_CHECKING:
    from cloudq.app import App
    from cloudq.envelope import Envelope
    from cloudq.result import AsyncResult

logger = get_logger("cloudq.canvas")

SEND_OPTIONS = frozenset(
    {"queue", "countdown", "eta", "expires", "priority", "task_id", "headers", "fifo_group"}
)
LINK_OPTIONS = frozenset({"link", "link_error"})
"""Options of ``apply_async`` and ``set`` that become links, not envelope fields."""

CHAIN_STEP = "chain_step"
"""Marks the link that is the chain's next step (a ``link()`` callback is not one)."""
_ENVELOPE_FIELDS = ("group_id", "chord_id", "chord_index")
"""Signature options compiled in by ``to_wire`` and copied onto the envelope's own fields."""
_INTERNAL = frozenset({CHAIN_STEP, *_ENVELOPE_FIELDS})

GROUP_TASK = "cloudq.group"
"""The built-in task that sends a group (a chord if it has a body) following a task."""
COLLECT_TASK = "cloudq.collect"
"""The built-in body that returns its header's results (a group closing a chord header task)."""
MAP_TASK = "cloudq.map"
STARMAP_TASK = "cloudq.starmap"

_CELERY_HINTS = {
    "routing_key": "cloudq routes by queue: write queue='...'",
    "exchange": "cloudq routes by queue: write queue='...'",
    "serializer": "cloudq sends JSON only: drop serializer=",
    "compression": "drop compression= (large bodies go to a claim-check store)",
    "retry": "sends are retried by the cloud SDK: drop retry=",
    "retry_policy": "sends are retried by the cloud SDK: drop retry_policy=",
    "time_limit": "set time_limit on @app.task",
    "soft_time_limit": "set soft_time_limit on @app.task",
    "shadow": "cloudq has no shadow names: drop shadow=",
}
"""Celery signature options cloudq does not take, each with what to write instead."""


def check_options(options: Mapping[str, Any]) -> None:
    """Refuse an option ``set``/``signature`` cannot honour, saying what to write instead."""
    unknown = set(options) - SEND_OPTIONS - LINK_OPTIONS - {"immutable"}
    if unknown:
        hints = "; ".join(f"{k}: {_CELERY_HINTS[k]}" for k in sorted(unknown) if k in _CELERY_HINTS)
        raise ConfigurationError(
            f"unknown signature option(s) {sorted(unknown)}"
            + (f" ({hints})" if hints else f"; the options are {sorted(SEND_OPTIONS)}")
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

    @property
    def id(self) -> str | None:
        """The task id, once ``freeze()`` (or ``set(task_id=...)``) gave it one."""
        value = self.options.get("task_id")
        return None if value is None else str(value)

    @property
    def name(self) -> str:
        return self.task

    def clone(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> Signature:
        """A deep copy sharing the app (never copied); Celery's partial ``args``/``kwargs``
        and ``options`` are merged in."""
        copy = Signature.model_validate(self.model_dump())
        _bind_all(copy, self._app)
        if args or kwargs:
            copy.args, copy.kwargs = _merge(copy, args, kwargs or {})
        return copy._set(options) if options else copy

    def set(self, **options: Any) -> Signature:
        """Change send options: ``add.s(1, 2).set(queue="low", countdown=5)``. Returns the
        signature, as Celery's does (``clone()`` first to keep the original)."""
        check_options(options)
        return self._set(options)

    def _set(self, options: Mapping[str, Any]) -> Signature:
        opts = dict(options)
        if "immutable" in opts:
            self.immutable = bool(opts.pop("immutable"))
        for callback in _as_list(opts.pop("link", None)):
            self.link(callback)
        for errback in _as_list(opts.pop("link_error", None)):
            self.link_error(errback)
        self.options.update(opts)
        return self

    def link(self, callback: Canvas) -> Canvas:
        """Run ``callback`` with this task's result when it succeeds; returns the callback."""
        self.links.append(to_wire(callback))
        return callback

    def link_error(self, errback: Signature) -> Signature:
        """Run ``errback`` when this task fails for good: with the failed task's id, or, if its
        function takes ``(request, exc, traceback)``, called in the worker as Celery does."""
        self.errlinks.append(errback)
        return errback

    def on_error(self, errback: Signature) -> Signature:
        """``link_error``, returning this signature: ``add.s(2, 2).on_error(log.s()).delay()``."""
        self.link_error(errback)
        return self

    def __or__(self, other: Canvas) -> Chain:
        return Chain([self, other])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task here, now, as Celery's ``sig()`` does (partial arguments merged)."""
        call_args, call_kwargs = _merge(self, args, kwargs)
        return self.app.tasks[self.task](*call_args, **call_kwargs)

    def __invert__(self) -> Any:
        """Celery's ``~sig``: send it and wait for the result."""
        return self.delay().get()

    def freeze(self, _id: str | None = None) -> AsyncResult:
        """Give it its task id now; the handle it will have once sent."""
        if _id is not None:
            self.options["task_id"] = _id
        self.options.setdefault("task_id", new_id())
        return self.app.AsyncResult(self.options["task_id"], task_name=self.task)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def apply_async(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> AsyncResult:
        """Send it; ``args`` go before the signature's own (the parent result comes first).
        ``link=`` and ``link_error=`` add callbacks, other options override the signature's."""
        sig = self._linked(options)
        if self.app.conf.task_always_eager:
            return run_eagerly(to_wire(sig), args, kwargs)  # type: ignore[no-any-return]
        envelope = build_envelope(self.app, sig, args, kwargs or {}, **options)
        self.app.send_envelopes([envelope])
        return self.app.AsyncResult(envelope.id, task_name=self.task)

    def _linked(self, options: dict[str, Any]) -> Signature:
        """This signature, or a clone with the ``link=``/``link_error=`` popped from
        ``options`` added."""
        if not LINK_OPTIONS & set(options):
            return self
        sig = self.clone()
        sig._set({k: options.pop(k) for k in LINK_OPTIONS & set(options)})
        return sig

    async def adelay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        """``delay()`` for coroutines (``cloudq.aio``): never blocks the loop."""
        return await self.aapply_async(args, kwargs)

    async def aapply_async(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> AsyncResult:
        """``apply_async()`` awaited: the envelope built here, sent as ``Task.aapply_async``
        sends (``cloudq.aio.asend_envelopes``)."""
        from cloudq import aio

        if self.app.conf.task_always_eager:
            return await aio.run_blocking(self.app, self.apply_async, args, kwargs, **options)
        sig = self._linked(options)
        envelope = build_envelope(self.app, sig, args, kwargs or {}, **options)
        await aio.asend_envelopes(self.app, [envelope])
        return self.app.AsyncResult(envelope.id, task_name=self.task)


def _bind_all(sig: Signature, app: App | None) -> None:
    stack = [sig]
    while stack:
        current = stack.pop()
        current._app = app
        stack.extend((*current.links, *current.errlinks))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _merge(
    sig: Signature, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    """Celery's partial application: new args first, then the signature's; kwargs merged."""
    if sig.immutable:
        return list(sig.args), dict(sig.kwargs)
    return [*args, *sig.args], {**sig.kwargs, **kwargs}


def build_envelope(
    app: App,
    sig: Signature,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> Envelope:
    """The envelope for ``sig`` called with extra ``args`` (unless immutable) and options."""
    call_args, call_kwargs = _merge(sig, args, kwargs or {})
    options = {**sig.options, **overrides}
    fields = {k: options.pop(k) for k in _ENVELOPE_FIELDS if k in options}
    for key in _INTERNAL | LINK_OPTIONS:
        options.pop(key, None)
    task = app.tasks.get(sig.task)
    if task is None:
        raise ConfigurationError(
            f"signature names task {sig.task!r}, which app {app.main!r} does not have"
        )
    envelope = task.envelope(call_args, call_kwargs, **options)
    updates: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
    if sig.links:
        updates["links"] = [link.model_dump(mode="json") for link in sig.links]
    if sig.errlinks:
        updates["errlinks"] = [err.model_dump(mode="json") for err in sig.errlinks]
    return envelope.model_copy(update=updates) if updates else envelope


def with_links(envelope: Envelope, link: Any, link_error: Any) -> Envelope:
    """``apply_async(link=..., link_error=...)`` of a task: the callbacks in its envelope."""
    links = [to_wire(c).model_dump(mode="json") for c in _as_list(link)]
    errlinks = [to_wire(e).model_dump(mode="json") for e in _as_list(link_error)]
    if not links and not errlinks:
        return envelope
    return envelope.model_copy(
        update={"links": [*envelope.links, *links], "errlinks": [*envelope.errlinks, *errlinks]}
    )


def signature_from(data: Mapping[str, Any], app: App) -> Signature:
    sig = Signature.model_validate(data)
    _bind_all(sig, app)
    return sig


def signature(
    varies: str | Signature | Mapping[str, Any],
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    app: App | None = None,
    **options: Any,
) -> Signature:
    """Celery's ``signature("tasks.add", args=(2, 2), countdown=10)``; a signature or its dict
    form comes back as a signature. Bound to ``app``, else to the current app."""
    if isinstance(varies, Signature):
        return varies
    if app is None:
        from cloudq.shared import current_app

        app = current_app()
    if isinstance(varies, Mapping):
        return signature_from(varies, app)
    check_options(options)
    sig = Signature(task=varies, args=list(args or ()), kwargs=dict(kwargs or {}))
    return sig.bind_app(app)._set(options)


# --- compiling a canvas to one wire signature ---------------------------------------------


def to_wire(node: Canvas) -> Signature:
    """``node`` as one signature to send or to carry as a link, task ids assigned (a copy:
    the caller's objects are left as they are)."""
    if isinstance(node, Signature):
        wire = node.clone()
        wire.options.setdefault("task_id", new_id())
        return wire
    if isinstance(node, Chain | Group | Chord):
        return node.wire()
    raise ConfigurationError(
        f"a canvas takes signatures, chains, groups and chords, not {type(node).__name__} "
        "(write task.s(...) for a task)"
    )


MAX_CHAIN_LISTED = 100
"""Chain steps a result record lists ahead of its task (``chain_ahead``)."""


def chain_ahead(links: Sequence[Mapping[str, Any]]) -> list[str]:
    """The task ids of the chain steps after a task with these ``links``, in order, read from
    the compiled JSON (ids are assigned at send time). A step that is a group ends the list
    with its hop's id. Never raises: what is not a well-formed step ends the walk."""
    ids: list[str] = []
    current: Any = links
    while isinstance(current, list) and len(ids) < MAX_CHAIN_LISTED:
        step = next(
            (
                link
                for link in current
                if isinstance(link, dict)
                and isinstance(link.get("options"), dict)
                and link["options"].get(CHAIN_STEP)
            ),
            None,
        )
        if step is None:
            break
        task_id = step["options"].get("task_id")
        if not isinstance(task_id, str):
            break
        ids.append(task_id)
        if step.get("task") == GROUP_TASK:
            break
        current = step.get("links")
    return ids


def _next_step(sig: Signature) -> Signature | None:
    return next((link for link in sig.links if link.options.get(CHAIN_STEP)), None)


def _body(wire: Signature) -> Signature | None:
    data = wire.kwargs.get("body")
    return None if data is None else signature_from(data, wire.app)


def _members(wire: Signature) -> list[Signature]:
    return [signature_from(m, wire.app) for m in wire.kwargs.get("tasks", [])]


def _tail(wire: Signature) -> Signature:
    """The last step of a compiled chain (where a following step or a chord part goes)."""
    while True:
        if wire.task == GROUP_TASK:
            body = _body(wire)
            if body is None:
                return wire
            wire = body
            continue
        step = _next_step(wire)
        if step is None:
            return wire
        wire = step


def _update_tail(wire: Signature, change: Any) -> None:
    """Apply ``change`` to the tail; a tail inside a chord's body is written back as JSON."""
    if wire.task == GROUP_TASK:
        body = _body(wire)
        if body is None:
            change(wire)
            return
        _update_tail(body, change)
        wire.kwargs["body"] = body.model_dump(mode="json")
        return
    step = _next_step(wire)
    if step is None:
        change(wire)
    else:
        _update_tail(step, change)


def _then(wire: Signature, nxt: Signature) -> None:
    def add(tail: Signature) -> None:
        if tail.task == GROUP_TASK and tail.kwargs.get("body") is None:
            raise ConfigurationError("a group followed by a step is a chord")  # to_wire merged
        nxt.options[CHAIN_STEP] = True
        tail.links.append(nxt)

    _update_tail(wire, add)


def _queue_of(wire: Signature) -> str:
    queue = wire.options.get("queue")
    return str(queue) if queue else wire.app.route(wire.task, wire.args, wire.kwargs)


def _app_of(nodes: Sequence[Canvas]) -> App:
    for node in nodes:
        if isinstance(node, Signature):
            return node.app
        if isinstance(node, Chain | Group):
            return _app_of(node.tasks)
        if isinstance(node, Chord):
            return _app_of([*node.header.tasks, *([node.body] if node.body else [])])
    raise ConfigurationError("an empty canvas has no app to send it with")


def _group_wire(app: App, members: Sequence[Canvas], body: Canvas | None) -> Signature:
    if body is None and not members:
        raise ConfigurationError("a group needs at least one signature")
    group_id = new_id()
    wires = [to_wire(m) for m in members]
    kwargs: dict[str, Any] = {"group_id": group_id}
    if body is not None:
        app.chord_store()  # no backend: refused now, before anything is sent
        kwargs["chord_id"] = group_id
        kwargs["body"] = to_wire(body).model_dump(mode="json")
        for index, wire in enumerate(wires):
            _update_tail(wire, _chord_part(group_id, index))
    for wire in wires:
        wire.options.setdefault("group_id", group_id)
    kwargs["tasks"] = [w.model_dump(mode="json") for w in wires]
    queue = _queue_of(wires[0]) if wires else _queue_of(to_wire(body)) if body else None
    sig = Signature(task=GROUP_TASK, kwargs=kwargs, options={"task_id": new_id(), "queue": queue})
    return sig.bind_app(app)


def _chord_part(chord_id: str, index: int) -> Any:
    def mark(tail: Signature) -> None:
        if tail.task == GROUP_TASK:  # ends in a group: its part is the group's results
            _close_group(tail)
            _update_tail(tail, mark)
            return
        tail.options.update(chord_id=chord_id, chord_index=index)

    return mark


def _close_group(wire: Signature) -> None:
    """Make a group a chord whose body (the built-in ``cloudq.collect``) returns the group's
    results: a chord header task that ends in a group counts once, with that list."""
    chord_id = str(wire.kwargs["group_id"])
    members = _members(wire)
    for index, member in enumerate(members):
        _update_tail(member, _chord_part(chord_id, index))
    collect = Signature(task=COLLECT_TASK, options={"task_id": new_id(), "queue": _queue_of(wire)})
    wire.kwargs.update(
        chord_id=chord_id,
        body=collect.model_dump(mode="json"),
        tasks=[m.model_dump(mode="json") for m in members],
    )


# --- sending a wire signature -----------------------------------------------------------


def expand(
    app: App,
    wire: Signature,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> list[Envelope]:
    """The envelopes that start ``wire``; a chord's counter is started here, before its header
    is sent (the built-in group task and the caller both come here)."""
    if wire.task != GROUP_TASK:
        return [build_envelope(app, wire, args, kwargs, **overrides)]
    spec = wire.kwargs
    members = _members(wire)
    body = spec.get("body")
    if body is not None:
        chord_id = str(spec["chord_id"])
        if not members:
            return expand(app, signature_from(body, app), [[]])
        sealed = seal_chord_body(app.signing_keys, chord_id, body)
        app.chord_store().chord_start(chord_id, len(members), sealed, app.conf.result_expires)
    return [e for m in members for e in expand(app, m, args, kwargs, **overrides)]


def send_wire(
    wire: Signature, args: Sequence[Any], kwargs: Mapping[str, Any] | None, **options: Any
) -> Any:
    """Send a compiled canvas from the caller; its handle (``result_of``). With
    ``task_always_eager`` it runs here instead (``run_eagerly``)."""
    app = wire.app
    if app.conf.task_always_eager:
        return run_eagerly(wire, args, kwargs)
    app.send_envelopes(wire_envelopes(wire, args, kwargs, **options))
    return result_of(wire)


def wire_envelopes(
    wire: Signature, args: Sequence[Any], kwargs: Mapping[str, Any] | None, **options: Any
) -> list[Envelope]:
    """The envelopes that send a compiled canvas (a chord's counter started first, which may
    block on the store)."""
    app = wire.app
    if wire.task == GROUP_TASK:  # sent from here: no hop through the built-in task
        return expand(app, wire, args, kwargs, **options)
    return [build_envelope(app, wire, args, kwargs, **options)]


def run_eagerly(
    wire: Signature,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    parent: Any = None,
) -> Any:
    """Celery's test mode for a canvas: each task runs here as ``apply()`` runs it, its result
    going on as a message would take it; a failure stops what follows (``get()`` raises it;
    ``task_eager_propagates`` raises at the call). Its handle, with ``.parent`` as
    ``result_of``'s."""
    app = wire.app
    if wire.task == GROUP_TASK:
        members = [run_eagerly(m, args, kwargs) for m in _members(wire)]
        header = GroupResult(str(wire.kwargs["group_id"]), members)
        vars(header)["parent"] = parent
        body = _body(wire)
        if body is None:
            return header
        failed = next((r for r in members if r.failed()), None)
        if failed is not None:
            return failed
        return run_eagerly(body, [[r.get() for r in members]], None, header)
    call_args, call_kwargs = _merge(wire, args, kwargs or {})
    task = app.tasks.get(wire.task)
    if task is None:
        raise ConfigurationError(f"signature names task {wire.task!r}, not in app {app.main!r}")
    own = task.apply(call_args, call_kwargs, task_id=wire.id, throw=app.conf.task_eager_propagates)
    vars(own)["parent"] = parent
    if own.failed():
        return own
    final = own
    for link in wire.links:
        handle = run_eagerly(link, [own.get()], None, own)
        if link.options.get(CHAIN_STEP):
            final = handle
    return final


def result_of(wire: Signature, parent: Any = None) -> Any:
    """The caller's handle on a compiled canvas: the last step's result, each ``.parent`` the
    step before (set client-side, as Celery does); a group's is a ``GroupResult``."""
    app = wire.app
    own: Any
    if wire.task == GROUP_TASK:
        header = GroupResult(str(wire.kwargs["group_id"]), [result_of(m) for m in _members(wire)])
        vars(header)["parent"] = parent
        body = _body(wire)
        return header if body is None else result_of(body, header)
    own = app.AsyncResult(str(wire.options["task_id"]), task_name=wire.task)
    vars(own)["parent"] = parent
    step = _next_step(wire)
    return own if step is None else result_of(step, own)


# --- failure propagation ----------------------------------------------------------------


def failure_of(envelope: Envelope) -> ErrorInfo:
    """The error a dead-lettered envelope carries in its headers (``execute`` wrote them)."""
    headers = envelope.headers
    return ErrorInfo(
        type=headers.get(HEADER_ERROR_TYPE, "cloudq.errors.TaskFailed"),
        message=headers.get(HEADER_ERROR_MESSAGE, "failed"),
        traceback=headers.get(HEADER_ERROR_TRACEBACK, ""),
    )


def chord_error(failed_id: str, error: ErrorInfo) -> ErrorInfo:
    """Celery's ``ChordError: Dependency <id> raised ValueError('...')``."""
    kind = error.type.rpartition(".")[2]
    return ErrorInfo(
        type="cloudq.errors.ChordError",
        message=f"Dependency {failed_id} raised {kind}({error.message!r})",
        traceback=error.traceback,
    )


def fail_downstream(app: App, envelope: Envelope, chord_body: Mapping[str, Any] | None) -> None:
    """``envelope`` failed for good: every task that can now never run gets a FAILURE record,
    so ``get()`` on it raises the failing task's error (``ChordError`` for a chord body whose
    header failed) instead of waiting on PENDING. ``chord_body`` is the verified body of the
    chord this failure fails first (``settle`` opened it), else None."""
    if app.backend is None:
        return
    error = failure_of(envelope)
    work = _steps(envelope.links, error)
    if chord_body is not None:
        work.append((chord_body, chord_error(envelope.id, error)))
    _fail_all(app, envelope.id, work)


def fail_unsent(
    app: App, task_id: str, links: Sequence[Any], chord_id: str | None, error: ErrorInfo
) -> None:
    """A follow-up that can never be sent (``settle`` stored its FAILURE): the steps after it
    fail with its error, and the chord it was a header part of with ``ChordError``."""
    if app.backend is None:
        return
    work = _steps(links, error)
    body = _fail_chord(app, chord_id) if chord_id is not None else None
    if body is not None:
        work.append((body, chord_error(task_id, error)))
    _fail_all(app, task_id, work)


def _steps(links: Sequence[Any], error: ErrorInfo) -> list[tuple[Any, ErrorInfo]]:
    """The chain's next steps among ``links`` (signatures or their JSON), each with ``error``."""
    out: list[tuple[Any, ErrorInfo]] = []
    for link in links:
        options = link.options if isinstance(link, Signature) else link.get("options", {})
        if isinstance(options, Mapping) and options.get(CHAIN_STEP):
            out.append((link, error))
    return out


def _fail_chord(app: App, chord_id: str) -> dict[str, Any] | None:
    """Mark the chord failed; its body, verified, if this is its first failure."""
    stored = app.chord_store().chord_fail(chord_id)
    if stored is None:
        return None
    try:
        return open_chord_body(app.signing_keys, chord_id, stored)
    except (SignatureError, ValueError) as exc:
        logger.error("chord %s: the result store's copy of its body is refused: %s", chord_id, exc)
        return None


def _fail_all(app: App, failed_id: str, work: list[tuple[Any, ErrorInfo]]) -> None:
    """Store FAILURE for every task in ``work`` and all that follows each (bounded walk)."""
    seen = 0
    while work and seen < MAX_DOWNSTREAM:
        data, err = work.pop()
        seen += 1
        try:
            sig = data if isinstance(data, Signature) else signature_from(data, app)
        except ValueError as exc:
            logger.error("a task after %s is malformed, not marked failed: %s", failed_id, exc)
            continue
        if sig.task == GROUP_TASK:
            work += [(m, err) for m in sig.kwargs.get("tasks", [])]
            if (body := sig.kwargs.get("body")) is not None:
                work.append((body, err))
            continue
        _store_failure(app, sig, err)
        if (step := _next_step(sig)) is not None:
            work.append((step, err))
        chord_id = sig.options.get("chord_id")
        if chord_id is not None:  # a chord's header part that never runs fails the chord
            chord_body = _fail_chord(app, str(chord_id))
            if chord_body is not None:
                work.append((chord_body, chord_error(failed_id, err)))


MAX_DOWNSTREAM = 10_000
"""At most this many downstream records per failure: the walk is bounded whatever it is fed."""


def _store_failure(app: App, sig: Signature, error: ErrorInfo) -> None:
    task_id = sig.options.get("task_id")
    if task_id is None or app.backend is None:
        return
    record = TaskResult(
        task_id=str(task_id),
        state=State.FAILURE,
        task=sig.task,
        error=error,
        date_done=app.clock.now(),
    )
    try:
        app.backend.store(record, app.conf.result_expires)
    except Exception:
        logger.exception("could not store the failure of downstream task %s", task_id)


# --- error callbacks ----------------------------------------------------------------------


def takes_request(app: App, sig: Signature) -> bool:
    """Whether an errback is Celery's ``(request, exc, traceback)`` kind: an unbound task
    taking more than one argument. Those are called in the worker, as Celery does; others are
    sent as tasks with the failed task's id."""
    task = app.tasks.get(sig.task)
    if task is None or task.options.bind or sig.immutable:
        return False
    params = inspect.signature(task.fn).parameters.values()
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    var = any(p.kind is p.VAR_POSITIONAL for p in params)
    return var or len(positional) - len(sig.args) > 1


def call_errback(app: App, sig: Signature, failed: Envelope, failed_id: str) -> None:
    """Run a ``(request, exc, traceback)`` errback here; what it raises is logged, never raised
    (it runs in the worker's settling of another task)."""
    from cloudq.request import Request
    from cloudq.result import rebuild_exception

    if failed.id == failed_id:
        error = failure_of(failed)
    else:
        record = app.backend.get(failed_id) if app.backend is not None else None
        error = (record.error if record else None) or ErrorInfo(
            type="cloudq.errors.TaskFailed", message=f"task {failed_id} could not be sent"
        )
    request = Request(failed.model_copy(update={"id": failed_id}))
    try:
        app.tasks[sig.task].fn(
            request, rebuild_exception(error), error.traceback, *sig.args, **sig.kwargs
        )
    except Exception:
        logger.exception("error callback %s of %s[%s] raised", sig.task, failed.task, failed_id)


def errback_envelopes(app: App, sig: Signature, failed: Envelope, failed_id: str) -> list[Envelope]:
    """An error callback: called here if it takes ``(request, exc, traceback)``, else its
    envelope, called with the failed task's id."""
    if takes_request(app, sig):
        call_errback(app, sig, failed, failed_id)
        return []
    return [build_envelope(app, sig, [failed_id])]


class _Composite:
    """What chains, groups and chords share: compile with ``wire()``, then send."""

    _frozen: Signature | None = None

    def wire(self) -> Signature:
        raise NotImplementedError

    def freeze(self, _id: str | None = None) -> Any:
        """Compile now (every task id assigned; ``_id`` for the last task); sending it later
        uses these ids. The handle it will have."""
        wire = self.wire()
        if _id is not None:
            _update_tail(wire, lambda tail: tail.options.__setitem__("task_id", _id))
        self._frozen = wire
        return result_of(wire)

    @property
    def id(self) -> str | None:
        return None if self._frozen is None else str(result_of(self._frozen).id)

    def __or__(self, other: Canvas) -> Chain:
        return Chain([self, other])  # type: ignore[list-item]  # a _Composite is a Canvas

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Celery's ``chain(...)()``, ``group(...)()``: send it (unlike a signature's call)."""
        return self.apply_async(args, kwargs)

    def delay(self, *args: Any, **kwargs: Any) -> Any:
        return self.apply_async(args, kwargs)

    def apply_async(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> Any:
        """Send it; ``link=``/``link_error=`` go on its last step, other options on each of
        its first tasks."""
        return send_wire(self._wire_for(options), args, kwargs, **options)

    def _wire_for(self, options: dict[str, Any]) -> Signature:
        """The compiled canvas to send, the ``link=``/``link_error=`` popped from ``options``
        on its last step."""
        wire = self._frozen.clone() if self._frozen is not None else self.wire()
        links = {k: options.pop(k) for k in LINK_OPTIONS & set(options)}
        if links:
            _update_tail(wire, lambda tail: tail._set(links))
        return wire

    async def adelay(self, *args: Any, **kwargs: Any) -> Any:
        """``delay()`` for coroutines: ``await group(...).adelay()`` (``cloudq.aio``)."""
        return await self.aapply_async(args, kwargs)

    async def aapply_async(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> Any:
        """``apply_async()`` awaited: compiling (a chord's counter too) runs on the app's send
        threads; the send is ``cloudq.aio.asend_envelopes``, native where the broker has it."""
        from cloudq import aio

        app = self._frozen.app if self._frozen is not None else _app_of([self])  # type: ignore[list-item]
        if app.conf.task_always_eager or await aio.async_sender(app) is None:
            return await aio.run_blocking(app, self.apply_async, args, kwargs, **options)

        def compiled() -> tuple[Signature, list[Envelope]]:
            wire = self._wire_for(options)
            return wire, wire_envelopes(wire, args, kwargs, **options)

        wire, envelopes = await aio.run_blocking(app, compiled)
        await aio.asend_envelopes(app, envelopes)
        return result_of(wire)

    def __invert__(self) -> Any:
        return self.apply_async().get()


class Chain(_Composite):
    """``chain(a.s(), b.s(), c.s())`` or ``a.s() | b.s()``: each gets the previous result."""

    def __init__(self, tasks: Iterable[Canvas]) -> None:
        self.tasks: list[Canvas] = []
        for task in tasks:  # a chain in a chain is its steps
            self.tasks.extend(task.tasks if isinstance(task, Chain) else [task])
        if not self.tasks:
            raise ConfigurationError("a chain needs at least one signature")

    def __repr__(self) -> str:
        return " | ".join(repr(t) for t in self.tasks)

    def link_error(self, errback: Signature) -> Signature:
        for node in self.tasks:
            node.link_error(errback)
        return errback

    def on_error(self, errback: Signature) -> Chain:
        self.link_error(errback)
        return self

    def wire(self) -> Signature:
        merged: list[Canvas] = []
        for step in reversed(self.tasks):  # a group followed by a step is a chord (Celery's
            if isinstance(step, Group) and merged:  # upgrade), from the end: g | g | t nests
                merged[0] = Chord(step.tasks, merged[0])
            else:
                merged.insert(0, step)
        wires = [to_wire(s) for s in merged]
        for current, nxt in zip(reversed(wires[:-1]), reversed(wires[1:]), strict=True):
            _then(current, nxt)
        return wires[0]


class Group(_Composite):
    """``group(add.s(i, i) for i in range(10))``: run in parallel, sent in batches."""

    def __init__(self, tasks: Iterable[Canvas]) -> None:
        self.tasks: list[Canvas] = []
        for task in tasks:  # a group in a group is its members (Celery flattens them too)
            self.tasks.extend(task.tasks if type(task) is Group else [task])

    def __repr__(self) -> str:
        return f"group({self.tasks!r})"

    def link_error(self, errback: Signature) -> Signature:
        for node in self.tasks:
            node.link_error(errback)
        return errback

    def skew(self, start: float = 1.0, stop: float | None = None, step: float = 1.0) -> Group:
        """Celery's ``skew``: each member's countdown ``step`` more than the one before."""
        for i, node in enumerate(self.tasks):
            delay = start + i * step
            if stop is not None:
                delay = min(delay, stop)
            if not isinstance(node, Signature):
                raise ConfigurationError("skew() sets countdowns on signatures only")
            node.options["countdown"] = delay
        return self

    def wire(self) -> Signature:
        if not self.tasks:
            raise ConfigurationError("a group needs at least one signature")
        return _group_wire(_app_of(self.tasks), self.tasks, None)


class Chunks(Group):
    """``add.chunks(zip(a, b), 10)``: a group of ``cloudq.starmap`` tasks, 10 calls each."""

    def group(self) -> Group:
        return Group(self.tasks)


class Chord(_Composite):
    """``chord(header)(body)``: the body gets the header's results, in order, exactly once."""

    def __init__(self, header: Iterable[Canvas], body: Canvas | None = None) -> None:
        self.header = Group(header)
        self.body = body

    def __call__(self, body: Canvas | None = None, *args: Any, **options: Any) -> Any:
        """``chord(header)(body)`` or ``chord(header, body)()``."""
        if body is not None:
            self.body = body
        return self.apply_async(args, **options)

    def link_error(self, errback: Signature) -> Signature:
        if self.body is None:
            raise ConfigurationError("a chord needs a body: chord(header)(body)")
        return self.body.link_error(errback)

    def wire(self) -> Signature:
        if self.body is None:
            raise ConfigurationError("a chord needs a body: chord(header)(body)")
        return _group_wire(_app_of([self.body]), self.header.tasks, self.body)


Canvas = Signature | Chain | Group | Chord


def _flatten(items: Sequence[Any]) -> Iterator[Canvas]:
    for item in items:
        if isinstance(item, Signature | Chain | Group | Chord):
            yield item
        elif hasattr(item, "s") and hasattr(item, "delay"):  # a task: Celery takes it as .s()
            yield item.s()
        elif isinstance(item, Iterable) and not isinstance(item, str | bytes | Mapping):
            yield from _flatten(list(item))
        else:
            raise ConfigurationError(
                f"a canvas takes signatures, chains, groups and chords, not {item!r} "
                "(write task.s(...) for a task)"
            )


def chain(*tasks: Canvas | Iterable[Canvas]) -> Chain:
    """``chain(a.s(), b.s())``, ``chain(a.s() | b.s())``, ``chain(sig for ...)``."""
    return Chain(_flatten(tasks))


def group(*tasks: Canvas | Iterable[Canvas]) -> Group:
    return Group(_flatten(tasks))


def chord(header: Canvas | Iterable[Canvas], body: Canvas | None = None) -> Chord:
    return Chord(_flatten([header]), body)


def chunks(app: App, task: str, it: Iterable[Any], n: int) -> Chunks:
    """``task.chunks(it, n)``: ``it`` cut into calls of ``n`` argument tuples each."""
    if n < 1:
        raise ConfigurationError("chunks() needs a chunk size of at least 1")
    items = iter(it)
    parts = iter(lambda: list(itertools.islice(items, n)), [])
    return Chunks(starmap(app, task, part) for part in parts)


def xmap(app: App, task: str, it: Iterable[Any]) -> Signature:
    """``task.map(it)``: one message that calls ``task(item)`` for each item, in the worker."""
    return _mapping(app, MAP_TASK, task, it)


def starmap(app: App, task: str, it: Iterable[Any]) -> Signature:
    """``task.starmap(it)``: one message that calls ``task(*item)`` for each item."""
    return _mapping(app, STARMAP_TASK, task, it)


def _mapping(app: App, builtin: str, task: str, it: Iterable[Any]) -> Signature:
    items = [list(i) if builtin == STARMAP_TASK else i for i in it]
    sig = Signature(task=builtin, kwargs={"task": task, "it": items})
    sig.options["queue"] = app.route(task, (), {})
    return sig.bind_app(app)
