"""Celery's layout: the app is loaded when Django starts, so ``@shared_task`` uses it."""

from .cloudq import app as cloudq_app

__all__ = ("cloudq_app",)
