"""cloudq subcommands that come with the SQS adapter (registered in ``cloudq.commands``)."""

from __future__ import annotations

import signal
from typing import Any

import click


@click.command("lambda-local")
@click.option("-Q", "--queues", required=True, help="comma-separated queues to feed the handler")
@click.option(
    "--handler",
    "handler_ref",
    default=None,
    help="module:attribute of a handler; default: lambda_handler(app)",
)
@click.option("--batch-size", type=click.IntRange(1, 10), default=10, show_default=True)
@click.option(
    "--timeout",
    "timeout_seconds",
    type=float,
    default=30.0,
    show_default=True,
    help="the function timeout the context counts down from",
)
@click.option("-l", "--loglevel", default="info", show_default=True)
@click.pass_obj
def lambda_local(
    obj: Any,
    queues: str,
    handler_ref: str | None,
    batch_size: int,
    timeout_seconds: float,
    loglevel: str,
) -> None:
    """Run the Lambda handler locally on real SQS messages (moto or AWS)."""
    import importlib

    from cloudq.cli import setup_logging
    from cloudq_sqs.lambda_handler import lambda_handler
    from cloudq_sqs.lambda_local import LocalEventSource

    setup_logging(loglevel)
    app = obj.app()
    if handler_ref:
        module, _, attr = handler_ref.partition(":")
        handler = getattr(importlib.import_module(module), attr or "handler")
    else:
        handler = lambda_handler(app)
    names = [q.strip() for q in queues.split(",") if q.strip()]
    for name in names:
        app.ensure_queue(name)
    source = LocalEventSource(
        app, handler, names, batch_size=batch_size, timeout_seconds=timeout_seconds
    )
    signal.signal(signal.SIGTERM, lambda *_: source.stop())
    signal.signal(signal.SIGINT, lambda *_: source.stop())
    click.echo(f"lambda-local: feeding {', '.join(names)} to the handler (Ctrl-C stops)", err=True)
    source.run()
    stats = source.stats
    click.echo(
        f"lambda-local: {stats.invocations} invocation(s), {stats.records} record(s), "
        f"{stats.failed} failed",
        err=True,
    )
