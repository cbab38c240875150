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


def client(key: SigningKey | None = None) -> PeerClient:
    clock = SystemClock()
    return PeerClient(key or SigningKey.generate(), clock, Verifier(clock), timeout_s=30)


def places(docs: list[dict[str, Any]]) -> dict[str, tuple[str | None, str | None, int | None]]:
    """Each answering node's (tree id, root, position), by address."""
    out = {}
    for d in docs:
        if "error" not in d:
            t = d["tree"]
            out[d["ip"]] = (t.get("tree_id"), t.get("root"), t.get("position"))
    return out


def held_twice(docs: list[dict[str, Any]]) -> list[str]:
    """Positions two nodes hold at once in one tree (same tree id and root). A node holds a
    position when its parent lists it there (the root: when it is root); a node cut off from
    its parent still names its old place, but the tree no longer gives it to it."""
    views = {d["node"]: d["tree"] for d in docs if "error" not in d}
    holders: Counter[tuple[str, str, int]] = Counter()
    for node, t in views.items():
        pos, parent = t.get("position"), views.get(t.get("parent") or "")
        if pos == 1 and t.get("status") == "root":
            holders[(t["tree_id"], node, 1)] += 1
        elif pos and parent is not None and parent.get("children", {}).get(str(pos)) == node:
            holders[(t["tree_id"], t.get("root"), pos)] += 1
    return [f"position {pos} of tree {tree} (root {root})" for (tree, root, pos), n in holders.items() if n > 1]


def counter_sum(docs: list[dict[str, Any]], names: tuple[str, ...]) -> int:
    return sum(d["tree"]["counters"].get(n, 0) for d in docs if "error" not in d for n in names)


async def broadcast(cluster: Cluster, via: str, payload: dict[str, Any]) -> str:
    """Send a broadcast through the node at via; its id."""
    async with client() as peers:
        reply = await peers.post(
            via, dna.get(cluster.cell).recp_port, "/recp", "tree.broadcast", payload, signed_reply=True
        )
    return str(reply["id"])


ANSWER_WAIT_S = 60.0  # a node whose monitoring port is silent is asked again this long before it counts


async def wait_delivered(cluster: Cluster, bid: str, ips: list[str], timeout_s: float) -> float | None:
    """Seconds until every node in ips has delivered broadcast bid (None: not within timeout_s).

    A node whose monitoring port did not answer the last ask (a loaded observer's timeout, not the
    node's miss) is asked again up to ANSWER_WAIT_S before the broadcast counts as missed; the time
    returned is still when the observer first saw it everywhere."""
    t0 = time.monotonic()
    seen: set[str] = set()  # a delivery seen once happened: a node's recent list moves on
    while True:
        docs = {d["ip"]: d for d in await cluster.status(timeout_s=5) if "error" not in d}
        seen |= {ip for ip, d in docs.items() if bid in d.get("broadcasts", {}).get("recent", {})}
        missing = [ip for ip in ips if ip not in seen]
        if not missing:
            return time.monotonic() - t0
        waited = time.monotonic() - t0
        silent_only = all(ip not in docs for ip in missing)
        if waited >= timeout_s and not (silent_only and waited < ANSWER_WAIT_S):
            return None
        await asyncio.sleep(0.2)


OUTBOX = ("bcast_retried", "bcast_held", "bcast_dropped")  # a member's own broadcasts sent again, held, given up
FAILED_SENDS = ("unreachable", "send_queue_dropped", "refused_by_peer", "bcast_dropped", "bcast_held")


