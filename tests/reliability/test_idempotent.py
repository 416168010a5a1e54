"""``idempotent=True`` under the SIGKILL scenario of ``test_crash.py``: no re-run after success.

The same fault as ``test_sigkill_mid_task_repeatedly_loses_nothing`` (3 workers ``-c 4``, lease
2 s, a worker running a task is SIGKILLed 5 times and replaced), with the idempotent
``ledger.work_once`` and a Redis result backend. Without the option, every kill that lands
between a task's end and its acknowledgement runs that task again (``test_crash.py`` shows
them as duplicates). With it:

- **no execution starts on an id whose success is stored** (the ledger's ``rerun`` events: the
  task looks for its own SUCCESS record first thing);
- **no two executions of an id overlap** (the claim): an execution starts only after the one
  before it finished, or ran in a worker that was killed;
- **duplicates**, ids done more than once, come only from the gap: a kill after the body
  returned and before its result was stored. Those are counted apart (``gap``); each one's
  first completion ran in a killed worker. They are rare (the gap is one Redis write long) and
  usually 0; the test asserts none outside the gap;
- nothing is lost, nothing is dead-lettered.
"""

from __future__ import annotations

import random
import time

import pytest

from tests.reliability.harness import Ledger

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

LEASE = 2
QUEUE = "idem"
N = 300
KILLS = 5
SECONDS = 0.1


def test_sigkill_with_idempotent_task_runs_nothing_again_after_success(
    sqs_ledger: Ledger,
) -> None:
    ledger = sqs_ledger
    settings = {
        "queue_lease_seconds": LEASE,
        "result_backend": f"{ledger.redis_url}?prefix={ledger.run}:res",
    }
    producer = ledger.producer(**settings)
    producer.ensure_queue(QUEUE)
    workers = [ledger.worker(QUEUE, 4, **settings) for _ in range(3)]
    for w in workers:
        w.wait_ready()
    started = time.monotonic()
    ids = ledger.send(producer, "ledger.work_once", N, QUEUE, SECONDS)
    rng = random.Random(N)
    victims: list[int] = []
    while len(victims) < KILLS:
        victims.append(ledger.kill_one_running(workers, rng))
        workers[:] = [w for w in workers if w.pid != victims[-1]]
        workers.append(ledger.worker(QUEUE, 4, **settings))
        time.sleep(0.5)
    acc = ledger.wait_settled(ids, producer, QUEUE, 90)
    elapsed = time.monotonic() - started

    events = ledger.events()
    reruns = sorted({task_id for event, task_id, _, _, _ in events if event == "rerun"})
    killed = set(victims)
    # Per id, its executions in ledger order: overlaps, and where each completion ran.
    open_runs: dict[str, list[int]] = {}
    overlaps: list[str] = []
    completions: dict[str, list[int]] = {}
    for event, task_id, _, _, pid in events:
        if event == "start":
            alive_before = [p for p in open_runs.get(task_id, []) if p not in killed]
            if alive_before:
                overlaps.append(task_id)
            open_runs.setdefault(task_id, []).append(pid)
        elif event == "done":
            open_runs[task_id].remove(pid)
            completions.setdefault(task_id, []).append(pid)
    gap = [i for i in acc.duplicates if completions[i][0] in killed]
    skipped = sum(len(w.find(r"skipped duplicate delivery of")) for w in ledger.workers)
    deferred = sum(len(w.find(r"is running elsewhere")) for w in ledger.workers)
    print(
        f"\nidempotent SIGKILL x{KILLS}, N={N}: {acc.row()} in {elapsed:.1f}s; re-runs after "
        f"success {len(reruns)}, overlaps {len(overlaps)}, duplicates in the crash gap "
        f"{len(gap)}; duplicate deliveries skipped {skipped}, deferred {deferred}"
    )

    assert acc.lost == [], f"LOST {len(acc.lost)}: {acc.lost[:20]}"
    assert acc.dead == {}, f"{acc.dead}\n{ledger.tracebacks}"
    assert reruns == [], f"ran again after its success was stored: {reruns[:20]}"
    assert overlaps == [], f"two executions at once: {overlaps[:20]}"
    assert sorted(acc.duplicates) == sorted(gap), "a duplicate not explained by the crash gap"
    assert acc.done_once + len(acc.duplicates) == N
    starts, dones = ledger.counts("start"), ledger.counts("done")
    assert any(starts.get(i, 0) > dones.get(i, 0) for i in ids), "no task was interrupted"
    for w in workers:
        assert w.alive(), w.log()
