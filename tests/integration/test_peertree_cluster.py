"""PeerTree with real node processes on loopback: form, broadcast, heal, merge, resist bad input."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from borgusb import dna
from borgusb.clock import SystemClock
from borgusb.cluster import Cluster, loopback
from borgusb.envelope import Verifier
from borgusb.keys import SigningKey
from borgusb.net.peer import PeerClient

from .conftest import CONFIRM_MISSES, HEARTBEAT_MS

pytestmark = pytest.mark.slow

CONFIRM_S = (CONFIRM_MISSES + 1) * HEARTBEAT_MS / 1000
# Healing bound from the heartbeat settings: detection (one confirm period), the
# root takeover by its lowest surviving child (up to k confirm periods in the
# worst case), and one repair round per dead node, each well under a period.
HEAL_BOUND_S = 25 * CONFIRM_S


async def broadcast_from(ip: str, data: dict) -> str:
    client = PeerClient(SigningKey.generate(), SystemClock(), Verifier(SystemClock()))
    async with client:
        reply = await client.post(
            ip, dna.get("peerTreeNet").recp_port, "/recp", "tree.broadcast", data, signed_reply=True, broadcast=True
        )
    return reply["id"]


async def wait_delivered(cluster: Cluster, bid: str, expect: int, timeout_s: float = 20) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        docs = await cluster.status()
        got = [d for d in docs if bid in d.get("broadcasts", {}).get("recent", {})]
        if len(got) >= expect or time.monotonic() > deadline:
            return docs
        await asyncio.sleep(0.2)


def assert_exactly_once(docs: list[dict], bid: str, expect: int) -> None:
    counts = [d["broadcasts"]["recent"].get(bid, 0) for d in docs]
    assert len(docs) == expect
    assert counts == [1] * expect, f"deliveries per node: {counts}"
    assert all(d["broadcasts"]["duplicates"] == 0 for d in docs)


async def test_30_joins_at_once_one_through_a_member_one_tree_broadcast_reaches_all_once(make_cluster) -> None:
    cluster = make_cluster()
    cluster.up(30, first_ready=False)  # all 30 processes start at once
    summary = await cluster.wait_one_tree(timeout_s=60, expect=30)
    assert summary["depth"] == 2  # 1 + 10 + 19 at k=10
    # one more, whose only contact is a member: that member passes its join on to the root with the
    # joiner's own signed join inside (cells/kit/joins.py), which the root checks before placing it
    docs = await cluster.status()
    member = next(d for d in docs if d["tree"]["status"] == "online")
    cluster.up(1, join=[member["ip"]])
    await cluster.wait_one_tree(timeout_s=60, expect=31)
    docs = {d["ip"]: d for d in await cluster.status()}
    assert docs[member["ip"]]["tree"]["counters"].get("joins_forwarded", 0) >= 1, docs[member["ip"]]["tree"]
    assert not any(d["counters"].get("refused:join_forged") for d in docs.values())
    bid = await broadcast_from(random.choice(cluster.live()).ip, {"hello": "all"})
    docs = await wait_delivered(cluster, bid, 31)
    assert_exactly_once(docs, bid, 31)


async def test_killing_20_percent_including_root_heals(make_cluster) -> None:
    cluster = make_cluster()
    cluster.up(30)
    await cluster.wait_one_tree(timeout_s=60, expect=30)
    docs = await cluster.status()
    root_ip = next(d["ip"] for d in docs if d["status"] == "root")
    victims = [n for n in cluster.live() if n.ip == root_ip]
    victims += random.sample([n for n in cluster.live() if n.ip != root_ip], 5)
    started = time.monotonic()
    for node in victims:
        cluster.kill(node)
    summary = await cluster.wait_one_tree(timeout_s=HEAL_BOUND_S, expect=24)
    healed_s = time.monotonic() - started
    print(f"healed in {healed_s:.1f}s (bound {HEAL_BOUND_S:.1f}s)")
    assert summary["roots"] != [root_ip]
    bid = await broadcast_from(random.choice(cluster.live()).ip, {"after": "repair"})
    assert_exactly_once(await wait_delivered(cluster, bid, 24), bid, 24)


async def test_two_clusters_meeting_through_one_contact_merge(make_cluster) -> None:
    a, b = make_cluster(), make_cluster()
    a_root = loopback(0, base=2)
    # B's first node knows one contact in A, which is not running yet: B forms alone.
    b.up(1, base=40, join=[a_root])
    b.up(5, base=41, join=[loopback(0, base=40)])
    await b.wait_one_tree(timeout_s=90, expect=6)
    a.up(8, base=2)  # A forms around 127.0.0.2; B's root finds it there and the smaller tree resigns
    merged = Cluster(name="view", root_dir=a.root_dir, nodes=a.nodes + b.nodes)
    summary = await merged.wait_one_tree(timeout_s=90, expect=14)
    assert summary["trees"] == 1 and len(summary["roots"]) == 1
    bid = await broadcast_from(loopback(3, base=40), {"merged": True})
    assert_exactly_once(await wait_delivered(merged, bid, 14), bid, 14)
