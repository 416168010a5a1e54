"""``delay_on_commit`` and ``transaction.on_commit(lambda: t.delay(id))`` in the Django project,
run by a real ``cloudq -A proj worker`` on moto SQS: a committed row gets its task run; a row
rolled back never has one sent."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cloudq.middleware import Middleware
from tests.processes import LoggedProcess, wait_for

pytestmark = pytest.mark.integration


class Published(Middleware):
    """Every envelope the app sent, in order."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def after_publish(self, app: Any, **kwargs: Any) -> None:
        self.sent.append(kwargs["envelope"])


@pytest.fixture
def published(project_app: Any) -> Iterator[Published]:
    recorder = Published()
    project_app.add_middleware(recorder)
    yield recorder
    recorder.sent = []  # a session-wide app: later tests' sends are not this test's


def paid(order_id: int) -> bool:
    from shop.models import Order

    return Order.objects.filter(pk=order_id, paid=True).exists()


def test_committed_rows_get_their_task_rolled_back_ones_never_send(
    worker: LoggedProcess, published: Published
) -> None:
    from django.db import transaction
    from shop.models import Order
    from shop.tasks import mark_paid

    with transaction.atomic():
        order = Order.objects.create(item="book")
        mark_paid.delay_on_commit(order.pk)
        other = Order.objects.create(item="pen")
        transaction.on_commit(lambda: mark_paid.delay(other.pk))
        assert published.sent == [], "sent before the transaction committed"
    assert [e.args for e in published.sent] == [[order.pk], [other.pk]]

    class Undo(Exception):
        pass

    with pytest.raises(Undo), transaction.atomic():
        lost = Order.objects.create(item="ghost")
        mark_paid.delay_on_commit(lost.pk)
        transaction.on_commit(lambda: mark_paid.delay(lost.pk))
        raise Undo
    assert not Order.objects.filter(pk=lost.pk).exists()
    assert [e.args for e in published.sent] == [[order.pk], [other.pk]], "a rolled-back row sent"

    wait_for(
        lambda: paid(order.pk) and paid(other.pk), 30, "the worker to mark both paid", worker.log
    )
    assert Order.objects.get(pk=order.pk).paid_by != ""


def test_delay_on_commit_checks_arguments_at_the_call(project_app: Any) -> None:
    from django.db import transaction
    from shop.tasks import mark_paid

    with transaction.atomic(), pytest.raises(Exception, match="order_id"):
        mark_paid.delay_on_commit("not-a-number")


def test_without_django_on_commit_sends_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that never imported Django has no transaction to wait for."""
    import sys

    from cloudq.contrib.django.commit import on_commit

    monkeypatch.delitem(sys.modules, "django.conf", raising=False)
    calls: list[str] = []
    on_commit(lambda: calls.append("sent"))
    assert calls == ["sent"]
