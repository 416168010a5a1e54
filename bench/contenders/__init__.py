"""One module per contender: each runs the same no-op task ``work(t0)`` on one moto SQS queue.

The task body is identical everywhere: it appends one line to ``$BENCH_OUT`` holding the time
from enqueue (``t0``, wall clock) to start, so the driver counts processed tasks and reads the
round-trip latency without any result backend. The queue is ``$BENCH_QUEUE``.
"""
