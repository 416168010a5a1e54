"""The dashboard's actions, each logged with the user who did it; the work is ``cloudq``'s own
(``send_command``, ``revoke``, ``redrive``, ``purge``), as the commands do it."""

from __future__ import annotations

from collections.abc import Collection

from cloudq.adapters.base import dead_letter_queue_name
from cloudq.control.commands import Reply
from cloudq.control.redrive import dead_letter_depth, purge, redrive, redrive_ids
from cloudq.dashboard import views
from cloudq.dashboard.jobs import Job
from cloudq.dashboard.views import Dash
from cloudq.logsafe import get_logger
from cloudq.revoke import revoke as revoke_tasks

logger = get_logger("cloudq.dashboard.actions")


class BadRequest(ValueError):
    """A request the dashboard refuses as given (a 400 with this message)."""


def worker_command(dash: Dash, user: str, hostname: str, command: str, n: int | None) -> Reply:
    if command not in views.WORKER_COMMANDS:
        raise BadRequest(f"unknown worker command {command!r}: {', '.join(views.WORKER_COMMANDS)}")
    if n is not None and not command.startswith("pool_"):
        raise BadRequest(f"{command} takes no number")
    logger.info("user %s: %s %s%s", user, command, hostname, f" n={n}" if n else "")
    reply = views.worker_command(dash.app, hostname, command, n)
    logger.info("user %s: %s %s -> ok=%s %s", user, command, hostname, reply.ok, reply.reply)
    return reply


def revoke(dash: Dash, user: str, task_id: str, terminate: bool) -> None:
    """Revoke as ``cloudq revoke`` does; with ``terminate`` the command is sent without waiting
    for the replies (the task page shows the state the worker stores)."""
    if not task_id:
        raise BadRequest("no task id")
    logger.info("user %s: revoke %s%s", user, task_id, " (terminate)" if terminate else "")
    revoke_tasks(dash.app, [task_id], terminate)


def start_redrive(
    dash: Dash, user: str, queue: str, message_ids: Collection[str] | None, trust_unsigned: bool
) -> Job:
    """Redrive all (``message_ids`` None) or the selected dead letters of ``queue``, in a job."""
    if queue not in dash.queues():
        raise BadRequest(f"unknown queue {queue!r}")
    what = "all" if message_ids is None else f"{len(message_ids)} selected"
    trusting = " trusting unsigned ones" if trust_unsigned else ""
    logger.info("user %s: redrive %s dead letter(s) of %s%s", user, what, queue, trusting)
    dlq = dead_letter_queue_name(queue)
    total = len(message_ids) if message_ids is not None else dead_letter_depth(dash.app, queue)

    def work(job: Job) -> None:
        if message_ids is None:
            result = redrive(dash.app, queue, None, job.advance, trust_unsigned=trust_unsigned)
        else:
            result = redrive_ids(dash.app, queue, message_ids, job.advance, trust_unsigned)
        job.summary = f"Redrove {result.moved} message(s) from {dlq} to {queue}."
        job.notes = [f"left in {dlq}: {mid}: {why}" for mid, why in result.skipped.items()]
        logger.info("user %s: %s", user, job.summary)

    return dash.jobs.start(f"Redrive {what} of {dlq}", user, total, work)


def start_purge(dash: Dash, user: str, queue: str) -> Job:
    """Purge the dead-letter queue of ``queue``, in a job."""
    if queue not in dash.queues():
        raise BadRequest(f"unknown queue {queue!r}")
    dlq = dead_letter_queue_name(queue)
    logger.info("user %s: purge %s", user, dlq)

    def work(job: Job) -> None:
        count = purge(dash.app, [dlq], job.advance)
        job.summary = f"Purged {count} message(s) from {dlq}."
        logger.info("user %s: %s", user, job.summary)

    return dash.jobs.start(f"Purge {dlq}", user, 1, work)
