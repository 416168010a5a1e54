"""``cloudq dashboard``: what Flower is for Celery, on every broker and state store.

An optional extra (``cloudqueue-tasks[dashboard]``: Starlette, uvicorn, Jinja2); nothing here is
imported by ``import cloudq`` or ``cloudq --help``: the command comes in through the
``cloudq.commands`` entry point. Every page and API call reads the stores through
``cloudq.control``'s functions, the same ones the ``status``, ``queues``, ``dlq`` and ``revoke``
commands call.
"""
