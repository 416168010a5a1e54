"""Service Bus limits (standard tier unless said), named so the arithmetic says where each
number comes from."""

from __future__ import annotations

MAX_LOCK_SECONDS = 300
"""Longest peek-lock (a queue's LockDuration): 5 minutes. Longer leases are renewed."""

MIN_LOCK_SECONDS = 5
"""Shortest LockDuration cloudq asks for: renewing a lock more often than this gains nothing."""

MAX_MESSAGE_BYTES = 262_144
"""Standard tier: 256 KB per message, headers and properties included (premium: up to 100 MB,
``servicebus://...?max_message_bytes=``)."""

MESSAGE_OVERHEAD_BYTES = 8_192
"""Room kept for the AMQP header, annotations and application properties of a message, so a
body under ``max_message_bytes`` still fits once encoded."""

MAX_BATCH = 20
"""Messages per ``send`` / ``receive`` / ``ack`` call (cloudq's choice: Service Bus caps a batch
by bytes, 256 KB on standard, not by count)."""

MAX_QUEUE_NAME_CHARS = 260
"""Longest queue name (path), the prefix included."""

DEAD_LETTER_MAX_DELIVERY_COUNT = 2_000
"""Max delivery count of a cloudq dead-letter queue: its messages are read by people and tools,
never dead-lettered again."""

MAX_REASON_CHARS = 4_096
"""Cap on the dead-letter reason property: a summary, not a full log."""

MAX_MESSAGE_ID_CHARS = 128
"""Service Bus MessageId limit."""

NO_WAIT_SECONDS = 0.1
"""A receive with ``wait_seconds=0`` still needs a round trip for its credit: this long."""

RECEIVE_SLICE_SECONDS = 0.5
"""A long receive is cut into slices this long, letting acks and lock renewals of the same
receiver (the SDK's objects are not thread-safe) run between them."""

RENEW_MARGIN_SECONDS = 10.0
"""A held lock is renewed this long before it runs out (or at half the lock, if shorter): room
for a receive slice holding the receiver and a round trip."""

KEEPER_TICK_SECONDS = 0.1
"""How often the lease keeper looks at held messages."""

PURGE_BATCH = 100
"""Messages per receive-and-delete call while purging, and per peek while cancelling schedules."""

SDK_RETRY_TOTAL = 1
"""Retries the SDK makes itself before an operation raises; the worker backs off on its own."""

SDK_RETRY_BACKOFF_SECONDS = 0.5
"""The SDK's first retry pause (doubled per retry)."""
