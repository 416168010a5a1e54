"""Settings of the test project. The tests point the broker, the result store and the sqlite
file elsewhere through the ``SHOP_*`` environment variables."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "not-a-secret: the test project only"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "shop.apps.ShopConfig",  # an AppConfig path: discovery must use the app registry
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_DB", str(BASE_DIR / "db.sqlite3")),
        "OPTIONS": {"timeout": 20},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CLOUDQ_BROKER_URL = os.environ.get("SHOP_BROKER_URL", "memory://")
CLOUDQ_RESULT_BACKEND = os.environ.get("SHOP_RESULT_BACKEND", "memory://")
CLOUDQ_TASK_DEFAULT_QUEUE = "default"

TASKS = {
    "default": {
        "BACKEND": "cloudq.contrib.django.tasks.CloudqBackend",
        "QUEUES": ["default", "reports"],
        "OPTIONS": {"app": "proj.cloudq:app"},
    }
}
