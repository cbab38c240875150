"""Issue 15 item 1 on live shard cells: a deleted object cannot be brought back by anyone.

The attack: read the public manifest and shards, let the owner delete, send your
own tombstone for the same id, then replay the owner's old manifest and shard
records by every door that stores (``shard.delete``, the tree's broadcast,
``shard.keep``, ``shard.hold``, ``shard.put``, ``shard.fetch``). Every step is
refused with a typed reason and counted, and nothing of the deleted object comes
back; a live object of the same owner that shares a shard with it is still
repaired to R copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import Callable
from typing import Any

import pytest

from borgusb.dstream import parse_locate, post_frame
from borgusb.keys import SigningKey
from borgusb.net.peer import PeerClient, PeerRejected
from borgusb.shard import model, placement

from .test_shard_cluster import PORT, SS, client, locate, put_bytes, start, stat, wait_copies

pytestmark = pytest.mark.slow

NOWHERE = "127.0.0.250"  # the address the attacker announces for its "shard node": nothing listens there


async def wait_status(cluster, ok: Callable[[list[dict[str, Any]]], bool], what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        docs = await cluster.status()
        if len(docs) == len(cluster.live()) and ok(docs):
            return
        if time.monotonic() > deadline:
            seen = [
                (
                    d["ip"],
                    d["shard"]["directory"],
                    d["shard"]["store"],
                    {k: v for k, v in d["counters"].items() if "shard" in k},
                )
                for d in docs
            ]
            raise AssertionError(f"{what}: not within {timeout_s}s; {len(docs)} nodes answered: {seen}")
        await asyncio.sleep(0.2)


def stores(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d["shard"]["store"] for d in docs]


def counted(docs: list[dict[str, Any]], reason: str) -> int:
    return sum(d["counters"].get(f"shard_rejected:{reason}", 0) for d in docs)


async def refused(reason: str, call: Any) -> None:
    with pytest.raises(PeerRejected) as err:
        await call
    assert err.value.reason == reason, f"{err.value.reason}: {err.value}"


async def announce_forever(peers: PeerClient, ip: str) -> None:
    """Make the attacker's key a "shard node" in every directory: its own "hi", through the tree."""
    while True:
        await peers.post(ip, PORT, "/recp", "tree.broadcast", {"k": "hi", "ip": NOWHERE, "port": PORT}, broadcast=True)
        await asyncio.sleep(1.0)


