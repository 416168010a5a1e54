"""Periodic tasks (Celery's beat) that any number of beat processes can run at once.

Each tick of each entry is sent exactly once: a beat claims ``(entry, tick)`` atomically in the
shared store (the result backend: Redis ``SET NX``, or the memory backend in one process) and
only the winner sends. Ticks of ``every=`` entries are aligned to the Unix epoch, and cron ticks
are wall-clock times in the entry's time zone, so every beat computes the same ticks. The task
id is derived from ``(entry, tick)``, so a FIFO queue deduplicates it too.

Missed ticks (every beat was down): per entry, ``missed="run_once"`` (default) sends the latest
missed tick once on start, ``missed="skip"`` sends nothing until the next tick.

Serverless users need no beat process: ``cloudq beat --export eventbridge|cloud-scheduler|json``
writes the schedule as data for the Terraform modules.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cloudq.errors import ConfigurationError
from cloudq.logsafe import get_logger
from cloudq.stores.beat import BeatStore
from cloudq.stores.requirements import beat_needs, require

if TYPE_CHECKING:
    from cloudq.app import App

logger = get_logger("cloudq.beat")

TICK_HEADER = "cloudq-beat-tick"
CLAIM_TTL_SECONDS = 7 * 86_400
"""How long a claimed tick is remembered: longer than any beat outage we catch up on."""
_ID_NAMESPACE = uuid.UUID("6c1d3a52-6f0e-4e8b-9a57-3f0b8f2b1e11")


class ScheduleEntry(BaseModel):
    """One periodic task: ``cron`` (5 fields) or ``every`` (seconds), in ``timezone``."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    name: str
    task: str
    cron: str | None = None
    every: float | None = Field(default=None, gt=0)
    timezone: str = "UTC"
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    queue: str | None = None
    missed: Literal["run_once", "skip"] = "run_once"

    @model_validator(mode="after")
    def _check(self) -> ScheduleEntry:
        if (self.cron is None) == (self.every is None):
            raise ValueError("give exactly one of cron= and every=")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {self.timezone!r}") from exc
        if self.cron is not None:
            from cronsim import CronSim, CronSimError

            try:
                CronSim(self.cron, datetime.now(UTC))
            except CronSimError as exc:
                raise ValueError(f"bad cron expression {self.cron!r}: {exc}") from exc
        return self

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after ``moment`` (UTC)."""
        if self.every is not None:
            k = math.floor(moment.timestamp() / self.every) + 1
            return datetime.fromtimestamp(k * self.every, UTC)
        from cronsim import CronSim

        assert self.cron is not None
        local = moment.astimezone(ZoneInfo(self.timezone))
        return next(CronSim(self.cron, local)).astimezone(UTC)

    def last_at_or_before(self, moment: datetime, floor: datetime) -> datetime | None:
        """The latest tick in ``(floor, moment]``, or None."""
        last = None
        tick = self.next_after(floor)
        for _ in range(100_000):
            if tick > moment:
                break
            last = tick
            tick = self.next_after(tick)
        return last


def parse_beat_schedule(schedule: dict[str, Any], timezone: str = "UTC") -> list[ScheduleEntry]:
    """Celery's ``beat_schedule`` dict: ``{"name": {"task": ..., "schedule": 30 | timedelta |
    "*/5 * * * *" | crontab(...) | schedule(...), "args": ..., "kwargs": ..., "options":
    {"queue": ...}}}``. Cron entries without their own ``timezone`` run in ``timezone`` (the
    app's, as Celery's crontab does)."""
    from cloudq.schedules import BaseSchedule

    entries = []
    for name, spec in schedule.items():
        raw = dict(spec)
        when = raw.pop("schedule", None)
        options = raw.pop("options", {}) or {}
        raw.setdefault("timezone", timezone)
        if isinstance(when, BaseSchedule):
            raw.update(when.beat_fields())
        elif isinstance(when, timedelta):
            raw["every"] = when.total_seconds()
        elif isinstance(when, int | float):
            raw["every"] = float(when)
        elif isinstance(when, str):
            raw["cron"] = when
        elif when is not None:
            raise ConfigurationError(
                f"beat entry {name!r}: schedule must be seconds, a timedelta, a cron string, "
                "crontab(...) or schedule(...)"
            )
        if "queue" in options:
            raw["queue"] = options["queue"]
        raw["args"] = list(raw.get("args", []))
        entries.append(make_entry(name=name, **raw))
    return entries


def make_entry(**fields: Any) -> ScheduleEntry:
    try:
        return ScheduleEntry(**fields)
    except ValidationError as exc:
        problems = "; ".join(e["msg"] for e in exc.errors())
        raise ConfigurationError(f"periodic task {fields.get('name')!r}: {problems}") from None


class LocalBeatStore:
    """One process's claims; used, with a warning, when no result backend is set."""

    def __init__(self) -> None:
        self._claimed: set[str] = set()
        self._markers: dict[str, str] = {}
        self._lock = threading.Lock()

    def claim(self, key: str, ttl_seconds: float) -> bool:
        with self._lock:
            if key in self._claimed:
                return False
            self._claimed.add(key)
            return True

    def unclaim(self, key: str) -> None:
        with self._lock:
            self._claimed.discard(key)

    def get_marker(self, key: str) -> str | None:
        return self._markers.get(key)

    def set_marker(self, key: str, value: str) -> None:
        self._markers[key] = value


