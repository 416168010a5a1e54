"""cloudq subcommands that come with the SQS adapter (registered in ``cloudq.commands``)."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import click


@click.command("lambda-local")
@click.option("-Q", "--queues", required=True, help="comma-separated queues to feed the handler")
@click.option(
    "--handler",
    "handler_ref",
    default=None,
    help="module:attribute of a handler (default: lambda_handler(app)); with --runtime ric, "
    "the function's handler string (default: handler.handler)",
)
@click.option(
    "--runtime",
    type=click.Choice(["python", "ric"]),
    default="python",
    show_default=True,
    help="python: call the handler in this process; ric: run the --package zip under AWS's "
    "runtime interface client (awslambdaric), as Lambda runs it",
)
@click.option(
    "--package",
    "package_path",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="with --runtime ric: the zip from `cloudq deploy package --target lambda` (or its "
    "unpacked folder)",
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
    runtime: str,
    package_path: Path | None,
    batch_size: int,
    timeout_seconds: float,
    loglevel: str,
) -> None:
    """Run the Lambda handler locally on real SQS messages (moto, LocalStack or AWS)."""
    import importlib

    from cloudq.cli import setup_logging
    from cloudq_sqs.lambda_handler import LambdaHandler, lambda_handler
    from cloudq_sqs.lambda_local import LocalEventSource

    setup_logging(loglevel)
    app = obj.app()
    names = [q.strip() for q in queues.split(",") if q.strip()]
    with contextlib.ExitStack() as stack:
        handler: LambdaHandler
        if runtime == "ric":
            handler = _runtime_client(
                stack, obj.app_ref, package_path, handler_ref, timeout_seconds
            )
        elif package_path is not None:
            raise click.UsageError("--package runs under the runtime client: add --runtime ric")
        elif handler_ref:
            module, _, attr = handler_ref.partition(":")
            handler = getattr(importlib.import_module(module), attr or "handler")
        else:
            handler = lambda_handler(app)
        for name in names:
            app.ensure_queue(name)
        source = LocalEventSource(
            app, handler, names, batch_size=batch_size, timeout_seconds=timeout_seconds
        )
        signal.signal(signal.SIGTERM, lambda *_: source.stop())
        signal.signal(signal.SIGINT, lambda *_: source.stop())
        click.echo(
            f"lambda-local: feeding {', '.join(names)} to the handler (Ctrl-C stops)", err=True
        )
        source.run()
    stats = source.stats
    click.echo(
        f"lambda-local: {stats.invocations} invocation(s), {stats.records} record(s), "
        f"{stats.failed} failed",
        err=True,
    )


def _runtime_client(
    stack: contextlib.ExitStack,
    app_ref: str,
    package_path: Path | None,
    handler_ref: str | None,
    timeout_seconds: float,
) -> Any:
    """The zip unpacked into a temporary task root, run by awslambdaric with this shell's
    ``CLOUDQ_*`` settings and ``CLOUDQ_APP`` as the function's environment (what the Terraform
    module sets); closed (process killed, folder removed) at exit."""
    from cloudq_sqs.lambda_runtime import DEFAULT_HANDLER, RuntimeClientHandler

    if package_path is None:
        raise click.UsageError(
            "--runtime ric runs the deployed artifact: pass --package with the zip from "
            "`cloudq -A <app> deploy package --target lambda`"
        )
    task_root = package_path
    if package_path.is_file():
        task_root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cloudq-task-")))
        try:
            with zipfile.ZipFile(package_path) as archive:
                archive.extractall(task_root)
        except zipfile.BadZipFile as exc:
            raise click.UsageError(f"--package {package_path} is not a zip: {exc}") from exc
    try:
        handler = RuntimeClientHandler(
            task_root,
            handler_ref or DEFAULT_HANDLER,
            environment={**_cloudq_settings(), "CLOUDQ_APP": app_ref},
            timeout_seconds=timeout_seconds,
        )
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc
    stack.callback(handler.close)
    return handler


def _cloudq_settings() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("CLOUDQ_")}
