"""The schedule as data for the Terraform modules: EventBridge Scheduler → SQS, Cloud Scheduler →
Pub/Sub, or plain JSON. With it, serverless users need no beat process at all.

The output is keyed by entry name, in the shape of the ``schedules`` variable of the Terraform
modules (terraform/aws-schedule, terraform/gcp-function-worker). Each target carries the envelope
to enqueue at every tick (Cloud Scheduler's module base64-encodes it for Pub/Sub). The scheduler
sends the same body each time, with the task id ``beat-<name>``; the envelope asks the receiving
side to make it ``beat-<name>-<message id>``, one id per tick (``cloudq.schedule_ticks``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from cloudq.beat import ScheduleEntry
from cloudq.envelope import sign
from cloudq.errors import ConfigurationError
from cloudq.schedule_ticks import FROM_MESSAGE_ID, PER_TICK_HEADER

if TYPE_CHECKING:
    from cloudq.app import App

FORMATS = ("json", "eventbridge", "cloud-scheduler")
_UNIX_DOW = {str(i): str(i % 7 + 1) for i in range(8)}  # Unix 0/7 = Sunday; EventBridge 1


def _body(app: App, entry: ScheduleEntry) -> str:
    task = app.get_task(entry.task)
    envelope = task.envelope(
        entry.args,
        entry.kwargs,
        queue=entry.queue,
        task_id=f"beat-{entry.name}",
        headers={PER_TICK_HEADER: FROM_MESSAGE_ID},
    )
    return sign(envelope, app.signing_keys).encode().decode()


def _eventbridge_cron(cron: str) -> str:
    minute, hour, dom, month, dow = cron.split()
    dow = re.sub(r"\d", lambda m: _UNIX_DOW[m.group(0)], dow)
    if dow == "*":
        dow = "?"
    elif dom == "*":
        dom = "?"
    else:
        raise ConfigurationError(
            f"cron {cron!r}: EventBridge cannot combine a day of month with a day of week"
        )
    return f"cron({minute} {hour} {dom} {month} {dow} *)"


def _rate(seconds: float, fmt: str) -> tuple[int, str]:
    for unit, size in (("days", 86_400), ("hours", 3_600), ("minutes", 60)):
        if seconds % size == 0:
            return int(seconds // size), unit
    raise ConfigurationError(f"every={seconds}s cannot be expressed for {fmt}: use whole minutes")


def _cron_for_every(seconds: float) -> str:
    n, unit = _rate(seconds, "Cloud Scheduler")
    field = {"minutes": "*/{n} * * * *", "hours": "0 */{n} * * *", "days": "0 0 */{n} * *"}[unit]
    limit = {"minutes": 60, "hours": 24, "days": 31}[unit]
    if limit % n and n != 1:
        raise ConfigurationError(
            f"every={seconds}s does not divide a {unit[:-1]} cycle evenly "
            "in cron: choose a divisor, or use a cron expression"
        )
    return field.format(n=n)


def export(app: App, fmt: str) -> dict[str, dict[str, Any]]:
    """The app's schedule in ``fmt`` (one of ``FORMATS``), keyed by entry name: the shape of the
    ``schedules`` variable of terraform/aws-schedule and terraform/gcp-function-worker."""
    if fmt not in FORMATS:
        raise ConfigurationError(f"unknown export format {fmt!r}: {', '.join(FORMATS)}")
    out: dict[str, dict[str, Any]] = {}
    for entry in app.beat_entries():
        queue = entry.queue or app.route(entry.task)
        body = _body(app, entry)
        if fmt == "json":
            out[entry.name] = {**entry.model_dump(), "queue": queue, "input": body}
        elif fmt == "eventbridge":
            if entry.cron is not None:
                expression = _eventbridge_cron(entry.cron)
            else:
                assert entry.every is not None
                n, unit = _rate(entry.every, "EventBridge")
                expression = f"rate({n} {unit[:-1] if n == 1 else unit})"
            out[entry.name] = {
                "schedule_expression": expression,
                "timezone": entry.timezone,
                "queue": queue,
                "input": body,
            }
        else:
            schedule = entry.cron if entry.cron is not None else _cron_for_every(entry.every or 0)
            out[entry.name] = {
                "schedule": schedule,
                "time_zone": entry.timezone,
                "queue": queue,
                "input": body,
            }
    return out
