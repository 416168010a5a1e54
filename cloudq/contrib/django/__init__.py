"""Django integration (``pip install 'cloudqueue-tasks[django]'``), as Celery's Django support.

- ``app.config_from_object("django.conf:settings", namespace="CLOUDQ")`` installs the fixup
  (``cloudq.contrib.django.fixup``): ``django.setup()`` where tasks run, database connection
  hygiene around each task, ``autodiscover_tasks()`` over Django's app registry.
- ``task.delay_on_commit(...)``: sent when the transaction commits (``commit.on_commit``).
- ``cloudq.contrib.django.tasks.CloudqBackend``: a backend for Django's Tasks framework.

Nothing here imports Django until it is used.
"""

from cloudq.contrib.django.fixup import install

__all__ = ["install"]