async def test_a_deleted_object_cannot_be_brought_back_by_anyone(make_cluster, monkeypatch, tmp_path) -> None:
    n = 5
    cluster = await start(make_cluster, monkeypatch, tmp_path, n)
    ips = [node.ip for node in cluster.nodes]
    owner, mallory = SigningKey.generate(), SigningKey.generate()
    ip_of = {d["node"]: d["ip"] for d in await cluster.status()}
    common = os.urandom(SS)
    doomed = common + os.urandom(SS + 1000)
    # Another object of the owner's shares shard 0. The lottery is deterministic: after shard 0's
    # first holder dies, its copy goes to the 4th ticket; the live object is chosen so that this node
    # holds none of its manifest, so the repair there must send the manifest to vouch for the shard.
    by_ticket = placement.rank(model.sha256_hex(common), ip_of)
    while True:
        kept = common + os.urandom(SS)
        if by_ticket[3] not in placement.choose(hashlib.sha256(kept).hexdigest(), ip_of, 3):
            break
    oid = (await put_bytes(ips[0], doomed, owner, tmp_path))["id"]
    live = (await put_bytes(ips[1], kept, owner, tmp_path))["id"]

    # 1) What anyone can read: the manifest, and every shard with its owner-signed record.
    m, holders = parse_locate(await locate(ips[2], oid), oid)
    records: list[tuple[dict[str, Any], bytes]] = []
    async with client(mallory) as peers:
        for h, (holder, *_) in zip(m["shards"], holders):
            reply, data = await post_frame(
                peers, holder.ip, holder.port, "shard.get", {"h": h}, expect_pubkey=holder.pubkey
            )
            records.append((reply["rec"], bytes(data)))
    assert [rec["o"] for rec, _ in records] == [owner.public_key_hex] * len(m["shards"])

    # 2) The owner deletes; every node drops the object and keeps the shard the live object shares.
    async with client(owner) as peers:
        tomb = model.sign_tomb(owner, oid, peers.clock.now_ms())
        await peers.post(ips[0], PORT, "/recp", "shard.delete", {"tomb": tomb}, signed_reply=True)
    await wait_status(
        cluster,
        lambda docs: sum(s["shards"] for s in stores(docs)) == 2 * 3 and all(s["tombs"] == 1 for s in stores(docs)),
        "the owner's deletion reaching every node",
    )

    # 3) The attacker's own tombstone for the same id: refused by every entry node; sent straight into
    #    the tree with the owner's manifest as "proof", refused by every node; bare, it can only ever
    #    delete the attacker's own records, so the owner's tombstone keeps counting.
    async with client(mallory) as peers:
        theirs = model.sign_tomb(mallory, oid, peers.clock.now_ms())
        for ip in ips:
            await refused("not_owner", peers.post(ip, PORT, "/recp", "shard.delete", {"tomb": theirs}))
        bcast = {"k": "del", "tomb": theirs, "m": m}
        await peers.post(ips[0], PORT, "/recp", "tree.broadcast", bcast, broadcast=True)
        await wait_status(cluster, lambda docs: all(counted([d], "not_owner") >= 2 for d in docs), "the forged proof")
        await peers.post(ips[0], PORT, "/recp", "tree.broadcast", {"k": "del", "tomb": theirs}, broadcast=True)
    await wait_status(cluster, lambda docs: all(s["tombs"] == 2 for s in stores(docs)), "the attacker's own tombstone")

    # 4) The replays. A key that is neither the owner nor a shard node is refused before anything is
    #    looked at; the owner's key is needed for a direct put.
    other_id = hashlib.sha256(b"an id nobody deleted").hexdigest()
    rec0, data0 = records[0]
    async with client(mallory) as peers:
        await refused("not_shard_node", peers.post(ips[0], PORT, "/recp", "shard.keep", {"m": m}))
        await refused("not_shard_node", post_frame(peers, ips[0], PORT, "shard.hold", {"rec": rec0}, data0))
        order = {"h": rec0["h"], "obj": oid, "from": [h.to_json() for h in holders[0]]}
        await refused("not_shard_node", peers.post(ips[0], PORT, "/recp", "shard.fetch", order))
        await refused("not_owner", post_frame(peers, ips[0], PORT, "shard.put", {"rec": rec0, "obj": oid}, data0))

        # ... so the attacker makes its key a shard node (anyone may run one), and replays again: the
        # tombstone refuses the owner's old manifest and records on every door, whatever they name (but
        # the shared shard named for the live object, which a node holding that object's manifest takes:
        # the live object needs it, step 6).
        announcer = asyncio.create_task(announce_forever(peers, ips[0]))
        try:
            await wait_status(cluster, lambda docs: all(d["shard"]["directory"] == n + 1 for d in docs), "hi")
            for ip in ips:
                await refused("tombstoned", peers.post(ip, PORT, "/recp", "shard.keep", {"m": m}))
                for i, (rec, data) in enumerate(records):
                    for obj in (oid, None, other_id) if i == 0 else (oid, None, other_id, live):
                        payload = {"rec": rec} if obj is None else {"rec": rec, "obj": obj}
                        await refused("tombstoned", post_frame(peers, ip, PORT, "shard.hold", payload, data))
            shared_holders = {h.pubkey for h in holders[0]}
            target = next(d for d in await cluster.status() if d["node"] not in shared_holders)["ip"]
            for extra in ({}, {"obj": None}, {"m": m}):
                await refused("tombstoned", peers.post(target, PORT, "/recp", "shard.fetch", {**order, **extra}))
        finally:
            announcer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await announcer

    # 5) Nothing came back: no node finds the object, only the live object's shards and manifests are
    #    stored, and every refusal was counted by its reason.
    for ip in ips:
        assert (await stat(ip, oid))["found"] is False
    docs = await cluster.status()
    assert sum(s["shards"] for s in stores(docs)) == 2 * 3 and sum(s["manifests"] for s in stores(docs)) == 3
    assert counted(docs, "not_owner") >= 2 * n + 1
    assert counted(docs, "not_shard_node") == 3
    assert counted(docs, "tombstoned") >= n * (1 + 4 * len(records) - 1) + 3

    # 6) The shard the live object shares is still repaired, where the live object's manifest vouches
    #    for it: its first holder dies, a read on its second brings it back to R copies on the 4th
    #    ticket, which refuses it as tombstoned until the live manifest is sent with the order.
    assert {h.pubkey for h in holders[0]} == set(by_ticket[:3])
    victim, reader = ip_of[by_ticket[0]], ip_of[by_ticket[1]]
    cluster.kill(next(node for node in cluster.nodes if node.ip == victim))
    await wait_copies(reader, live, 3, timeout_s=60)
    _, live_holders = parse_locate(await locate(reader, live), live)
    assert {h.pubkey for h in live_holders[0]} == set(by_ticket[1:4])
    # whichever node ran the repair (the reader, or another that read the live object meanwhile), the 4th
    # ticket took the shard only with the live manifest vouching for it; statuses may trail by a moment
    deadline = time.monotonic() + 30
    while True:
        docs = await cluster.status()
        vouched = sum(d["counters"].get("shard_repair_vouched", 0) for d in docs)
        target = next(d for d in docs if d["node"] == by_ticket[3])
        if vouched >= 1 or target["shard"]["store"]["manifests"] >= 1 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
    # the 4th ticket took the shard with the live manifest sent as its voucher, or it keeps that manifest
    # itself (a read may have repaired the manifest onto it first): either way only a live object's word
    assert vouched >= 1 or target["shard"]["store"]["manifests"] >= 1, [
        (d["ip"], {k: v for k, v in d["counters"].items() if "repair" in k}) for d in docs
    ]
