"""A stand-in for Django's settings object (the Django integration is a later issue)."""

from types import SimpleNamespace

settings = SimpleNamespace(
    DEBUG=True,
    SECRET_KEY="not-a-secret",
    INSTALLED_APPS=["django.contrib.admin", "shop", "billing"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3"}},
    CELERY_BROKER_URL="memory://django",
    CELERY_RESULT_BACKEND="memory://django",
    CELERY_TIMEZONE="Europe/Berlin",
    CELERY_TASK_TRACK_STARTED=True,
    CELERY_TASK_TIME_LIMIT=30 * 60,
    CELERY_ACCEPT_CONTENT=["json"],
)
