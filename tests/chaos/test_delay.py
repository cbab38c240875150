"""Chaos scenario "delay": every link between nodes slow and jittery.

Ten nodes run peerTreeNet and shardTreeCell in their own namespaces at the product's heartbeat
settings (1 s, a failure confirmed after 3 missed beats). Every TCP stream a node opens to
another node goes through a relay in its namespace that holds each chunk for 20-250 ms, in
order, each way (jitter.py, the stand-in for netem's delay this kernel lacks): a request and
its answer are each held, so a round trip takes 40-500 ms plus the work. For the soak (short form 30 s,
full 600 s) a broadcast goes out every ~2 s through a random node, on each tree in turn, and
an object is stored and read back through the delayed links. Claims: no live node is swapped
out (false failure detections: 0), every broadcast reaches every node, no position is held
twice, the objects read back intact; the relays did carry the nodes' connections. (Before tree
messages to a peer travelled in batches, cells/kit/treebatch.py, a link carried one message per
round trip and the shard tree's broadcasts queued for 8 s and more: docs/chaos.md.)
"""

from __future__ import annotations

import os
import random
import time

import pytest

from borgusb.keys import SigningKey
from tests.chaos import objects
from tests.chaos.conftest import figures, form
from tests.chaos.observe import Soak

pytestmark = pytest.mark.slow

NODES = 10
CELLS = ["peerTreeNet", "shardTreeCell"]
MIN_MS, MAX_MS = 20, 250
R = 3


async def test_jittery_links_soak(chaos_net, tmp_path) -> None:
    soak_s = form(30, 600)
    net = chaos_net(NODES, heartbeat_ms=1000, confirm_misses=3)
    net.set_delay(MIN_MS, MAX_MS)  # before the cells start: kept-alive connections are delayed too
    net.start(CELLS)
    for cell in CELLS:
        await net.clusters[cell].wait_one_tree(timeout_s=180, expect=NODES)
    soak = Soak({c: net.clusters[c] for c in CELLS})
    await soak.begin()
    rng = random.Random()
    key = SigningKey.generate()
    stored: dict[str, bytes] = {}
    put_s: list[float] = []
    put_copies: list[list[int]] = []  # each put's least shard copies and manifest copies at its reply
    t0 = time.monotonic()
    while time.monotonic() - t0 < soak_s:
        sent = len(soak.broadcasts)
        if sent % 10 == 0:  # an object now and then, stored through a random node's delayed links
            data = os.urandom(rng.randrange(100_000, 1_000_000))
            t_put = time.monotonic()
            reply = await objects.put(rng.choice(net.ips), data, key, tmp_path, R, timeout_s=120)
            stored[reply["id"]] = data
            put_s.append(round(time.monotonic() - t_put, 2))
            put_copies.append([reply["copies_min"], reply["manifest_copies"]])
        await soak.broadcast_round(CELLS[sent % len(CELLS)], rng.choice(net.ips), net.ips, sent)
    elapsed = time.monotonic() - t0
    readable = 0
    for oid, data in stored.items():
        readable += await objects.read(rng.choice(net.ips), oid, tmp_path) == data
    relayed = [net.delayed_connections(i) for i in range(NODES)]
    seen = soak.figures(await soak.end())
    figures(
        "delay",
        {
            "nodes": NODES,
            "delay_ms_each_way": f"{MIN_MS}-{MAX_MS}",
            "soak_s": round(elapsed),
            **seen,
            "objects_stored": len(stored),
            "objects_readable": readable,
            "put_s": put_s,
            "put_copies": put_copies,
            "connections_relayed": sum(relayed),
        },
    )
    assert all(relayed), f"a node's connections did not go through its relay: {relayed}"
    assert seen["false_detections"] == 0 and not soak.moved, f"live nodes swapped out: {sorted(soak.moved)}"
    missed = seen["broadcasts_sent"] - seen["broadcasts_everywhere"]
    assert missed == 0, f"{missed} of {seen['broadcasts_sent']} broadcasts missed a node: {seen['misses']}"
    assert not soak.twice, soak.twice
    assert readable == len(stored) > 0
