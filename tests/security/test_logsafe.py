"""Log lines stay one line whatever a message carries (control characters are escaped)."""

from __future__ import annotations

import logging

import pytest

from cloudq.logsafe import get_logger, printable


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain task.name", "plain task.name"),
        ("a\nFORGED line", "a\\nFORGED line"),
        ("\r\x1b[2J", "\\r\\x1b[2J"),
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
        ("rtl\u202eevil", "rtl\\u202eevil"),
        ("line\u2028sep", "line\\u2028sep"),
        ("caf\u00e9 \u00a0ok", "caf\u00e9 \u00a0ok"),
    ],
)
def test_printable_escapes_controls_only(text: str, shown: str) -> None:
    assert printable(text) == shown


def test_every_cloudq_logger_escapes_its_arguments(caplog: pytest.LogCaptureFixture) -> None:
    import cloudq.execute
    import cloudq.settle
    import cloudq.worker

    for module in (cloudq.execute, cloudq.settle, cloudq.worker):
        assert any(isinstance(f, type(get_logger("x").filters[0])) for f in module.logger.filters)
    with caplog.at_level(logging.INFO, logger="cloudq"):
        cloudq.execute.logger.error(
            "task %s[%s] failed: %s", "t\nINFO fake", "id", ValueError("x\ny")
        )
    (record,) = caplog.records
    assert "\n" not in record.getMessage()
    assert record.getMessage() == "task t\\nINFO fake[id] failed: x\\ny"
