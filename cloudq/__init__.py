"""cloudq: Celery-style tasks on the clouds' own queues (SQS, Pub/Sub, Service Bus).

Importing this package imports no cloud SDK: adapters load their SDK when a broker is opened.
"""

from cloudq.app import App
from cloudq.canvas import Signature, chain, chord, group, signature
from cloudq.errors import (
    CloudqError,
    ConfigurationError,
    Ignore,
    MaxRetriesExceededError,
    Reject,
    Retry,
    SoftTimeLimitExceeded,
    TaskArgumentError,
    TimeLimitExceeded,
)
from cloudq.result import AsyncResult, EagerResult, GroupResult, ResultSet
from cloudq.results.base import State
from cloudq.shared import current_app, shared_task
from cloudq.task import Task

__version__ = "0.1.0"

__all__ = [
    "App",
    "AsyncResult",
    "CloudqError",
    "ConfigurationError",
    "EagerResult",
    "GroupResult",
    "Ignore",
    "MaxRetriesExceededError",
    "Reject",
    "ResultSet",
    "Retry",
    "Signature",
    "SoftTimeLimitExceeded",
    "State",
    "Task",
    "TaskArgumentError",
    "TimeLimitExceeded",
    "__version__",
    "chain",
    "chord",
    "current_app",
    "group",
    "shared_task",
    "signature",
]
