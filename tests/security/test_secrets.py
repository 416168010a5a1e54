"""Credentials written in a URL or connection string never reach a repr, a log line or an error.

Each kind of secret is tried (a password, a bare token in the user part, a query parameter, a
connection-string field) at every place a configured URL is shown (issue 26, finding 9).
"""

from __future__ import annotations

import logging
import types
from collections.abc import Callable
from typing import Any

import pytest

from cloudq import App
from cloudq.adapters import open_broker, scheme_of
from cloudq.adapters.urls import redact_url, url_flag
from cloudq.clock import FakeClock
from cloudq.errors import CloudqError, ConfigurationError

SECRET = "S3cr3tValue"

# One URL per kind of secret a user may write (all hold SECRET, none of them anywhere else).
SECRET_URLS = {
    "password": f"redis://alice:{SECRET}@cache:6379/0",
    "password only": f"redis://:{SECRET}@cache:6379/0",
    "bare token": f"memory://{SECRET}@queues",
    "access key": f"sqs://AKIA{SECRET}:{SECRET}x@",
    "password with a slash": f"sqs://AKIA:{SECRET}/x@host",
    "password param": f"redis://cache:6379/0?password={SECRET}&prefix=app",
    "token param": f"memory://queues?token={SECRET}",
    "sas sig": f"https://acct.blob.core.windows.net/c?sv=2022&sig={SECRET}&se=1",
    "encoded sas": (
        "azblob://c/p?account_url=https%3A%2F%2Facct.blob.core.windows.net%2F%3Fsv%3D1"
        f"%26sig%3D{SECRET}%26se%3D2&create=1"
    ),
    "SharedAccessKey param": f"servicebus://ns?SharedAccessKey={SECRET}",
    "connection string": (
        "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;"
        f"SharedAccessKey={SECRET}="
    ),
    "storage connection string": (
        f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={SECRET}==;"
        "EndpointSuffix=core.windows.net"
    ),
}


@pytest.mark.parametrize("url", SECRET_URLS.values(), ids=SECRET_URLS.keys())
def test_redact_url_hides_each_kind_of_secret(url: str) -> None:
    shown = redact_url(url)
    assert SECRET not in shown and "***" in shown


def test_redact_url_keeps_what_helps_debugging() -> None:
    shown = redact_url(f"redis://alice:{SECRET}@cache:6379/0?prefix=app&password={SECRET}")
    assert shown == "redis://***@cache:6379/0?prefix=app&password=***"
    assert redact_url("sqs://?region=eu-west-1&prefix=a-") == "sqs://?region=eu-west-1&prefix=a-"
    assert redact_url("not a URL [::1") == "not a URL [::1"  # never raises


def test_only_one_redact_url() -> None:
    import cloudq.results.redis as redis_results

    assert redis_results.redact_url is redact_url


@pytest.mark.parametrize(
    "broker",
    [f"memory://user:{SECRET}@q", f"memory://{SECRET}@q", f"memory://q?token={SECRET}"],
)
def test_app_repr_hides_broker_credentials(broker: str) -> None:
    app = App("shop", broker=broker)
    assert SECRET not in repr(app) and "<App shop broker=memory://" in repr(app)


def test_settings_repr_hides_urls_and_signing_keys() -> None:
    app = App(
        "shop",
        broker=f"memory://u:{SECRET}@q",
        backend=f"memory://{SECRET}@r",
        signing_keys=[SECRET],
    )
    app.conf.claim_check_url = f"memory://cc?sig={SECRET}"
    assert SECRET not in repr(app.conf) and SECRET not in str(app.conf)


def test_opening_a_broker_logs_no_credentials(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="cloudq"):
        open_broker(f"memory://user:{SECRET}@q?max_batch=10", FakeClock())
    assert any("opened broker MemoryBroker" in r.getMessage() for r in caplog.records)
    assert all(SECRET not in r.getMessage() for r in caplog.records)


def _sqs(url: str) -> Any:
    from cloudq_sqs.broker import open_sqs_broker

    return open_sqs_broker(url, FakeClock())


def _pubsub(url: str) -> Any:
    from cloudq_pubsub.broker import open_pubsub_broker

    return open_pubsub_broker(url, FakeClock())


def _servicebus(url: str) -> Any:
    from cloudq_servicebus.broker import open_servicebus_broker

    return open_servicebus_broker(url, FakeClock())


def _s3(url: str) -> Any:
    from cloudq_sqs.s3 import open_s3_store

    return open_s3_store(url)


def _dynamodb(url: str) -> Any:
    from cloudq_sqs.dynamodb import open_dynamodb_backend

    return open_dynamodb_backend(url, FakeClock())


def _gcs(url: str) -> Any:
    from cloudq_pubsub.gcs import open_gcs_store

    return open_gcs_store(url)


