"""``cloudq beat --export logic-app``: Logic App recurrences for terraform/azure-function-worker."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from cloudq import App
from cloudq.beat_export import export
from cloudq.errors import ConfigurationError


def recurrence(schedule: Any, timezone: str = "UTC") -> dict[str, Any]:
    app = App("x", broker=f"memory://{uuid.uuid4().hex}")
    app.task(name="report")(lambda: None)
    app.conf.beat_schedule = {"e": {"task": "report", "schedule": schedule}}
    app.conf.timezone = timezone
    entry = export(app, "logic-app")["e"]
    assert entry["queue"] == "default" and json.loads(entry["input"])["task"] == "report"
    return json.loads(entry["recurrence"])  # type: ignore[no-any-return]


def test_weekday_cron_is_a_weekly_recurrence_in_the_windows_zone() -> None:
    assert recurrence("30 9 * * 1-5", "Europe/Berlin") == {
        "frequency": "Week",
        "interval": 1,
        "timeZone": "W. Europe Standard Time",
        "startTime": "1970-01-01T00:00:00",
        "schedule": {
            "hours": [9],
            "minutes": [30],
            "weekDays": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"],
        },
    }


def test_steps_lists_and_sunday_as_7() -> None:
    got = recurrence("*/20 8-18/5 * * 0,7,6")
    assert got["schedule"] == {
        "hours": [8, 13, 18],
        "minutes": [0, 20, 40],
        "weekDays": ["Sunday", "Saturday"],
    }
    assert recurrence("0 0 1,15 * *")["frequency"] == "Month"
    assert recurrence("0 0 1,15 * *")["schedule"]["monthDays"] == [1, 15]
    assert recurrence("15 3 * * *")["frequency"] == "Day"


def test_every_keeps_beats_epoch_alignment() -> None:
    assert recurrence(900.0) == {
        "frequency": "Minute",
        "interval": 15,
        "startTime": "1970-01-01T00:00:00Z",
    }
    assert recurrence(7200.0)["frequency"] == "Hour"


@pytest.mark.parametrize(
    ("schedule", "match"),
    [
        ("0 0 * 1 *", "cannot pick months"),
        ("0 0 1 * 1", "cannot combine"),
        ("0 0 * * MON", "cannot be expressed"),
        ("0 0 * * 1#2", "cannot be expressed"),
        ("0 0 L * *", "cannot be expressed"),
        (7.0, "whole minutes"),
    ],
)
def test_what_a_recurrence_cannot_say_is_refused(schedule: Any, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        recurrence(schedule)
