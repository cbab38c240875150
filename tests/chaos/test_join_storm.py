"""Chaos scenario "join storm": 1,000 identities from one address ask to join a running tree.

Four honest nodes run peerTreeNet, each in its own namespace. The attack is `tests.chaos.hostile`
``joins``: one process at 10.98.0.102 that makes 1,000 fresh keys and has each send the root a
``tree.join`` signed by that key (the joiner at the hostile address, where nothing answers),
every key again every 2 s for the storm (short form 15 s, full 60 s). Claims (issue 20): the
root admits new members from that address at its configured rate (`TreeConfig.join_burst` at
once, then one per `join_every_ms`; the rest counted as ``refused:join_rate``), holds at most
`members_per_address` of them at once (``refused:join_cap``; a placed key that re-sends its join
keeps its place without ever sending a heartbeat, so only this bounds them), and the tree
stays consistent: in every sample (every 0.5 s) no position is held twice, the root's table
lists every member once, every honest node is in it once, in the same tree, and never had to
rejoin; a broadcast after the storm reaches every honest node.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from borgusb import dna
from borgusb.tree.model import TreeConfig
from tests.chaos.conftest import figures, form
from tests.chaos.observe import broadcast, client, held_twice, wait_delivered

pytestmark = pytest.mark.slow

NODES = 4
CELL = "peerTreeNet"
DNA = dna.get(CELL)
KEYS = 1000
SETTINGS = TreeConfig(k=DNA.max_children)  # the product's admission settings


def admitted_bound(elapsed_s: float, cfg: TreeConfig = SETTINGS) -> int:
    """New members one address may add in elapsed_s: the burst, then one per join_every_ms."""
    return cfg.join_burst + math.ceil(elapsed_s * 1000 / cfg.join_every_ms)


async def members(root_ip: str) -> list[dict[str, Any]]:
    """The root's table, as its ``tree.members`` receptor answers (signed)."""
    async with client() as peers:
        reply = await peers.post(root_ip, DNA.recp_port, "/recp", "tree.members", {}, signed_reply=True)
    return list(reply["members"])


async def test_a_thousand_identities_from_one_address(chaos_net, tmp_path) -> None:
    storm_s = form(15, 60)
    net = chaos_net(NODES, heartbeat_ms=1000, confirm_misses=3)
    hostile_ip = net.observer_address(2)
    net.start([CELL])
    cluster = net.clusters[CELL]
    await cluster.wait_one_tree(timeout_s=120, expect=NODES)
    start = await cluster.status(timeout_s=5)
    root = next(d for d in start if d["status"] == "root")
    honest = {d["node"] for d in start}
    tree_id = root["tree"]["tree_id"]
    out = tmp_path / "joins.json"
    cmd = [sys.executable, "-m", "tests.chaos.hostile", "joins", "--bind", hostile_ip, "--target", root["ip"]]
    cmd += ["--seconds", str(storm_s), "--out", str(out), "--keys", str(KEYS)]
    hostile = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[2], start_new_session=True)
    t0 = time.monotonic()
    twice, bad_tables, misplaced, samples, most_sybils, sybils = [], [], [], 0, 0, 0
    try:
        while hostile.poll() is None:
            assert time.monotonic() - t0 < storm_s + 120, "the hostile peer did not end"
            docs = await cluster.status(timeout_s=5)
            twice += held_twice(docs)
            misplaced += [
                d["ip"] for d in docs if "error" in d or d["tree"].get("tree_id") != tree_id or d["status"] == "joining"
            ]
            table = await members(root["ip"])
            keys = Counter(m["pubkey"] for m in table)
            if any(n > 1 for n in keys.values()) or any(keys[h] != 1 for h in honest):
                bad_tables.append(sorted(keys.items()))
            sybils = len(keys) - len(honest)
            most_sybils = max(most_sybils, sybils)
            samples += 1
            await asyncio.sleep(0.5)
    finally:
        if hostile.poll() is None:
            os.killpg(hostile.pid, signal.SIGKILL)
        hostile.wait()
    elapsed = time.monotonic() - t0
    attack = json.loads(out.read_text())
    end = await cluster.status(timeout_s=5)
    root_end = next(d for d in end if d["ip"] == root["ip"])
    admitted = root_end["tree"]["counters"].get("joins_assigned", 0) - root["tree"]["counters"].get("joins_assigned", 0)
    refused = root_end["tree"]["counters"].get("refused:join_rate", 0)
    removed = root_end["tree"]["counters"].get("repairs", 0) - root["tree"]["counters"].get("repairs", 0)
    rejoined = sum(d["counters"].get("status_joining", 0) for d in end) - sum(
        d["counters"].get("status_joining", 0) for d in start
    )
    bid = await broadcast(cluster, root["ip"], {"after": "storm"})
    reached = await wait_delivered(cluster, bid, net.ips, timeout_s=30)
    bound = admitted_bound(elapsed)
    figures(
        "join storm",
        {
            "honest_nodes": NODES,
            "identities": KEYS,
            "storm_s": round(elapsed, 1),
            "join_requests": sum(attack["outcomes"].values()),
            "replies": attack["outcomes"],
            "admitted": admitted,
            "admitted_per_s": round(admitted / elapsed, 2),
            "limit": f"{SETTINGS.join_burst} at once, then {1000 / SETTINGS.join_every_ms:g}/s per address",
            "admitted_bound": bound,
            "refused_join_rate": refused,
            "sybils_in_tree_at_most": most_sybils,
            "members_per_address": SETTINGS.members_per_address,
            "refused_join_cap": root_end["tree"]["counters"].get("refused:join_cap", 0),
            "sybils_in_tree_at_end": sybils,
            "sybils_removed_as_dead": removed,
            "samples": samples,
            "positions_held_twice": len(twice),
            "tables_with_a_member_twice_or_an_honest_node_missing": len(bad_tables),
            "honest_nodes_out_of_place": len(misplaced),
            "honest_rejoins": rejoined,
            "broadcast_after_s": None if reached is None else round(reached, 2),
        },
    )
    assert 0 < admitted <= bound, f"{admitted} admitted in {elapsed:.0f} s, bound {bound}"
    assert refused > 0 and most_sybils <= SETTINGS.members_per_address
    assert not twice, twice[:5]
    assert not bad_tables, bad_tables[:1]
    assert not misplaced and rejoined == 0, misplaced[:5]
    assert reached is not None, "a broadcast after the storm missed an honest node"
