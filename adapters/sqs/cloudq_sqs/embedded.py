"""An SQS API on this machine for ``cloudq demo``: moto's server on a free loopback port.

Registered as ``sqs`` in the ``cloudq.embedded_servers`` entry-point group, so the core's demo
finds it by name and never imports moto or this adapter itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

_ENVIRONMENT = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")
"""What boto3 reads to reach the server; set while it runs, restored after."""


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
