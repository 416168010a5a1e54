"""An importable app with async tasks (the processes pool imports it in each child)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from cloudq import App
from cloudq.taskloop import PerLoop

BROKER = os.environ.get("AIO_APP_BROKER", "memory://aio-app")
app = App("aio", broker=BROKER, backend=BROKER)


class Pool:
    """Stands in for an httpx/DB pool: bound to the loop it was made on."""

    made = 0

    def __init__(self) -> None:
        Pool.made += 1
        self.loop = asyncio.get_running_loop()
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True


pool: PerLoop[Pool] = PerLoop(Pool, lambda p: p.aclose())


@app.task(name="aio.where")
async def where() -> dict[str, Any]:
    """Which process and loop ran it, and whether the per-loop pool is this loop's."""
    await asyncio.sleep(0)
    shared = pool.get()
    loop = asyncio.get_running_loop()
    return {"pid": os.getpid(), "loop": id(loop), "same": shared.loop is loop}
