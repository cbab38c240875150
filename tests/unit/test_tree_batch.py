"""tree.batch: what may share an envelope, in what order, and what the door refuses."""

from __future__ import annotations

import asyncio

import pytest

from borgusb.cells.kit.guard import TokenBuckets
from borgusb.cells.kit.treebatch import BATCH_MAX, BadBatch, batch_items, take_batch


def hb(i: int) -> dict:
    return {"t": "tree.hb", "tree": "t", "pos": i}


def queue_of(*msgs: dict) -> asyncio.Queue:
    q: asyncio.Queue = asyncio.Queue()
    for m in msgs:
        q.put_nowait(m)
    return q


def test_what_waits_goes_in_order_up_to_the_limit() -> None:
    q = queue_of(*(hb(i) for i in range(1, BATCH_MAX + 5)))
    batch, carry = take_batch(hb(0), q)
    assert [m["pos"] for m in batch] == list(range(BATCH_MAX)) and carry is None
    assert q.qsize() == 5  # 36 waited, 31 went with the first


def test_a_join_ends_the_batch_and_goes_next_alone() -> None:
    join = {"t": "tree.join", "joiner": {}, "hops": 0}
    q = queue_of(hb(1), join, hb(2))
    batch, carry = take_batch(hb(0), q)
    assert [m["pos"] for m in batch] == [0, 1] and carry is join
    assert take_batch(join, q) == ([join], None) and q.qsize() == 1


@pytest.mark.parametrize(
    "payload",
    [
        {"t": "tree.batch"},
        {"t": "tree.batch", "msgs": []},
        {"t": "tree.batch", "msgs": [hb(0)] * (BATCH_MAX + 1)},
        {"t": "tree.batch", "msgs": [hb(0), "x"]},
        {"t": "tree.batch", "msgs": [{"t": "ledger.pay"}]},
        {"t": "tree.batch", "msgs": [{"t": "tree.join", "joiner": {}, "hops": 1}]},
        {"t": "tree.batch", "msgs": [{"t": "tree.batch", "msgs": [hb(0)]}]},
    ],
    ids=["no_msgs", "empty", "too_many", "not_a_dict", "not_tree", "join", "nested"],
)
def test_a_batch_that_breaks_the_rules_is_refused(payload: dict) -> None:
    with pytest.raises(BadBatch):
        batch_items(payload)


def test_a_batch_costs_the_key_one_token_per_message() -> None:
    buckets = TokenBuckets(rate=1.0, burst=10, max_keys=8)
    assert buckets.allow("k", 0.0, cost=8)
    assert not buckets.allow("k", 0.0, cost=3)  # 2 left: refused whole, nothing taken
    assert buckets.allow("k", 0.0, cost=2)
