"""The ledger's figures in docs/reliability.md, written by a command instead of copied by hand.

With ``CLOUDQ_LEDGER_ROWS=<file>`` set, each reliability test that passes appends its row (one
JSON object per line) to the file; ``scripts/reliability_figures.py <file>`` renders the newest
row of each test into the section of docs/reliability.md between ``BEGIN`` and ``END``. Each
row keeps the time and load average of its run, so the table says which rows are from which run.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROWS_ENV = "CLOUDQ_LEDGER_ROWS"
"""Names the JSON-lines file the tests append their rows to; unset: no rows written."""
BEGIN = "<!-- ledger figures: written by scripts/reliability_figures.py, do not edit -->"
END = "<!-- end of ledger figures -->"
DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"

BROKERS = {
    "sqs": "SQS (moto)",
    "sqs-localstack": "SQS (LocalStack)",
    "pubsub": "Pub/Sub emulator",
    "servicebus": "Service Bus test endpoint",
}
SETS = {
    "ci": "CI set (`uv run --frozen pytest -q tests/reliability -s -p no:cacheprovider`)",
    "slow": "10,000 tasks (`CLOUDQ_SLOW=1 ... -m slow`)",
}
"""Which run of the suite a row belongs to: one table each, in this order."""


@dataclass(frozen=True)
class Row:
    """One test's ledger row."""

    set: str
    broker: str
    fault: str
    sent: int
    done_once: int
    duplicates: int
    dead: int
    lost: int
    seconds: float
    test: str
    at: str
    load: float

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.set, self.broker, self.test)


def write_row(
    set_: str,
    broker: str,
    fault: str,
    account: Any,
    seconds: float,
    sent: int | None = None,
    dead: int | None = None,
) -> None:
    """Append the running test's row to ``$CLOUDQ_LEDGER_ROWS`` (nothing if it is unset).

    ``account`` is the harness's ``Account``; ``sent`` and ``dead`` override its counts where
    messages outside the ledger's ids reached the broker (bad input that is not an envelope)."""
    path = os.environ.get(ROWS_ENV)
    if not path:
        return
    test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
    row = Row(
        set=set_,
        broker=broker,
        fault=fault,
        sent=account.sent if sent is None else sent,
        done_once=account.done_once,
        duplicates=len(account.duplicates),
        dead=len(account.dead) if dead is None else dead,
        lost=len(account.lost),
        seconds=round(seconds, 1),
        test=re.sub(r"\[.*\]$", "", test),
        at=time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        load=round(os.getloadavg()[0], 1),
    )
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(asdict(row)) + "\n")


def load_rows(paths: Iterable[Path]) -> list[Row]:
    """The rows of the files, later lines replacing earlier ones of the same test and broker."""
    newest: dict[tuple[str, str, str], Row] = {}
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = Row(**json.loads(line))
                newest[row.key] = row
    return list(newest.values())


def render(rows: Iterable[Row]) -> str:
    """The figures section: one table per set, rows by broker in ``BROKERS`` order."""
    order = list(BROKERS)
    out: list[str] = []
    for set_, title in SETS.items():
        mine = sorted((r for r in rows if r.set == set_), key=lambda r: order.index(r.broker))
        if not mine:
            continue
        out += [
            f"{title}:",
            "",
            "| adapter | fault | N sent | done once | duplicates | dead-lettered | lost | time "
            "| run (UTC, load average) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        out += [
            f"| {BROKERS[r.broker]} | {r.fault} | {r.sent:,} | {r.done_once:,} | {r.duplicates}"
            f" | {r.dead} | **{r.lost}** | {r.seconds:.1f} s | {r.at}, {r.load} |"
            for r in mine
        ]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def rewrite(doc: str, section: str) -> str:
    """``doc`` with the text between the markers replaced by ``section``."""
    start, end = doc.find(BEGIN), doc.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{DOC} has no section marked {BEGIN!r} ... {END!r}")
    return f"{doc[: start + len(BEGIN)]}\n{section}{doc[end:]}"
