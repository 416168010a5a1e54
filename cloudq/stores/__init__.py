"""The shared-store contract: one Protocol per file, each what one feature needs of the store.

The result backend is the shared store (``redis://``, ``dynamodb://``, ``firestore://``,
``azuretable://``, ``memory://``): a backend offers a feature by having that Protocol's
methods (each is ``runtime_checkable``), and the contract suites
(``tests/contract/test_shared_store_contract.py``, ``tests/control/test_store_contract.py``)
check every backend against the ones it has. Each file says what a store lacking it does.
A store with *part* of a contract is a broken one: ``check()`` refuses it when it is opened
(``cloudq.results.open_backend``), naming the methods it lacks, rather than letting the
feature degrade at the first task that needs it; and a worker, handler or beat whose
configured features need a contract the store lacks refuses to start
(``cloudq.stores.requirements``).

- ``beat``: ``BeatStore``, one send per tick across beat instances;
- ``chords``: ``ChordStore``, the atomic count of a chord's finished header;
- ``claims``: ``ClaimStore``, one running execution per idempotent task id;
- ``control``: ``ControlStore``, heartbeat records and command inboxes;
- ``events``: ``EventStore``, the capped event stream;
- ``rate_slots``: ``RateLimiter``, rate-limit slots shared across workers;
- ``revoked``: ``RevokeStore``, revoked task ids with a time to live.
"""

from __future__ import annotations

from cloudq.errors import ConfigurationError
from cloudq.stores.beat import BeatStore
from cloudq.stores.chords import ChordStore
from cloudq.stores.claims import ClaimStore
from cloudq.stores.control import ControlStore
from cloudq.stores.events import EventStore
from cloudq.stores.rate_slots import RateLimiter
from cloudq.stores.revoked import RevokeStore

__all__ = [
    "CONTRACTS",
    "BeatStore",
    "ChordStore",
    "ClaimStore",
    "ControlStore",
    "EventStore",
    "RateLimiter",
    "RevokeStore",
    "check",
]

CONTRACTS: tuple[type, ...] = (
    BeatStore,
    ChordStore,
    ClaimStore,
    ControlStore,
    EventStore,
    RateLimiter,
    RevokeStore,
)


def _methods(contract: type) -> frozenset[str]:
    return frozenset(
        name
        for name, value in vars(contract).items()
        if callable(value) and not name.startswith("_")
    )


def check(store: object, where: str) -> None:
    """``ConfigurationError`` if ``store`` has some of a contract's methods but not all.

    A method that belongs to a contract the store fully has does not count toward another
    (claims are part of beat's contract too: a store of claims alone is whole, not half a beat
    store).
    """
    have = {name for name in dir(store) if callable(getattr(store, name, None))}
    whole = [c for c in CONTRACTS if _methods(c) <= have]
    covered = frozenset().union(*(_methods(c) for c in whole))
    broken = []
    for contract in CONTRACTS:
        methods = _methods(contract)
        present = (methods & have) - covered
        if present and not methods <= have:
            missing = ", ".join(sorted(methods - have))
            broken.append(
                f"{contract.__name__} (has {', '.join(sorted(present))}; lacks {missing})"
            )
    if broken:
        raise ConfigurationError(
            f"{where} ({type(store).__name__}) implements part of the shared-store contract: "
            f"{'; '.join(broken)}. Implement the missing methods or none of them "
            "(cloudq.stores says what each feature needs)"
        )
