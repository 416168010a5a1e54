"""The ``cloudq`` command: Celery's command names and flags where Celery has them.

Operations (``status``, ``inspect``, ``control``, ``events``, ``multi``, ``queues``, ``purge``,
``dlq``, ``result``) read the shared state store and the broker; their logic lives in
``cloudq.control``, this module only parses options and prints. Read commands take ``--json``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any, NoReturn

import click

from cloudq.beat_export import FORMATS as EXPORT_FORMATS
from cloudq.control.commands import CONTROL_COMMANDS, INSPECT_METHODS
from cloudq.control.multi import ACTIONS as MULTI_ACTIONS
from cloudq.distribution import DISTRIBUTION
from cloudq.errors import CloudqError
from cloudq.logsafe import get_logger

LOG_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(name)s: %(message)s"
logger = get_logger("cloudq.cli")
EX_UNAVAILABLE = 69
"""Celery's exit status when no worker answered (``status``, ``inspect``, ``control``)."""


def setup_logging(
    level: str, logfile: str | None = None, log_format: str | None = None, app: Any = None
) -> None:
    """Log to stderr, or to ``logfile`` (appended) instead; with a receiver connected to
    ``cloudq.signals.setup_logging`` (Celery's signal), that receiver configures logging.
    ``log_format`` (else the app's ``log_format`` setting) ``json``: one JSON object a line
    (``cloudq.contrib.logging``), in the worker and its pool children."""
    from cloudq import signals

    if signals.setup_logging.receivers:
        signals.setup_logging.send(
            sender=None, loglevel=level.upper(), logfile=logfile, format=LOG_FORMAT, colorize=False
        )
        return
    if logfile:
        logging.basicConfig(level=level.upper(), format=LOG_FORMAT, filename=logfile)
    else:
        logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=sys.stderr)
    if (log_format or (app.conf.log_format if app is not None else "text")) == "json":
        from cloudq.contrib.logging import use_json_logs

        use_json_logs(app)


def _add_metrics(app: Any, port: int, address: str) -> None:
    """The Prometheus middleware, after checking what would otherwise only be logged once the
    worker runs (a hook that raises is logged, never fatal): the client and a free port."""
    import socket

    try:
        from cloudq.contrib.prometheus import PrometheusMetrics, require_client

        require_client()
    except ImportError as exc:
        raise click.UsageError(f"--metrics-port: {exc}") from exc
    try:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
            probe.bind((address, port))
    except OSError as exc:
        raise click.UsageError(
            f"--metrics-port: {address}:{port} is in use or not available here ({exc.strerror})"
        ) from exc
    app.add_middleware(PrometheusMetrics(port=port, address=address))


def _names(csv: str | None) -> list[str]:
    return [n.strip() for n in (csv or "").split(",") if n.strip()]


def _no_nodes(ctx: click.Context, as_json: bool) -> NoReturn:
    if as_json:
        click.echo("{}")
    click.echo("Error: No nodes replied within time constraint.", err=True)
    ctx.exit(EX_UNAVAILABLE)


def _online(count: int) -> None:
    click.echo(f"\n{count} node{'' if count == 1 else 's'} online.")


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
@click.option(
    "-A",
    "--app",
    "app_ref",
    envvar="CLOUDQ_APP",
    help="the module with your App: tasks, or tasks:app (or CLOUDQ_APP)",
)
@click.version_option(package_name=DISTRIBUTION, prog_name="cloudq")
@click.pass_context
def main(ctx: click.Context, app_ref: str | None) -> None:
    """cloudq: Celery-style tasks on SQS, Pub/Sub and Service Bus."""
    ctx.obj = _Context(app_ref)


