"""A FastAPI service that enqueues cloudq tasks and reads their results, never blocking its loop.

Run it (SQS and Redis, or any broker and backend, from the ``CLOUDQ_*`` variables)::

    export CLOUDQ_BROKER_URL=sqs:// CLOUDQ_RESULT_BACKEND=redis://localhost:6379/0
    uvicorn examples.fastapi_app.main:api --port 8000
    cloudq -A examples.fastapi_app.tasks worker -l info
"""
