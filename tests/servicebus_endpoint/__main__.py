"""``python -m tests.servicebus_endpoint --port N [--admin-port M]``: run the test endpoint.

Prints one line ``servicebus-endpoint ready amqp=PORT admin=PORT ca=PEM`` on stdout once
both ports accept connections (``ca``: the administration API's self-signed certificate),
then serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from tests.servicebus_endpoint.server import Endpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.servicebus_endpoint")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5672, help="AMQP port")
    parser.add_argument(
        "--admin-port", type=int, default=0, help="administration (HTTP) port; 0: any free one"
    )
    parser.add_argument(
        "--auto-create", action="store_true", help="create a queue on its first use"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if args.verbose:
        logging.getLogger("servicebus_endpoint").setLevel(logging.DEBUG)
    endpoint = Endpoint(args.host, args.port, args.admin_port, auto_create=args.auto_create)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    endpoint.start()
    print(
        f"servicebus-endpoint ready amqp={endpoint.port} admin={endpoint.admin_port} "
        f"ca={endpoint.admin.ca_file}",
        flush=True,
    )
    while not stop.wait(0.5):
        if not endpoint.alive():
            print("servicebus-endpoint: the AMQP loop died", file=sys.stderr, flush=True)
            return 1
    endpoint.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