@main.command()
@click.option(
    "-Q",
    "--queues",
    default="",
    help="comma-separated queues, first drains first (default: every queue the app names)",
)
@click.option("-c", "--concurrency", type=int, default=None, help="tasks run at once (4)")
@click.option(
    "-P",
    "--pool",
    type=click.Choice(["threads", "processes"]),
    default="threads",
    show_default=True,
    help="processes: for CPU-bound tasks or code blocked in C (hard time limits always hold)",
)
@click.option(
    "-l", "--loglevel", default="info", show_default=True, help="debug, info, warning, error"
)
@click.option("--prefetch", type=int, default=None, help="messages held beyond the running ones")
@click.option(
    "--max-tasks-per-child", type=int, default=None, help="replace a process after N tasks"
)
@click.option("-n", "--hostname", default=None, help="node name, e.g. w1@%h (default pid@host)")
@click.option("-E", "--task-events", is_flag=True, help="send task events (cloudq events)")
@click.option(
    "--heartbeat-interval", type=float, default=None, help="seconds between heartbeats (5)"
)
@click.option("--pidfile", default=None, help="write the pid here (%n: the node name)")
@click.option("--logfile", default=None, help="log here instead of stderr (%n: the node name)")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="json: one object a line, with the task's ids (setting log_format; default text)",
)
@click.option(
    "--metrics-port", type=int, default=None, help="serve Prometheus metrics on /metrics here"
)
@click.option(
    "--metrics-address", default="127.0.0.1", show_default=True, help="the metrics' address"
)
@click.pass_obj
def worker(
    obj: _Context,
    queues: str,
    concurrency: int | None,
    pool: str,
    loglevel: str,
    prefetch: int | None,
    max_tasks_per_child: int | None,
    hostname: str | None,
    task_events: bool,
    heartbeat_interval: float | None,
    pidfile: str | None,
    logfile: str | None,
    log_format: str | None,
    metrics_port: int | None,
    metrics_address: str,
) -> None:
    """Run a worker: cloudq -A tasks worker -Q high,default -c 8."""
    from pathlib import Path

    from cloudq.control.multi import expand, nodename, remove_pidfile, write_pidfile
    from cloudq.worker import Worker

    node = nodename(hostname) if hostname else f"{os.getpid()}@{os.uname().nodename}"
    app = obj.app()  # first: its module may connect the setup_logging signal
    setup_logging(loglevel, expand(logfile, node) if logfile else None, log_format, app)
    if metrics_port is not None:
        _add_metrics(app, metrics_port, metrics_address)
    names = [q.strip() for q in queues.split(",") if q.strip()]
    if not names:
        from cloudq.routes import app_queues

        names = app_queues(app)
        logger.info(
            "no -Q given: serving %s (the default queue, then the queues tasks and static "
            "routes name; a router function's queues need -Q)",
            ",".join(names),
        )
    pid_path = Path(expand(pidfile, node)) if pidfile else None
    try:
        runner = Worker(
            app,
            names,
            concurrency=concurrency,
            pool=pool,  # type: ignore[arg-type]
            prefetch=prefetch,
            max_tasks_per_child=max_tasks_per_child,
            app_ref=obj.app_ref,
            hostname=node,
            events=task_events,
            heartbeat_seconds=heartbeat_interval,
        )
        if pid_path is not None:
            write_pidfile(pid_path)
        runner.run()
    finally:
        if pid_path is not None:
            remove_pidfile(pid_path)
        app.close()


