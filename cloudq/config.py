"""Settings: a pydantic-settings model, read from keyword arguments and ``CLOUDQ_*`` variables."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cloudq.limits import parse_rate_limit

DEFAULT_TIME_LIMIT_SECONDS = 300.0
"""Every task has a hard time limit unless it sets its own: a task with none can hang a worker."""


class Settings(BaseSettings):
    """App-wide settings. Celery's names where Celery has the setting."""

    model_config = SettingsConfigDict(
        env_prefix="CLOUDQ_", extra="forbid", validate_assignment=True
    )

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


def make_settings(overrides: dict[str, Any]) -> Settings:
    """Settings from keyword arguments over the environment, with a clear error for typos."""
    from pydantic import ValidationError

    from cloudq.errors import ConfigurationError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigurationError(f"invalid cloudq settings: {problems}") from None
