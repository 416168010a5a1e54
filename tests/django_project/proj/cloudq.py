"""The project's ``celery.py``, renamed: ``cloudq -A proj worker`` finds this app."""

import os

from cloudq import App

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")

app = App("proj")
app.config_from_object("django.conf:settings", namespace="CLOUDQ")
app.autodiscover_tasks()
