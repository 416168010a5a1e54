"""The dashboard served in the test's own process (uvicorn in a thread, on a free loopback
port), for stores and brokers a test drives directly: ``memory://`` (one process by nature),
and the emulators' stores where a subprocess per test would cost more than it shows."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from cloudq import App
from cloudq.dashboard.app import create_app
from tests.dashboard.harness import PASSWORD, USER, Dashboard
from tests.fixtures.servers import free_port
from tests.processes import wait_for


@contextmanager
def serve(app: App, follow_events: bool = True) -> Iterator[Dashboard]:
    port = free_port()
    web = create_app(app, {USER: PASSWORD}, follow_events=follow_events)
    config = uvicorn.Config(web, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="dashboard-under-test", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 20, "the in-process dashboard to listen")
        yield Dashboard(None, port)
    finally:
        server.should_exit = True
        thread.join(20)
