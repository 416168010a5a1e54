"""The tasks of the example shop: broker and result backend come from ``CLOUDQ_BROKER_URL`` and
``CLOUDQ_RESULT_BACKEND`` (the worker and the web app read the same ones)."""

from __future__ import annotations

import os

import httpx

from cloudq import App
from cloudq.taskloop import PerLoop

app = App("shop")

SHOP_API = os.environ.get("SHOP_API", "http://127.0.0.1:8000")
"""Where the async task reads prices: the web app itself, in this example."""

http: PerLoop[httpx.AsyncClient] = PerLoop(
    lambda: httpx.AsyncClient(base_url=SHOP_API, timeout=10), lambda client: client.aclose()
)
"""One HTTP connection pool per worker event loop, kept from task to task."""


@app.task
def add(a: int, b: int) -> int:
    return a + b


@app.task(time_limit=30)
async def checkout(order_id: int, quantity: int) -> dict[str, int]:
    """An async task: it awaits an HTTP call on the pool its worker thread keeps."""
    client = http.get()
    response = await client.get(f"/prices/{order_id}")
    response.raise_for_status()
    price = int(response.json()["price"])
    # Which process and pool served it: a worker thread's tasks all share one pool.
    return {"order_id": order_id, "total": price * quantity, "pool": f"{os.getpid()}-{id(client)}"}
