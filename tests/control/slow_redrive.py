"""``cloudq`` with a slow, talkative redrive send, so a test can SIGKILL it at a known point.

Each batch prints ``sending N``, waits, sends, prints ``sent N`` and waits again before the
redrive goes on to delete the batch from the dead-letter queue. Arguments are the CLI's.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from cloudq.control import redrive

_real = redrive._send_batch
_batches = 0


def _slow_send(app: Any, envelopes: Sequence[Any]) -> None:
    global _batches
    _batches += 1
    print(f"sending {_batches}", flush=True)
    time.sleep(0.3)
    _real(app, envelopes)
    print(f"sent {_batches}", flush=True)
    time.sleep(1.0)


redrive._send_batch = _slow_send

if __name__ == "__main__":
    from cloudq.cli import run

    sys.argv = ["cloudq", *sys.argv[1:]]
    run()
