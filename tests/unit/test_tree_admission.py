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


def online_member(root: TreeNode, cfg: TreeConfig) -> TreeNode:
    """A member placed at position 2 of root's tree."""
    member = TreeNode(Member("member", "10.0.0.2", 1), cfg, random.Random(1))
    member.start(0, [root.me])
    root.on_message(0, member.me, {"t": "tree.join", "joiner": member.me.to_dict(), "hops": 0}, "10.0.0.2")
    for send in root.on_tick(cfg.join_batch_ms):
        if isinstance(send, Send) and send.to.node_id == "member":
            member.on_message(cfg.join_batch_ms, root.me, send.msg, "10.0.0.1")
    assert member.status == "online" and root.size == 2
    return member


def test_claimed_addresses_do_not_multiply_one_source_s_admissions() -> None:
    cfg = TreeConfig(k=4, join_burst=5, join_every_ms=1000)
    root = TreeNode(Member("root", "10.0.0.1", 1), cfg, random.Random(0))
    root.start(0, [])
    member = online_member(root, cfg)
    sybils = [Member(f"sybil{i:03d}", f"10.7.{i >> 8}.{i & 255}", 2) for i in range(100)]  # 100 addresses claimed
    for node in (root, member):  # straight to the root, and to a member that would forward them
        for t in range(0, 3_000, 30):  # 100 joins in 3 s, each a fresh address, all from one socket address
            j = sybils[t // 30]
            node.on_message(1_000 + t, j, {"t": "tree.join", "joiner": j.to_dict(), "hops": 0}, "10.6.6.6")
        assert node.counters["refused:join_rate"] == 100 - 5 - 2  # the burst, then one a second (at 2 s and 3 s)
    assert len(root.queue) == 7 and member.counters["joins_forwarded"] == 7
    honest = [Member(f"honest{i}", f"10.0.1.{i}", 2) for i in range(10)]
    for j in honest:  # others, each from its own address, are unaffected
        root.on_message(4_000, j, {"t": "tree.join", "joiner": j.to_dict(), "hops": 0}, j.ip)
    assert len(root.queue) == 17 and root.counters["refused:join_rate"] == 93


def test_a_join_sent_straight_must_name_its_signer() -> None:
    cfg = TreeConfig(k=4)
    root = TreeNode(Member("root", "10.0.0.1", 1), cfg, random.Random(0))
    root.start(0, [])
    member = online_member(root, cfg)
    liar, made_up = Member("liar", "10.6.6.6", 2), Member("made-up", "10.9.9.9", 2)
    forged = {"t": "tree.join", "joiner": made_up.to_dict(), "hops": 0}
    assert root.on_message(1_000, liar, forged, liar.ip) == []
    assert member.on_message(1_000, liar, forged, liar.ip) == []
    # nor may it pose as a forwarding member: the root takes hops 1 only from members it places
    assert root.on_message(1_000, liar, {**forged, "hops": 1}, liar.ip) == []
    assert root.counters["refused:join_forged"] == 2 and member.counters["refused:join_forged"] == 1
    # and a member passes on no forwarded join (its sender's root is stale, or it is a lie)
    assert member.on_message(1_000, liar, {**forged, "hops": 1}, liar.ip) == []
    assert member.counters["joins_dropped"] == 1 and "joins_forwarded" not in member.counters
    assert root.queue == [] and assigned(root.on_tick(2_000)) == [] and root.size == 2


def test_joins_a_member_forwards_are_admitted_at_the_root_by_claimed_address() -> None:
    cfg = TreeConfig(k=4, join_burst=5, join_every_ms=1000)
    root = TreeNode(Member("root", "10.0.0.1", 1), cfg, random.Random(0))
    root.start(0, [])
    member = online_member(root, cfg)
    for j in [Member(f"new{i}", f"10.0.2.{i}", 2) for i in range(8)]:  # distinct addresses via one member: all in
        root.on_message(1_000, member.me, {"t": "tree.join", "joiner": j.to_dict(), "hops": 1}, member.me.ip)
    for i in range(7):  # one claimed address: its burst, as before
        j = Member(f"nat{i}", "10.6.6.6", 2)
        root.on_message(1_000, member.me, {"t": "tree.join", "joiner": j.to_dict(), "hops": 1}, member.me.ip)
    assert len(root.queue) == 8 + 5 and root.counters["refused:join_rate"] == 2
    assert "refused:join_forged" not in root.counters
    assert len(assigned(root.on_tick(1_000 + cfg.join_batch_ms))) == 13 and root.size == 15
