"""Chaos scenario "partition": ten nodes split 6/4 (short form 20 s, full 30 s), then healed.

Each node runs peerTreeNet and shardTreeCell in its own namespace (heartbeat 0.5 s, 3 misses:
the minority's lowest root child takes over after 7 confirm periods, 14 s, within the split).
During the split both sides store an object (R = 2). Claims (issue 20): after the heal every
cell type forms one tree again within `heal_bound_s` (derived from the tree's settings, printed
beside the measured time); no position is held twice in any sample (`observe.held_twice`);
both objects are readable from a node of the other side afterwards.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from borgusb import dna
from borgusb.cells.shard.client import locate_through_heal
from borgusb.cluster import summarize
from borgusb.dstream import Receiver, StreamError, parse_locate, put_file
from borgusb.keys import SigningKey
from borgusb.net.peer import PeerClient, PeerError
from borgusb.tree.model import TreeConfig
from borgusb.tree.state import MEMBER_PROBE_FACTOR
from tests.chaos.conftest import figures, form
from tests.chaos.harness import node_ip
from tests.chaos.observe import client, held_twice

pytestmark = pytest.mark.slow

NODES = 10
MAJORITY = list(range(6))
MINORITY = list(range(6, 10))
MAJORITY_IPS = {node_ip(i) for i in MAJORITY}
CELLS = ["peerTreeNet", "shardTreeCell"]
SHARD = dna.get("shardTreeCell").recp_port
HEARTBEAT_MS = 500  # twice the product's rate: the minority's takeover (7 confirm periods) fits in the split
SETTINGS = TreeConfig(k=1, heartbeat_ms=HEARTBEAT_MS, confirm_misses=3)  # k plays no part below


def heal_bound_s(cfg: TreeConfig = SETTINGS) -> float:
    """Worst case from the heal to one tree: a member of the smaller tree probes a contact of the
    other every MEMBER_PROBE_FACTOR probe periods and reports it to its root (the roots probe 4x as
    often, so this is the slow path); a node the other side has already dropped is refused at its
    next heartbeat and rejoins instead; the loser's root resigns, and its members rejoin the winner,
    whose root assigns places once per join batch: a confirm period covers the resign flood and the
    joins, one more heartbeat the parents' first acks to their new children."""
    probe = MEMBER_PROBE_FACTOR * cfg.probe_contacts_ms
    return (probe + cfg.confirm_ms + cfg.join_batch_ms + cfg.heartbeat_ms) / 1000


async def sample(net, twice: list[str], heal_s: dict[str, float], t_heal: float | None) -> None:
    """Check every tree for positions held twice; after the heal, note when each is one tree."""
    for cell, cluster in net.clusters.items():
        docs = await cluster.status(timeout_s=5)
        twice += held_twice(docs)
        if t_heal is not None and cell not in heal_s:
            summary = summarize(docs)
            if summary["consistent"] and summary["size"] == NODES:
                heal_s[cell] = time.monotonic() - t_heal


def split_views(docs: list[dict]) -> dict[str, object]:
    """How the split looks: the trees (tree id and root) the nodes are in, and the size the
    majority's root sees."""
    trees = {(d["tree"].get("tree_id"), d["tree"].get("root")) for d in docs if "error" not in d}
    sizes = [d["tree"]["size"] for d in docs if d.get("status") == "root" and d["ip"] in MAJORITY_IPS]
    return {"trees": len(trees), "majority_root_size": sizes[0] if len(sizes) == 1 else sizes}


async def put(peers: PeerClient, ip: str, data: bytes, key: SigningKey, tmp: Path) -> str:
    path = tmp / f"in-{os.urandom(4).hex()}"
    path.write_bytes(data)
    return str((await put_file(peers, ip, SHARD, path, key, r=2))["id"])


async def read(ip: str, oid: str, tmp: Path) -> bytes:
    async with client() as peers:
        reply = await locate_through_heal(peers, ip, SHARD, oid)
        m, holders = parse_locate(reply, oid)
        out = tmp / f"out-{os.urandom(4).hex()}"
        fetch = Receiver(peers, m, holders, out)
        await fetch.run()
        await fetch.receipts_handed()  # before the client closes: the hand-in would reopen its session
    return out.read_bytes()


async def test_split_sixty_forty_then_heal(chaos_net, tmp_path) -> None:
    split_s = form(20, 30)
    net = chaos_net(NODES, heartbeat_ms=HEARTBEAT_MS, confirm_misses=3)
    net.start(CELLS)
    for cluster in net.clusters.values():
        await cluster.wait_one_tree(timeout_s=180, expect=NODES)
    twice: list[str] = []
    net.cut(MAJORITY, MINORITY)
    t_cut = time.monotonic()
    objects: dict[str, tuple[bytes, int]] = {}  # id -> (bytes, the side's first node)
    for side in (MAJORITY, MINORITY):
        data = os.urandom(300_000)
        key = SigningKey.generate()
        async with client(key) as peers:
            deadline = time.monotonic() + split_s
            while True:  # the side's shard nodes first have to stop offering the other side's holders
                try:
                    objects[await put(peers, net.ips[side[0]], data, key, tmp_path)] = (data, side[0])
                    break
                except (PeerError, StreamError, OSError) as exc:  # retried until the split ends
                    if time.monotonic() > deadline:
                        raise AssertionError(f"no put on node {side[0] + 1}'s side during the split: {exc!r}") from exc
                    await asyncio.sleep(1)
    heal_s: dict[str, float] = {}
    while time.monotonic() - t_cut < split_s:
        await sample(net, twice, heal_s, None)
        await asyncio.sleep(0.5)
    during = {c: split_views(await x.status(timeout_s=5)) for c, x in net.clusters.items()}
    net.heal()
    t_heal = time.monotonic()
    while len(heal_s) < len(CELLS) and time.monotonic() - t_heal < 5 * heal_bound_s():
        await sample(net, twice, heal_s, t_heal)
        await asyncio.sleep(0.3)
    readable = 0
    for oid, (data, writer) in objects.items():
        reader = net.ips[MINORITY[-1] if writer in MAJORITY else MAJORITY[-1]]
        readable += await read(reader, oid, tmp_path) == data
    figures(
        "partition",
        {
            "nodes": NODES,
            "split": "6/4",
            "split_s": split_s,
            "at_split_end": during,
            "heal_s": {c: round(s, 1) for c, s in heal_s.items()},
            "heal_bound_s": heal_bound_s(),
            "positions_held_twice": len(twice),
            "objects_written_during_split": len(objects),
            "objects_readable_after": readable,
        },
    )
    assert set(heal_s) == set(CELLS), f"no single tree after the heal: {sorted(set(CELLS) - set(heal_s))}"
    assert max(heal_s.values()) <= heal_bound_s(), heal_s
    assert all(v["majority_root_size"] == len(MAJORITY) for v in during.values()), during  # the cut took
    assert not twice, twice[:5]
    assert readable == len(objects) == 2
