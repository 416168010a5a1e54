"""``cloudq demo``: Celery's classic order example, end to end, with no cloud account and no
server to start.

An order is placed: a receipt e-mail is sent on the ``high`` queue, a seat is booked in a
third-party system that fails once (the task retries after a 1 s backoff), and the payment is
posted after a countdown on the ``low`` queue. A real worker runs the tasks and the demo reads
the results back. The broker is the real SQS API, served by an embedded moto server on a free
loopback port (stopped at exit); without moto installed it falls back to the memory broker.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from cloudq.app import App
from cloudq.distribution import install_hint
from cloudq.plugins import load_plugin
from cloudq.testing import start_worker

QUEUES = ["high", "default", "low"]

app = App("demo", broker="memory://cloudq-demo", backend="memory://cloudq-demo")
_seat_attempts: dict[int, int] = {}
_lock = threading.Lock()


@app.task(queue="high", time_limit=30)
def send_receipt(order_id: int, email: str) -> str:
    """The e-mail goes to the high queue: it must not wait behind slow work."""
    return f"receipt for order {order_id} sent to {email}"


@app.task(autoretry_for=(ConnectionError,), retry_backoff=1, max_retries=3, time_limit=30)
def book_seat(order_id: int, flight: str) -> str:
    """The booking system is flaky: the first call fails, the retry succeeds."""
    with _lock:
        attempt = _seat_attempts[order_id] = _seat_attempts.get(order_id, 0) + 1
    if attempt == 1:
        raise ConnectionError("booking system timed out")
    return f"seat on {flight} booked for order {order_id} (attempt {attempt})"


@app.task(queue="low", time_limit=30)
def post_payment(order_id: int, amount_cents: int) -> dict[str, Any]:
    """Accounting runs later, on the low queue."""
    return {"order": order_id, "posted_cents": amount_cents}


EMBEDDED_SERVERS = "cloudq.embedded_servers"
"""Entry-point group of adapters' local servers: a context manager yielding the server's URL,
or None when what it needs is not installed."""


@contextmanager
def embedded_sqs() -> Iterator[str | None]:
    """Point the app at the SQS adapter's embedded server; yield its URL (None: memory broker).

    The adapter provides the server by entry point: the core imports neither it nor moto.
    """
    start = load_plugin(EMBEDDED_SERVERS, "sqs")
    if start is None:
        yield None
        return
    with start() as endpoint:
        if endpoint is None:
            yield None
            return
        app.conf.broker_url = f"sqs://?prefix=demo{uuid.uuid4().hex[:6]}-"
        try:
            yield endpoint
        finally:
            app.close()


def run_demo(fast: bool = False) -> int:
    """Run the scenario, printing each task as it finishes; 0 when all ended as expected."""
    logging.basicConfig(level=logging.WARNING, format="    [%(levelname)s] %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
    countdown = 1 if fast else 3
    order_id = 42
    with embedded_sqs() as endpoint:
        where = (
            f"the SQS API on an embedded moto server at {endpoint}"
            if endpoint
            else f"the in-memory broker ({install_hint('demo')} for SQS)"
        )
        click.echo(f"cloudq demo: broker is {where}; results in memory")
        with start_worker(app, queues=QUEUES, concurrency=4, poll_seconds=3):
            click.echo(f"worker started on queues {', '.join(QUEUES)}; placing order {order_id}:")
            results = {
                "receipt e-mail": send_receipt.delay(order_id, "customer@example.com"),
                "seat booking": book_seat.delay(order_id, "SU-1402"),
                f"payment (countdown {countdown}s)": post_payment.apply_async(
                    (order_id, 12_500), countdown=countdown
                ),
            }
            sent = time.monotonic()
            pending = dict(results)
            deadline = sent + 60
            while pending and time.monotonic() < deadline:
                for label, result in list(pending.items()):
                    if result.ready():
                        del pending[label]
                        value = result.get(propagate=False)
                        click.echo(
                            f"  [{time.monotonic() - sent:4.1f}s] {label:26} "
                            f"{result.state:8} {value}"
                        )
                time.sleep(0.05)
            stats = {q: app.broker.stats(q) for q in QUEUES}
    for label in pending:
        click.echo(f"  {label:33} did not finish within 60 s")
    ok = not pending and all(r.successful() for r in results.values())
    dead = sum(s.dead_lettered or 0 for s in stats.values())
    click.echo(
        f"{sum(r.successful() for r in results.values())}/{len(results)} tasks "
        f"succeeded in {time.monotonic() - sent:.1f}s; dead-lettered: {dead}. The seat "
        "booking failed once and ran again after its 1 s backoff; the payment ran no "
        "earlier than its countdown."
    )
    return 0 if ok and dead == 0 else 1
