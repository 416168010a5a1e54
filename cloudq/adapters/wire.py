"""Names cloudq puts on the wire, each defined once: every adapter, the core and the tools import
them from here, so a renamed attribute or suffix changes in one line.

They are part of the format: messages already in a queue (or a dead-letter queue) carry them, so
changing one strands those messages. Pure constants: importing this module imports nothing.
"""

from __future__ import annotations

DEAD_LETTER_REASON_ATTRIBUTE = "cloudq-dead-letter-reason"
"""Why a message was dead-lettered: a message attribute set by ``Broker.dead_letter`` (and, by
Service Bus, from its native ``DeadLetterReason``), and the same name as an envelope header
written by the core. Read back by ``cloudq dlq`` and the redrive."""

MESSAGE_ID_ATTRIBUTE = "cloudq-message-id"
"""Carries ``OutgoingMessage.message_id`` (the task id) where the provider assigns message ids
of its own (SQS, Pub/Sub); Service Bus takes ours as its MessageId and needs no attribute."""

MAX_RECEIVE_COUNT_REASON = "MaxReceiveCountExceeded"
"""The reason of a message dead-lettered for being received more than the queue's
``max_receive_count``, where cloudq counts (memory, Pub/Sub below its minimum of 5 attempts);
the word Service Bus uses for the same (``MaxDeliveryCountExceeded``) comes from the service."""

DEAD_LETTER_SUFFIX = "-dlq"
"""A queue's dead-letter queue is ``<queue>-dlq`` on every provider (SQS's FIFO queues then keep
``.fifo`` last: the SQS adapter maps the name)."""

FIFO_SUFFIX = ".fifo"
"""FIFO queues are named ``*.fifo``: SQS's rule (its FIFO queue names must end so), kept on every
provider for portability so that one app's queue names mean the same everywhere."""


PRIORITY_SUFFIX = "-prio"
"""A queue's priority sub-queues are ``<queue>-prio1``, ``<queue>-prio2`` (``.fifo`` kept last):
``cloudq.priority`` builds the names and decides the levels."""


def is_fifo(queue: str) -> bool:
    """Whether ``queue`` is a FIFO queue (its name ends in ``FIFO_SUFFIX``)."""
    return queue.endswith(FIFO_SUFFIX)


def dead_letter_queue_name(queue: str) -> str:
    """The conventional name of a queue's dead-letter queue."""
    return f"{queue}{DEAD_LETTER_SUFFIX}"
