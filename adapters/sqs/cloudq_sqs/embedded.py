"""An SQS API on this machine for ``cloudq demo``: moto's server on a free loopback port.

Registered as ``sqs`` in the ``cloudq.embedded_servers`` entry-point group, so the core's demo
finds it by name and never imports moto or this adapter itself.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_ENVIRONMENT = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")
"""What boto3 reads to reach the server; set while it runs, restored after."""
_LOCKED = "_cloudq_locked"


def lock_sqs_deletes() -> None:
    """Close a race of moto's SQS (idempotent; every moto server cloudq starts applies it).

    moto 5's ``Queue.delete_message`` rebuilds the queue's message list and assigns it back
    without the lock that ``add_message`` appends under, so a message sent while a delete sits
    between its scan and its assignment vanishes: never received, never counted (the
    reliability ledger's SIGKILL run lost 2 of 2,000 that way). SQS loses nothing there, so
    deletes take the lock too.
    """
    from moto.sqs.models import Queue

    original: Any = Queue.delete_message
    if getattr(original, _LOCKED, False):
        return

    @functools.wraps(original)
    def delete_message(self: Any, receipt_handle: str) -> None:
        with self._messages_lock:
            original(self, receipt_handle)

    setattr(delete_message, _LOCKED, True)
    Queue.delete_message = delete_message  # type: ignore[method-assign]


@contextmanager
def embedded_sqs() -> Iterator[str | None]:
    """Run moto's server and point boto3 at it; yield its URL (None: moto is not installed).

    The port is the OS's choice (0), so two demos never collide; the server stops at exit.
    """
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        yield None
        return
    lock_sqs_deletes()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in _ENVIRONMENT}
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="demo",
        AWS_SECRET_ACCESS_KEY="demo",
        AWS_REGION="us-east-1",
    )
    try:
        yield endpoint
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
