"""What workers, handlers and beats share through DynamoDB besides results: chord counters,
rate-limit slots, and beat claims. Items live in the results table under reserved key prefixes
(``cloudq:chord:``, ``cloudq:rate:``, ``cloudq:beat:``, ``cloudq:marker:``), with the table's TTL
for cleanup.

Every operation is a conditional write, so it stays correct with any number of writers: a chord
fires once (a ``fired`` flag set only where it is false), a beat tick is claimed once
(``attribute_not_exists``), and a rate slot is taken by compare-and-set on the previous slot.
DynamoDB has no server clock to read, so rate slots are timed by the callers' clocks: keep them
in sync (NTP, as on AWS), or the spacing is off by their skew.
"""

from __future__ import annotations

import json
import math
from contextlib import AbstractContextManager
from typing import Any

from cloudq.clock import Clock

KEY = "task_id"
TTL_ATTRIBUTE = "expires_at"
RESERVE_TRIES = 20
"""Compare-and-set rounds before taking a rate slot gives up (each lost round: another won)."""


def _condition_failed(exc: BaseException) -> bool:
    response = getattr(exc, "response", None) or {}
    return bool(response.get("Error", {}).get("Code") == "ConditionalCheckFailedException")


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
        self._call("put_item", chord_id, Item=item)

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
