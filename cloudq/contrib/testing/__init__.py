"""``celery.contrib.testing``'s place."""
