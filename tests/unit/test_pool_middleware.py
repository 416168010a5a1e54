"""Middleware a worker passes to its processes-pool children (``CLOUDQ_POOL_MIDDLEWARE``)."""

from __future__ import annotations

import logging
import uuid

import pytest

from cloudq import App
from cloudq.contrib.prometheus import PrometheusMetrics
from cloudq.middleware import POOL_MIDDLEWARE_ENV, add_inherited, pass_to_pool_children


def test_children_add_what_was_passed_once_and_survive_a_bad_path(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(POOL_MIDDLEWARE_ENV, raising=False)
    pass_to_pool_children("cloudq.contrib.prometheus:pool_child")
    pass_to_pool_children("cloudq.contrib.prometheus:pool_child")  # once, however often asked
    pass_to_pool_children("no.such.module:factory")
    app = App("child", broker=f"memory://{uuid.uuid4().hex}")
    with caplog.at_level(logging.ERROR):
        add_inherited(app)
    assert sum(isinstance(m, PrometheusMetrics) for m in app.hooks.middleware) == 1
    assert "no.such.module:factory failed" in caplog.text
    own = App("own", broker=f"memory://{uuid.uuid4().hex}", middleware=[PrometheusMetrics()])
    add_inherited(own)  # the app's module already added one: not a second
    assert sum(isinstance(m, PrometheusMetrics) for m in own.hooks.middleware) == 1
