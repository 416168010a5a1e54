"""The user-facing API: delay/apply_async/apply, argument checks, routing, results, errors."""

from __future__ import annotations

import subprocess
import sys
import uuid
from dataclasses import dataclass

import pytest

from cloudq import App, State, TaskArgumentError
from cloudq.adapters import open_broker
from cloudq.clock import SYSTEM_CLOCK
from cloudq.errors import AdapterNotFound, ConfigurationError, MessageTooLarge
from cloudq.testing import FakeClock, process_one


def new_app(**settings: object) -> App:
    name = uuid.uuid4().hex
    settings.setdefault("backend", f"memory://{name}")
    return App("t", broker=f"memory://{name}", clock=FakeClock(), **settings)  # type: ignore[arg-type]


@dataclass
class Order:
    id: int


def test_import_cloudq_imports_no_cloud_sdk() -> None:
    # Compared with what the bare interpreter already holds (namespace-package .pth files
    # of installed SDKs may pre-create 'google' at start-up; that is not cloudq's doing).
    code = (
        "import sys; before=set(sys.modules);"
        "import cloudq, cloudq.cli, cloudq.worker;"
        "bad=[m for m in set(sys.modules)-before if m.split('.')[0] in "
        "('boto3','botocore','google','azure','redis','moto','opentelemetry','django','django_tasks')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((Order(1), "a@b.c"), {}, "argument 'order_id'.*(integer|int)"),
        ((1,), {}, "missing a required argument: 'email'"),
        ((1, "a", 3), {}, "too many positional arguments"),
        ((1, "a"), {"nope": 1}, "unexpected keyword argument 'nope'"),
        (("x", "a@b.c"), {}, "argument 'order_id'"),
    ],
)
def test_bad_arguments_are_rejected_before_anything_is_sent(
    args: tuple[object, ...], kwargs: dict[str, object], message: str
) -> None:
    app = new_app()

    @app.task
    def send_receipt(order_id: int, email: str) -> None: ...

    with pytest.raises(TaskArgumentError, match=message) as info:
        send_receipt.delay(*args, **kwargs)
    assert "send_receipt" in str(info.value)
    assert app.broker.stats("default").visible == 0


def test_objects_without_type_hints_are_refused_with_advice() -> None:
    app = new_app()

    @app.task
    def untyped(order):  # type: ignore[no-untyped-def]
        return order

    with pytest.raises(TaskArgumentError, match="pass an id"):
        untyped.delay(Order(1))
    assert app.broker.stats("default").visible == 0


def test_oversized_payload_raises_and_sends_nothing() -> None:
    name = uuid.uuid4().hex
    app = App("t", broker=f"memory://{name}?max_message_bytes=600", clock=FakeClock())

    @app.task
    def big(blob: str) -> None: ...

    with pytest.raises(MessageTooLarge, match="over the broker's limit"):
        big.delay("x" * 1000)
    assert app.broker.stats("default").visible == 0


def test_routing_call_beats_task_option_beats_routes_beats_default() -> None:
    app = new_app(task_routes={"shop.mail.*": "mail", "shop.exact": "exact"})

    @app.task(name="shop.mail.send")
    def send() -> None: ...

    @app.task(name="shop.exact")
    def exact() -> None: ...

    @app.task(name="shop.pinned", queue="high")
    def pinned() -> None: ...

    @app.task(name="shop.other")
    def other() -> None: ...

    assert app.route("shop.mail.send") == "mail"
    assert app.route("shop.exact") == "exact"
    assert app.route("shop.pinned") == "high"
    assert app.route("shop.other") == "default"
    send.apply_async(queue="low")
    assert app.broker.stats("low").visible == 1


def test_apply_runs_in_the_caller_with_retries() -> None:
    app = new_app()
    attempts: list[int] = []

    @app.task(autoretry_for=(ConnectionError,), max_retries=3, retry_backoff=60)
    def flaky(x: int) -> int:
        attempts.append(x)
        if len(attempts) < 3:
            raise ConnectionError("again")
        return x + 1

    result = flaky.apply(args=(1,))
    assert result.get() == 2 and result.state == State.SUCCESS
    assert attempts == [1, 1, 1]
    assert app.broker.stats("default").visible == 0
    assert flaky(5) == 6


def test_apply_reports_failure() -> None:
    app = new_app()

    @app.task
    def fails() -> None:
        raise ValueError("no")

    result = fails.apply()
    assert result.failed()
    with pytest.raises(ValueError, match="no"):
        result.get()
    with pytest.raises(ValueError):
        fails.apply(throw=True)


