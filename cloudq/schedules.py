"""Celery's schedule objects for ``beat_schedule`` and ``add_periodic_task``: ``crontab(...)``
and ``schedule(timedelta)``. Each becomes what beat runs today: a cron string (cronsim's
semantics, in the app's ``timezone``) or a period in seconds (ticks aligned to the epoch)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from cloudq.errors import ConfigurationError

CronField = int | str | Iterable[int]
_DAY_NAMES = re.compile(r"(sun|mon|tue|wed|thu|fri|sat)[a-z]*", re.IGNORECASE)
"""Celery takes ``"sunday"`` as well as ``"sun"``; cron takes the three letters."""


def _field(name: str, value: CronField) -> str:
    if isinstance(value, bool):
        raise ConfigurationError(f"crontab({name}={value!r}): give a number, a string or a set")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        text = value.replace(" ", "")
        if not text:
            raise ConfigurationError(f"crontab({name}=''): give '*' for every value")
        return text
    items = sorted(set(value))
    if not items or not all(isinstance(i, int) and not isinstance(i, bool) for i in items):
        raise ConfigurationError(f"crontab({name}={value!r}): give a set of numbers")
    return ",".join(str(i) for i in items)


class BaseSchedule:
    """What beat needs from a schedule object: ``beat_fields()``, cron or every."""

    def beat_fields(self) -> dict[str, Any]:
        raise NotImplementedError


class crontab(BaseSchedule):  # noqa: N801 - Celery's name
    """``crontab(minute=0, hour="*/3", day_of_week="mon-fri")``: Celery's argument order and
    field syntax (numbers, ``*/n``, ranges, lists, day and month names, sets of numbers).

    Celery runs an entry whose day of month *and* day of week are both restricted only on days
    matching both; cron matches either, so that combination is refused rather than changed.
    """

    def __init__(
        self,
        minute: CronField = "*",
        hour: CronField = "*",
        day_of_week: CronField = "*",
        day_of_month: CronField = "*",
        month_of_year: CronField = "*",
        **_ignored: Any,
    ) -> None:
        self.minute = _field("minute", minute)
        self.hour = _field("hour", hour)
        self.day_of_week = _DAY_NAMES.sub(
            lambda m: m.group(1).lower(), _field("day_of_week", day_of_week)
        )
        self.day_of_month = _field("day_of_month", day_of_month)
        self.month_of_year = _field("month_of_year", month_of_year)
        if not self.day_of_week.startswith("*") and not self.day_of_month.startswith("*"):
            raise ConfigurationError(
                f"crontab(day_of_week={day_of_week!r}, day_of_month={day_of_month!r}): Celery "
                "runs this on days matching both, cron on days matching either; write two "
                "entries, or one restricted field and a check in the task"
            )
        self.cron = " ".join(
            (self.minute, self.hour, self.day_of_month, self.month_of_year, self.day_of_week)
        )
        from cloudq.beat import make_entry  # the cron string is checked by beat's own parser

        make_entry(name=repr(self), task="-", cron=self.cron)

    def __repr__(self) -> str:
        return f"<crontab: {self.cron}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, crontab) and other.cron == self.cron

    def __hash__(self) -> int:
        return hash(self.cron)

    def beat_fields(self) -> dict[str, Any]:
        return {"cron": self.cron}


class schedule(BaseSchedule):  # noqa: N801 - Celery's name
    """``schedule(timedelta(seconds=30))`` or ``schedule(run_every=30.0)``: every period."""

    def __init__(self, run_every: float | timedelta | None = None, **_ignored: Any) -> None:
        if run_every is None:
            raise ConfigurationError("schedule(run_every=...): give seconds or a timedelta")
        seconds = run_every.total_seconds() if isinstance(run_every, timedelta) else run_every
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0:
            raise ConfigurationError(f"schedule(run_every={run_every!r}): must be > 0 seconds")
        self.run_every = timedelta(seconds=float(seconds))
        self.seconds = float(seconds)

    def __repr__(self) -> str:
        return f"<freq: {self.run_every}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, schedule) and other.seconds == self.seconds

    def __hash__(self) -> int:
        return hash(self.seconds)

    def beat_fields(self) -> dict[str, Any]:
        return {"every": self.seconds}
