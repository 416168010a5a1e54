"""The tasks of Celery's canvas integration tests (``t/integration/tasks.py``) that cloudq
runs, by their names; ``add_to_all`` returns the sums instead of replacing itself with a group
(cloudq has no ``Task.replace``)."""

from proj.celery import app  # noqa: F401 - the app these shared tasks land on

from cloudq import shared_task


class ExpectedException(Exception):
    pass


@shared_task
def identity(x):
    return x


@shared_task
def add(x, y, z=None):
    return x + y + z if z else x + y


@shared_task
def tsum(nums):
    return sum(nums)


@shared_task
def add_to_all(nums, val):
    return [add(n, val) for n in nums]


@shared_task(bind=True)
def ids(self, i):
    return self.request.root_id, self.request.parent_id, i


@shared_task(bind=True)
def collect_ids(self, res, i):
    return res, (self.request.root_id, self.request.parent_id, i)


@shared_task
def fail(*args):
    raise ExpectedException("Task expected to fail", *args)
