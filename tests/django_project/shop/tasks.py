"""Tasks the Celery way (``@shared_task``) and the Django way (``@task``, Django 6's Tasks
framework or its backport), side by side in one app's ``tasks.py``."""

import os

from django.db import connection

from cloudq import shared_task

try:
    from django.tasks import task  # Django 6
except ImportError:
    from django_tasks import task  # the backport, on Django 5.2

from shop.models import Order


@shared_task
def mark_paid(order_id: int) -> str:
    """Runs on a worker: the row exists there only if the transaction committed."""
    order = Order.objects.get(pk=order_id)
    order.paid = True
    order.paid_by = f"pid {os.getpid()}"
    order.save(update_fields=["paid", "paid_by"])
    return order.item


@shared_task
def connection_open() -> bool:
    """Whether this thread's database connection is open when the task starts."""
    return connection.connection is not None


@task()
def add(a: int, b: int) -> int:
    return a + b


@task()
def count_orders(item: str) -> int:
    return Order.objects.filter(item=item).count()


@task()
def broken(reason: str) -> None:
    raise ValueError(reason)


@task(takes_context=True, queue_name="reports")
def attempt_report(context, label: str) -> dict:
    return {"label": label, "attempt": context.attempt, "id": context.task_result.id}
