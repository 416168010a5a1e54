"""The shared-store contract: one Protocol per file, each what one feature needs of the store.

The result backend is the shared store (``redis://``, ``dynamodb://``, ``firestore://``,
``azuretable://``, ``memory://``): a backend offers a feature by having that Protocol's
methods (each is ``runtime_checkable``), and the contract suites
(``tests/contract/test_shared_store_contract.py``, ``tests/control/test_store_contract.py``)
check every backend against the ones it has. Each file says what a store lacking it does.

- ``beat``: ``BeatStore``, one send per tick across beat instances;
- ``chords``: ``ChordStore``, the atomic count of a chord's finished header;
- ``claims``: ``ClaimStore``, one running execution per idempotent task id;
- ``control``: ``ControlStore``, heartbeat records and command inboxes;
- ``events``: ``EventStore``, the capped event stream;
- ``rate_slots``: ``RateLimiter``, rate-limit slots shared across workers;
- ``revoked``: ``RevokeStore``, revoked task ids with a time to live.
"""
