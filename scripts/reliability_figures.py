#!/usr/bin/env python3
"""Render the reliability ledger's rows into docs/reliability.md (its marked figures section).

    CLOUDQ_LEDGER_ROWS=docs/reliability-rows.jsonl uv run --frozen pytest -q tests/reliability -s
    uv run python scripts/reliability_figures.py docs/reliability-rows.jsonl

Each passing ledger test appends its row to the file; the newest row of each test and broker is
shown, with the time and load average of its run. ``--check`` exits 1 if the doc is not what
the rows render to (nothing is written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.reliability.figures import DOC, load_rows, render, rewrite


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="+", type=Path, help="JSON-lines files, oldest first")
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument("--check", action="store_true", help="only check the doc is current")
    args = parser.parse_args(argv)
    old = args.doc.read_text(encoding="utf-8")
    new = rewrite(old, render(load_rows(args.rows)))
    if args.check:
        if new != old:
            print(f"{args.doc} is not what {' '.join(map(str, args.rows))} renders to")
            return 1
        return 0
    if new != old:
        args.doc.write_text(new, encoding="utf-8")
        print(f"wrote the ledger figures into {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
