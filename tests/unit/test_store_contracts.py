"""A result backend with part of a shared-store contract fails when it is opened, naming what
it lacks, instead of degrading silently at the first task that needs it."""

from __future__ import annotations

from typing import Any

import pytest

from cloudq.clock import SYSTEM_CLOCK, Clock
from cloudq.errors import ConfigurationError
from cloudq.results import open_backend


class Store:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock


class HalfControl(Store):
    """Heartbeats written, but no way to list the workers nor forget one."""

    def control_heartbeat(self, worker_id: str, record: str, ttl_seconds: float) -> list[str]:
        return []

    def control_send(self, worker_id: str, command: str, ttl_seconds: float) -> None: ...


class ClaimsOnly(Store):
    """Claims without beat's markers: a whole ClaimStore, not half a BeatStore."""

    def claim(self, key: str, ttl_seconds: float) -> bool:
        return True

    def unclaim(self, key: str) -> None: ...


def opened(monkeypatch: pytest.MonkeyPatch, kind: type[Any]) -> Any:
    def factory(url: str, clock: Clock) -> Any:
        return kind(clock)

    monkeypatch.setattr("cloudq.results.load_plugin", lambda group, scheme: factory)
    return open_backend("partial://x", SYSTEM_CLOCK)


def test_a_backend_with_half_a_contract_fails_when_opened(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="ControlStore") as raised:
        opened(monkeypatch, HalfControl)
    assert "control_forget" in str(raised.value) and "control_workers" in str(raised.value)


def test_a_whole_contract_sharing_methods_with_another_is_not_half(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert isinstance(opened(monkeypatch, ClaimsOnly), ClaimsOnly)
