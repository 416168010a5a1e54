"""Settings from keyword arguments over ``CLOUDQ_*`` variables (read without pydantic-settings)."""

from __future__ import annotations

import pytest

from cloudq.config import make_settings
from cloudq.errors import ConfigurationError


def test_variables_set_settings_in_any_case_and_arguments_win() -> None:
    env = {"CLOUDQ_TASK_TIME_LIMIT": "42", "cloudq_worker_concurrency": "8"}
    conf = make_settings({"worker_concurrency": 2}, env)
    assert conf.task_time_limit == 42.0
    assert conf.worker_concurrency == 2


def test_lists_and_mappings_are_json() -> None:
    env = {
        "CLOUDQ_SIGNING_KEYS": '["k1", "k2"]',
        "CLOUDQ_TASK_ROUTES": '{"shop.*": "shop"}',
        "CLOUDQ_ERROR_REPORTS": "null",
    }
    conf = make_settings({}, env)
    assert conf.signing_keys == ["k1", "k2"]
    assert conf.task_routes == {"shop.*": "shop"}
    assert conf.error_reports is None


def test_bad_json_names_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="CLOUDQ_SIGNING_KEYS must hold JSON"):
        make_settings({}, {"CLOUDQ_SIGNING_KEYS": "k1,k2"})


def test_a_bad_value_names_the_variable_it_came_from() -> None:
    with pytest.raises(ConfigurationError, match=r"worker_concurrency \(from CLOUDQ_WORKER_"):
        make_settings({}, {"CLOUDQ_WORKER_CONCURRENCY": "many"})


def test_adapter_variables_are_not_settings() -> None:
    env = {"CLOUDQ_PUBSUB_PREFIX": "x-", "CLOUDQ_SERVICEBUS_CONNECTION": "Endpoint=sb://h/"}
    assert make_settings({}, env) == make_settings({}, {})


def test_a_misspelt_argument_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="task_time_limt"):
        make_settings({"task_time_limt": 3}, {})
