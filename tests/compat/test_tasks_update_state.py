"""Issue 24: ``self.update_state(state="PROGRESS", meta={...})`` as Celery's."""

from __future__ import annotations

import pytest

from cloudq import App, ConfigurationError
from cloudq.testing import process_one


def test_progress_is_readable_while_the_task_runs(cloudq_app: App) -> None:
    seen: list[tuple[object, object]] = []

    @cloudq_app.task(bind=True)
    def upload(self, n: int) -> int:  # type: ignore[no-untyped-def]
        for i in range(n):
            self.update_state(state="PROGRESS", meta={"current": i + 1, "total": n})
            mine = cloudq_app.AsyncResult(self.request.id)
            seen.append((mine.state, mine.result))
        return n

    result = upload.delay(2)
    process_one(cloudq_app)
    assert seen == [
        ("PROGRESS", {"current": 1, "total": 2}),
        ("PROGRESS", {"current": 2, "total": 2}),
    ]
    assert (result.state, result.get(timeout=1)) == ("SUCCESS", 2)


def test_update_state_of_another_task_id(cloudq_app: App) -> None:
    @cloudq_app.task(bind=True)
    def mark(self, other: str) -> None:  # type: ignore[no-untyped-def]
        self.update_state(task_id=other, state="CHECKED", meta={"by": self.request.id})

    result = mark.delay("other-id")
    process_one(cloudq_app)
    other = cloudq_app.AsyncResult("other-id")
    assert (other.state, other.result) == ("CHECKED", {"by": result.id})


def test_update_state_without_a_backend_says_so() -> None:
    app = App("nob", broker="memory://nob-update-state")

    @app.task(bind=True)
    def work(self) -> None:  # type: ignore[no-untyped-def]
        self.update_state(state="PROGRESS", meta={"done": 1})

    with pytest.raises(ConfigurationError, match="result backend"):
        work.update_state(task_id="x", state="PROGRESS")
    app.close()