def test_get_times_out_and_results_need_a_backend() -> None:
    app = new_app()

    @app.task
    def noop() -> None: ...

    result = noop.delay()
    with pytest.raises(TimeoutError, match=r"not ready after 0\.05s"):
        result.get(timeout=0.05)
    assert not result.ready() and result.state == State.PENDING
    process_one(app)
    assert result.ready() and result.get(timeout=1) is None

    no_results = App("t", broker=f"memory://{uuid.uuid4().hex}", clock=FakeClock())
    plain = no_results.task(
        lambda: None,
    )
    with pytest.raises(ConfigurationError, match="no result backend"):
        plain.delay().get(timeout=1)


def test_unknown_scheme_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from cloudq import adapters

    monkeypatch.setitem(adapters.KNOWN_EXTRAS, "nimbus", "nimbus")
    with pytest.raises(AdapterNotFound, match=r"pip install 'cloudqueue-tasks\[nimbus\]'"):
        open_broker("nimbus://proj", SYSTEM_CLOCK)
    with pytest.raises(AdapterNotFound, match="unknown broker scheme 'nats://'"):
        open_broker("nats://x", SYSTEM_CLOCK)


def test_settings_errors_are_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="task_time_limt"):
        App("t", task_time_limt=3)
    with pytest.raises(ConfigurationError, match="rate limit"):
        App("t", task_default_rate_limit="ten per second")
    monkeypatch.setenv("CLOUDQ_TASK_TIME_LIMIT", "42")
    assert App("t").conf.task_time_limit == 42


def test_task_options_are_checked() -> None:
    app = new_app()
    with pytest.raises(ConfigurationError, match="unexpected keyword"):
        app.task(retries=3)(lambda: None)
    with pytest.raises(ConfigurationError, match="rate limit"):
        app.task(rate_limit="fast")(lambda: None)


def test_oversized_payload_travels_by_claim_check_and_is_cleaned_up() -> None:
    from cloudq.claimcheck import MemoryClaimCheckStore

    name = uuid.uuid4().hex
    app = App(
        "t",
        broker=f"memory://{name}?max_message_bytes=600",
        backend=f"memory://{name}",
        claim_check_url=f"memory://{name}-objects",
        clock=FakeClock(),
    )

    @app.task
    def big(blob: str) -> int:
        return len(blob)

    result = big.delay("x" * 5000)
    store = app.claim_checks
    assert isinstance(store, MemoryClaimCheckStore) and len(store.objects) == 1
    process_one(app)
    assert result.get(timeout=1) == 5000
    assert store.objects == {}, "object not deleted after the final ack"


def test_claim_checked_poison_keeps_its_object_in_the_dlq() -> None:
    name = uuid.uuid4().hex
    app = App(
        "t",
        broker=f"memory://{name}?max_message_bytes=600",
        claim_check_url=f"memory://{name}-objects",
        clock=FakeClock(),
    )

    @app.task
    def bad(blob: str) -> None:
        raise ValueError("poison")

    bad.delay("y" * 5000)
    process_one(app)
    [dead] = app.broker.receive("default-dlq", 1, 0, 30)
    assert b"cloudq-claim-check" in dead.body
    assert "ValueError: poison" in dead.attributes["cloudq-dead-letter-reason"]
    assert len(app.claim_checks.objects) == 1  # type: ignore[union-attr]


def test_task_ids_are_distinct_version_4_uuids() -> None:
    from cloudq.ids import new_id

    ids = [new_id() for _ in range(2_000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:200]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
    app = new_app()

    @app.task
    def noop() -> None:
        pass

    assert uuid.UUID(noop.delay().id).version == 4


def test_retry_settings_assigned_after_tasks_exist_reach_new_envelopes() -> None:
    app = new_app()

    @app.task
    def noop() -> None:
        pass

    assert noop.envelope((), {}).retry.max_retries == 3
    app.conf.task_max_retries = 7
    app.conf.task_default_retry_delay = 5.0
    retry = noop.envelope((), {}).retry
    assert (retry.max_retries, retry.default_delay) == (7, 5.0)


def test_an_integration_without_its_extra_names_what_to_install() -> None:
    from cloudq.distribution import require_extra

    with pytest.raises(ImportError, match=r"pip install 'cloudqueue-tasks\[sentry\]'"):
        require_extra("cloudq_no_such_module", "sentry", "Sentry reports")
