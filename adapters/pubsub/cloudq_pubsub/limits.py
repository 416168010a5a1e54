"""Pub/Sub service limits, named so the adapter's arithmetic says where each number comes from."""

from __future__ import annotations

MAX_MESSAGE_BYTES = 10_485_760
"""Largest message (10 MiB), counted here as the whole serialized message: data, attributes and
ordering key."""

MAX_PUBLISH_REQUEST_BYTES = 10_485_760
"""Largest Publish request (10 MiB): a batch of big messages is split into several requests."""

RESERVED_ATTRIBUTE_BYTES = 65_536
"""Kept back from ``BrokerLimits.max_message_bytes`` for attributes, so that the core's check of
the body alone leaves room for them; the adapter still checks the exact size."""

MAX_PUBLISH_BATCH = 1_000
"""Messages per Publish request."""

MAX_PULL_MESSAGES = 1_000
"""Most messages one Pull may return (``max_batch`` may be raised up to this)."""

MAX_ACK_IDS_PER_REQUEST = 1_000
"""Ack ids per Acknowledge / ModifyAckDeadline call (the request must stay under 512 KB)."""

DEFAULT_MAX_BATCH = 10
"""cloudq's default batch: the worker sizes its prefetch from it (as on SQS), so a worker does
not hoard messages other workers could run. ``pubsub://P?max_batch=100`` trades that for
throughput."""

MAX_ACK_DEADLINE_SECONDS = 600
"""Longest ack deadline, for a subscription and for ModifyAckDeadline: the cap of every lease."""

MIN_SUBSCRIPTION_ACK_DEADLINE_SECONDS = 10
"""Shortest ack deadline a subscription may have (ModifyAckDeadline may go down to 0)."""

MIN_DELIVERY_ATTEMPTS = 5
MAX_DELIVERY_ATTEMPTS = 100
"""Range of a dead-letter policy's ``max_delivery_attempts``."""

MESSAGE_RETENTION_SECONDS = 604_800
"""Longest subscription retention (7 days), given to dead-letter subscriptions."""

MAX_ATTRIBUTES = 100
"""Attributes per message."""

RESERVED_ATTRIBUTES = 3
"""Attribute slots kept for cloudq's own: message id, dead-letter reason, claim-check pointer."""

MAX_ATTRIBUTE_KEY_BYTES = 256
MAX_ATTRIBUTE_VALUE_BYTES = 1_024

MAX_ORDERING_KEY_BYTES = 1_024

MIN_ID_CHARS = 3
MAX_ID_CHARS = 255
"""Length of topic and subscription ids."""

MAX_LABEL_CHARS = 63
"""Longest label key or value."""

PULL_DEADLINE_MARGIN_SECONDS = 1.0
"""Added to a long poll's RPC deadline: the server answers (empty) about this long before it."""

DEFAULT_TIMEOUT_SECONDS = 30.0
"""Default total time of one call, its retries included; a producer raises after it."""