def task_id_for(entry: ScheduleEntry, tick: datetime) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"{entry.name}@{tick.isoformat()}"))


class Beat:
    """Sends each due tick of the app's schedule once, however many beats run."""

    def __init__(self, app: App, store: BeatStore | None = None, max_sleep: float = 1.0) -> None:
        self.app = app
        self.entries = app.beat_entries()
        if not self.entries:
            raise ConfigurationError(
                "no periodic tasks: set app.conf.beat_schedule or use @app.periodic(...)"
            )
        if store is None:
            require(app, "cloudq beat", beat_needs(app))
            backend = app.backend
            if isinstance(backend, BeatStore):
                store = backend
            else:
                logger.warning(
                    "no shared store (no result backend): run one beat only, or "
                    "ticks are sent once per beat"
                )
                store = LocalBeatStore()
        self.store = store
        self.max_sleep = max_sleep
        self.sent = 0
        self._stop = threading.Event()
        self._next: dict[str, datetime] = {}

    def stop(self) -> None:
        self._stop.set()

    def _marker_key(self, entry: ScheduleEntry) -> str:
        return f"beat:last:{entry.name}"

    def start(self, now: datetime) -> None:
        """Plan the next tick of each entry, catching up on missed ticks by their policy."""
        for entry in self.entries:
            marker = self.store.get_marker(self._marker_key(entry))
            if marker is not None and entry.missed == "run_once":
                missed = entry.last_at_or_before(now, datetime.fromisoformat(marker))
                if missed is not None:
                    logger.info(
                        "beat: %s missed ticks up to %s; running it once",
                        entry.name,
                        missed.isoformat(),
                    )
                    self._fire(entry, missed)
            self._next[entry.name] = entry.next_after(now)

    def tick(self, now: datetime) -> float:
        """Send what is due at ``now``; return seconds until the next tick."""
        for entry in self.entries:
            due = self._next[entry.name]
            if due <= now:
                self._fire(entry, due)
                self._next[entry.name] = entry.next_after(max(due, now))
        soonest = min(self._next.values())
        return max(0.0, (soonest - now).total_seconds())

    def _fire(self, entry: ScheduleEntry, tick: datetime) -> None:
        key = f"beat:{entry.name}:{tick.isoformat()}"
        if not self.store.claim(key, CLAIM_TTL_SECONDS):
            return
        try:
            task = self.app.get_task(entry.task)
            result = task.apply_async(
                entry.args,
                entry.kwargs,
                queue=entry.queue,
                task_id=task_id_for(entry, tick),
                headers={TICK_HEADER: tick.isoformat()},
            )
        except Exception:
            self.store.unclaim(key)  # not sent: this tick is tried again, by any beat
            raise
        self.store.set_marker(self._marker_key(entry), tick.isoformat())
        self.sent += 1
        logger.info("beat: sent %s (%s) for tick %s", entry.task, result.id, tick.isoformat())

    def run(self, clock: Callable[[], datetime] | None = None) -> None:
        """Run until ``stop()``."""
        now_fn = clock or self.app.clock.now
        self.app.hooks.emit("beat_start", beat=self)
        self.start(now_fn())
        logger.info(
            "beat: %d entr%s: %s",
            len(self.entries),
            "y" if len(self.entries) == 1 else "ies",
            ", ".join(e.name for e in self.entries),
        )
        while not self._stop.is_set():
            try:
                wait = self.tick(now_fn())
            except Exception:
                logger.exception("beat: could not send a tick; retrying")
                wait = self.max_sleep
            self._stop.wait(min(wait, self.max_sleep))
