"""An app with a schedule, for the beat command's tests."""

from __future__ import annotations

from datetime import timedelta

from cloudq import App

app = App("beat-app", broker="memory://beat-app", backend="memory://beat-app")


@app.periodic(every=timedelta(minutes=15), name="quarter-hourly")
def tidy() -> None:
    """Runs every quarter hour."""


app.conf.beat_schedule = {"fast": {"task": tidy.name, "schedule": 0.2}}
