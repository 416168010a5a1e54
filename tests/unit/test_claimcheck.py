"""The part every object-store claim-check store shares: its URLs and what it refuses."""

from __future__ import annotations

import pytest

from cloudq.claimcheck import ObjectStoreClaimChecks
from cloudq.errors import ClaimCheckMissing, CloudqError


class DictStore(ObjectStoreClaimChecks):
    """The three object calls over a dict, as a cloud's SDK would make them."""

    scheme = "dict"
    bucket_word = "shelf"

    def __init__(self, bucket: str, prefix: str) -> None:
        super().__init__(bucket, prefix)
        self.objects: dict[str, bytes] = {}

    def _upload(self, name: str, body: bytes, url: str) -> None:
        self.objects[name] = body

    def _download(self, name: str, url: str) -> bytes | None:
        return self.objects.get(name)

    def _delete(self, name: str, url: str) -> None:
        self.objects.pop(name, None)


def test_put_get_delete_round_trip_under_the_prefix() -> None:
    store = DictStore("b", "/parked/")
    assert (store.base_url, repr(store)) == ("dict://b/parked", "DictStore('dict://b/parked')")
    url = store.put("task-1", b"body")
    assert url == "dict://b/parked/task-1" and store.objects == {"parked/task-1": b"body"}
    assert store.get(url) == b"body"
    store.delete(url)
    store.delete(url)  # idempotent
    with pytest.raises(ClaimCheckMissing, match=r"dict://b/parked/task-1 is gone .* shelf's"):
        store.get(url)


def test_a_store_without_prefix_uses_the_bucket_root() -> None:
    store = DictStore("b", "")
    assert store.put("k", b"x") == "dict://b/k" and store.base_url == "dict://b"


@pytest.mark.parametrize(
    "forged",
    [
        "dict://b/other/k",  # outside the prefix
        "dict://b/parked",  # the prefix itself, no object
        "dict://b/parkedX/k",  # a sibling that only starts like the prefix
        "dict://c/parked/k",  # another bucket
        "s3://b/parked/k",  # another scheme
        "dict://b/",
        "",
    ],
)
def test_urls_outside_the_store_are_refused_before_any_call(forged: str) -> None:
    store = DictStore("b", "parked")
    store.objects["other/k"] = b"not ours"
    for operation in (store.get, store.delete):
        with pytest.raises(CloudqError, match=r"not under this store .* refused"):
            operation(forged)
    assert store.objects == {"other/k": b"not ours"}
