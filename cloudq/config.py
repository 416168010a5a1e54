"""Settings: a pydantic model, read from keyword arguments over ``CLOUDQ_*`` variables.

The environment is read here rather than by pydantic-settings: that package costs about 100 ms
of import time, a third of a Lambda cold start, for the twenty lines below.
"""

from __future__ import annotations

import json
import os
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cloudq.adapters.urls import redact_url, secret_name
from cloudq.errors import ConfigurationError
from cloudq.limits import parse_rate_limit

ENV_PREFIX = "CLOUDQ_"
"""``CLOUDQ_TASK_TIME_LIMIT=60`` sets ``task_time_limit`` (any case); lists and dicts are JSON."""

DEFAULT_TIME_LIMIT_SECONDS = 300.0
"""Every task has a hard time limit unless it sets its own: a task with none can hang a worker."""


class Settings(BaseModel):
    """App-wide settings. Celery's names where Celery has the setting."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    broker_url: str = "memory://"
    result_backend: str | None = None
    """Results are off unless a backend is set (as in Celery): storing costs a write per task."""
    result_expires: float = Field(default=86_400.0, gt=0)

    task_default_queue: str = "default"
    task_routes: dict[str, str] = Field(default_factory=dict)
    """Task name or glob (``shop.emails.*``) → queue."""
    task_time_limit: float = Field(default=DEFAULT_TIME_LIMIT_SECONDS, gt=0)
    task_soft_time_limit: float | None = Field(default=None, gt=0)
    task_max_retries: int | None = Field(default=3, ge=0)
    task_default_retry_delay: float = Field(default=180.0, ge=0)
    task_default_rate_limit: str | None = None
    task_track_started: bool = False
    """Write a STARTED record when a task starts (one more backend write per task)."""

    claim_check_url: str | None = None
    """Object storage for payloads over the broker's limit (``s3://bucket/prefix``)."""

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

    worker_concurrency: int = Field(default=4, ge=1)
    worker_prefetch: int | None = Field(default=None, ge=0)
    """Messages held beyond the running ones; default: the concurrency, or enough to make the
    worker's room one full receive batch (10 on SQS) when that is more."""
    worker_poll_seconds: float = Field(default=5.0, ge=0)
    """Longest a receive waits for a message; also bounds how long a stop waits on a poll."""
    worker_fairness_rounds: int = Field(default=10, ge=1)
    """Every Nth receive round starts at the next queue in turn so no queue starves."""
    worker_max_tasks_per_child: int | None = Field(default=None, ge=1)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """URLs redacted and signing keys hidden: a repr of the settings ends up in logs,
        tracebacks and bug reports."""
        for name, value in super().__repr_args__():
            yield name, _shown(name, value)

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
    """A list or dict field (possibly optional): its variable holds JSON."""
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
    """Settings from keyword arguments over the environment, with a clear error for typos."""
    from pydantic import ValidationError

    env = from_environment(os.environ if environ is None else environ)
    values = {name: value for name, (_, value) in env.items()} | overrides
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"])
            field = str(e["loc"][0]) if e["loc"] else ""
            if field in env and field not in overrides:
                where += f" (from {env[field][0]})"
            problems.append(f"{where}: {e['msg']}")
        raise ConfigurationError(f"invalid cloudq settings: {'; '.join(problems)}") from None
