"""The root's admission of new members per address (`tree/admission.py`, issue 20's join storm)."""

from __future__ import annotations

import random

from borgusb.tree.admission import JoinAdmission
from borgusb.tree.messages import Member, Send
from borgusb.tree.model import TreeConfig, TreeNode


def test_an_address_gets_its_burst_then_one_per_period() -> None:
    a = JoinAdmission(burst=3, every_ms=1000)
    assert [a.allow("10.0.0.1", 0) for _ in range(4)] == [True, True, True, False]
    assert a.allow("10.0.0.2", 0)  # another address has its own
    assert not a.allow("10.0.0.1", 999) and a.allow("10.0.0.1", 1000) and not a.allow("10.0.0.1", 1500)
    assert sum(a.allow("10.0.0.1", t) for t in range(2000, 62_000, 10)) == 60  # one a second, sustained
    assert [a.allow("10.0.0.3", 10**6) for _ in range(4)] == [True, True, True, False]  # full again


def test_the_table_is_bounded() -> None:
    a = JoinAdmission(burst=1, every_ms=1000, max_addresses=50)
    for i in range(1000):
        a.allow(f"10.0.{i >> 8}.{i & 255}", 0)
    assert len(a) == 50


def joins(root: TreeNode, now_ms: int, joiners: list[Member]) -> None:
    for j in joiners:
        root.on_message(now_ms, j, {"t": "tree.join", "joiner": j.to_dict(), "hops": 0})


def assigned(actions: list) -> list[str]:
    return [a.to.node_id for a in actions if isinstance(a, Send) and a.msg["t"] == "tree.assign"]


def test_a_root_admits_a_storm_from_one_address_at_its_rate_and_counts_the_rest() -> None:
    cfg = TreeConfig(k=4, join_burst=5, join_every_ms=1000)
    root = TreeNode(Member("root", "10.0.0.1", 1), cfg, random.Random(0))
    root.start(0, [])
    storm = [Member(f"sybil{i:04d}", "10.6.6.6", 2) for i in range(1000)]
    honest = [Member(f"honest{i}", f"10.0.1.{i}", 2) for i in range(10)]
    joins(root, 0, storm[:500] + honest)
    placed = assigned(root.on_tick(cfg.join_batch_ms))
    assert len([p for p in placed if p.startswith("sybil")]) == 5  # the burst
    assert {p for p in placed if p.startswith("honest")} == {m.node_id for m in honest}  # others unaffected
    assert root.counters["refused:join_rate"] == 495
    joins(root, 3_000, storm[500:])  # three seconds on: three more
    assert len(assigned(root.on_tick(3_000 + cfg.join_batch_ms))) == 3
    assert root.counters["refused:join_rate"] == 495 + 497
    assert root.size == 1 + 10 + 8 and len(set(root.where.values())) == len(root.where) == root.size  # once each
    joins(root, 3_500, storm[:5])  # members already placed ask again (a resync): not refused
    assert sorted(assigned(root.on_tick(3_500 + cfg.join_batch_ms))) == sorted(m.node_id for m in storm[:5])
    assert root.counters["refused:join_rate"] == 495 + 497 and root.size == 19


def test_an_address_holds_at_most_its_share_of_the_tree() -> None:
    cfg = TreeConfig(k=4, join_burst=100, join_every_ms=1, members_per_address=6)
    root = TreeNode(Member("root", "10.0.0.1", 1), cfg, random.Random(0))
    root.start(0, [])
    storm = [Member(f"sybil{i:04d}", "10.6.6.6", 2) for i in range(20)]
    joins(root, 0, storm)
    assert len(assigned(root.on_tick(cfg.join_batch_ms))) == 6
    assert root.counters["refused:join_cap"] == 14
    joins(root, 1_000, storm[:6])  # those placed keep their places (resync)
    assert len(assigned(root.on_tick(1_000 + cfg.join_batch_ms))) == 6 and root.size == 7
    joins(root, 2_000, [Member("honest", "10.0.1.1", 2)])  # another address is unaffected
    assert assigned(root.on_tick(2_000 + cfg.join_batch_ms)) == ["honest"]
