"""The control plane: heartbeats, control commands and events through the shared state store.

No broadcast queues (Celery's pidbox clutters SQS and does not work there): workers and serverless
invocations write heartbeat records with a time to live into the result backend, control commands
are records a worker reads on its heartbeat, and events are appended to the store's stream only
while they are enabled. The ``cloudq`` operations commands read them (``cloudq.cli``).

Modules: ``store`` (the store contracts and the in-process store), ``heartbeat`` (a worker's and a
serverless handler's side), ``events`` (emitting, reading, the live view), ``commands`` (what the
CLI sends and reads), ``multi`` (background workers), ``redrive`` (queues, purge, dead letters),
``output`` (tables, JSON, progress).
"""
