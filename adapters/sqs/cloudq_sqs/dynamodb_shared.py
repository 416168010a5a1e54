"""What workers, handlers and beats share through DynamoDB besides results: chord counters,
rate-limit slots, and beat claims. Items live in the results table under reserved key prefixes
(``cloudq:chord:``, ``cloudq:rate:``, ``cloudq:beat:``, ``cloudq:marker:``), with the table's TTL
for cleanup.

Every operation is a conditional write, so it stays correct with any number of writers: a chord
fires once (a ``fired`` flag set only where it is false), a beat tick is claimed once
(``attribute_not_exists``), and a rate slot is taken by compare-and-set on the previous slot.
DynamoDB has no server clock to read, so rate slots are timed by the callers' clocks: keep them
in sync (NTP, as on AWS), or the spacing is off by their skew.

The control plane (``cloudq status``, ``inspect``, ``control``) keeps each worker's heartbeat in an
item of its own (``cloudq:ctl:worker:<id>``). A command is appended to that item, and the worker's
next heartbeat, a PutItem returning the old item, writes the new record and takes the commands in
one atomic call. An index item (``cloudq:ctl:workers``: worker id -> expiry) is refreshed once a
minute per worker, so listing workers is a GetItem and a BatchGetItem, never a Scan of the results.
Revoked ids (``cloudq revoke``) live in one item, ``cloudq:revoked``: a map of task id -> expiry
(epoch seconds), so a worker's refresh is one GetItem. An item holds 400 KB: about 7,000 ids
revoked within one ``result_expires``; past that a revoke fails with DynamoDB's error.
There is no event stream here: DynamoDB has nothing cheap to tail (use Redis for ``cloudq events``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from cloudq.clock import Clock
from cloudq.errors import BrokerError
from cloudq_sqs.aws_errors import error_code

KEY = "task_id"
"""The table's partition key: a task id, or ``cloudq:<kind>:<key>`` for shared records."""
TTL_ATTRIBUTE = "expires_at"
"""The attribute DynamoDB's TTL deletes by (epoch seconds); the backend enables TTL on it."""
RESERVE_TRIES = 20
"""Compare-and-set rounds before taking a rate slot gives up (each lost round: another won)."""


CONTROL_INDEX = "cloudq:ctl:workers"
REVOKED = "cloudq:revoked"
REVOKE_AT_ONCE = 100
"""Ids one update sets: an update expression holds 4 KB."""
PRUNE_AT_ONCE = 50
"""Expired revoked ids a listing removes in one conditional update (the rest go next time)."""
INDEX_REFRESH_SECONDS = 60.0
"""How often a live worker re-lists itself in the index (one small write a minute)."""
BATCH_GET_KEYS = 100


def _condition_failed(exc: BaseException) -> bool:
    return error_code(exc) == "ConditionalCheckFailedException"


def _worker_key(worker_id: str) -> dict[str, Any]:
    return {KEY: {"S": f"cloudq:ctl:worker:{worker_id}"}}