async def missed(cluster: Cluster, bid: str, via: str) -> dict[str, Any]:
    """A broadcast that did not reach every node: who has it, who not, their places, and every
    node's counters of sends that failed (a miss should be explained, not only counted)."""
    docs = [d for d in await cluster.status(timeout_s=5) if "error" not in d]
    have = [d["ip"] for d in docs if bid in d.get("broadcasts", {}).get("recent", {})]
    failed = {}
    for d in docs:
        counts = {**d.get("counters", {}), **d["tree"]["counters"]}
        bad = {k: v for k, v in counts.items() if v and any(k.startswith(f) for f in FAILED_SENDS)}
        if bad:
            failed[d["ip"]] = bad
    return {
        "cell": cluster.cell,
        "via": via,
        "have": sorted(have),
        "missing": sorted({d["ip"] for d in docs} - set(have)),
        "places": {d["ip"]: d["tree"].get("position") for d in docs},
        "failed_sends": failed,
    }


class Soak:
    """A soak's watch over its trees: the places at the start, then in every sample the live
    nodes that moved and the positions held twice; at the end, the false failure detections
    (the roots' repair and takeover counters since the start) and the failures reported."""

    def __init__(self, clusters: dict[str, Cluster]) -> None:
        self.clusters = clusters
        self.start_docs: dict[str, list[dict[str, Any]]] = {}
        self.start_places: dict[str, dict[str, tuple[str | None, str | None, int | None]]] = {}
        self.moved: set[tuple[str, str]] = set()
        self.twice: list[str] = []
        self.samples = 0
        self.broadcasts: list[float | None] = []  # each broadcast's time to reach every node (None: missed)
        self.misses: list[dict[str, Any]] = []  # for each missed one, who missed it and what failed on the way

    async def begin(self) -> None:
        self.start_docs = {c: await cl.status(timeout_s=5) for c, cl in self.clusters.items()}
        self.start_places = {c: places(docs) for c, docs in self.start_docs.items()}

    async def sample(self) -> None:
        """One look at every tree: who moved since the start (of those answering), who is held twice."""
        for c, cl in self.clusters.items():
            docs = await cl.status(timeout_s=5)
            self.samples += 1
            self.twice += held_twice(docs)
            now = places(docs)
            self.moved |= {(c, ip) for ip, place in now.items() if self.start_places[c].get(ip) != place}

    async def broadcast_round(self, cell: str, via: str, ips: list[str], seq: int) -> float | None:
        """A broadcast on cell's tree through via, waited for at every node, then a sample and
        the pacing to one round per ~2 s; its time to reach every node (None: missed)."""
        cluster = self.clusters[cell]
        bid = await broadcast(cluster, via, {"i": seq})
        took = await wait_delivered(cluster, bid, ips, timeout_s=30)
        self.broadcasts.append(took)
        if took is None:
            self.misses.append(await missed(cluster, bid, via))
        await self.sample()
        await asyncio.sleep(max(0.0, 2.0 - (took or 0)))
        return took

    async def end(self) -> dict[str, list[dict[str, Any]]]:
        """The trees' views now; read false_detections and suspicions from them."""
        return {c: await cl.status(timeout_s=5) for c, cl in self.clusters.items()}

    def since_start(self, end_docs: dict[str, list[dict[str, Any]]], names: tuple[str, ...]) -> int:
        return sum(counter_sum(end_docs[c], names) - counter_sum(self.start_docs[c], names) for c in self.clusters)

    def figures(self, end_docs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        """The figures every soak prints: detections, moves, broadcasts, double-held positions."""
        took = sorted(t for t in self.broadcasts if t is not None)
        return {
            "false_detections": self.since_start(end_docs, FALSE_DETECTION_COUNTERS),
            "nodes_moved": len(self.moved),
            "suspicions_reported": self.since_start(end_docs, ("failures_reported",)),
            "broadcasts_sent": len(self.broadcasts),
            "broadcasts_everywhere": len(took),
            "broadcast_median_s": round(took[len(took) // 2], 2) if took else None,
            "broadcast_max_s": round(took[-1], 2) if took else None,
            "positions_held_twice": len(self.twice),
            "samples": self.samples,
            "misses": self.misses,
            "outbox": {
                c: {n: counter_sum(end_docs[c], (n,)) - counter_sum(self.start_docs[c], (n,)) for n in OUTBOX}
                for c in self.clusters
            },
        }
