"""Integrations under the import paths Celery users know (``celery.contrib.*``)."""
