"""``cloudq demo``: the seed's example, end to end, on the embedded default broker.

An order is placed: a receipt e-mail is sent, a seat is booked in a third-party system that fails
once (the task retries after a backoff), and the payment is posted after a countdown. A real
worker runs the tasks; the demo reads the results back and prints a summary.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import click

from cloudq.app import App
from cloudq.results.base import State
from cloudq.testing import start_worker

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


def run_demo(fast: bool = False) -> int:
    """Run the scenario; 0 when every task ended as expected."""
    logging.basicConfig(level=logging.WARNING, format="  [%(levelname)s] %(name)s: %(message)s")
    countdown = 1 if fast else 3
    order_id = 42
    click.echo(f"cloudq demo: broker {app.conf.broker_url}, results {app.conf.result_backend}")
    click.echo("placing order 42 ...")
    started = time.monotonic()
    with start_worker(app, queues=["high", "default", "low"], concurrency=4):
        results = {
            "receipt e-mail": send_receipt.delay(order_id, "customer@example.com"),
            "seat booking": book_seat.delay(order_id, "SU-1402"),
            f"payment (countdown {countdown}s)": post_payment.apply_async(
                (order_id, 12_500), countdown=countdown
            ),
        }
        seen: dict[str, State] = {}
        deadline = time.monotonic() + 30
        with click.progressbar(length=len(results), label="running tasks", show_eta=False) as bar:
            while len(seen) < len(results) and time.monotonic() < deadline:
                for label, result in results.items():
                    state = result.state
                    if label not in seen and result.ready():
                        seen[label] = state
                        bar.update(1)
                time.sleep(0.05)
    elapsed = time.monotonic() - started
    click.echo("")
    ok = True
    for label, result in results.items():
        if result.successful():
            click.echo(f"  {label:28} SUCCESS  {result.get(timeout=1)}")
        else:
            ok = False
            click.echo(f"  {label:28} {result.state}")
    click.echo(
        f"done in {elapsed:.1f}s: the seat booking failed once and was retried after 1s;"
        f" the payment ran no earlier than its countdown."
    )
    return 0 if ok else 1