class DynamoDBShared:
    """Base of ``DynamoDBBackend``: ``ChordStore``, ``RateLimiter`` and ``BeatStore``."""

    table: str
    _client: Any
    _clock: Clock
    _errors: tuple[type[Exception], ...]

    def _mapped(self, operation: str, task_id: str | None = None) -> AbstractContextManager[None]:
        raise NotImplementedError

    def _call(self, operation: str, what: str, **params: Any) -> Any:
        with self._mapped(operation, what):
            return getattr(self._client, operation)(TableName=self.table, **params)

    def _conditional(self, operation: str, what: str, **params: Any) -> Any:
        """One conditional write; None when its condition did not hold."""
        with self._mapped(operation, what):
            try:
                return getattr(self._client, operation)(TableName=self.table, **params)
            except self._errors as exc:
                if _condition_failed(exc):
                    return None
                raise

    def _ttl(self, seconds: float) -> dict[str, Any]:
        return {TTL_ATTRIBUTE: {"N": str(math.ceil(self._clock.now().timestamp() + seconds))}}

    # --- chords ---------------------------------------------------------------------------------
    def chord_start(
        self, chord_id: str, size: int, body: dict[str, Any], expires_seconds: float | None
    ) -> None:
        item = {
            KEY: {"S": f"cloudq:chord:{chord_id}"},
            "size": {"N": str(size)},
            "body": {"S": json.dumps(body)},
            "results": {"M": {}},
            "fired": {"BOOL": False},
            **(self._ttl(expires_seconds) if expires_seconds is not None else {}),
        }
        self._conditional(
            "put_item",
            chord_id,
            Item=item,
            ConditionExpression="attribute_not_exists(#k)",
            ExpressionAttributeNames={"#k": KEY},
        )

    def chord_part_done(
        self, chord_id: str, index: int, result: Any
    ) -> tuple[dict[str, Any], list[Any]] | None:
        key = {KEY: {"S": f"cloudq:chord:{chord_id}"}}
        updated = self._conditional(
            "update_item",
            chord_id,
            Key=key,
            UpdateExpression="SET #r.#i = :v",
            ConditionExpression="attribute_exists(#k)",
            ExpressionAttributeNames={"#r": "results", "#i": str(index), "#k": KEY},
            ExpressionAttributeValues={":v": {"S": json.dumps(result)}},
            ReturnValues="ALL_NEW",
        )
        if updated is None:
            return None
        item = updated["Attributes"]
        results = item["results"]["M"]
        if len(results) < int(item["size"]["N"]) or item["fired"]["BOOL"]:
            return None
        won = self._conditional(
            "update_item",
            chord_id,
            Key=key,
            UpdateExpression="SET fired = :t",
            ConditionExpression="fired = :f",
            ExpressionAttributeValues={":t": {"BOOL": True}, ":f": {"BOOL": False}},
        )
        if won is None:
            return None
        ordered = [json.loads(results[str(i)]["S"]) for i in range(len(results))]
        return json.loads(item["body"]["S"]), ordered

    def chord_fail(self, chord_id: str) -> dict[str, Any] | None:
        won = self._conditional(
            "update_item",
            chord_id,
            Key={KEY: {"S": f"cloudq:chord:{chord_id}"}},
            UpdateExpression="SET fired = :t",
            ConditionExpression="attribute_exists(#k) AND fired = :f",
            ExpressionAttributeNames={"#k": KEY},
            ExpressionAttributeValues={":t": {"BOOL": True}, ":f": {"BOOL": False}},
            ReturnValues="ALL_NEW",
        )
        return None if won is None else dict(json.loads(won["Attributes"]["body"]["S"]))

    # --- rate limits --------------------------------------------------------------------------
    def reserve(self, key: str, interval: float) -> float:
        item_key = {KEY: {"S": f"cloudq:rate:{key}"}}
        for _ in range(RESERVE_TRIES):
            got = self._call("get_item", key, Key=item_key, ConsistentRead=True).get("Item")
            now = self._clock.now().timestamp()
            previous = got["slot"]["N"] if got else None
            slot = max(float(previous), now) if previous is not None else now
            if previous is None:
                condition: dict[str, Any] = {
                    "ConditionExpression": "attribute_not_exists(#k)",
                    "ExpressionAttributeNames": {"#k": KEY},
                }
            else:
                condition = {
                    "ConditionExpression": "slot = :old",
                    "ExpressionAttributeValues": {":old": {"N": previous}},
                }
            item = {**item_key, "slot": {"N": repr(slot + interval)}, **self._ttl(interval + 3600)}
            if self._conditional("put_item", key, Item=item, **condition) is not None:
                return slot - now
        raise TimeoutError(f"rate slot for {key!r}: {RESERVE_TRIES} writers raced past this one")

    # --- beat ---------------------------------------------------------------------------------
    def claim(self, key: str, ttl_seconds: float) -> bool:
        now = self._clock.now().timestamp()
        item = {KEY: {"S": f"cloudq:beat:{key}"}, **self._ttl(ttl_seconds)}
        return (
            self._conditional(
                "put_item",
                key,
                Item=item,
                ConditionExpression="attribute_not_exists(#k) OR #e < :now",
                ExpressionAttributeNames={"#k": KEY, "#e": TTL_ATTRIBUTE},
                ExpressionAttributeValues={":now": {"N": str(math.floor(now))}},
            )
            is not None
        )

    def unclaim(self, key: str) -> None:
        self._call("delete_item", key, Key={KEY: {"S": f"cloudq:beat:{key}"}})

    def get_marker(self, key: str) -> str | None:
        item = self._call(
            "get_item", key, Key={KEY: {"S": f"cloudq:marker:{key}"}}, ConsistentRead=True
        ).get("Item")
        return None if item is None else str(item["value"]["S"])

    def set_marker(self, key: str, value: str) -> None:
        self._call(
            "put_item", key, Item={KEY: {"S": f"cloudq:marker:{key}"}, "value": {"S": value}}
        )

    # --- control plane --------------------------------------------------------------------------
    def control_heartbeat(self, worker_id: str, record: str, ttl_seconds: float) -> list[str]:
        now = self._clock.now().timestamp()
        item = {
            **_worker_key(worker_id),
            "record": {"S": record},
            "until": {"N": f"{now + ttl_seconds:.6f}"},
            **self._ttl(ttl_seconds),
        }
        old = self._call("put_item", worker_id, Item=item, ReturnValues="ALL_OLD")
        self._list_worker(worker_id, now, ttl_seconds)
        commands = (old.get("Attributes") or {}).get("cmds", {}).get("L", [])
        return [str(c["S"]) for c in commands]

    def _list_worker(self, worker_id: str, now: float, ttl_seconds: float) -> None:
        """Keep ``worker_id`` in the index, re-listing it once a minute (not every beat)."""
        due: dict[str, float] = self.__dict__.setdefault("_ctl_listed", {})
        if due.get(worker_id, 0.0) > now:
            return
        expiry = {"N": f"{now + ttl_seconds + 3 * INDEX_REFRESH_SECONDS:.6f}"}
        update = {
            "Key": {KEY: {"S": CONTROL_INDEX}},
            "UpdateExpression": "SET #ids.#w = :e",
            "ExpressionAttributeNames": {"#ids": "ids", "#w": worker_id},
            "ExpressionAttributeValues": {":e": expiry},
        }
        for _ in range(2):
            with self._mapped("update_item", CONTROL_INDEX):
                try:
                    self._client.update_item(TableName=self.table, **update)
                    break
                except self._errors as exc:
                    if error_code(exc) != "ValidationException":  # no index item (no "ids") yet
                        raise
            created = self._conditional(
                "put_item",
                CONTROL_INDEX,
                Item={KEY: {"S": CONTROL_INDEX}, "ids": {"M": {worker_id: expiry}}},
                ConditionExpression="attribute_not_exists(#k)",
                ExpressionAttributeNames={"#k": KEY},
            )
            if created is not None:
                break
        due[worker_id] = now + INDEX_REFRESH_SECONDS

    def control_workers(self) -> dict[str, str]:
        index = self._call(
            "get_item", CONTROL_INDEX, Key={KEY: {"S": CONTROL_INDEX}}, ConsistentRead=True
        ).get("Item")
        listed = {w: float(e["N"]) for w, e in (index or {}).get("ids", {}).get("M", {}).items()}
        now = self._clock.now().timestamp()
        for worker_id, expiry in listed.items():
            if expiry <= now:
                self._unlist(worker_id, expiry)
        live = [w for w, expiry in listed.items() if expiry > now]
        found: dict[str, str] = {}
        for start in range(0, len(live), BATCH_GET_KEYS):
            for item in self._batch_get(
                [_worker_key(w) for w in live[start : start + BATCH_GET_KEYS]]
            ):
                if float(item["until"]["N"]) > now:
                    worker_id = str(item[KEY]["S"]).removeprefix("cloudq:ctl:worker:")
                    found[worker_id] = str(item["record"]["S"])
        return found

    def _batch_get(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        request: dict[str, Any] = {self.table: {"Keys": keys, "ConsistentRead": True}}
        for _ in range(10):
            with self._mapped("batch_get_item", CONTROL_INDEX):
                response = self._client.batch_get_item(RequestItems=request)
            items.extend(response.get("Responses", {}).get(self.table, []))
            request = response.get("UnprocessedKeys") or {}
            if not request:
                return items
        raise BrokerError(f"DynamoDB BatchGetItem on {self.table!r}: keys left unprocessed")

    def _unlist(self, worker_id: str, expiry: float | None = None) -> None:
        """Drop ``worker_id`` from the index (only the entry seen, if ``expiry`` is given)."""
        params: dict[str, Any] = {
            "Key": {KEY: {"S": CONTROL_INDEX}},
            "UpdateExpression": "REMOVE #ids.#w",
            "ExpressionAttributeNames": {"#ids": "ids", "#w": worker_id},
        }
        if expiry is not None:  # a worker that re-listed itself meanwhile stays
            params["ConditionExpression"] = "#ids.#w = :e"
            params["ExpressionAttributeValues"] = {":e": {"N": f"{expiry:.6f}"}}
        with self._mapped("update_item", CONTROL_INDEX):
            try:
                self._client.update_item(TableName=self.table, **params)
            except self._errors as exc:
                if error_code(exc) not in (
                    "ConditionalCheckFailedException",
                    "ValidationException",
                ):
                    raise

    def control_forget(self, worker_id: str) -> None:
        self._call("delete_item", worker_id, Key=_worker_key(worker_id))
        self._unlist(worker_id)
        self.__dict__.get("_ctl_listed", {}).pop(worker_id, None)

    def control_send(self, worker_id: str, command: str, ttl_seconds: float) -> None:
        """Append to the worker's item; a worker that is gone (no item) gets nothing."""
        self._conditional(
            "update_item",
            worker_id,
            Key=_worker_key(worker_id),
            UpdateExpression="SET cmds = list_append(if_not_exists(cmds, :none), :c)",
            ConditionExpression="attribute_exists(#k)",
            ExpressionAttributeNames={"#k": KEY},
            ExpressionAttributeValues={":none": {"L": []}, ":c": {"L": [{"S": command}]}},
        )

    # --- revoked ids ----------------------------------------------------------------------------
    def revoke_add(self, task_ids: Sequence[str], ttl_seconds: float) -> None:
        expiry = {"N": f"{self._clock.now().timestamp() + ttl_seconds:.6f}"}
        for start in range(0, len(task_ids), REVOKE_AT_ONCE):
            self._revoke_some(task_ids[start : start + REVOKE_AT_ONCE], expiry)

    def _revoke_some(self, task_ids: Sequence[str], expiry: dict[str, str]) -> None:
        names = {f"#i{n}": task_id for n, task_id in enumerate(task_ids)}
        update = {
            "Key": {KEY: {"S": REVOKED}},
            "UpdateExpression": "SET " + ", ".join(f"#ids.{n} = :e" for n in names),
            "ExpressionAttributeNames": {"#ids": "ids", **names},
            "ExpressionAttributeValues": {":e": expiry},
        }
        for _ in range(2):
            with self._mapped("update_item", REVOKED):
                try:
                    self._client.update_item(TableName=self.table, **update)
                    return
                except self._errors as exc:
                    if error_code(exc) != "ValidationException":  # no item (no "ids" map) yet
                        raise
            created = self._conditional(
                "put_item",
                REVOKED,
                Item={KEY: {"S": REVOKED}, "ids": {"M": dict.fromkeys(task_ids, expiry)}},
                ConditionExpression="attribute_not_exists(#k)",
                ExpressionAttributeNames={"#k": KEY},
            )
            if created is not None:
                return
        raise BrokerError(f"DynamoDB revoke on {self.table!r}: the {REVOKED} item kept changing")

    def revoke_list(self) -> list[str]:
        item = self._call("get_item", REVOKED, Key={KEY: {"S": REVOKED}}, ConsistentRead=True).get(
            "Item"
        )
        listed = {t: float(e["N"]) for t, e in (item or {}).get("ids", {}).get("M", {}).items()}
        now = self._clock.now().timestamp()
        expired = [(t, e) for t, e in listed.items() if e <= now][:PRUNE_AT_ONCE]
        if expired:
            self._prune_revoked(expired)
        return [t for t, e in listed.items() if e > now]

    def _prune_revoked(self, expired: list[tuple[str, float]]) -> None:
        """Remove expired ids, unless one was revoked again meanwhile (its expiry moved)."""
        names = {f"#i{n}": task_id for n, (task_id, _) in enumerate(expired)}
        values = {f":e{n}": {"N": f"{e:.6f}"} for n, (_, e) in enumerate(expired)}
        self._conditional(
            "update_item",
            REVOKED,
            Key={KEY: {"S": REVOKED}},
            UpdateExpression="REMOVE " + ", ".join(f"#ids.{n}" for n in names),
            ConditionExpression=" AND ".join(f"#ids.#i{n} = :e{n}" for n in range(len(expired))),
            ExpressionAttributeNames={"#ids": "ids", **names},
            ExpressionAttributeValues=values,
        )
