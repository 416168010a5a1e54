"""Celery's periodic-tasks guide on cloudq's beat (issue 24): add_periodic_task from
on_after_configure, beat_schedule with numbers, timedelta, crontab() and schedule(), and the
guide's crontab table, checked minute by minute against Celery's own crontab parser."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cloudq import App
from cloudq.beat import Beat, make_entry
from cloudq.errors import ConfigurationError
from cloudq.schedules import crontab, schedule
from cloudq.testing import process_one

Example = Callable[[str], Path]
MONDAY_0729 = datetime(2030, 1, 7, 7, 29, 55, tzinfo=UTC)


def test_guide_add_periodic_task_in_on_after_configure(
    example: Example, capsys: pytest.CaptureFixture[str]
) -> None:
    example("periodic")
    app = importlib.import_module("periodic_app").app
    app.conf.broker_url = "memory://periodic-guide"
    beat = Beat(app)  # reading the schedule sends on_after_configure
    by_name = {e.name: e for e in beat.entries}
    assert by_name["add every 10"].every == 10.0
    assert by_name["add every 30"].every == 30.0
    world = by_name["periodic_app.test('world',)"]
    assert (world.every, world.args) == (30.0, ["world"])
    monday = by_name["periodic_app.test('Happy Mondays!',)"]
    assert monday.cron == "30 7 * * 1"
    beat.start(MONDAY_0729)
    beat.tick(MONDAY_0729 + timedelta(seconds=5))  # Monday 07:30:00
    assert beat.sent == 4
    while process_one(app) is not None:
        pass
    assert sorted(capsys.readouterr().out.split("\n")) == sorted(
        ["", "hello", "hello", "world", "Happy Mondays!"]
    )


def test_guide_beat_schedule_every_30_seconds() -> None:
    app = App("tasks", broker="memory://periodic-schedule")

    @app.task(name="tasks.add")
    def add(x: int, y: int) -> int:
        return x + y

    app.conf.beat_schedule = {
        "add-every-30-seconds": {
            "task": "tasks.add",
            "schedule": 30.0,
            "args": (16, 16),
        },
    }
    app.conf.timezone = "UTC"
    (entry,) = app.beat_entries()
    assert (entry.task, entry.every, entry.args) == ("tasks.add", 30.0, [16, 16])


def test_guide_beat_schedule_crontab_every_monday_morning_in_the_app_timezone() -> None:
    app = App("tasks", broker="memory://periodic-crontab")
    app.conf.beat_schedule = {
        # Executes every Monday morning at 7:30 a.m.
        "add-every-monday-morning": {
            "task": "tasks.add",
            "schedule": crontab(hour=7, minute=30, day_of_week=1),
            "args": (16, 16),
        },
    }
    app.conf.timezone = "Europe/Berlin"
    (entry,) = app.beat_entries()
    assert (entry.cron, entry.timezone) == ("30 7 * * 1", "Europe/Berlin")
    assert entry.next_after(datetime(2030, 1, 6, tzinfo=UTC)) == datetime(
        2030, 1, 7, 6, 30, tzinfo=UTC
    )  # 07:30 in Berlin is 06:30 UTC in winter


def test_schedule_objects_and_timedelta_beside_numbers_and_cron_strings() -> None:
    app = App("tasks", broker="memory://periodic-objects")
    app.conf.beat_schedule = {
        "a": {"task": "t", "schedule": schedule(timedelta(seconds=45))},
        "b": {"task": "t", "schedule": schedule(run_every=90)},
        "c": {"task": "t", "schedule": timedelta(minutes=5)},
        "d": {"task": "t", "schedule": 12},
        "e": {"task": "t", "schedule": "*/5 * * * *"},
        "f": {"task": "t", "schedule": crontab(minute="*/15")},
    }
    got = {e.name: (e.every, e.cron) for e in app.beat_entries()}
    assert got == {
        "a": (45.0, None),
        "b": (90.0, None),
        "c": (300.0, None),
        "d": (12.0, None),
        "e": (None, "*/5 * * * *"),
        "f": (None, "*/15 * * * *"),
    }


def test_add_periodic_task_outside_a_signal_and_on_after_finalize() -> None:
    app = App("tasks", broker="memory://periodic-finalize")

    @app.task
    def ping() -> None: ...

    @app.on_after_finalize.connect
    def setup(sender: App, **kwargs: Any) -> None:
        sender.add_periodic_task(crontab(), ping.s(), name="every minute")

    name = app.add_periodic_task(schedule(run_every=5), ping.s(), name="often")
    assert name == "often"
    assert {e.name for e in app.beat_entries()} == {"often", "every minute"}
    assert {e.name for e in app.beat_entries()} == {"often", "every minute"}  # sent once


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"day_of_week": "mon", "day_of_month": "1"}, "days matching both"),
        ({"minute": 61}, "bad cron expression"),
        ({"hour": ""}, "give '*'"),
        ({"minute": set()}, "set of numbers"),
        ({"day_of_week": "funday"}, "bad cron expression"),
    ],
)
def test_crontab_refuses_what_it_cannot_honour(kwargs: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigurationError, match=error):
        crontab(**kwargs)


@pytest.mark.parametrize("bad", [0, -1, None, "soon"])
def test_schedule_needs_a_positive_period(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="run_every"):
        schedule(run_every=bad)


GUIDE_CRONTABS: list[tuple[dict[str, Any], int]] = [
    ({}, 3),
    ({"minute": 0, "hour": 0}, 31),
    ({"minute": 0, "hour": "*/3"}, 31),
    ({"minute": 0, "hour": "0,3,6,9,12,15,18,21"}, 31),
    ({"minute": "*/15"}, 31),
    ({"day_of_week": "sunday"}, 15),
    ({"minute": "*", "hour": "*", "day_of_week": "sun"}, 15),
    ({"minute": "*/10", "hour": "3,17,22", "day_of_week": "thu,fri"}, 31),
    ({"minute": 0, "hour": "*/2,*/3"}, 31),
    ({"minute": 0, "hour": "*/5"}, 31),
    ({"minute": 0, "hour": "*/3,8-17"}, 31),
    ({"minute": 0, "hour": 0, "day_of_month": "2"}, 120),
    ({"minute": 0, "hour": 0, "day_of_month": "2-30/2"}, 62),
    ({"minute": 0, "hour": 0, "day_of_month": "1-7,15-21"}, 62),
    ({"minute": 0, "hour": 0, "day_of_month": "11", "month_of_year": "5"}, 800),
    ({"minute": 0, "hour": 0, "month_of_year": "*/3"}, 400),
    ({"minute": 30, "hour": 7, "day_of_week": 1}, 31),
    ({"minute": {0, 30}, "hour": [9, 17]}, 10),
]


def celery_ticks(kwargs: dict[str, Any], start: datetime, days: int) -> Iterator[datetime]:
    """Every minute Celery's own crontab matches (its parsed sets), from ``start``."""
    celery_schedules = pytest.importorskip("celery.schedules")
    c = celery_schedules.crontab(**kwargs)
    for offset in range(days):
        day = start.date() + timedelta(days=offset)
        if (
            day.month in c.month_of_year
            and day.day in c.day_of_month
            and day.isoweekday() % 7 in c.day_of_week
        ):
            for hour in sorted(c.hour):
                for minute in sorted(c.minute):
                    yield datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def cloudq_ticks(cron: crontab, start: datetime, days: int) -> Iterator[datetime]:
    entry = make_entry(name="x", task="t", cron=cron.cron)
    end = start + timedelta(days=days)
    tick = entry.next_after(start - timedelta(seconds=1))
    while tick < end:
        yield tick
        tick = entry.next_after(tick)


@pytest.mark.parametrize(("kwargs", "days"), GUIDE_CRONTABS)
def test_guide_crontab_table_runs_when_celery_would(kwargs: dict[str, Any], days: int) -> None:
    start = datetime.combine(date(2030, 1, 1), datetime.min.time(), UTC)
    expected = list(celery_ticks(kwargs, start, days))
    assert expected, "the window holds no tick: widen it"
    assert list(cloudq_ticks(crontab(**kwargs), start, days)) == expected
