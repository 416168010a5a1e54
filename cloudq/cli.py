"""The ``cloudq`` command: Celery's command names and flags where Celery has them."""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

import click

from cloudq.errors import CloudqError

LOG_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(name)s: %(message)s"


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=sys.stderr)


class _Context:
    def __init__(self, app_ref: str | None) -> None:
        self.app_ref = app_ref

    def app(self) -> Any:
        from cloudq.pool import load_app

        if not self.app_ref:
            raise click.UsageError("name the app module: cloudq -A tasks ... (or CLOUDQ_APP)")
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
        return load_app(self.app_ref)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-A", "--app", "app_ref", envvar="CLOUDQ_APP", help="module or module:attribute")
@click.version_option(package_name="cloudq")
@click.pass_context
def main(ctx: click.Context, app_ref: str | None) -> None:
    """cloudq: Celery-style tasks on SQS, Pub/Sub and Service Bus."""
    ctx.obj = _Context(app_ref)


@main.command()
@click.option("-Q", "--queues", default="", help="comma-separated queues, first drains first")
@click.option("-c", "--concurrency", type=int, default=None, help="tasks at once")
@click.option("-P", "--pool", type=click.Choice(["threads", "processes"]), default="threads")
@click.option("-l", "--loglevel", default="info", show_default=True)
@click.option("--prefetch", type=int, default=None, help="messages held beyond the running ones")
@click.option("--max-tasks-per-child", type=int, default=None, help="recycle children after N")
@click.pass_obj
def worker(
    obj: _Context,
    queues: str,
    concurrency: int | None,
    pool: str,
    loglevel: str,
    prefetch: int | None,
    max_tasks_per_child: int | None,
) -> None:
    """Run a worker: cloudq -A tasks worker -Q high,default -c 8."""
    from cloudq.worker import Worker

    setup_logging(loglevel)
    names = [q for q in queues.split(",") if q.strip()]
    if not names:
        raise click.UsageError(
            "name the queues this worker serves: -Q high,default (a worker never guesses its "
            "queues: one it missed would starve)"
        )
    app = obj.app()
    try:
        Worker(
            app,
            names,
            concurrency=concurrency,
            pool=pool,  # type: ignore[arg-type]
            prefetch=prefetch,
            max_tasks_per_child=max_tasks_per_child,
            app_ref=obj.app_ref,
        ).run()
    finally:
        app.close()


@main.command()
@click.option("-l", "--loglevel", default="info", show_default=True)
@click.option(
    "--export",
    "export_format",
    type=click.Choice(["json", "eventbridge", "cloud-scheduler"]),
    default=None,
    help="print the schedule as data and exit",
)
@click.pass_obj
def beat(obj: _Context, loglevel: str, export_format: str | None) -> None:
    """Send periodic tasks; run as many as you like, each tick is sent once."""
    app = obj.app()
    if export_format:
        from cloudq.beat_export import export

        click.echo(json.dumps(export(app, export_format), indent=2))
        return
    import signal

    from cloudq.beat import Beat

    setup_logging(loglevel)
    scheduler = Beat(app)
    signal.signal(signal.SIGTERM, lambda *_: scheduler.stop())
    signal.signal(signal.SIGINT, lambda *_: scheduler.stop())
    try:
        scheduler.run()
    finally:
        app.close()


@main.command()
@click.argument("name")
@click.option("--args", "args_json", default="[]", help="JSON list")
@click.option("--kwargs", "kwargs_json", default="{}", help="JSON object")
@click.option("--countdown", type=float, default=None)
@click.option("-Q", "--queue", default=None)
@click.pass_obj
def call(
    obj: _Context,
    name: str,
    args_json: str,
    kwargs_json: str,
    countdown: float | None,
    queue: str | None,
) -> None:
    """Send a task from the shell: cloudq -A tasks call tasks.add --args '[1, 2]'."""
    try:
        args, kwargs = json.loads(args_json), json.loads(kwargs_json)
    except ValueError as exc:
        raise click.BadParameter(f"--args/--kwargs must be JSON: {exc}") from None
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise click.BadParameter("--args takes a JSON list and --kwargs a JSON object")
    app = obj.app()
    result = app.get_task(name).apply_async(args, kwargs, countdown=countdown, queue=queue)
    click.echo(result.id)


@main.command()
@click.option("--fast", is_flag=True, help="shorter waits (used by the tests)")
def demo(fast: bool) -> None:
    """Run the seed's example end to end on the embedded default broker."""
    from cloudq.demo import run_demo

    sys.exit(run_demo(fast=fast))


def _add_plugin_commands() -> None:
    """Adapters add subcommands (``lambda-local``...) through the ``cloudq.commands`` group."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="cloudq.commands"):
        if ep.name not in main.commands:
            try:
                main.add_command(ep.load(), ep.name)
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the CLI
                logging.getLogger("cloudq.cli").warning("command %s not loaded: %s", ep.name, exc)


def run() -> None:
    """Entry point with clean errors: a CloudqError is a message, not a traceback."""
    _add_plugin_commands()
    try:
        main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except CloudqError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    run()
