"""SQS service limits, named so the adapter's arithmetic says where each number comes from."""

from __future__ import annotations

MAX_DELAY_SECONDS = 900
"""Longest per-message DelaySeconds (15 minutes); longer etas travel in hops planned by the core."""

MAX_VISIBILITY_SECONDS = 43_200
"""Longest VisibilityTimeout (12 hours)."""

DEFAULT_MAX_MESSAGE_BYTES = 262_144
"""The classic 256 KiB limit: assumed until a queue's own MaximumMessageSize has been read."""

SERVICE_MAX_MESSAGE_BYTES = 1_048_576
"""The service's ceiling since 2025 (1 MiB), for a message and for a whole batch."""

MAX_BATCH = 10
"""Entries per Send/Delete/ChangeMessageVisibility batch and messages per ReceiveMessage."""

MAX_WAIT_SECONDS = 20
"""Longest long-poll WaitTimeSeconds."""

MAX_MESSAGE_ATTRIBUTES = 10
"""Message attributes per message."""

RESERVED_MESSAGE_ATTRIBUTES = 3
"""Attribute slots kept for cloudq's own: message id, body encoding, dead-letter reason."""

MAX_ATTRIBUTE_NAME_CHARS = 256

MAX_FIFO_TOKEN_CHARS = 128
"""Longest MessageGroupId / MessageDeduplicationId."""

MAX_QUEUE_NAME_CHARS = 80
"""Longest queue name, the ``.fifo`` suffix and the prefix included."""

DEAD_LETTER_RETENTION_SECONDS = 1_209_600
"""14 days, the longest retention: a dead letter should outlive the source queue's copy."""

MAX_REASON_CHARS = 4_096
"""Cap on the dead-letter reason attribute: a summary, not a full log."""

SEND_TRIES = 3
"""Attempts at entries of a send batch that failed on the service's side."""

SEND_BACKOFF_SECONDS = 0.2
"""First pause before re-sending failed entries; doubled on each further try."""
