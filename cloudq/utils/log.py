"""``get_task_logger(__name__)``: Celery's task logger, whose records name the running task.

Each record carries ``task_name`` and ``task_id`` (empty outside a task), so a format such as
``"%(task_name)s[%(task_id)s] %(message)s"`` works as in Celery. The logger escapes control
characters in its arguments like every cloudq logger (``cloudq.logsafe``): a task logs values
that came from its message.
"""

from __future__ import annotations

import logging

from cloudq.logsafe import get_logger
from cloudq.request import current_request

TASK_LOGGER_PARENT = "cloudq.task"
"""Every task logger has this one as its parent (Celery's ``celery.task``), so one handler or
level set there covers them all."""


class TaskContext(logging.Filter):
    """Adds the running task's name and id to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = current_request.get()
        record.task_name = (request.task if request is not None else None) or ""
        record.task_id = (request.id if request is not None else None) or ""
        return True


_CONTEXT = TaskContext()


def get_task_logger(name: str) -> logging.Logger:
    """The logger ``name`` for task code, adding ``task_name`` and ``task_id`` to its records;
    as in Celery its parent is the task logger (``cloudq.task``), whatever its name."""
    logger = get_logger(name)
    if _CONTEXT not in logger.filters:
        logger.addFilter(_CONTEXT)
    if name != TASK_LOGGER_PARENT:
        logger.parent = get_logger(TASK_LOGGER_PARENT)
    return logger


__all__ = ["get_task_logger"]
