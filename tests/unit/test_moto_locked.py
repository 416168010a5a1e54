"""moto's SQS delete holds the queue's message lock once cloudq patched it (the test server and
``cloudq demo``'s embedded one: ``cloudq_sqs.embedded.lock_sqs_deletes``)."""

from __future__ import annotations

import threading
import uuid

import pytest

pytest.importorskip("moto")

from cloudq_sqs.embedded import lock_sqs_deletes


def test_a_delete_waits_for_the_message_lock_sends_hold() -> None:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sqs.models import sqs_backends

    lock_sqs_deletes()
    lock_sqs_deletes()  # twice: still one wrapper
    backend = sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    name = f"locked-{uuid.uuid4().hex[:8]}"
    backend.create_queue(name)
    backend.send_message(name, "a")
    [message] = backend.receive_message(name, 1, 0, 30)
    queue = backend.get_queue(name)
    deleted = threading.Event()

    def delete() -> None:
        backend.delete_message(name, message.receipt_handle)
        deleted.set()

    with queue._messages_lock:  # what add_message holds while it appends
        worker = threading.Thread(target=delete)
        worker.start()
        assert not deleted.wait(0.3), "delete_message ran without the queue's message lock"
    assert deleted.wait(10)
    worker.join(10)
    assert queue._messages == []