@main.command()
@click.option(
    "-l", "--loglevel", default="info", show_default=True, help="debug, info, warning, error"
)
@click.option(
    "--export",
    "export_format",
    type=click.Choice(EXPORT_FORMATS),
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
@click.option("--args", "args_json", default="[]", help="positional arguments, a JSON list")
@click.option("--kwargs", "kwargs_json", default="{}", help="keyword arguments, a JSON object")
@click.option("--countdown", type=float, default=None, help="seconds before it may run")
@click.option("-Q", "--queue", default=None, help="send here instead of the task's route")
@click.pass_obj
def call(
    obj: _Context,
    name: str,
    args_json: str,
    kwargs_json: str,
    countdown: float | None,
    queue: str | None,
) -> None:
    """Send the task named NAME: cloudq -A tasks call tasks.add --args '[1, 2]'; prints its id."""
    try:
        args, kwargs = json.loads(args_json), json.loads(kwargs_json)
    except ValueError as exc:
        raise click.BadParameter(f"--args/--kwargs must be JSON: {exc}") from None
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise click.BadParameter("--args takes a JSON list and --kwargs a JSON object")
    from cloudq.control.events import emit_task_sent

    app = obj.app()
    result = app.get_task(name).apply_async(args, kwargs, countdown=countdown, queue=queue)
    sent = {"uuid": result.id, "name": name, "queue": queue or app.route(name), "attempt": 1}
    emit_task_sent(app, [sent])
    click.echo(result.id)


# --- operations: the control plane -----------------------------------------------------------
@main.command()
@click.option("--json", "as_json", is_flag=True, help="the workers' records as JSON")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Live workers, from their heartbeats in the result backend (Celery's status)."""
    from cloudq.control.commands import live_workers
    from cloudq.control.output import ago, echo_json, shown
    from cloudq.control.store import control_store

    app = ctx.obj.app()
    workers = live_workers(control_store(app, "status"))
    if not workers:
        _no_nodes(ctx, as_json)
    if as_json:
        echo_json(workers)
        return
    for hostname, record in workers.items():
        kind = record.get("kind", "worker")
        extra = (
            f"  ({shown(kind)}, seen {ago(record.get('timestamp'))})" if kind != "worker" else ""
        )
        click.echo(f"->  {shown(hostname)}: OK{extra}")
    _online(len(workers))


def _task_line(method: str, item: dict[str, Any]) -> str:
    """One task of a worker record (the sender's name and id: escaped)."""
    import time

    from cloudq.control.output import shown

    label = f"{shown(item.get('name', '?'))}[{shown(item.get('id', '?'))}]"
    attempt = item.get("attempt")
    tail = f" attempt {attempt}" if attempt is not None else ""
    if method == "active" and item.get("started") is not None:
        tail += f", running {time.time() - float(item['started']):.1f}s"
    return f"{label}{tail} ({shown(item.get('queue', '?'))})"


@main.command()
@click.argument("method", type=click.Choice(INSPECT_METHODS))
@click.option("-d", "--destination", default=None, help="comma-separated node names")
@click.option("-t", "--timeout", type=float, default=None, help="seconds to wait (ping)")
@click.option("--json", "as_json", is_flag=True, help="node -> answer, as JSON")
@click.pass_context
def inspect(
    ctx: click.Context, method: str, destination: str | None, timeout: float | None, as_json: bool
) -> None:
    """What workers are doing: active, reserved, scheduled, registered, stats, active_queues,
    revoked, ping (read from their heartbeat records; ping is a command round trip)."""
    from cloudq.control.commands import inspect_view, live_workers, select, send_command
    from cloudq.control.output import echo_json, json_text, shown
    from cloudq.control.store import control_store

    app = ctx.obj.app()
    store = control_store(app, f"inspect {method}")
    workers = select(live_workers(store), _names(destination), serverless=method != "ping")
    if not workers:
        _no_nodes(ctx, as_json)
    answers: dict[str, Any]
    if method == "ping":
        replies = send_command(store, "ping", workers, timeout=timeout)
        answers = {r.hostname: {"ok": r.reply} if r.ok else {"error": r.reply} for r in replies}
    else:
        answers = {hostname: inspect_view(method, r) for hostname, r in workers.items()}
    if as_json:
        echo_json(answers)
        return
    for hostname, answer in answers.items():
        failed = isinstance(answer, dict) and "error" in answer
        click.echo(f"->  {shown(hostname)}: {'ERROR' if failed else 'OK'}")
        if method == "ping":
            click.echo(f"        {shown(answer.get('ok') or answer.get('error'))}")
        elif method == "stats":
            for line in json_text(answer, indent=4).splitlines():
                click.echo(f"    {line}")
        elif not answer:
            click.echo("    - empty -")
        else:
            for item in answer:
                if isinstance(item, dict) and method in ("active", "reserved"):
                    click.echo(f"    * {_task_line(method, item)}")
                else:
                    click.echo(
                        f"    * {shown(item.get('name') if isinstance(item, dict) else item)}"
                    )
    if method == "scheduled":
        click.echo(
            "note: cloudq workers never hold tasks with an eta; the broker does until they are "
            "due (see `cloudq queues`, column DELAYED)",
            err=True,
        )
    _online(len(answers))


@main.command()
@click.argument("method", type=click.Choice(CONTROL_COMMANDS))
@click.argument("n", type=int, required=False)
@click.option("-d", "--destination", default=None, help="comma-separated node names")
@click.option("-t", "--timeout", type=float, default=None, help="seconds to wait for replies")
@click.option("--json", "as_json", is_flag=True, help="node -> reply, as JSON")
@click.pass_context
def control(
    ctx: click.Context,
    method: str,
    n: int | None,
    destination: str | None,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Command workers: enable_events, disable_events, shutdown, pool_grow [N], pool_shrink [N].

    Each worker reads the command on its next heartbeat and replies in its record.
    """
    from cloudq.control.commands import live_workers, select, send_command
    from cloudq.control.output import echo_json, shown
    from cloudq.control.store import control_store

    if n is not None and not method.startswith("pool_"):
        raise click.UsageError(f"{method} takes no number")
    if n is not None and n < 1:
        raise click.BadParameter("the number of slots must be at least 1")
    app = ctx.obj.app()
    store = control_store(app, f"control {method}")
    targets = select(live_workers(store), _names(destination), serverless=False)
    if not targets:
        _no_nodes(ctx, as_json)
    args = {"n": n or 1} if method.startswith("pool_") else {}
    replies = send_command(store, method, targets, args, timeout)
    if as_json:
        echo_json({r.hostname: {"ok": r.ok, "reply": r.reply} for r in replies})
    else:
        for r in replies:
            state = {True: "OK", False: "ERROR", None: "NO REPLY"}[r.ok]
            click.echo(f"->  {shown(r.hostname)}: {state}\n        {shown(r.reply)}")
    if not all(r.ok for r in replies):
        ctx.exit(1)


@main.command()
@click.argument("task_ids", nargs=-1, required=True)
@click.option("--terminate", is_flag=True, help="also stop the tasks where they are running")
@click.option("-t", "--timeout", type=float, default=None, help="seconds to wait for replies")
@click.option("--json", "as_json", is_flag=True, help="the workers' replies as JSON")
@click.pass_context
def revoke(
    ctx: click.Context,
    task_ids: tuple[str, ...],
    terminate: bool,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Revoke tasks (Celery's revoke): they never run. Workers see it on their next heartbeat;
    with --terminate, running ones are stopped and this waits for the workers' replies."""
    from cloudq.control.output import echo_json

    app = ctx.obj.app()
    replies = app.control.revoke(list(task_ids), terminate, wait=terminate, timeout=timeout)
    if as_json:
        echo_json({r.hostname: {"ok": r.ok, "reply": r.reply} for r in replies})
    else:
        click.echo(f"revoked {len(set(task_ids))} task id(s)")
        for r in replies:
            state = {True: "OK", False: "ERROR", None: "NO REPLY"}[r.ok]
            click.echo(f"->  {r.hostname}: {state}\n        {r.reply}")
    if not all(r.ok for r in replies):
        ctx.exit(1)


@main.command()
@click.option("--dump", is_flag=True, help="print each event as one JSON line")
@click.option("--duration", type=float, default=None, help="stop after this many seconds")
@click.option("--refresh", type=float, default=1.0, show_default=True, help="seconds per redraw")
@click.pass_obj
def events(obj: _Context, dump: bool, duration: float | None, refresh: float) -> None:
    """Watch events: a live table, or --dump (Celery's events). Workers send events after
    `cloudq control enable_events` (or when started with -E)."""
    from cloudq.control.commands import live_workers
    from cloudq.control.events import follow, watch
    from cloudq.control.output import json_text
    from cloudq.control.store import event_store, find_control_store

    app = obj.app()
    stream = event_store(app, "events")
    control_store = find_control_store(app)
    if control_store is not None:
        workers = live_workers(control_store)
        if not any(r.get("events") for r in workers.values()):
            click.echo(
                "no live worker sends events: run `cloudq control enable_events` "
                "(or start workers with -E)",
                err=True,
            )
    try:
        if dump:
            for event in follow(stream, duration, poll=refresh):
                if event is not None:
                    click.echo(json_text(event))
                    sys.stdout.flush()
        else:
            watch(app, follow(stream, duration, poll=refresh), refresh)
    except KeyboardInterrupt:
        pass


@main.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=True,
)
@click.argument("action", type=click.Choice(MULTI_ACTIONS))
@click.argument("argv", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def multi(ctx: click.Context, action: str, argv: tuple[str, ...]) -> None:
    """Background workers: cloudq multi start w1 w2 -A tasks -l info -Q high,default.

    Pid files and log files go to the current directory (%n.pid, %n%I.log) unless --pidfile or
    --logfile say otherwise; stop sends SIGTERM, stopwait waits for the exit, restart does both
    one node at a time and starts it again, kill sends SIGKILL.
    """
    from pathlib import Path

    from cloudq.control import multi as m

    plan = m.parse(argv, ctx.obj.app_ref, Path.cwd())
    if action in ("start", "restart") and not plan.app_ref and "CLOUDQ_APP" not in os.environ:
        raise click.UsageError("name the app: cloudq multi start w1 -A tasks -Q ...")
    if not m.run(action, plan, click.echo):
        ctx.exit(1)


# --- operations: queues and results ----------------------------------------------------------
@main.command()
@click.option("-Q", "--queues", "extra", default="", help="more queues to show (comma-separated)")
@click.option("--json", "as_json", is_flag=True, help="the rows as JSON")
@click.pass_obj
def queues(obj: _Context, extra: str, as_json: bool) -> None:
    """Depth, in flight, delayed and dead letters of the app's queues (and -Q ones)."""
    from dataclasses import asdict

    from cloudq.control.output import echo_json, table
    from cloudq.control.redrive import known_queues, queue_rows

    app = obj.app()
    rows = queue_rows(app, known_queues(app, _names(extra)))
    if as_json:
        echo_json([asdict(r) for r in rows])
        return
    headers = ["QUEUE", "READY", "IN FLIGHT", "DELAYED", "DEAD LETTERS"]
    cells: list[list[Any]] = [
        [r.queue, r.ready, r.in_flight, r.delayed, r.dead_letters] for r in rows
    ]
    if any(r.error for r in rows):
        headers.append("NOTE")
        for cells_row, r in zip(cells, rows, strict=True):
            cells_row.append((r.error or "")[:100])
    click.echo(table(headers, cells))


@main.command()
@click.option("-Q", "--queues", "names", default="", help="comma-separated (default: all known)")
@click.option("-y", "--yes", "-f", "--force", "yes", is_flag=True, help="do not ask")
@click.pass_obj
def purge(obj: _Context, names: str, yes: bool) -> None:
    """Delete every message of queues (asks first; --yes for scripts)."""
    from cloudq.control.output import progress
    from cloudq.control.redrive import known_queues
    from cloudq.control.redrive import purge as purge_queues

    app = obj.app()
    chosen = _names(names) or known_queues(app)
    if not yes:
        click.confirm(
            f"WARNING: this removes every message from: {', '.join(chosen)}.\n"
            "There is no undo. Purge?",
            abort=True,
            err=True,
        )
    with progress(len(chosen), "purging") as update:
        count = purge_queues(app, chosen, update)
    plural = "s" if len(chosen) > 1 else ""
    click.echo(f"Purged {count} message(s) from {len(chosen)} queue{plural}.")


@main.group()
def dlq() -> None:
    """Dead-letter queues: list what failed, redrive it."""


@dlq.command("list")
@click.option("-Q", "--queue", required=True, help="the queue whose dead letters to list")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@click.option("--traceback", "show_traceback", is_flag=True, help="print each traceback")
@click.option("--json", "as_json", is_flag=True, help="the dead letters as JSON")
@click.pass_obj
def dlq_list(obj: _Context, queue: str, limit: int, show_traceback: bool, as_json: bool) -> None:
    """Each dead letter with its task, attempt and error (read, then released at once)."""
    from cloudq.adapters.base import dead_letter_queue_name
    from cloudq.control.output import echo_json, shown, shown_lines, table
    from cloudq.control.redrive import list_dead_letters

    app = obj.app()
    found = list_dead_letters(app, queue, limit)
    if as_json:
        echo_json([d.as_dict() for d in found])
        return
    rows = []
    for d in found:
        if d.error_type:
            error = f"{d.error_type}: {d.error_message or ''}"
        else:
            error = d.problem or d.reason or "-"
        rows.append([d.task_id or d.message_id, d.task, d.attempt, error.replace("\n", " ")[:100]])
    click.echo(table(["TASK ID", "TASK", "ATTEMPT", "ERROR"], rows))
    if show_traceback:
        for d in found:
            if d.traceback:
                head = f"{shown(d.task)}[{shown(d.task_id)}]"
                click.echo(f"\n--- {head} ---\n{shown_lines(d.traceback.rstrip())}")
    more = " (or more: raise --limit)" if len(found) == limit else ""
    click.echo(f"\n{len(found)} dead letter(s) in {dead_letter_queue_name(queue)}{more}.")


@dlq.command("redrive")
@click.option("-Q", "--queue", required=True, help="the queue to move its dead letters back to")
@click.option("--limit", type=click.IntRange(1), default=None, help="move at most N")
@click.option(
    "--trust-unsigned",
    is_flag=True,
    help="with signing_keys set, also move (and sign) unsigned dead letters, whose origin "
    "cannot be proven; a bad signature is never moved",
)
@click.pass_obj
def dlq_redrive(obj: _Context, queue: str, limit: int | None, trust_unsigned: bool) -> None:
    """Move dead letters back as fresh first attempts; each is sent before it is deleted.

    With signing_keys set, only dead letters whose signature verifies are moved."""
    from cloudq.adapters.base import dead_letter_queue_name
    from cloudq.control.output import progress, shown
    from cloudq.control.redrive import dead_letter_depth, redrive

    app = obj.app()
    dlq_name = dead_letter_queue_name(queue)
    total = limit if limit is not None else dead_letter_depth(app, queue)
    with progress(total, f"redriving {dlq_name}") as update:
        result = redrive(app, queue, limit, update, trust_unsigned=trust_unsigned)
    click.echo(f"Redrove {result.moved} message(s) from {dlq_name} to {queue}.")
    for message_id, why in result.skipped.items():
        click.echo(f"left in {dlq_name}: {shown(message_id)}: {shown(why)}", err=True)


@main.command()
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="the stored record as JSON")
@click.pass_obj
def result(obj: _Context, task_id: str, as_json: bool) -> None:
    """A task's state and result, or its error and traceback (from the result backend)."""
    from cloudq.control.output import echo_json, json_text, shown, shown_lines
    from cloudq.errors import ConfigurationError

    app = obj.app()
    if app.backend is None:
        raise ConfigurationError(
            "results are off: set result_backend (App(backend='redis://...') or "
            "CLOUDQ_RESULT_BACKEND) to keep and read them"
        )
    record = app.backend.get(task_id)
    if as_json:
        echo_json(
            record.model_dump(mode="json")
            if record is not None
            else {"task_id": task_id, "state": "PENDING"}
        )
        return
    if record is None:
        click.echo(
            f"state: PENDING\n(no record of {shown(task_id)}: not finished, expired, or unknown)"
        )
        return
    click.echo(f"state: {shown(record.state)}")
    if record.task:
        click.echo(f"task: {shown(record.task)}")
    click.echo(f"attempt: {record.attempt}")
    if record.date_done is not None:
        click.echo(f"done: {record.date_done.isoformat()}")
    if record.error is not None:
        click.echo(f"error: {shown(record.error.type)}: {shown(record.error.message)}")
        if record.error.traceback:
            click.echo(shown_lines(record.error.traceback.rstrip()))
    else:
        click.echo(f"result: {json_text(record.result)}")


@main.command()
@click.option("--fast", is_flag=True, help="shorter waits (used by the tests)")
def demo(fast: bool) -> None:
    """Celery's classic order example on a local SQS API: no cloud account, nothing to start.

    A receipt e-mail on the high queue, a seat booking that fails once and is retried after a
    backoff, a payment posted after a countdown on the low queue; a real worker runs them on an
    embedded moto server and the results are read back.
    """
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


def run(argv: list[str] | None = None) -> None:
    """Entry point with clean errors: a CloudqError is a message, not a traceback."""
    _add_plugin_commands()
    try:
        code = main(args=argv, standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except CloudqError as exc:
        from cloudq.logsafe import printable

        click.echo(f"error: {printable(str(exc))}", err=True)
        sys.exit(2)
    if isinstance(code, int) and code:  # ctx.exit(n) returns n without standalone mode
        sys.exit(code)


if __name__ == "__main__":
    run()
