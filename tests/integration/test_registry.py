"""serviceMgrCell follows cells of several types as they start, stop and fail, within its bound."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from borgusb import dna
from borgusb.cells.servicemgr.cell import LOCAL_TTL_MS
from borgusb.clock import SystemClock
from borgusb.envelope import Verifier
from borgusb.keys import SigningKey
from borgusb.net.peer import PeerClient, PeerError

pytestmark = pytest.mark.slow

SVC = dna.get("serviceMgrCell")
APPEAR_BOUND_S = 3.0  # one announce period + a broadcast, with margin for a loaded 2-core machine
VANISH_BOUND_S = LOCAL_TTL_MS / 1000 + 2.0  # the local time-to-live + a broadcast


async def registry(client: PeerClient, ip: str) -> set[tuple[str, str]]:
    try:
        reply = await client.post(ip, SVC.recp_port, "/recp", "svc.list", {}, signed_reply=True)
    except PeerError:
        return set()
    return {(e["cell"], e["ip"]) for e in reply["services"]}


async def wait_for(client: PeerClient, ip: str, predicate, timeout_s: float) -> float:
    started = time.monotonic()
    while True:
        if predicate(await registry(client, ip)):
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise AssertionError(
                f"registry at {ip} did not follow within {timeout_s}s: {sorted(await registry(client, ip))}"
            )
        await asyncio.sleep(0.1)


async def test_registry_follows_cells_starting_stopping_and_failing(make_cluster) -> None:
    svc = make_cluster("serviceMgrCell")
    svc.up(3)
    await svc.wait_one_tree(timeout_s=30, expect=3)
    ips = [n.ip for n in svc.nodes]
    tree = make_cluster("peerTreeNet")
    t0 = time.monotonic()
    tree.up(3)
    async with PeerClient(SigningKey.generate(), SystemClock(), Verifier(SystemClock())) as client:
        everything = {("serviceMgrCell", ip) for ip in ips} | {("peerTreeNet", ip) for ip in ips}
        # seen from a node that runs none of the new cells' announcements itself: through the tree
        await wait_for(client, ips[0], lambda r: everything <= r, timeout_s=60)
        print(f"3 new cells visible everywhere after {time.monotonic() - t0:.1f}s (incl. process start)")

        # a cell that fails (SIGKILL) vanishes within the bound, seen from another machine
        victim = tree.nodes[2]
        tree.kill(victim, signal.SIGKILL)
        took = await wait_for(client, ips[0], lambda r: ("peerTreeNet", victim.ip) not in r, VANISH_BOUND_S)
        print(f"failed cell gone after {took:.1f}s (bound {VANISH_BOUND_S}s)")

        # a cell that stops cleanly withdraws at once
        stopped = tree.nodes[1]
        tree.kill(stopped, signal.SIGTERM)
        took = await wait_for(client, ips[0], lambda r: ("peerTreeNet", stopped.ip) not in r, 2.0)
        print(f"stopped cell gone after {took:.1f}s")

        # a started cell appears within the bound once its process is up
        restarted = tree.spawn(victim.ip, [ips[0]])
        await tree.wait_ready(timeout_s=60)
        took = await wait_for(client, ips[0], lambda r: ("peerTreeNet", restarted.ip) in r, APPEAR_BOUND_S)
        print(f"started cell visible after {took:.1f}s (bound {APPEAR_BOUND_S}s)")

        # the registry's own entries stay: three serviceMgr cells
        assert {("serviceMgrCell", ip) for ip in ips} <= await registry(client, ips[1])
    # honest traffic, starts, stops and failures included, is never refused
    for doc in await svc.status():
        assert doc["registry_table"]["refused"] == {}, (doc["ip"], doc["registry_table"])


async def test_shard_cells_find_holders_through_the_registry(make_cluster, monkeypatch, tmp_path) -> None:
    """With serviceMgr running, the shard cell's "find a holder" step reads the registry."""
    import os

    from borgusb.dstream import Receiver, parse_locate, put_file

    monkeypatch.setenv("BORGUSB_DATA_ROOT", str(tmp_path))
    svc = make_cluster("serviceMgrCell")
    svc.up(3)
    await svc.wait_one_tree(timeout_s=30, expect=3)
    shards = make_cluster("shardTreeCell")
    shards.up(3)
    await shards.wait_one_tree(timeout_s=30, expect=3)
    deadline = time.monotonic() + 20
    while True:
        docs = await shards.status()
        if all(d.get("shard", {}).get("directory") == 3 and d["counters"].get("directory_from_registry") for d in docs):
            break
        assert time.monotonic() < deadline, [(d.get("shard"), d["counters"]) for d in docs]
        await asyncio.sleep(0.2)
    assert all(not d["counters"].get("directory_from_broadcast") for d in docs)

    data = os.urandom(300_000)
    src = tmp_path / "in.bin"
    src.write_bytes(data)
    key = SigningKey.generate()
    port = dna.get("shardTreeCell").recp_port
    async with PeerClient(key, SystemClock(), Verifier(SystemClock()), timeout_s=20) as peers:
        put = await put_file(peers, shards.nodes[0].ip, port, src, key, r=3)
        reply = await peers.post(
            shards.nodes[1].ip, port, "/recp", "shard.locate", {"id": put["id"]}, signed_reply=True
        )
        m, holders = parse_locate(reply, put["id"])
        assert min(reply["copies"]) == 3  # three holders chosen from the registry's directory
        fetch = Receiver(peers, m, holders, tmp_path / "out.bin")
        await fetch.run()
        await fetch.receipts_handed()  # before the client closes: the hand-in would reopen its session
    assert (tmp_path / "out.bin").read_bytes() == data
