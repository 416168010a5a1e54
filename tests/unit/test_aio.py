"""asyncio: adelay, aapply_async and aget off the loop; one kept event loop per task thread."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import pytest

from cloudq import App, chain, group
from cloudq.errors import ConfigurationError, SoftTimeLimitExceeded, TaskFailed
from cloudq.middleware import Middleware
from cloudq.result import EagerResult
from cloudq.results.base import ErrorInfo, State
from cloudq.taskloop import PerLoop
from cloudq.testing import process_one, start_worker
from tests.apps import aio_app


def new_app(**settings: Any) -> App:
    name = uuid.uuid4().hex
    return App("t", broker=f"memory://{name}", backend=f"memory://{name}", **settings)


class PublishThreads(Middleware):
    def __init__(self) -> None:
        self.threads: list[str] = []

    def before_publish(self, app: App, **kwargs: Any) -> None:
        self.threads.append(threading.current_thread().name)
        kwargs["headers"]["seen"] = "yes"


async def drain(app: App, n: int) -> None:
    """Run ``n`` queued tasks in a thread, as a worker would, while the loop goes on."""
    for _ in range(n):
        await asyncio.to_thread(process_one, app)


def test_adelay_runs_the_producer_path_off_the_loop_and_aget_reads_it() -> None:
    spy = PublishThreads()
    app = new_app(middleware=[spy], signing_keys=["k1"])

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    async def main() -> tuple[Any, Any, Any]:
        loop_thread = threading.current_thread().name
        first = await add.adelay(2, 3)
        second = await add.aapply_async((4, 5), countdown=0)
        await drain(app, 2)
        return loop_thread, await first.aget(timeout=5), await second.aget(5)

    loop_thread, a, b = asyncio.run(main())
    assert (a, b) == (5, 9)
    assert len(spy.threads) == 2  # the before_publish hook ran for each, as for delay()
    assert loop_thread not in spy.threads  # ...on the app's send threads, not the loop's
    assert all(name.startswith("cloudq-aio-") for name in spy.threads)
    app.close()


def test_aapply_async_checks_arguments_at_once_and_sends_nothing() -> None:
    app = new_app()

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    with pytest.raises(Exception, match="argument 'a'"):
        asyncio.run(add.aapply_async(("x", 1)))
    assert app.broker.stats("default").visible == 0


def test_aget_times_out_and_propagates_like_get() -> None:
    app = new_app()

    @app.task
    def boom() -> None:
        raise ValueError("no")

    async def main() -> None:
        pending = await boom.adelay()
        with pytest.raises(TimeoutError, match="not ready"):
            await pending.aget(timeout=0.1)
        await drain(app, 1)
        with pytest.raises(ValueError, match="no"):
            await pending.aget(timeout=5)
        assert isinstance(await pending.aget(timeout=5, propagate=False), ValueError)

    asyncio.run(main())


def test_aget_polls_without_blocking_the_loop() -> None:
    app = new_app()

    @app.task
    def one() -> int:
        return 1

    async def main() -> int:
        result = await one.adelay()
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        later = asyncio.get_running_loop().call_later(
            0.3, lambda: threading.Thread(target=process_one, args=(app,)).start()
        )
        try:
            assert await result.aget(timeout=5) == 1
        finally:
            ticker.cancel()
            later.cancel()
        return ticks

    assert asyncio.run(main()) >= 10  # the loop kept running while aget waited


def test_group_and_chain_adelay() -> None:
    app = new_app()

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    async def main() -> tuple[list[Any], Any]:
        g = await group(add.s(1, 1), add.s(2, 2)).adelay()
        c = await chain(add.s(1, 2), add.s(10)).adelay()
        await drain(app, 4)
        return await g.ajoin(timeout=5), await c.aget(timeout=5)

    assert asyncio.run(main()) == ([2, 4], 13)


def test_aapply_async_in_eager_mode_runs_the_task() -> None:
    app = new_app(task_always_eager=True)

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    async def main() -> Any:
        result = await add.adelay(1, 2)
        return await result.aget()

    assert asyncio.run(main()) == 3


def test_get_options_have_one_home_eager_refuses_streaming_too() -> None:
    """EagerResult.get had its own keyword list, without Celery's streaming hooks: a call
    with on_message= failed with Python's TypeError instead of saying what to write."""
    done = EagerResult("id", State.SUCCESS, 7, None)
    with pytest.raises(ConfigurationError, match="result-consumer hook"):
        done.get(on_message=print)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        done.get(nope=1)  # type: ignore[call-arg]
    assert done.get(1, True, interval=0.1, no_ack=False, follow_parents=False) == 7
    failed = EagerResult("id", State.FAILURE, None, ErrorInfo(type="x.Y", message="m"))
    assert isinstance(asyncio.run(failed.aget(propagate=False)), TaskFailed)


def test_async_tasks_share_one_loop_per_thread_and_per_loop_pools() -> None:
    """Before: asyncio.run per task, a fresh loop each time, so no pool outlived a task."""
    app = new_app()
    made: list[asyncio.AbstractEventLoop] = []

    class Client:
        def __init__(self) -> None:
            made.append(asyncio.get_running_loop())

    client: PerLoop[Client] = PerLoop(Client)

    @app.task
    async def where() -> int:
        client.get()
        return id(asyncio.get_running_loop())

    first, second = where.delay(), where.delay()
    process_one(app)
    process_one(app)
    assert first.get(timeout=1) == second.get(timeout=1)
    assert len(made) == 1


