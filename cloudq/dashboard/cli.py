"""``cloudq -A tasks dashboard --port 5555 --address 127.0.0.1 --basic-auth user:password``.

Flower's flag names. Serving on any address but loopback without ``--basic-auth`` is refused: the
dashboard can revoke, redrive and purge. Added to ``cloudq`` through the ``cloudq.commands``
entry point, so the web stack is imported only when this command runs.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import click

from cloudq.distribution import install_hint
from cloudq.errors import ConfigurationError
from cloudq.logsafe import get_logger

logger = get_logger("cloudq.dashboard.cli")

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def is_loopback(address: str) -> bool:
    if address in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(address: str, basic_auth: str | None) -> dict[str, str]:
    """The users to require, or a clear error for a non-loopback address without auth."""
    from cloudq.dashboard.auth import parse_basic_auth

    if basic_auth:
        return parse_basic_auth(basic_auth)
    if not is_loopback(address):
        raise ConfigurationError(
            f"refusing to serve the dashboard on {address} without --basic-auth: anyone who "
            "reaches it could revoke tasks and purge queues. Pass --basic-auth user:password "
            "(or CLOUDQ_DASHBOARD_BASIC_AUTH), or serve on 127.0.0.1"
        )
    return {}


@click.command()
@click.option("--port", type=click.IntRange(0, 65535), default=5555, show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option(
    "--basic-auth",
    "basic_auth",
    envvar="CLOUDQ_DASHBOARD_BASIC_AUTH",
    default=None,
    help="user:password[,user2:password2] (or CLOUDQ_DASHBOARD_BASIC_AUTH, kept out of ps)",
)
@click.option("-Q", "--queues", "extra", default="", help="more queues to show (comma-separated)")
@click.option("-l", "--loglevel", default="info", show_default=True)
@click.pass_obj
def dashboard(
    obj: Any, port: int, address: str, basic_auth: str | None, extra: str, loglevel: str
) -> None:
    """Web dashboard (Flower's): workers, queues, tasks, dead letters, and Flower's HTTP API."""
    try:
        import uvicorn

        from cloudq.dashboard.app import create_app
    except ImportError as exc:
        raise click.ClickException(
            f"the dashboard needs its extra ({exc}): {install_hint('dashboard')}"
        ) from None
    from cloudq.cli import setup_logging

    users = check_exposure(address, basic_auth)
    setup_logging(loglevel)
    if not users:
        logger.warning("no --basic-auth: anyone on this machine can use the dashboard")
    app = obj.app()
    names = [q.strip() for q in extra.split(",") if q.strip()]
    web = create_app(app, users, names)
    try:
        uvicorn.run(web, host=address, port=port, log_config=None, log_level=loglevel.lower())
    finally:
        app.close()
