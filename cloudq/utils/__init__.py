"""Celery's ``celery.utils`` namespace, for what ported code imports from it (``utils.log``)."""
