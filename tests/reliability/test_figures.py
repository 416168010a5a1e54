"""The figures section of docs/reliability.md is written from the ledger tests' rows."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.reliability.figures import (
    BEGIN,
    DOC,
    END,
    ROWS_ENV,
    load_rows,
    render,
    rewrite,
    write_row,
)


def _account(sent: int, once: int, dups: int = 0, dead: int = 0) -> SimpleNamespace:
    return SimpleNamespace(
        sent=sent,
        done_once=once,
        duplicates={f"d{i}": 1 for i in range(dups)},
        dead={f"x{i}": "why" for i in range(dead)},
        lost=[],
    )


def test_rows_are_written_only_when_asked_and_the_newest_of_a_test_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = tmp_path / "rows.jsonl"
    monkeypatch.delenv(ROWS_ENV, raising=False)
    write_row("ci", "sqs", "SIGTERM during load", _account(80, 80), 7.0)
    assert not rows.exists()

    monkeypatch.setenv(ROWS_ENV, str(rows))
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "tests/reliability/test_crash.py::test_k[sqs] (call)")
    write_row("ci", "sqs", "SIGKILL mid-task x5, 3 workers", _account(2000, 1990, dups=10), 24.0)
    write_row("ci", "sqs", "SIGKILL mid-task x5, 3 workers", _account(2000, 1996, dups=4), 25.0)
    write_row("ci", "pubsub", "SIGKILL", _account(2000, 2000), 15.0)
    assert len(rows.read_text().splitlines()) == 3
    assert json.loads(rows.read_text().splitlines()[0])["test"].endswith("::test_k")

    got = sorted(load_rows([rows]), key=lambda r: r.broker)
    assert [(r.broker, r.done_once) for r in got] == [("pubsub", 2000), ("sqs", 1996)]
    table = render(got)
    assert table.index("SQS (moto)") < table.index("Pub/Sub emulator")
    assert (
        "| SQS (moto) | SIGKILL mid-task x5, 3 workers | 2,000 | 1,996 | 4 | 0 | **0** |" in table
    )


def test_the_section_between_the_markers_is_replaced_and_nothing_else() -> None:
    doc = f"# T\n\nbefore\n{BEGIN}\nold table\n{END}\nafter\n"
    new = rewrite(doc, "new table\n")
    assert new == f"# T\n\nbefore\n{BEGIN}\nnew table\n{END}\nafter\n"
    assert rewrite(new, "new table\n") == new
    with pytest.raises(SystemExit, match="no section marked"):
        rewrite("no markers", "x")


def test_the_doc_has_the_section() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1 and text.count(END) == 1


def test_every_broker_the_ledger_runs_on_has_a_row_label(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The LocalStack ledger's rows render too, under their own label, after moto's."""
    from tests.reliability.conftest import BROKERS

    rows = tmp_path / "rows.jsonl"
    monkeypatch.setenv(ROWS_ENV, str(rows))
    for i, broker in enumerate(reversed(BROKERS)):
        monkeypatch.setenv("PYTEST_CURRENT_TEST", f"t.py::test_{i}[{broker}] (call)")
        write_row("ci", broker, "SIGKILL", _account(1000, 1000), 10.0)
    table = render(load_rows([rows]))
    assert table.index("SQS (moto)") < table.index("SQS (LocalStack)")
