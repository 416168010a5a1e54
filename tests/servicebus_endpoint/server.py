"""The endpoint as one object: the AMQP reactor and the administration HTTP server, each in a
thread of its own, sharing one ``Store``."""

from __future__ import annotations

import socket
import threading
import time

from proton.reactor import Container

from tests.servicebus_endpoint.admin import AdminServer
from tests.servicebus_endpoint.amqp import EndpointHandler
from tests.servicebus_endpoint.store import Store

READY_TIMEOUT_SECONDS = 10.0


class Endpoint:
    """``Endpoint(host, port, admin_port).start()``; ``port`` / ``admin_port`` are the real ones."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, admin_port: int = 0, auto_create: bool = False
    ) -> None:
        self.host = host
        self.store = Store(auto_create=auto_create)
        self.port = port or _free_port(host)
        self.admin = AdminServer(self.store, host, admin_port)
        self.admin_port = self.admin.port
        self._handler = EndpointHandler(self.store)
        self._container = Container(self._handler)
        self._thread = threading.Thread(target=self._run, name="amqp", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            self._container.listen(f"{self.host}:{self.port}")
            self._container.run()
        except BaseException as exc:
            self._error = exc
            raise

    def start(self) -> None:
        self.admin.start()
        self._thread.start()
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._error is not None:
                raise RuntimeError(f"the AMQP listener failed: {self._error}") from self._error
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"the AMQP listener did not come up on {self.host}:{self.port}")

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self.admin.stop()


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