def test_threads_pool_loops_and_their_pools_are_closed_at_worker_stop() -> None:
    app = aio_app.app
    before = aio_app.Pool.made
    with start_worker(app, ["default"], concurrency=1):
        runs = [aio_app.where.delay().get(timeout=10) for _ in range(3)]
    assert {r["loop"] for r in runs} == {runs[0]["loop"]}  # one slot, one loop, kept
    assert all(r["same"] for r in runs)
    assert aio_app.Pool.made == before + 1  # one pool for the three tasks
    # The worker stopped: the slot's loop and its pool were closed.
    loops = [v for v in aio_app.pool._values.items()]
    assert loops, "the pool's loop was dropped before it was closed"
    assert all(loop.is_closed() and value.closed for loop, value in loops)


def test_processes_pool_child_keeps_one_loop() -> None:
    with start_worker(aio_app.app, ["default"], concurrency=1, pool="processes"):
        runs = [aio_app.where.delay().get(timeout=20) for _ in range(3)]
    assert len({(r["pid"], r["loop"]) for r in runs}) == 1
    assert all(r["same"] for r in runs)


def test_async_soft_limit_and_the_bodys_own_timeout_error() -> None:
    """A TimeoutError the body raises itself (an HTTP client's) is its own error, not a time
    limit: before, every TimeoutError out of an async task was reported as one."""
    app = new_app()

    @app.task(soft_time_limit=0.2, time_limit=5)
    async def slow() -> None:
        await asyncio.sleep(3)

    @app.task
    async def times_out() -> None:
        raise TimeoutError("the upstream API did not answer")

    @app.task
    async def fine() -> str:
        return "ok"

    results = [slow.delay(), times_out.delay(), fine.delay()]
    began = time.monotonic()
    for _ in results:
        process_one(app)
    assert time.monotonic() - began < 2
    with pytest.raises(SoftTimeLimitExceeded):
        results[0].get(timeout=1)
    with pytest.raises(TimeoutError, match="upstream"):
        results[1].get(timeout=1)
    assert results[2].get(timeout=1) == "ok"  # the loop is still usable


def test_sync_only_app_never_imports_asyncio() -> None:
    code = (
        "import sys, uuid; from cloudq import App; from cloudq.testing import process_one\n"
        "n = uuid.uuid4().hex; app = App('t', broker=f'memory://{n}', backend=f'memory://{n}')\n"
        "@app.task\n"
        "def add(a: int, b: int) -> int: return a + b\n"
        "r = add.delay(1, 2); process_one(app); assert r.get(timeout=1) == 3\n"
        "assert add.apply(args=(1, 1)).get() == 2\n"
        "print('asyncio' in sys.modules); sys.exit(1 if 'asyncio' in sys.modules else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_aget_on_redis_wakes_on_the_store_without_blocking_the_loop(
    redis_url: str, redis_prefix: str
) -> None:
    from cloudq.results import redis_async

    name = uuid.uuid4().hex
    app = App("t", broker=f"memory://{name}", backend=f"{redis_url}?prefix={redis_prefix}")

    @app.task
    def one() -> int:
        return 1

    assert app.backend is not None  # opened first, as a lifespan does: the wait is the store's

    async def main() -> tuple[int, float, int]:
        result = await one.adelay()
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        worker = threading.Timer(0.3, process_one, args=(app,))
        worker.start()
        began = time.monotonic()
        try:
            value = await result.aget(timeout=5)
        finally:
            ticker.cancel()
            worker.join()
        waited = time.monotonic() - began
        assert redis_async._clients[asyncio.get_running_loop()].get(app) is not None
        from cloudq import aio

        await aio.aclose(app)
        assert redis_async._clients[asyncio.get_running_loop()].get(app) is None
        return value, waited, ticks

    value, waited, ticks = asyncio.run(main())
    assert value == 1
    assert waited < 1.0  # woken by the store's PUBLISH, not by the 1 s re-read
    assert ticks >= 10


def test_aget_inside_a_task_refuses_to_wait_as_get_does() -> None:
    app = new_app()

    @app.task
    def never() -> None: ...

    @app.task
    async def waits(task_id: str) -> str:
        try:
            await app.AsyncResult(task_id).aget(timeout=1)
        except RuntimeError as exc:
            return str(exc)
        return "waited"

    pending = never.delay()
    outer = waits.apply(args=(pending.id,))
    assert "Never call result.aget() within a task" in outer.get()


def test_a_loop_blocking_async_task_is_stopped_and_the_thread_runs_the_next() -> None:
    app = new_app()

    @app.task(time_limit=0.5)
    async def blocks() -> None:
        while True:
            time.sleep(0.01)  # blocks the loop: only the hard limit's backstop can stop it

    @app.task
    async def next_one() -> str:
        await asyncio.sleep(0)
        return "ran"

    from cloudq.errors import TimeLimitExceeded

    with start_worker(app, ["default"], concurrency=1):
        stuck = blocks.delay()
        with pytest.raises(TimeLimitExceeded):
            stuck.get(timeout=10)
        assert next_one.delay().get(timeout=10) == "ran"
