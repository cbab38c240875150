"""What the chaos scenarios read from the nodes: tree views, double-held positions, broadcasts."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from borgusb import dna
from borgusb.clock import SystemClock
from borgusb.cluster import Cluster
from borgusb.envelope import Verifier
from borgusb.keys import SigningKey
from borgusb.net.peer import PeerClient

# A live node losing its place: counted by the root that removed it (repairs) or by a root
# child that replaced a root it thought dead (takeovers).
FALSE_DETECTION_COUNTERS = ("repairs", "takeovers")


def client() -> PeerClient:
    clock = SystemClock()
    return PeerClient(SigningKey.generate(), clock, Verifier(clock), timeout_s=30)


def places(docs: list[dict[str, Any]]) -> dict[str, tuple[str | None, str | None, int | None]]:
    """Each answering node's (tree id, root, position), by address."""
    out = {}
    for d in docs:
        if "error" not in d:
            t = d["tree"]
            out[d["ip"]] = (t.get("tree_id"), t.get("root"), t.get("position"))
    return out


def held_twice(docs: list[dict[str, Any]], groups: list[set[str]] | None = None) -> list[str]:
    """Positions two nodes hold at once in one tree (same tree id and root), among nodes that can
    reach each other (each group, when the net is split; a cut-off node cannot know yet)."""
    found = []
    for group in groups or [{d["ip"] for d in docs}]:
        count = Counter(
            (tree, root, pos) for ip, (tree, root, pos) in places(docs).items() if ip in group and pos is not None
        )
        found += [f"position {pos} of tree {tree} (root {root})" for (tree, root, pos), n in count.items() if n > 1]
    return found


def counter_sum(docs: list[dict[str, Any]], names: tuple[str, ...]) -> int:
    return sum(d["tree"]["counters"].get(n, 0) for d in docs if "error" not in d for n in names)


async def broadcast(cluster: Cluster, via: str, payload: dict[str, Any]) -> str:
    """Send a broadcast through the node at via; its id."""
    async with client() as peers:
        reply = await peers.post(
            via, dna.get(cluster.cell).recp_port, "/recp", "tree.broadcast", payload, signed_reply=True
        )
    return str(reply["id"])


async def wait_delivered(cluster: Cluster, bid: str, ips: list[str], timeout_s: float) -> float | None:
    """Seconds until every node in ips has delivered broadcast bid (None: not within timeout_s)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        docs = {d["ip"]: d for d in await cluster.status(timeout_s=5) if "error" not in d}
        if all(bid in docs.get(ip, {}).get("broadcasts", {}).get("recent", {}) for ip in ips):
            return time.monotonic() - t0
        await asyncio.sleep(0.2)
    return None
