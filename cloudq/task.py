"""``@app.task``: the Task object with Celery's calling API (delay, apply_async, apply, retry)."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypedDict, TypeVar, Unpack

from cloudq import canvas
from cloudq import priority as priorities
from cloudq.adapters.wire import is_fifo
from cloudq.canvas import Signature
from cloudq.envelope import ENVELOPE_VERSION, Envelope, RetryPolicy
from cloudq.errors import ConfigurationError, Retry
from cloudq.ids import new_id
from cloudq.rate_limits import RateLimit, parse_rate_limit
from cloudq.request import Request, current_request

if TYPE_CHECKING:
    from cloudq.app import App
    from cloudq.result import AsyncResult, EagerResult

P = ParamSpec("P")
R = TypeVar("R")


class SendOptions(TypedDict, total=False):
    """Per-call options of ``apply_async`` (Celery's names)."""

    countdown: float | None
    eta: datetime | None
    expires: float | datetime | None
    queue: str | None
    priority: int | None
    task_id: str | None
    headers: Mapping[str, str] | None
    fifo_group: str | None
    link: Any
    """Signature(s) (or chains, groups) to send with the result when the task succeeds."""
    link_error: Any
    """Signature(s) to call when it fails for good (``cloudq.canvas.errback_envelopes``)."""


@dataclass(frozen=True)
class TaskOptions:
    """Per-task options (Celery's names). ``None`` means: use the app's setting."""

    name: str
    queue: str | None = None
    priority: int | None = None
    max_retries: int | None = -1  # -1: the app's task_max_retries
    autoretry_for: tuple[type[BaseException], ...] = ()
    dont_autoretry_for: tuple[type[BaseException], ...] = ()
    """Celery's: errors never retried automatically, even when ``autoretry_for`` covers them."""
    retry_backoff: bool | float = False
    retry_backoff_max: float = 600.0
    retry_jitter: bool = False
    default_retry_delay: float | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    rate_limit: str | None = None
    ignore_result: bool = False
    bind: bool = False
    report_args: bool = False
    """Include the arguments in error reports (off: they may hold personal data)."""
    fifo_group: str | Callable[..., str] | None = None
    """FIFO queues only: the message group, or a function of the task's arguments giving it."""
    idempotent: bool = False
    """Skip a delivery whose task id already succeeded; hold back one whose id runs elsewhere
    (``cloudq.idempotency``). Needs ``result_backend``."""
    idempotency_key: Callable[..., str] | None = None
    """A function of the task's arguments giving a business key: the task id is derived from it
    (same key, same id), so a second send of the same key is skipped once one succeeded.
    Implies ``idempotent``."""
    retry_kwargs: Mapping[str, Any] | None = None
    """Celery's: ``countdown`` and ``max_retries`` for ``autoretry_for`` retries."""
    acks_late: bool = True
    """Accepted as Celery's; cloudq always acknowledges after the task (``False`` is refused)."""
    typing: bool = True
    """``False``: arguments are not checked against the signature, only that they are JSON."""
    pydantic: bool = False
    """Celery 5.5's flag: model arguments built from dicts, model results dumped. cloudq does
    this for every task from its type hints; the flag is accepted so ported code runs."""
    pydantic_strict: bool = False
    pydantic_context: Mapping[str, Any] | None = None
    pydantic_dump_kwargs: Mapping[str, Any] | None = None
    serializer: str = "json"
    expires: float | None = None
    """Celery's: seconds after which a sent task that has not run is discarded (REVOKED)."""
    throws: tuple[type[BaseException], ...] = ()
    """Expected errors: logged without their traceback (still failures, as in Celery)."""

    def __post_init__(self) -> None:
        from cloudq.task_class import check_options

        check_options(self)


class Task(Generic[P, R]):
    """A registered task. Calling it runs the function here; ``delay`` sends it to a queue."""

    app: App
    """The app the task belongs to (a class attribute on ``app.Task``)."""
    hooked: bool = False
    """Whether the class overrides a handler (``on_success``...): ``execute`` calls them."""

    def __init__(
        self,
        app: App | None = None,
        fn: Callable[..., Any] | None = None,
        options: TaskOptions | None = None,
    ) -> None:
        """``Task(app, fn, options)`` from ``@app.task``; ``MyTask()`` for a class-based task
        (``run`` is the body, class attributes are the options, as in Celery)."""
        if app is None or fn is None or options is None:
            if "options" in vars(self):
                return  # already set up: a subclass's __init__ calling super().__init__()
            from cloudq.task_class import class_based

            app, fn, options = class_based(self, app)
        self.setup(app, fn, options)

    def setup(self, app: App, fn: Callable[..., Any], options: TaskOptions) -> None:
        """Bind to ``app`` with ``fn`` as body (also when ``register_task`` moves it)."""
        from cloudq.task_class import is_hooked, spec_for

        self.app = app
        self.fn = fn
        self.options = options
        self.name = options.name
        self.is_async = inspect.iscoroutinefunction(fn)
        self.arguments = spec_for(fn, options)
        self.hooked = is_hooked(type(self))
        self._entry: Callable[..., Any] = (
            self.__call__ if type(self).__call__ is not Task.__call__ else self.run
        )
        """What a worker calls: ``run``, or the class's own ``__call__`` (Celery's rule)."""
        self._rate: RateLimit | None = (
            parse_rate_limit(options.rate_limit) if options.rate_limit else None
        )
        for bad in options.autoretry_for:
            if not (isinstance(bad, type) and issubclass(bad, BaseException)):
                raise ConfigurationError(
                    f"task {self.name!r}: autoretry_for takes exception classes"
                )
        self._policy: tuple[tuple[int | None, float], RetryPolicy] | None = None
        self.idempotent = options.idempotent or options.idempotency_key is not None
        if self.idempotent:
            from cloudq.idempotency import check_options

            check_options(self)
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", self.name)
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def reconfigure(self, options: TaskOptions) -> None:
        """New options from the app's settings (``task_annotations``, ``task_ignore_result``)."""
        self.options = options
        self._rate = parse_rate_limit(options.rate_limit) if options.rate_limit else None
        self._policy = None

    # --- policy --------------------------------------------------------------------------
    @property
    def rate(self) -> RateLimit | None:
        """The task's own rate limit, else the app's default."""
        if self._rate is not None:
            return self._rate
        default = self.app.conf.task_default_rate_limit
        return parse_rate_limit(default) if default else None

    @property
    def time_limit(self) -> float:
        return self.options.time_limit or self.app.conf.task_time_limit

    @property
    def soft_time_limit(self) -> float | None:
        return self.options.soft_time_limit or self.app.conf.task_soft_time_limit

    def retry_policy(self) -> RetryPolicy:
        """The policy envelopes carry, so every consumer retries the same way.

        Built once per value of the app settings it reads (they may be assigned at runtime),
        not once per envelope: validating it cost a tenth of a ``delay()``.
        """
        conf = self.app.conf
        key = (conf.task_max_retries, conf.task_default_retry_delay)
        if self._policy is None or self._policy[0] != key:
            self._policy = (key, self._build_retry_policy())
        return self._policy[1]

    def _build_retry_policy(self) -> RetryPolicy:
        opts, conf = self.options, self.app.conf
        backoff = opts.retry_backoff
        return RetryPolicy(
            max_retries=conf.task_max_retries if opts.max_retries == -1 else opts.max_retries,
            backoff=float(backoff) if backoff is not False else 0.0,
            backoff_max=opts.retry_backoff_max,
            jitter=opts.retry_jitter,
            default_delay=(
                opts.default_retry_delay
                if opts.default_retry_delay is not None
                else conf.task_default_retry_delay
            ),
        )

    def _task_id(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
        """A fresh id, or the one derived from ``idempotency_key(*args, **kwargs)``."""
        key_fn = self.options.idempotency_key
        if key_fn is None:
            return new_id()
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"cloudq:{self.name}:{key_fn(*args, **kwargs)}"))

    def _fifo_group(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str | None:
        option = self.options.fifo_group
        if option is None or isinstance(option, str):
            return option
        return str(option(*args, **kwargs))

    # --- canvas --------------------------------------------------------------------------
    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature: ``add.s(2)``; the parent's result (in a chain) comes first."""
        return Signature(task=self.name, args=list(args), kwargs=kwargs).bind_app(self.app)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature: parent results are not passed to it."""
        sig = Signature(task=self.name, args=list(args), kwargs=kwargs, immutable=True)
        return sig.bind_app(self.app)

    def signature(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Signature:
        """Celery's ``add.signature((2, 2), countdown=10)``: args and kwargs as given, then send
        options (``immutable=True`` too); ``add.s(2, 2)`` is the short form."""
        return canvas.signature(self.name, args, kwargs, app=self.app, **options)

    subtask = signature

    def chunks(self, it: Iterable[Any], n: int) -> canvas.Chunks:
        """``add.chunks(zip(xs, ys), 10)``: a group of tasks, each calling ``add`` 10 times."""
        return canvas.chunks(self.app, self.name, it, n)

    def map(self, it: Iterable[Any]) -> Signature:
        """``tsum.map([[1, 2], [3]])``: one task calling ``tsum(item)`` for each item."""
        return canvas.xmap(self.app, self.name, it)

    def starmap(self, it: Iterable[Any]) -> Signature:
        """``add.starmap(zip(xs, ys))``: one task calling ``add(*item)`` for each item."""
        return canvas.starmap(self.app, self.name, it)

    # --- running here --------------------------------------------------------------------
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = self.run(*args, **kwargs)
        return result

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """The task's body: the decorated function (a class-based task overrides this)."""
        return self.fn(self, *args, **kwargs) if self.options.bind else self.fn(*args, **kwargs)

    def run_with(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        """Call the body with already-loaded arguments (what ``execute`` uses)."""
        return self._entry(*args, **kwargs)

    @property
    def request(self) -> Request:
        """The running invocation's context (an empty one when called directly)."""
        return current_request.get() or Request(task=self.name)

    # --- Celery's handlers: override in a base class (``@app.task(base=...)``) ----------
    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        """Called in the worker just before the body runs."""

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        """Called after the body returned ``retval``."""

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        """Called when the task failed for good (its message is dead-lettered)."""

    def on_retry(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        """Called when the failed attempt is to be retried."""

    def after_return(
        self, status: str, retval: Any, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        """Called after ``on_success`` or ``on_failure`` (not after a retry, as in Celery)."""

    # --- Celery's option attributes, read from the options ------------------------------
    @property
    def max_retries(self) -> int | None:
        return self.retry_policy().max_retries

    @property
    def default_retry_delay(self) -> float:
        return self.retry_policy().default_delay

    @property
    def queue(self) -> str | None:
        return self.options.queue

    @property
    def ignore_result(self) -> bool:
        return self.options.ignore_result

    @property
    def rate_limit(self) -> str | None:
        return self.options.rate_limit

    @property
    def autoretry_for(self) -> tuple[type[BaseException], ...]:
        return self.options.autoretry_for

    def retry(
        self,
        args: Sequence[Any] | BaseException | None = None,
        kwargs: Mapping[str, Any] | None = None,
        exc: BaseException | None = None,
        throw: bool = True,
        eta: datetime | None = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Retry:
        """End this attempt and schedule the next, as Celery's ``self.retry``.

        Raises ``exc`` (or ``MaxRetriesExceededError``) here, in the task, when no retry is
        left. ``args``/``kwargs`` replace the next attempt's arguments (checked as at
        ``delay()``). ``throw=False`` returns the ``Retry``: the attempt is retried when the
        body returns, whatever it returns."""
        from cloudq.task_class import request_retry

        return request_retry(self, args, kwargs, exc, throw, eta, countdown, max_retries, options)

    def update_state(
        self,
        task_id: str | None = None,
        state: str | None = None,
        meta: Any = None,
        **_: Any,
    ) -> None:
        """Store ``state`` (e.g. ``"PROGRESS"``) and ``meta`` as the task's result record, as
        Celery's: ``AsyncResult(id).state`` and ``.result`` read them. Needs a backend."""
        from cloudq.task_class import update_state

        update_state(self, task_id, state, meta)

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        task_id: str | None = None,
        throw: bool = False,
    ) -> EagerResult:
        """Run now, in the caller, through the same path a worker uses (retries included)."""
        from cloudq.eager import run_eagerly

        envelope = self.envelope(args or (), kwargs or {}, task_id=task_id)
        return run_eagerly(self, envelope, throw=throw)

    # --- sending -------------------------------------------------------------------------
    def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult:
        """Send with default options: ``add.delay(2, 2)``."""
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Unpack[SendOptions],
    ) -> AsyncResult:
        """Send with options: ``add.apply_async((2, 2), queue="low", countdown=10)``.

        With ``task_always_eager`` the task runs here instead, as ``apply()`` (Celery's test
        mode); ``task_eager_propagates`` raises its error."""
        conf = self.app.conf
        if conf.task_always_eager:
            return self.apply(  # type: ignore[return-value]
                args, kwargs, task_id=options.get("task_id"), throw=conf.task_eager_propagates
            )
        envelope = self._outgoing(args, kwargs, options)
        self.app.send_envelopes([envelope])
        return self.app.AsyncResult(envelope.id, task_name=self.name)

    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult:
        """``delay()`` for coroutines: ``await add.adelay(2, 2)`` never blocks the loop."""
        return await self.aapply_async(args, kwargs)

    async def aapply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Unpack[SendOptions],
    ) -> AsyncResult:
        """``apply_async()`` awaited: the arguments are checked here, at once; the send is the
        same producer code as ``delay()``'s, run off the loop (``cloudq.aio``)."""
        from cloudq import aio

        if self.app.conf.task_always_eager:
            return await aio.run_blocking(self.app, self.apply_async, args, kwargs, **options)
        envelope = self._outgoing(args, kwargs, options)
        await aio.asend_envelopes(self.app, [envelope])
        return self.app.AsyncResult(envelope.id, task_name=self.name)

    def _outgoing(
        self,
        args: Sequence[Any] | None,
        kwargs: Mapping[str, Any] | None,
        options: SendOptions,
    ) -> Envelope:
        """The checked envelope ``apply_async`` and ``aapply_async`` send, links attached."""
        send: dict[str, Any] = dict(options)
        link, link_error = send.pop("link", None), send.pop("link_error", None)
        envelope = self.envelope(args or (), kwargs or {}, **send)
        return canvas.with_links(envelope, link, link_error)

    def delay_on_commit(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Celery 5.4's: ``delay()`` once the current database transaction commits, never
        for one rolled back (Django's ``transaction.on_commit``; without Django, now). The
        arguments are checked here, at the call."""
        self.apply_async_on_commit(args, kwargs)

    def apply_async_on_commit(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Unpack[SendOptions],
    ) -> None:
        """``apply_async()`` once the current transaction commits (see ``delay_on_commit``)."""
        from cloudq.contrib.django.commit import on_commit

        self.arguments.dump(args or (), kwargs or {})  # bad arguments fail at the call site
        on_commit(lambda: self.apply_async(args, kwargs, **options))

    def envelope(
        self,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        *,
        countdown: float | None = None,
        eta: datetime | None = None,
        expires: float | datetime | None = None,
        queue: str | None = None,
        priority: int | None = None,
        task_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        fifo_group: str | None = None,
    ) -> Envelope:
        """Validate arguments and build the envelope; nothing is sent."""
        json_args, json_kwargs = self.arguments.dump(args, kwargs)
        return build_envelope(
            self.app,
            self.name,
            json_args,
            json_kwargs,
            retry=self.retry_policy(),
            task_id=task_id or self._task_id(args, kwargs),
            fifo_group=fifo_group or self._fifo_group(args, kwargs),
            priority=priority if priority is not None else self.options.priority,
            route_args=(args, kwargs),
            countdown=countdown,
            eta=eta,
            expires=expires if expires is not None else self.options.expires,
            queue=queue,
            headers=headers,
        )


def build_envelope(
    app: App,
    name: str,
    json_args: list[Any],
    json_kwargs: dict[str, Any],
    *,
    retry: RetryPolicy,
    task_id: str,
    fifo_group: str | None,
    priority: int | None,
    route_args: tuple[Sequence[Any], Mapping[str, Any]],
    countdown: float | None = None,
    eta: datetime | None = None,
    expires: float | datetime | None = None,
    queue: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Envelope:
    """The envelope of an already-checked call: times, route, workflow ids (also what
    ``app.send_task`` sends for a task this process does not have)."""
    now = app.clock.now()
    if countdown is not None and eta is not None:
        raise ConfigurationError("give countdown or eta, not both")
    if countdown is not None:
        eta = now + timedelta(seconds=countdown)
    elif eta is not None and eta.tzinfo is None:
        raise ConfigurationError("eta must be timezone-aware (e.g. datetime.now(UTC))")
    if isinstance(expires, int | float):
        expires = now + timedelta(seconds=expires)
    parent = current_request.get()
    priorities.check(app, priority)
    queue = queue or app.route(name, *route_args)
    if fifo_group is not None and not is_fifo(queue):
        raise ConfigurationError(
            f"task {name!r}: a FIFO message group was given but queue {queue!r} is a "
            "standard queue (FIFO queue names end in '.fifo')"
        )
    linked = parent is not None and not parent.called_directly
    return Envelope(
        v=ENVELOPE_VERSION,
        id=task_id,
        task=name,
        args=json_args,
        kwargs=json_kwargs,
        queue=queue,
        fifo_group=fifo_group,
        retry=retry,
        eta=eta,
        expires=expires,
        created_at=now,
        priority=priority,
        root_id=(parent.root_id or parent.id) if parent is not None and linked else None,
        parent_id=parent.id if parent is not None and linked else None,
        headers=dict(headers or {}),
    )