def _firestore(url: str) -> Any:
    from cloudq_pubsub.firestore import open_firestore_backend

    return open_firestore_backend(url, FakeClock())


def _blob(url: str) -> Any:
    from cloudq_servicebus.blob import open_blob_store

    return open_blob_store(url)


def _table(url: str) -> Any:
    from cloudq_servicebus.table import open_table_backend

    return open_table_backend(url, FakeClock())


def _redis(url: str) -> Any:
    from cloudq.results.redis import redis_client

    return redis_client(url)


def _flag(url: str) -> Any:
    return url_flag("create", "maybe", url)


BAD_URLS: list[tuple[Callable[[str], Any], str]] = [
    (scheme_of, f"//AKIA:{SECRET}@host"),
    (scheme_of, SECRET_URLS["connection string"]),  # given as a broker URL by mistake
    (_flag, SECRET_URLS["encoded sas"]),
    (_sqs, f"sqs://AKIAEXAMPLE:{SECRET}@"),
    (_sqs, f"sqs://{SECRET}@"),
    (_pubsub, f"pubsub://svc:{SECRET}@project"),
    (_servicebus, f"servicebus://Root:{SECRET}@ns.servicebus.windows.net"),
    (_s3, f"s3://AKIA:{SECRET}@bucket/prefix"),
    (_dynamodb, f"dynamodb://AKIA:{SECRET}@table"),
    (_gcs, f"gs://svc:{SECRET}@bucket/prefix"),
    (_firestore, f"firestore://svc:{SECRET}@project/results"),
    (_blob, f"azblob://acct:{SECRET}@container/prefix"),
    (_table, f"azuretable://acct:{SECRET}@results"),
    (_redis, f"http://:{SECRET}@cache:6379"),
    (_redis, f"redis://:{SECRET}@cache:notaport"),
]


@pytest.mark.parametrize(
    ("open_url", "url"), BAD_URLS, ids=[f"{f.__name__}-{u[:24]}" for f, u in BAD_URLS]
)
def test_url_errors_hide_credentials(open_url: Callable[[str], Any], url: str) -> None:
    with pytest.raises(CloudqError) as caught:
        open_url(url)
    assert SECRET not in str(caught.value)


def test_storage_connection_errors_hide_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    from cloudq_servicebus import storage

    for name in storage.CONNECTION_ENV:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(CloudqError) as caught:
        storage.connection_string(f"azuretable://results?token={SECRET}")
    assert SECRET not in str(caught.value)


def test_claim_check_errors_hide_credentials() -> None:
    from cloudq.claimcheck import open_claim_check_store

    store = open_claim_check_store(f"memory://u:{SECRET}@parked")
    with pytest.raises(CloudqError) as caught:
        store.get(f"memory://u:{SECRET}@parked/gone")
    assert SECRET not in str(caught.value)


# --- the result backend's URL, where the control plane and beat name it ------------------------
def _app_with_plain_backend() -> App:
    """An app whose result backend keeps no control records, beat claims or event stream."""
    app = App("shop", broker="memory://plain", backend=f"redis://:{SECRET}@cache/0")
    app.__dict__["backend"] = object()  # as a store without those methods is found
    return app


def test_control_store_errors_hide_the_backend_credentials() -> None:
    from cloudq.control.store import control_store, event_store

    app = _app_with_plain_backend()
    for find in (control_store, event_store):
        with pytest.raises(CloudqError) as caught:
            find(app, "status")
        assert SECRET not in str(caught.value) and "redis://***@cache/0" in str(caught.value)


def test_the_worker_warning_and_the_beat_refusal_hide_the_backend_credentials(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from cloudq.beat import Beat
    from cloudq.control.heartbeat import WorkerControl

    app = _app_with_plain_backend()
    app.conf.beat_schedule = {"tick": {"task": "t", "schedule": 60}}
    worker: Any = types.SimpleNamespace(app=app, hostname="w1@test")
    with caplog.at_level(logging.INFO, logger="cloudq"):
        WorkerControl(worker, 1.0, events=True).start()
    with pytest.raises(ConfigurationError) as refused:  # beat fails at start: no claims there
        Beat(app)
    shown = [r.getMessage() for r in caplog.records]
    assert any("no shared state store" in m for m in shown), shown
    assert "redis://***@cache/0" in str(refused.value)
    assert all(SECRET not in m for m in [*shown, str(refused.value)]), shown


def test_error_report_settings_repr_hides_the_smtp_password() -> None:
    from cloudq.reports import ErrorReportSettings

    settings = ErrorReportSettings.model_validate(
        {"to": ["ops@x.example"], "from": "q@x.example", "smtp": "smtp://u:hunter2@mail:587"}
    )
    assert "hunter2" not in repr(settings)
    assert "mail:587" in repr(settings)
