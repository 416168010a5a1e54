"""The schedule as data for the Terraform modules: EventBridge Scheduler → SQS, Cloud Scheduler →
Pub/Sub, a Logic App recurrence → Service Bus, or plain JSON. With it, serverless users need no
beat process at all.

Azure has two ways to send on a schedule: a Logic App (Consumption) recurrence, or a
timer-triggered function. The Logic App is the one that matches the other two: a managed
scheduler holding the body as data, with no code deployed, nothing to keep in step with the
function app's package, and its own identity allowed to send to the target queue only.

The output is keyed by entry name, in the shape of the ``schedules`` variable of the Terraform
modules (terraform/aws-schedule, terraform/gcp-function-worker, terraform/azure-function-worker).
Each target carries the envelope to enqueue at every tick (Cloud Scheduler's module
base64-encodes it for Pub/Sub). The scheduler sends the same body each time, with the task id
``beat-<name>``; the envelope asks the receiving side to make it ``beat-<name>-<message id>``,
one id per tick (``cloudq.schedule_ticks``).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from cloudq.beat import ScheduleEntry
from cloudq.envelope import sign
from cloudq.errors import ConfigurationError
from cloudq.schedule_ticks import FROM_MESSAGE_ID, PER_TICK_HEADER

if TYPE_CHECKING:
    from cloudq.app import App

FORMATS = ("json", "eventbridge", "cloud-scheduler", "logic-app")
_UNIX_DOW = {str(i): str(i % 7 + 1) for i in range(8)}  # Unix 0/7 = Sunday; EventBridge 1
TASK_ID_PREFIX = "beat-"
"""An exported entry's task id is ``beat-<name>`` (each tick then gets its own: see
``cloudq.schedule_ticks``)."""
_WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_LOGIC_APP_UNITS = {"minutes": "Minute", "hours": "Hour", "days": "Day"}
LOGIC_APP_SCHEDULED_TIME = "@{trigger().scheduledTime}"
"""Logic Apps' expression for the tick's scheduled time, the same on a retried run."""


def _body(app: App, entry: ScheduleEntry) -> str:
    task = app.get_task(entry.task)
    envelope = task.envelope(
        entry.args,
        entry.kwargs,
        queue=entry.queue,
        task_id=f"{TASK_ID_PREFIX}{entry.name}",
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


def _cron_field(field: str, low: int, high: int, cron: str) -> list[int]:
    """A cron field's values: ``*``, ``n``, ``a-b``, ``*/n``, ``a-b/n`` and lists of them."""
    values: set[int] = set()
    for part in field.split(","):
        span, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if span == "*":
                start, stop = low, high
            elif "-" in span:
                first, _, last = span.partition("-")
                start, stop = int(first), int(last)
            else:
                start = stop = int(span)
                if step_text:
                    stop = high
        except ValueError:
            raise ConfigurationError(
                f"cron {cron!r}: field {field!r} cannot be expressed for a Logic App "
                "(use numbers, ranges, lists and steps)"
            ) from None
        if step < 1 or not low <= start <= stop <= high:
            raise ConfigurationError(f"cron {cron!r}: field {field!r} is out of range")
        values.update(range(start, stop + 1, step))
    return sorted(values)


def _logic_app_time_zone(zone: str) -> str:
    """Logic Apps take Windows time zone names (``W. Europe Standard Time``), not IANA ones."""
    if zone in ("UTC", "Etc/UTC"):
        return "UTC"
    try:
        from tzlocal.windows_tz import tz_win
    except ImportError:
        raise ConfigurationError(
            f"time zone {zone!r}: a Logic App needs its Windows name; install tzlocal "
            "(pip install 'cloudqueue-tasks[servicebus]') to translate it"
        ) from None
    name = tz_win.get(zone)
    if name is None:
        raise ConfigurationError(f"time zone {zone!r} has no Windows name for a Logic App")
    return str(name)


def _logic_app_recurrence(entry: ScheduleEntry) -> dict[str, Any]:
    """Logic Apps' ``recurrence`` object for the entry. ``every=`` ticks keep beat's alignment
    on the Unix epoch (start time 1970, UTC); cron entries become hours and minutes on every
    day, some week days or some month days, in the entry's zone."""
    if entry.cron is None:
        n, unit = _rate(entry.every or 0, "a Logic App")
        return {
            "frequency": _LOGIC_APP_UNITS[unit],
            "interval": n,
            "startTime": "1970-01-01T00:00:00Z",
        }
    cron = entry.cron
    minute, hour, dom, month, dow = cron.split()
    if month != "*":
        raise ConfigurationError(f"cron {cron!r}: a Logic App recurrence cannot pick months")
    if dom != "*" and dow != "*":
        raise ConfigurationError(
            f"cron {cron!r}: a Logic App cannot combine a day of month with a day of week"
        )
    schedule: dict[str, Any] = {
        "hours": _cron_field(hour, 0, 23, cron),
        "minutes": _cron_field(minute, 0, 59, cron),
    }
    frequency = "Day"
    if dow != "*":
        frequency = "Week"
        days = {d % 7 for d in _cron_field(dow, 0, 7, cron)}
        schedule["weekDays"] = [_WEEKDAYS[d] for d in sorted(days)]
    elif dom != "*":
        frequency = "Month"
        schedule["monthDays"] = _cron_field(dom, 1, 31, cron)
    return {
        "frequency": frequency,
        "interval": 1,
        "timeZone": _logic_app_time_zone(entry.timezone),
        "startTime": "1970-01-01T00:00:00",  # with a time zone: no offset (Logic Apps' rule)
        "schedule": schedule,
    }


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
        elif fmt == "logic-app":
            out[entry.name] = {
                # A string: recurrences differ in shape, a Terraform map's values may not.
                "recurrence": json.dumps(_logic_app_recurrence(entry), sort_keys=True),
                "queue": queue,
                "input": body,
                # Service Bus MessageId: per tick, and what cloudq.schedule_ticks keeps as the id.
                "message_id": f"{TASK_ID_PREFIX}{entry.name}-{LOGIC_APP_SCHEDULED_TIME}",
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
