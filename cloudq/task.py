"""``@app.task``: the Task object with Celery's calling API (delay, apply_async, apply, retry)."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, NoReturn, ParamSpec, TypedDict, TypeVar, Unpack

from cloudq import canvas
from cloudq.arguments import ArgumentSpec
from cloudq.canvas import Signature
from cloudq.envelope import ENVELOPE_VERSION, Envelope, RetryPolicy
from cloudq.errors import ConfigurationError, Retry
from cloudq.ids import new_id
from cloudq.limits import RateLimit, parse_rate_limit
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


class Task(Generic[P, R]):
    """A registered task. Calling it runs the function here; ``delay`` sends it to a queue."""

    def __init__(self, app: App, fn: Callable[..., Any], options: TaskOptions) -> None:
        self.app = app
        self.fn = fn
        self.options = options
        self.name = options.name
        self.is_async = inspect.iscoroutinefunction(fn)
        self.arguments = ArgumentSpec(fn, options.name, options.bind)
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
        if self.options.bind:
            result: R = self.fn(self, *args, **kwargs)
        else:
            result = self.fn(*args, **kwargs)
        return result

    def run_with(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        """Call the function with already-loaded arguments (what ``execute`` uses)."""
        return self.fn(self, *args, **kwargs) if self.options.bind else self.fn(*args, **kwargs)

    @property
    def request(self) -> Request:
        """The running invocation's context (an empty one when called directly)."""
        return current_request.get() or Request(task=self.name)

    def retry(
        self,
        exc: BaseException | None = None,
        countdown: float | None = None,
        max_retries: int | None = None,
    ) -> NoReturn:
        """End this attempt and schedule the next (``raise self.retry(...)`` also works)."""
        raise Retry(exc, countdown, max_retries)

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
        send: dict[str, Any] = dict(options)
        link, link_error = send.pop("link", None), send.pop("link_error", None)
        envelope = self.envelope(args or (), kwargs or {}, **send)
        envelope = canvas.with_links(envelope, link, link_error)
        self.app.send_envelopes([envelope])
        return self.app.AsyncResult(envelope.id, task_name=self.name)

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
        now = self.app.clock.now()
        if countdown is not None and eta is not None:
            raise ConfigurationError("give countdown or eta, not both")
        if countdown is not None:
            eta = now + timedelta(seconds=countdown)
        elif eta is not None and eta.tzinfo is None:
            raise ConfigurationError("eta must be timezone-aware (e.g. datetime.now(UTC))")
        if isinstance(expires, int | float):
            expires = now + timedelta(seconds=expires)
        parent = current_request.get()
        queue = queue or self.app.route(self.name, args, kwargs)
        group = fifo_group or self._fifo_group(args, kwargs)
        if group is not None and not queue.endswith(".fifo"):
            raise ConfigurationError(
                f"task {self.name!r}: a FIFO message group was given but queue {queue!r} is a "
                "standard queue (FIFO queue names end in '.fifo')"
            )
        return Envelope(
            v=ENVELOPE_VERSION,
            id=task_id or self._task_id(args, kwargs),
            task=self.name,
            args=json_args,
            kwargs=json_kwargs,
            queue=queue,
            fifo_group=group,
            retry=self.retry_policy(),
            eta=eta,
            expires=expires,
            created_at=now,
            priority=priority if priority is not None else self.options.priority,
            root_id=(parent.root_id or parent.id)
            if parent and not parent.called_directly
            else None,
            parent_id=parent.id if parent and not parent.called_directly else None,
            headers=dict(headers or {}),
        )
