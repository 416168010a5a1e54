"""Celery's exception names (``celery.exceptions``), each an alias of cloudq's own class.

Ported code keeps ``from cloudq.exceptions import Reject`` and catches what cloudq raises: one
class per concept lives in ``cloudq.errors``; this module only names them as Celery does.
"""

from __future__ import annotations

import builtins

from cloudq.errors import (
    ChordError,
    CloudqError,
    ConfigurationError,
    EnvelopeError,
    Ignore,
    MaxRetriesExceededError,
    NotRegistered,
    Reject,
    Retry,
    SignatureError,
    SoftTimeLimitExceeded,
    TaskFailed,
    TaskPredicate,
    TaskRevokedError,
    TimeLimitExceeded,
    WorkerLostError,
)

CeleryError = CloudqError
"""The base of every error the library raises."""
ImproperlyConfigured = ConfigurationError
InvalidTaskError = EnvelopeError
"""A message that is not a valid task (cloudq dead-letters it unrun)."""
SecurityError = SignatureError
TaskError = TaskFailed
"""A task failed in the worker; its exception could not be re-created here."""
TimeoutError = builtins.TimeoutError

__all__ = [
    "CeleryError",
    "ChordError",
    "Ignore",
    "ImproperlyConfigured",
    "InvalidTaskError",
    "MaxRetriesExceededError",
    "NotRegistered",
    "Reject",
    "Retry",
    "SecurityError",
    "SoftTimeLimitExceeded",
    "TaskError",
    "TaskPredicate",
    "TaskRevokedError",
    "TimeLimitExceeded",
    "TimeoutError",
    "WorkerLostError",
]
