"""Issue 24: arguments are checked strictly (no silent str -> int), typed values still arrive
typed from their JSON forms, and keyword arguments stay keyword arguments."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import pytest
from pydantic import BaseModel

from cloudq import App, TaskArgumentError


class Order(BaseModel):
    id: int
    placed: datetime


def test_a_string_is_not_an_int(cloudq_app: App) -> None:
    @cloudq_app.task
    def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(TaskArgumentError, match="'y'"):
        add.delay(2, "2")  # type: ignore[arg-type]
    with pytest.raises(TaskArgumentError):
        add.delay(2, 2.5)  # type: ignore[arg-type]
    with pytest.raises(TaskArgumentError):
        add.delay(2, True)


def test_typed_values_still_travel_as_json_and_arrive_typed(cloudq_app: App) -> None:
    seen: list[object] = []

    @cloudq_app.task
    def place(order: Order, when: datetime, ref: UUID, ratio: float) -> None:
        seen.extend([order, when, ref, ratio])

    ref = "12345678-1234-5678-1234-567812345678"
    place.apply(
        args=({"id": 1, "placed": "2030-01-01T00:00:00Z"}, "2030-01-02T00:00:00Z", ref, 1)
    ).get()
    assert seen == [
        Order(id=1, placed=datetime(2030, 1, 1, tzinfo=UTC)),
        datetime(2030, 1, 2, tzinfo=UTC),
        UUID(ref),
        1.0,
    ]
    with pytest.raises(TaskArgumentError, match="'order'"):
        place.delay({"id": "1", "placed": "2030-01-01T00:00:00Z"}, "2030-01-02T00:00:00Z", ref, 1)


def test_keyword_arguments_keep_their_shape(cloudq_app: App) -> None:
    @cloudq_app.task
    def add(x: int, y: int) -> int:
        return x + y

    env = add.envelope((1,), {"y": 2})
    assert (env.args, env.kwargs) == ([1], {"y": 2})
