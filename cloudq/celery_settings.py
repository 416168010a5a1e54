"""Celery's setting names, and what each becomes in cloudq: the one table for all of them.

A Celery project's ``celeryconfig.py``, ``app.conf.update(...)`` or Django settings keep working:
each Celery name either maps onto a cloudq setting, is accepted with one log line saying it has
no effect on cloud queues, or is refused with what to write instead (a value cloudq cannot
honour, such as pickle). ``docs/migrating-from-celery.md`` lists this table; a test checks the
two agree.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from cloudq.errors import ConfigurationError
from cloudq.logsafe import get_logger

logger = get_logger("cloudq.celery_settings")

Effect = Literal["same", "maps", "none", "refused"]
Convert = Callable[[Any], dict[str, Any]]


@dataclass(frozen=True)
class CelerySetting:
    """One Celery setting: its new (lower-case) name, its old upper-case names, its fate."""

    name: str
    effect: Effect
    note: str
    """What happens, for the migration guide and the log line."""
    old: tuple[str, ...] = ()
    convert: Convert | None = None
    """Value -> cloudq settings (raises ConfigurationError for what cannot be honoured)."""

    def apply(self, value: Any) -> dict[str, Any]:
        if self.effect == "none":
            logger.info("setting %s has no effect on cloud queues: %s", self.name, self.note)
            return {}
        if self.effect == "refused":
            raise ConfigurationError(f"setting {self.name} is not supported: {self.note}")
        if self.convert is not None:
            return self.convert(value)
        return {self.name: value}


def _to(target: str, fn: Callable[[Any], Any] = lambda v: v) -> Convert:
    return lambda value: {target: fn(value)}


def _seconds(name: str, *, allow_none: bool = False) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, timedelta):
            return value.total_seconds()
        if value is None and not allow_none:
            raise ConfigurationError(
                f"{name}=None is not supported: cloudq needs a limit here; give seconds or a "
                "timedelta (see docs/migrating-from-celery.md)"
            )
        return value

    return convert


def _result_expires(value: Any) -> dict[str, Any]:
    seconds = _seconds("result_expires")(value)
    if not seconds:
        raise ConfigurationError(
            "result_expires=0 is not supported: results in cloudq always expire; give seconds "
            "or a timedelta (default: 1 day)"
        )
    return {"result_expires": seconds}


def _concurrency(value: Any) -> dict[str, Any]:
    return {"worker_concurrency": os.cpu_count() or 1 if value is None else value}


JSON_NAMES = ("json", "application/json")


def _json_only(name: str) -> Convert:
    def convert(value: Any) -> dict[str, Any]:
        if not (isinstance(value, str) and value.lower() in JSON_NAMES):
            raise ConfigurationError(
                f"{name}={value!r} is not supported: cloudq sends JSON only (never pickle), "
                f"checked against the task's type hints; write {name}='json' or remove it, "
                "and pass ids or JSON values as arguments"
            )
        return {}

    return convert


def _accept_json(name: str) -> Convert:
    def convert(value: Any) -> dict[str, Any]:
        items = [value] if isinstance(value, str) else list(value or ())
        bad = [v for v in items if not (isinstance(v, str) and v.lower() in JSON_NAMES)]
        if bad or not items:
            raise ConfigurationError(
                f"{name}={value!r} is not supported: cloudq accepts JSON only (never pickle); "
                f"write {name}=['json'] or remove it"
            )
        return {}

    return convert


def _prefetch_multiplier(value: Any) -> dict[str, Any]:
    if not isinstance(value, int) or value < 1:
        raise ConfigurationError(
            f"worker_prefetch_multiplier={value!r} is not supported: cloudq never holds an "
            "unbounded number of messages; give a multiplier >= 1 or set worker_prefetch "
            "(messages held beyond the running ones)"
        )
    return {"worker_prefetch_multiplier": value}


TRANSPORT_OPTIONS: dict[str, str | None] = {
    "visibility_timeout": "queue_lease_seconds",
    "wait_time_seconds": "worker_poll_seconds",
    "polling_interval": None,
}
"""``broker_transport_options`` keys cloudq takes: to a cloudq setting, or None (no effect)."""
TRANSPORT_OPTIONS_REFUSED = {
    "region": "write it in the broker URL instead: sqs://?region=eu-west-1 (or set AWS_REGION)",
    "queue_name_prefix": "write the prefix in the broker URL instead: sqs://?prefix=shop-",
    "predefined_queues": "name queues in task_routes / -Q; cloudq creates them and their DLQs",
}


def _transport_options(value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, option in dict(value or {}).items():
        if key in TRANSPORT_OPTIONS_REFUSED:
            raise ConfigurationError(
                f"broker_transport_options[{key!r}] is not supported: "
                f"{TRANSPORT_OPTIONS_REFUSED[key]}"
            )
        if key not in TRANSPORT_OPTIONS:
            raise ConfigurationError(
                f"broker_transport_options[{key!r}] is not supported; cloudq takes "
                f"{', '.join(sorted(TRANSPORT_OPTIONS))}"
            )
        target = TRANSPORT_OPTIONS[key]
        if target is None:
            logger.info("broker_transport_options[%r] has no effect on cloud queues", key)
        else:
            out[target] = option
    return out


_NO_EFFECT = "accepted; cloud queues have no such knob"

CELERY_SETTINGS: tuple[CelerySetting, ...] = (
    CelerySetting(
        "broker_url",
        "same",
        "the broker URL (sqs://, pubsub://, servicebus://, memory://)",
        ("BROKER_URL",),
    ),
    CelerySetting(
        "result_backend",
        "same",
        "the result store URL (redis://, dynamodb://, ...)",
        ("CELERY_RESULT_BACKEND",),
    ),
    CelerySetting(
        "result_expires",
        "maps",
        "seconds or a timedelta; None or 0 (never) refused: results always expire",
        ("CELERY_TASK_RESULT_EXPIRES",),
        _result_expires,
    ),
    CelerySetting(
        "task_default_queue",
        "same",
        "the queue of tasks without a route",
        ("CELERY_DEFAULT_QUEUE",),
    ),
    CelerySetting(
        "task_routes",
        "same",
        "every Celery form: name, glob, regex, {'queue': ...}, router functions, lists",
        ("CELERY_ROUTES",),
    ),
    CelerySetting(
        "task_annotations",
        "same",
        "name, glob or '*' -> task options (rate_limit, time_limit, ...)",
        ("CELERY_ANNOTATIONS",),
    ),
    CelerySetting(
        "task_time_limit",
        "maps",
        "seconds; None refused: every task has a hard limit (default 300 s)",
        ("CELERYD_TASK_TIME_LIMIT",),
        _to("task_time_limit", _seconds("task_time_limit")),
    ),
    CelerySetting(
        "task_soft_time_limit",
        "same",
        "seconds",
        ("CELERYD_TASK_SOFT_TIME_LIMIT",),
        _to("task_soft_time_limit", _seconds("task_soft_time_limit", allow_none=True)),
    ),
    CelerySetting(
        "task_default_rate_limit",
        "same",
        "across all workers; a worker without a result backend refuses to start",
        ("CELERY_DEFAULT_RATE_LIMIT",),
    ),
    CelerySetting(
        "task_track_started", "same", "a STARTED record per task", ("CELERY_TRACK_STARTED",)
    ),
    CelerySetting(
        "task_ignore_result",
        "same",
        "tasks without their own ignore_result store no result",
        ("CELERY_IGNORE_RESULT",),
    ),
    CelerySetting(
        "task_always_eager",
        "same",
        "delay() and apply_async() run the task inline (for tests)",
        ("CELERY_ALWAYS_EAGER",),
    ),
    CelerySetting(
        "task_eager_propagates",
        "same",
        "an eager task's error is raised in the caller",
        ("CELERY_EAGER_PROPAGATES_EXCEPTIONS",),
    ),
    CelerySetting(
        "task_create_missing_queues",
        "maps",
        "create_missing_queues",
        ("CELERY_CREATE_MISSING_QUEUES",),
        _to("create_missing_queues"),
    ),
    CelerySetting(
        "task_serializer",
        "maps",
        "'json' only; pickle, yaml, msgpack refused",
        ("CELERY_TASK_SERIALIZER",),
        _json_only("task_serializer"),
    ),
    CelerySetting(
        "result_serializer",
        "maps",
        "'json' only",
        ("CELERY_RESULT_SERIALIZER",),
        _json_only("result_serializer"),
    ),
    CelerySetting(
        "event_serializer",
        "maps",
        "'json' only",
        ("CELERY_EVENT_SERIALIZER",),
        _json_only("event_serializer"),
    ),
    CelerySetting(
        "accept_content",
        "maps",
        "['json'] only",
        ("CELERY_ACCEPT_CONTENT",),
        _accept_json("accept_content"),
    ),
    CelerySetting(
        "result_accept_content",
        "maps",
        "['json'] only",
        ("CELERY_RESULT_ACCEPT_CONTENT",),
        _accept_json("result_accept_content"),
    ),
    CelerySetting(
        "timezone",
        "same",
        "the time zone of crontab() and cron entries in beat_schedule",
        ("CELERY_TIMEZONE",),
    ),
    CelerySetting(
        "enable_utc",
        "none",
        "message times are always timezone-aware UTC; timezone sets the beat's zone",
        ("CELERY_ENABLE_UTC",),
    ),
    CelerySetting(
        "broker_transport_options",
        "maps",
        "visibility_timeout -> queue_lease_seconds, wait_time_seconds -> "
        "worker_poll_seconds, polling_interval: no effect",
        ("BROKER_TRANSPORT_OPTIONS",),
        _transport_options,
    ),
    CelerySetting(
        "worker_concurrency",
        "same",
        "pool size; None: the CPU count",
        ("CELERYD_CONCURRENCY",),
        _concurrency,
    ),
    CelerySetting(
        "worker_prefetch_multiplier",
        "same",
        "held = multiplier x concurrency, the running ones included; 0 (unbounded) refused",
        ("CELERYD_PREFETCH_MULTIPLIER",),
        _prefetch_multiplier,
    ),
    CelerySetting(
        "worker_max_tasks_per_child", "same", "processes pool", ("CELERYD_MAX_TASKS_PER_CHILD",)
    ),
    CelerySetting(
        "beat_schedule",
        "same",
        "seconds, timedelta, cron strings, crontab(), schedule()",
        ("CELERYBEAT_SCHEDULE",),
    ),
    CelerySetting(
        "include", "same", "modules imported when the app is finalized", ("CELERY_INCLUDE",)
    ),
    CelerySetting("imports", "same", "imported at finalize, before include", ("CELERY_IMPORTS",)),
    CelerySetting(
        "task_acks_late",
        "none",
        "cloudq always acknowledges after the task ends (at-least-once)",
        ("CELERY_ACKS_LATE",),
    ),
    CelerySetting(
        "task_reject_on_worker_lost",
        "none",
        "a lost worker's task always comes back after its lease",
        ("CELERY_REJECT_ON_WORKER_LOST",),
    ),
    CelerySetting(
        "task_acks_on_failure_or_timeout", "none", "a failed task ends in the dead-letter queue"
    ),
    CelerySetting(
        "task_queues",
        "none",
        "queues are created on first use (create_missing_queues), with their DLQs",
        ("CELERY_QUEUES",),
    ),
    CelerySetting(
        "task_default_exchange",
        "none",
        _NO_EFFECT + " (no exchanges)",
        ("CELERY_DEFAULT_EXCHANGE",),
    ),
    CelerySetting(
        "task_default_exchange_type",
        "none",
        _NO_EFFECT + " (no exchanges)",
        ("CELERY_DEFAULT_EXCHANGE_TYPE",),
    ),
    CelerySetting(
        "task_default_routing_key",
        "none",
        _NO_EFFECT + " (routing is by queue)",
        ("CELERY_DEFAULT_ROUTING_KEY",),
    ),
    CelerySetting(
        "task_publish_retry",
        "none",
        "a failed send raises in the caller; the SDKs retry",
        ("CELERY_TASK_PUBLISH_RETRY",),
    ),
    CelerySetting(
        "task_publish_retry_policy",
        "none",
        "a failed send raises in the caller; the SDKs retry",
        ("CELERY_TASK_PUBLISH_RETRY_POLICY",),
    ),
    CelerySetting(
        "task_compression",
        "none",
        "payloads over the broker's limit go to claim_check_url",
        ("CELERY_MESSAGE_COMPRESSION",),
    ),
    CelerySetting("result_compression", "none", _NO_EFFECT),
    CelerySetting(
        "result_extended",
        "same",
        "records keep the task's arguments and queue (up to a size: see the setting)",
        ("CELERY_RESULT_EXTENDED",),
    ),
    CelerySetting("result_persistent", "none", _NO_EFFECT, ("CELERY_RESULT_PERSISTENT",)),
    CelerySetting(
        "broker_connection_retry",
        "none",
        "the SDKs retry their calls",
        ("BROKER_CONNECTION_RETRY",),
    ),
    CelerySetting("broker_connection_retry_on_startup", "none", "the SDKs retry their calls"),
    CelerySetting(
        "broker_connection_max_retries",
        "none",
        "the SDKs retry their calls",
        ("BROKER_CONNECTION_MAX_RETRIES",),
    ),
    CelerySetting("broker_connection_timeout", "none", _NO_EFFECT, ("BROKER_CONNECTION_TIMEOUT",)),
    CelerySetting(
        "broker_heartbeat",
        "none",
        _NO_EFFECT + " (HTTP APIs, no connection heartbeat)",
        ("BROKER_HEARTBEAT",),
    ),
    CelerySetting("broker_pool_limit", "none", _NO_EFFECT, ("BROKER_POOL_LIMIT",)),
    CelerySetting("broker_use_ssl", "none", "the SDKs use TLS", ("BROKER_USE_SSL",)),
    CelerySetting(
        "worker_send_task_events",
        "none",
        "use cloudq worker -E or cloudq control enable_events",
        ("CELERY_SEND_EVENTS",),
    ),
    CelerySetting(
        "task_send_sent_event", "none", "use cloudq worker -E", ("CELERY_SEND_TASK_SENT_EVENT",)
    ),
    CelerySetting(
        "worker_hijack_root_logger",
        "none",
        "cloudq never replaces the root logger's handlers",
        ("CELERYD_HIJACK_ROOT_LOGGER",),
    ),
    CelerySetting(
        "worker_log_format",
        "none",
        "configure logging (cloudq worker -l sets the level)",
        ("CELERYD_LOG_FORMAT",),
    ),
    CelerySetting(
        "worker_task_log_format", "none", "configure logging", ("CELERYD_TASK_LOG_FORMAT",)
    ),
    CelerySetting("worker_redirect_stdouts", "none", _NO_EFFECT, ("CELERY_REDIRECT_STDOUTS",)),
    CelerySetting(
        "worker_pool",
        "none",
        "choose the pool with cloudq worker -P threads|processes",
        ("CELERYD_POOL",),
    ),
    CelerySetting(
        "worker_cancel_long_running_tasks_on_connection_loss", "none", "leases bound every delivery"
    ),
    CelerySetting(
        "beat_scheduler",
        "none",
        "beats share claims in the result backend",
        ("CELERYBEAT_SCHEDULER",),
    ),
    CelerySetting(
        "beat_schedule_filename",
        "none",
        "no schedule file: claims live in the result backend",
        ("CELERYBEAT_SCHEDULE_FILENAME",),
    ),
    CelerySetting(
        "beat_max_loop_interval",
        "none",
        "beat sleeps until its next tick (at most 1 s)",
        ("CELERYBEAT_MAX_LOOP_INTERVAL",),
    ),
    CelerySetting(
        "security_key",
        "refused",
        "message signing is HMAC: set signing_keys=['secret', ...]",
        ("CELERY_SECURITY_KEY",),
    ),
    CelerySetting(
        "security_certificate",
        "refused",
        "message signing is HMAC: set signing_keys",
        ("CELERY_SECURITY_CERTIFICATE",),
    ),
    CelerySetting(
        "task_send_error_emails",
        "refused",
        "set error_reports={'to': [...], ...} (see the README)",
        ("CELERY_SEND_TASK_ERROR_EMAILS",),
    ),
)

BY_NAME: dict[str, CelerySetting] = {s.name: s for s in CELERY_SETTINGS}
BY_OLD_NAME: dict[str, CelerySetting] = {old: s for s in CELERY_SETTINGS for old in s.old}


def lookup(key: str, namespace: str | None = None) -> CelerySetting | None:
    """The Celery setting ``key`` names: a new name, an old upper-case one, or, in a namespace
    (``CELERY``), ``CELERY_BROKER_URL`` for ``broker_url``. None: not a Celery name."""
    if key in BY_OLD_NAME:
        return BY_OLD_NAME[key]
    if namespace:
        prefix = f"{namespace}_"
        if key.startswith(prefix):
            return BY_NAME.get(key[len(prefix) :].lower())
        return None
    return BY_NAME.get(key)


def translate(key: str, value: Any, cloudq_names: Iterable[str]) -> dict[str, Any]:
    """cloudq settings for one setting given by a user, in Celery's name or cloudq's own."""
    setting = BY_NAME.get(key) or BY_OLD_NAME.get(key)
    if setting is not None:
        return setting.apply(value)
    names = set(cloudq_names)
    if key in names:
        return {key: value}
    raise unknown(key, names)


def unknown(key: str, cloudq_names: Iterable[str], namespace: str | None = None) -> Exception:
    """The error for a name that is neither Celery's nor cloudq's, with the closest ones."""
    candidates = sorted({*cloudq_names, *BY_NAME})
    probe = key
    if namespace and key.startswith(f"{namespace}_"):
        probe = key[len(namespace) + 1 :].lower()
        candidates += list(BY_OLD_NAME)
    elif key.isupper():
        probe, candidates = key, list(BY_OLD_NAME) + [c.upper() for c in candidates]
    close = difflib.get_close_matches(probe, candidates, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ConfigurationError(f"unknown setting {key!r}{hint}")


EFFECT_WORDS: dict[Effect, str] = {
    "same": "the same",
    "maps": "mapped",
    "none": "no effect (one log line)",
    "refused": "refused",
}


def markdown_table() -> str:
    """The table for ``docs/migrating-from-celery.md`` (``scripts/celery-settings-table``)."""
    rows = ["| Celery setting | old name | in cloudq | what happens |", "|---|---|---|---|"]
    for s in CELERY_SETTINGS:
        old = ", ".join(f"`{o}`" for o in s.old)
        note = s.note.replace("|", "\\|")
        rows.append(f"| `{s.name}` | {old} | {EFFECT_WORDS[s.effect]} | {note} |")
    return "\n".join(rows)
