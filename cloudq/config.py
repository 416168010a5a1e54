"""Settings: a pydantic model, read from keyword arguments over ``CLOUDQ_*`` variables.

The environment is read here rather than by pydantic-settings: that package costs about 100 ms
of import time, a third of a Lambda cold start, for the twenty lines below.
"""

from __future__ import annotations

import json
import os
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from cloudq.adapters.urls import redact_url, secret_name
from cloudq.celery_settings import translate
from cloudq.errors import ConfigurationError
from cloudq.rate_limits import parse_rate_limit
from cloudq.routes import Routes, compile_routes

ENV_PREFIX = "CLOUDQ_"
"""``CLOUDQ_TASK_TIME_LIMIT=60`` sets ``task_time_limit`` (any case); lists and dicts are JSON."""

DEFAULT_TIME_LIMIT_SECONDS = 300.0
"""Every task has a hard time limit unless it sets its own: a task with none can hang a worker."""


class Settings(BaseModel):
    """App-wide settings. Celery's names where Celery has the setting."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    _on_change: Callable[[str], None] | None = PrivateAttr(default=None)
    """The app's hook: task options follow ``task_annotations`` / ``task_ignore_result``."""

    broker_url: str = "memory://"
    result_backend: str | None = None
    """Results are off unless a backend is set (as in Celery): storing costs a write per task."""
    result_expires: float = Field(default=86_400.0, gt=0)
    result_extended: bool = False
    """Celery's setting: records also keep the task's arguments and queue (``result.args``,
    ``.kwargs``, ``.queue``; the dashboard's task page). Off by default: arguments may be
    private, and large. Arguments over ``cloudq.results.base.EXTENDED_ARGS_BYTES`` of JSON are
    not kept (the record says so)."""

    task_default_queue: str = "default"
    task_routes: Any = Field(default_factory=Routes)
    """Celery's forms: task name or glob (``shop.emails.*``) or regex → queue or
    ``{"queue": ...}``, router functions, a list of those (``cloudq.routes``). Reads back as the
    statically known name → queue entries (``.values()``: the queues routes can name)."""
    task_annotations: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Task name, glob or ``*`` → task options (``{"rate_limit": "10/m"}``), as in Celery."""
    task_ignore_result: bool = False
    """Tasks without their own ``ignore_result=`` store no result."""
    task_always_eager: bool = False
    """``delay()`` / ``apply_async()`` run the task inline, as ``apply()``: for tests."""
    task_eager_propagates: bool = False
    """An eager task's error is raised in the caller instead of returned in the result."""
    timezone: str = "UTC"
    """The zone of ``crontab()`` and cron strings in ``beat_schedule``."""
    imports: list[str] = Field(default_factory=list)
    """Celery's ``imports``: modules imported at finalize, before ``include``."""
    include: list[str] = Field(default_factory=list)
    """Task modules imported when the app is finalized (first lookup of an unknown task, or the
    CLI loading the app): Celery's ``include``."""
    task_time_limit: float = Field(default=DEFAULT_TIME_LIMIT_SECONDS, gt=0)
    task_soft_time_limit: float | None = Field(default=None, gt=0)
    task_max_retries: int | None = Field(default=3, ge=0)
    task_default_retry_delay: float = Field(default=180.0, ge=0)
    task_default_rate_limit: str | None = None
    task_track_started: bool = False
    """Write a STARTED record when a task starts (one more backend write per task)."""

    claim_check_url: str | None = None
    """Object storage for payloads over the broker's limit (``s3://bucket/prefix``)."""
    claim_check_format: Literal["cloudq", "sqs-extended"] = "cloudq"
    """The pointer sent in the queue: cloudq's, or AWS's SQS Extended Client's (S3 only), for
    consumers written with those libraries (``cloudq.claimcheck``). Both are always read."""

    beat_schedule: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Celery's ``beat_schedule``: name -> {task, schedule (seconds, timedelta or cron), args,
    kwargs, options}; see ``cloudq.beat``."""

    error_reports: dict[str, Any] | None = None
    """E-mail on final failures: {"to": [...], "from": ..., "smtp": "smtp://host:port",
    "tls": False, "window_seconds": 3600}; see ``cloudq.reports``."""

    signing_keys: list[str] = Field(default_factory=list)
    """HMAC keys; the first signs, any verifies. When set, unsigned messages are refused."""

    queue_lease_seconds: float = Field(default=30.0, gt=0)
    """Visibility timeout / lease a worker takes on a message; heartbeats extend it."""
    queue_max_receive_count: int = Field(default=10, ge=1)
    """Broker-side redeliveries (after crashes) before the broker dead-letters a message."""
    create_missing_queues: bool = True
    task_priority_queues: bool = False
    """``priority=`` (0-9) picks one of 3 sub-queues per queue that workers drain first
    (``cloudq.priority``); off, it is only carried in the envelope."""

    worker_concurrency: int = Field(default=4, ge=1)
    worker_prefetch: int | None = Field(default=None, ge=0)
    """Messages held beyond the running ones; default: the concurrency, or enough to make the
    worker's room one full receive batch (10 on SQS) when that is more."""
    worker_prefetch_multiplier: int | None = Field(default=None, ge=1)
    """Celery's: a worker holds this times its concurrency, running tasks included (so
    ``worker_prefetch`` becomes ``(multiplier - 1) * concurrency``); ``worker_prefetch`` wins."""
    worker_poll_seconds: float = Field(default=5.0, ge=0)
    """Longest a receive waits for a message; also bounds how long a stop waits on a poll."""
    log_format: Literal["text", "json"] = "text"
    """``cloudq worker``'s logs: ``json`` is one object a line with the running task's ids
    (``cloudq.contrib.logging``; ``--log-format`` wins)."""
    worker_fairness_rounds: int = Field(default=10, ge=1)
    """Every Nth receive round starts at the next queue in turn so no queue starves."""
    worker_max_tasks_per_child: int | None = Field(default=None, ge=1)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """URLs redacted and signing keys hidden: a repr of the settings ends up in logs,
        tracebacks and bug reports."""
        for name, value in super().__repr_args__():
            yield name, _shown(name, value)

    # --- Celery's ways of changing settings -----------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        """``app.conf.timezone = "Europe/Berlin"``: Celery's names too, checked as they are set."""
        if name.startswith("_"):
            super().__setattr__(name, value)
            return
        self._apply(translate(name, value, type(self).model_fields))

    def update(self, mapping: Mapping[str, Any] | None = None, /, **settings: Any) -> None:
        """``app.conf.update(task_serializer="json", ...)``, as Celery's ``conf.update``. All
        or nothing: every value is checked on a copy before any is set here."""
        converted: dict[str, Any] = {}
        for name, value in {**(mapping or {}), **settings}.items():
            converted.update(translate(name, value, type(self).model_fields))
        trial = self.model_copy()
        trial._on_change = None
        trial._apply(converted)
        self._apply(converted)

    def _apply(self, converted: Mapping[str, Any]) -> None:
        """Set cloudq settings (already translated); a refused value names its setting."""
        for key, value in converted.items():
            try:
                super().__setattr__(key, value)
            except ValidationError as exc:
                problems = "; ".join(e["msg"] for e in exc.errors())
                raise ConfigurationError(f"invalid cloudq setting {key}: {problems}") from None
            if self._on_change is not None:
                self._on_change(key)

    def __getitem__(self, name: str) -> Any:
        if name not in type(self).model_fields:
            raise KeyError(name)
        return getattr(self, name)

    def __setitem__(self, name: str, value: Any) -> None:
        setattr(self, name, value)

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name) if name in type(self).model_fields else default

    @field_validator("task_routes", mode="before")
    @classmethod
    def _compile_routes(cls, value: Any) -> Routes:
        return compile_routes(value)

    @field_validator("timezone")
    @classmethod
    def _check_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("error_reports")
    @classmethod
    def _check_reports(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            from cloudq.reports import ErrorReportSettings

            ErrorReportSettings.model_validate(value)
        return value

    @field_validator("task_default_rate_limit")
    @classmethod
    def _check_rate(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rate_limit(value)
        return value


_URL_FIELDS = frozenset({"broker_url", "result_backend", "claim_check_url"})


def _shown(field: str | None, value: Any) -> Any:
    if field in _URL_FIELDS and isinstance(value, str):
        return redact_url(value)
    if field == "signing_keys" and isinstance(value, list):
        return ["***"] * len(value)
    if field == "error_reports" and isinstance(value, dict):
        return {k: _redacted(k, v) for k, v in value.items()}
    return value


def _redacted(name: str, value: Any) -> Any:
    if secret_name(name):
        return "***"
    return redact_url(value) if isinstance(value, str) else value


def _structured(annotation: Any) -> bool:
    """A list or dict field (possibly optional), or one of any form (``task_routes``): its
    variable holds JSON."""
    if annotation is Any:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_structured(arg) for arg in typing.get_args(annotation))
    return typing.get_origin(annotation) in (list, dict) or annotation in (list, dict)


def from_environment(environ: Mapping[str, str]) -> dict[str, tuple[str, Any]]:
    """Settings found in ``CLOUDQ_*`` variables: field -> (variable, value). Other ``CLOUDQ_``
    variables (the adapters' own, e.g. ``CLOUDQ_PUBSUB_PREFIX``) are not settings: skipped."""
    fields = Settings.model_fields
    by_upper = {name.upper(): name for name in fields}
    found: dict[str, tuple[str, Any]] = {}
    for variable, raw in environ.items():
        upper = variable.upper()
        name = by_upper.get(upper[len(ENV_PREFIX) :]) if upper.startswith(ENV_PREFIX) else None
        if name is None:
            continue
        value: Any = raw
        if _structured(fields[name].annotation):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ConfigurationError(
                    f"{variable} must hold JSON (it sets {name}, a list or mapping): {exc}"
                ) from None
        found[name] = (variable, value)
    return found


def make_settings(overrides: dict[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from keyword arguments (cloudq's or Celery's names) over the environment, with a
    clear error for typos."""
    env = from_environment(os.environ if environ is None else environ)
    translated: dict[str, Any] = {}
    for key, value in overrides.items():
        translated.update(translate(key, value, Settings.model_fields))
    values = {name: value for name, (_, value) in env.items()} | translated
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"])
            field = str(e["loc"][0]) if e["loc"] else ""
            if field in env and field not in translated:
                where += f" (from {env[field][0]})"
            problems.append(f"{where}: {e['msg']}")
        raise ConfigurationError(f"invalid cloudq settings: {'; '.join(problems)}") from None
