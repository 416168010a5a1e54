"""Celery's setting names and ways of setting them (issue 24, "Configuration and app")."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from cloudq import App
from cloudq.celery_settings import BY_NAME, CELERY_SETTINGS, markdown_table
from cloudq.config import Settings
from cloudq.errors import ConfigurationError
from cloudq.worker import Worker


def make(**settings: object) -> App:
    return App("conf", broker="memory://compat-conf", **settings)


def test_update_and_attribute_assignment_take_celery_names() -> None:
    app = make()
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        timezone="Europe/Oslo",
        enable_utc=True,
    )
    app.conf.timezone = "Europe/Berlin"
    app.conf.task_default_queue = "default-q"
    app.conf["task_soft_time_limit"] = 20
    assert app.conf.timezone == "Europe/Berlin"
    assert app.conf.task_default_queue == "default-q"
    assert app.conf["task_soft_time_limit"] == 20.0
    assert app.conf.get("no_such_setting", "fallback") == "fallback"


@pytest.mark.parametrize(
    ("celery", "value", "cloudq", "expected"),
    [
        ("broker_transport_options", {"visibility_timeout": 3600}, "queue_lease_seconds", 3600.0),
        ("broker_transport_options", {"wait_time_seconds": 10}, "worker_poll_seconds", 10.0),
        ("task_default_queue", "lopri", "task_default_queue", "lopri"),
        ("worker_prefetch_multiplier", 1, "worker_prefetch_multiplier", 1),
        ("timezone", "Asia/Tokyo", "timezone", "Asia/Tokyo"),
        ("result_expires", timedelta(hours=1), "result_expires", 3600.0),
        ("result_expires", 60, "result_expires", 60.0),
        ("task_time_limit", 60, "task_time_limit", 60.0),
        ("task_soft_time_limit", timedelta(seconds=50), "task_soft_time_limit", 50.0),
        ("worker_concurrency", 8, "worker_concurrency", 8),
        ("broker_url", "memory://other", "broker_url", "memory://other"),
        ("result_backend", "memory://other", "result_backend", "memory://other"),
        ("task_ignore_result", True, "task_ignore_result", True),
        ("task_always_eager", True, "task_always_eager", True),
        ("task_eager_propagates", True, "task_eager_propagates", True),
        ("task_create_missing_queues", False, "create_missing_queues", False),
        ("imports", ("a.tasks",), "imports", ["a.tasks"]),
        ("CELERY_IMPORTS", ("a.tasks",), "imports", ["a.tasks"]),
        ("beat_schedule", {"e": {"task": "t", "schedule": 5}}, "beat_schedule", None),
        ("CELERY_ROUTES", {"a.*": "q"}, "task_routes", {"a.*": "q"}),
        ("CELERYD_CONCURRENCY", 3, "worker_concurrency", 3),
        ("BROKER_URL", "memory://old", "broker_url", "memory://old"),
        ("CELERY_TASK_RESULT_EXPIRES", 10, "result_expires", 10.0),
    ],
)
def test_celery_setting_maps_onto_cloudq(
    celery: str, value: object, cloudq: str, expected: object
) -> None:
    for app in (make(**{celery: value}), make()):
        app.conf.update({celery: value})  # as App(...) keyword and through conf.update
        got = getattr(app.conf, cloudq)
        assert got == (value if expected is None else expected)


def test_worker_concurrency_none_is_the_cpu_count() -> None:
    import os

    assert make(worker_concurrency=None).conf.worker_concurrency == (os.cpu_count() or 1)


def test_sqs_guide_transport_options() -> None:
    """Celery's SQS guide: visibility_timeout (1 hour) and polling_interval (no effect here:
    cloudq long-polls, worker_poll_seconds bounds it)."""
    app = make()
    app.conf.broker_transport_options = {"visibility_timeout": 3600, "polling_interval": 0.3}
    assert app.conf.queue_lease_seconds == 3600.0
    assert app.conf.worker_poll_seconds == 5.0


def test_prefetch_multiplier_counts_the_running_tasks_as_celery_does() -> None:
    app = make(worker_prefetch_multiplier=3)
    assert Worker(app, ["default"], concurrency=4).prefetch == 8  # 3 x 4 held, 4 of them running
    app.conf.worker_prefetch_multiplier = 1
    assert Worker(app, ["default"], concurrency=4).prefetch == 0
    app.conf.worker_prefetch = 5  # cloudq's own setting wins
    assert Worker(app, ["default"], concurrency=4).prefetch == 5


@pytest.mark.parametrize(
    "name",
    [s.name for s in CELERY_SETTINGS if s.effect == "none"],
)
def test_no_effect_settings_are_accepted_with_one_log_line(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = make()
    before = app.conf.model_dump()
    with caplog.at_level(logging.INFO, logger="cloudq.celery_settings"):
        app.conf.update({name: True})
    lines = [r for r in caplog.records if name in r.getMessage()]
    assert len(lines) == 1
    assert "no effect" in lines[0].getMessage()
    assert app.conf.model_dump() == before


@pytest.mark.parametrize(
    ("name", "value", "hint"),
    [
        ("task_serializer", "pickle", "task_serializer='json'"),
        ("result_serializer", "pickle", "result_serializer='json'"),
        ("accept_content", ["pickle", "json"], "accept_content=['json']"),
        ("result_accept_content", ["application/x-python-serialize"], "['json']"),
        ("result_expires", None, "give seconds"),
        ("task_time_limit", None, "give seconds"),
        ("worker_prefetch_multiplier", 0, "worker_prefetch"),
        ("broker_transport_options", {"region": "eu-west-1"}, "sqs://?region=eu-west-1"),
        ("broker_transport_options", {"queue_name_prefix": "p-"}, "sqs://?prefix="),
        ("broker_transport_options", {"confirm_publish": True}, "visibility_timeout"),
        ("security_key", "key.pem", "signing_keys"),
        ("CELERY_SEND_TASK_ERROR_EMAILS", True, "error_reports"),
    ],
)
def test_values_cloudq_cannot_honour_fail_with_what_to_write(
    name: str, value: object, hint: str
) -> None:
    app = make()
    before = app.conf.model_dump()
    with pytest.raises(ConfigurationError, match=re.escape(hint)):
        app.conf.update({name: value})
    with pytest.raises(ConfigurationError, match=re.escape(hint)):
        make(**{name: value})
    assert app.conf.model_dump() == before


def test_json_is_accepted_in_every_spelling() -> None:
    app = make(task_serializer="json", accept_content=["application/json", "json"])
    app.conf.result_serializer = "JSON"
    app.conf.accept_content = "json"


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [
        ("task_serialiser", "task_serializer"),
        ("worker_prefetch_multiplyer", "worker_prefetch_multiplier"),
        ("broker_transport_option", "broker_transport_options"),
        ("queue_lease_second", "queue_lease_seconds"),
    ],
)
def test_unknown_names_fail_with_did_you_mean(typo: str, suggestion: str) -> None:
    app = make()
    for attempt in (
        lambda: app.conf.update({typo: 1}),
        lambda: setattr(app.conf, typo, 1),
        lambda: make(**{typo: 1}),
        lambda: app.config_from_object(SimpleNamespace(**{typo: 1})),
    ):
        with pytest.raises(ConfigurationError, match=rf"did you mean .*{suggestion}"):
            attempt()


def test_old_upper_case_typos_fail_too() -> None:
    with pytest.raises(ConfigurationError, match="did you mean CELERY_ALWAYS_EAGER"):
        make().config_from_object(SimpleNamespace(CELERY_ALWAYS_EAGR=True))


def test_bad_value_for_a_known_name_names_the_setting() -> None:
    app = make()
    with pytest.raises(ConfigurationError, match="task_time_limit"):
        app.conf.task_time_limit = -1
    with pytest.raises(ConfigurationError, match="unknown time zone"):
        app.conf.timezone = "Mars/Olympus"
    assert app.conf.task_time_limit == 300.0


class Config:
    broker_url = "memory://from-class"
    task_default_queue = "from-class"
    BASE_DIR = "/srv/app"  # a project constant, not a setting: ignored


def test_config_from_object_reads_an_object_a_module_and_module_attribute() -> None:
    app = make()
    assert app.config_from_object(Config) is True
    assert app.conf.broker_url == "memory://from-class"
    assert app.conf.task_default_queue == "from-class"
    app.config_from_object("tests.compat.test_config_celery_settings:Config")
    assert app.conf.task_default_queue == "from-class"
    assert app.config_from_object({"task_default_queue": "from-dict"})
    assert app.conf.task_default_queue == "from-dict"


def test_config_from_object_missing_module() -> None:
    app = make()
    with pytest.raises(ConfigurationError, match="cannot import 'no_such_config'"):
        app.config_from_object("no_such_config")
    assert app.config_from_object("no_such_config", silent=True) is False


def test_namespace_reads_only_prefixed_names_new_and_old() -> None:
    settings = SimpleNamespace(
        DEBUG=True,
        SECRET_KEY="x",
        CELERY_BROKER_URL="memory://ns",
        CELERY_TASK_ALWAYS_EAGER=True,
        CELERY_EAGER_PROPAGATES_EXCEPTIONS=True,  # an old name, also read in a namespace
        CELERY_SIGNING_KEYS=["k"],  # cloudq's own setting, in the namespace
    )
    app = make()
    app.config_from_object(settings, namespace="CELERY")
    assert app.conf.broker_url == "memory://ns"
    assert app.conf.task_always_eager is True
    assert app.conf.task_eager_propagates is True
    assert app.conf.signing_keys == ["k"]
    with pytest.raises(ConfigurationError, match="did you mean"):
        app.config_from_object(SimpleNamespace(CELERY_TASK_ALWAYS_EGER=True), namespace="CELERY")


def test_config_source_keyword() -> None:
    app = App("conf", config_source=Config)
    assert app.conf.task_default_queue == "from-class"


def test_every_table_row_is_valid() -> None:
    for setting in CELERY_SETTINGS:
        assert setting.note, setting.name
        if setting.effect in ("same", "maps") and setting.convert is None:
            assert setting.name in Settings.model_fields, setting.name
    assert len(BY_NAME) == len(CELERY_SETTINGS)


def test_migration_guide_lists_the_table() -> None:
    guide = Path(__file__).parents[2] / "docs" / "migrating-from-celery.md"
    text = guide.read_text()
    start, end = "<!-- settings table: start -->", "<!-- settings table: end -->"
    assert start in text and end in text
    written = text.split(start, 1)[1].split(end, 1)[0].strip()
    assert written == markdown_table().strip(), (
        "docs/migrating-from-celery.md is out of date: paste the output of "
        "`scripts/celery-settings-table` between its table markers"
    )


def test_a_refused_update_changes_nothing() -> None:
    """conf.update and config_from_object apply all their settings or none: a project whose
    config fails halfway does not run on half of it."""
    app = make()
    before = app.conf.model_dump()
    bad_updates: list[dict[str, object]] = [
        {"task_default_queue": "changed", "task_serializer": "pickle"},
        {"task_default_queue": "changed", "task_time_limit": -5},
        {"task_default_queue": "changed", "task_serialiser": "json"},
    ]
    for bad in bad_updates:
        with pytest.raises(ConfigurationError):
            app.conf.update(bad)
        with pytest.raises(ConfigurationError):
            app.config_from_object(SimpleNamespace(**bad))
    assert app.conf.model_dump() == before
