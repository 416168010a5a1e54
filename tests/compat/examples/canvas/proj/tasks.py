"""The tasks Celery's canvas guide and its canvas integration tests call, by their names."""

from cloudq import shared_task

from .celery import app

ERRORS = []
"""What the error callbacks saw: (failed task id, error) pairs."""


class ExpectedException(Exception):
    pass


@app.task
def add(x, y):
    return x + y


@app.task
def mul(x, y):
    return x * y


@app.task
def xsum(numbers):
    return sum(numbers)


@app.task
def tsum(nums):
    return sum(nums)


@shared_task
def identity(x):
    return x


@app.task(bind=True)
def ids(self, i):
    return self.request.root_id, self.request.parent_id, i


@app.task
def fail(*args):
    raise ExpectedException("Task expected to fail", *args)


@app.task
def raising_task():
    raise ValueError("something something")


@app.task
def log_error(request, exc, traceback):
    ERRORS.append((request.id, repr(exc)))


@app.task
def on_chord_error(request, exc, traceback):
    ERRORS.append((request.id, repr(exc)))


@app.task
def record_failed_id(task_id):
    ERRORS.append((task_id, None))


@app.task
def reset_buffers():
    return "reset"
