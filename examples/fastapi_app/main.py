"""The web app: ``POST`` enqueues with ``adelay()``, ``GET`` reads the result with ``aget()``.

The lifespan opens the cloudq app's broker and result clients before the first request (off the
loop) and closes them, with the async Redis client, at shutdown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from cloudq import aio
from examples.fastapi_app.tasks import add, app, checkout


def _open_clients() -> None:
    app.broker  # noqa: B018 - opening them is the point: the first request pays nothing
    app.backend  # noqa: B018


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    await aio.run_blocking(app, _open_clients)
    yield
    await aio.aclose(app)


api = FastAPI(title="cloudq shop", lifespan=lifespan)


class Numbers(BaseModel):
    a: int
    b: int


class Order(BaseModel):
    order_id: int
    quantity: int


@api.post("/add", status_code=202)
async def enqueue_add(numbers: Numbers) -> dict[str, str]:
    result = await add.adelay(numbers.a, numbers.b)
    return {"task_id": result.id}


@api.post("/add-blocking", status_code=202)
async def enqueue_add_blocking(numbers: Numbers) -> dict[str, str]:
    """``delay()`` inside ``async def``: what not to do (it blocks the loop); for the bench."""
    result = add.delay(numbers.a, numbers.b)
    return {"task_id": result.id}


@api.post("/orders", status_code=202)
async def enqueue_checkout(order: Order) -> dict[str, str]:
    result = await checkout.adelay(order.order_id, order.quantity)
    return {"task_id": result.id}


@api.get("/prices/{order_id}")
async def price(order_id: int) -> dict[str, int]:
    """What the ``checkout`` task reads back over HTTP."""
    return {"order_id": order_id, "price": 100 + order_id}


@api.get("/tasks/{task_id}")
async def task_result(task_id: str, wait: float = 0.0) -> Any:
    """The task's result, waiting up to ``wait`` seconds; 202 while it is not done."""
    result = app.AsyncResult(task_id)
    try:
        value = await result.aget(timeout=min(max(wait, 0.0), 30.0), propagate=False)
    except TimeoutError:
        return JSONResponse({"task_id": task_id, "ready": False}, status_code=202)
    if isinstance(value, BaseException):
        error = {"type": type(value).__name__, "message": str(value)}
        return JSONResponse({"task_id": task_id, "ready": True, "error": error}, status_code=500)
    return {"task_id": task_id, "ready": True, "result": value}


@api.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}
