"""Saved groups (``GroupResult.save()`` / ``restore(id)``): a group's task ids in the result
backend, so another process can read the group by its id alone.

A saved group is a result record of its own (every backend stores it unchanged), under a key
no task id takes (``cloudq-group-<id>``, as Celery keeps ``celery-taskset-meta-<id>``). Whoever
can write the store could otherwise swap the ids, and have ``restore(id).revoke()`` revoke tasks
of their choosing: with ``signing_keys`` the ids are sealed to the group id
(``cloudq.storeseal``), and an unsealed or changed group is refused with ``SignatureError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cloudq.errors import SignatureError
from cloudq.results.base import State, TaskResult
from cloudq.storeseal import check_seal, seal_of

if TYPE_CHECKING:
    from cloudq.app import App
    from cloudq.results.base import ResultBackend

GROUP_KEY_PREFIX = "cloudq-group-"
GROUP_RECORD_TASK = "cloudq.group"
"""The ``task`` of a saved group's record: what tells it from a task's."""
GROUP_SEAL = "group"


def group_key(group_id: str) -> str:
    return f"{GROUP_KEY_PREFIX}{group_id}"


def save_group(app: App, backend: ResultBackend, group_id: str, task_ids: list[str]) -> None:
    record = TaskResult(
        task_id=group_key(group_id),
        state=State.SUCCESS,
        task=GROUP_RECORD_TASK,
        result=task_ids,
        date_done=app.clock.now(),
        seal=seal_of(app.signing_keys, GROUP_SEAL, [group_id], task_ids),
    )
    backend.store(record, app.conf.result_expires)


def restore_group_ids(app: App, backend: ResultBackend, group_id: str) -> list[str] | None:
    """The saved ids, checked; None if nothing is saved under ``group_id``."""
    record = backend.get(group_key(group_id))
    if record is None:
        return None
    ids: Any = record.result
    if (
        record.task != GROUP_RECORD_TASK
        or not isinstance(ids, list)
        or not all(isinstance(i, str) for i in ids)
    ):
        raise SignatureError(f"the stored group {group_id!r} is not a saved group's record")
    check_seal(app.signing_keys, record.seal, GROUP_SEAL, [group_id], ids)
    return list(ids)


def forget_group(backend: ResultBackend, group_id: str) -> None:
    backend.forget(group_key(group_id))
