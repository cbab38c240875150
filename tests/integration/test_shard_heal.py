"""Copies and reads while shard nodes die, on real node processes (issue 20: "Copies after a put",
"Reads during a heal").

* Background repair: two of a shard's three holders are killed right after the put and two
  new nodes join; nobody reads, and the copies come back to R (counted by asking every node
  ``shard.holds``, which repairs nothing).
* Reads during a heal: 2 of 6 nodes die, the tree's root among them; reads started at once and
  repeated through the heal always get the bytes (never "not found"), and the time to bytes is printed.

Run under ``flock /tmp/borgusb-cluster.lock`` (fixed 127.0.0.x ports).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from borgusb.cells.shard.client import locate_through_heal
from borgusb.dstream import Receiver, parse_locate
from borgusb.keys import SigningKey
from borgusb.shard import model, placement
from tests.integration.test_shard_cluster import PORT, client, put_bytes, start

pytestmark = pytest.mark.slow

SS = model.SHARD_SIZE


async def holds(cluster, oid: str) -> dict[str, tuple[bool, set[str]]]:
    """Each live node's answer to shard.holds: (holds the manifest, the shard hashes it holds)."""
    out: dict[str, tuple[bool, set[str]]] = {}
    async with client(SigningKey.generate()) as peers:
        for node in cluster.live():
            try:
                reply = await peers.post(node.ip, PORT, "/recp", "shard.holds", {"id": oid}, signed_reply=True)
            except Exception:  # a node still starting: counted as holding nothing this time
                continue
            out[node.ip] = (reply["m"] is not None, set(reply["h"]))
    return out


def copies(held: dict[str, tuple[bool, set[str]]], m_shards: list[str]) -> tuple[int, list[int]]:
    return sum(m for m, _ in held.values()), [sum(sh in hs for _, hs in held.values()) for sh in m_shards]


def at_least_r(got: tuple[int, list[int]], r: int = 3) -> bool:
    """The manifest and every shard held by at least r live nodes."""
    return got[0] >= r and min(got[1]) >= r


async def test_copies_come_back_without_a_reader(make_cluster, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("BORGUSB_REPAIR_MS", "1000")
    cluster = await start(make_cluster, monkeypatch, tmp_path, 4)
    root = next(d["ip"] for d in await cluster.status() if d["status"] == "root")
    data = os.urandom(SS // 2)
    put = await put_bytes(root, data, SigningKey.generate(), tmp_path)
    oid, shard = put["id"], model.sha256_hex(data)
    held = await holds(cluster, oid)
    assert copies(held, [shard]) == (3, [3])
    holders = [ip for ip, (_, hs) in held.items() if shard in hs]
    victims = sorted(holders, key=lambda ip: ip == root)[:2]  # two of the shard's three holders, the root last
    for node in cluster.nodes:
        if node.ip in victims:
            cluster.kill(node)
    cluster.up(2, join=[next(n.ip for n in cluster.live())])
    t0 = time.monotonic()
    deadline = t0 + 60
    while True:
        held = await holds(cluster, oid)
        got = copies(held, [shard])
        if at_least_r(got) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    docs = await cluster.status()
    driven = sum(d.get("counters", {}).get("repair_driven", 0) for d in docs)
    print(f"copies back to {got} {time.monotonic() - t0:.1f}s after killing {victims}; rounds that drove: {driven}")
    # at least R: a survivor the joined nodes push out of the placement keeps its copy until the
    # winners prove theirs, after the 30 s a node stays unsettled once it lost a peer (trim.py)
    assert at_least_r(got), held
    assert driven >= 1
    assert not any(d.get("counters", {}).get("shard_rejected:healing") for d in docs)  # nobody read


async def test_a_node_back_from_a_freeze_leaves_r_copies_on_the_lottery_winners(
    make_cluster, monkeypatch, tmp_path
) -> None:
    """Four nodes, R = 3: every shard is on its lottery's first three. One holder is frozen
    (SIGSTOP) until repair has copied its shards to the fourth node, then resumed with its old
    copies: those shards have four. The fourth-ranked holder of each drops its copy once the
    three winners served the bytes (trim.py), and every shard is back on exactly its winners.
    Six shards: that the frozen node held none of them has a chance of 1 in 4**6."""
    monkeypatch.setenv("BORGUSB_REPAIR_MS", "1000")
    cluster = await start(make_cluster, monkeypatch, tmp_path, 4)
    data = os.urandom(6 * SS)
    put = await put_bytes(cluster.nodes[0].ip, data, SigningKey.generate(), tmp_path)
    oid, shards = put["id"], [model.sha256_hex(c) for _, c in model.split(data)]
    key_of = {d["ip"]: d["shard"]["earn"]["claimant"] for d in await cluster.status()}
    frozen = cluster.nodes[3]
    os.kill(frozen.pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 120
        while True:  # every shard back at R on the three others
            held = await holds(cluster, oid)
            got = copies({ip: v for ip, v in held.items() if ip != frozen.ip}, shards)
            if min(got[1]) >= 3 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert min(got[1]) >= 3, f"no repair while a holder was frozen: {got}"
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    want = {sh: set(placement.rank(sh, key_of.values())[:3]) for sh in shards}
    deadline = time.monotonic() + 180
    while True:
        held = await holds(cluster, oid)
        on = {sh: {key_of[ip] for ip, (_, hs) in held.items() if sh in hs} for sh in shards}
        if on == want or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    docs = await cluster.status(timeout_s=10)
    trimmed = sum(d.get("counters", {}).get("shard_trimmed", 0) for d in docs)
    kept = {k: v for d in docs for k, v in d.get("counters", {}).items() if k.startswith("trim_kept")}
    print(f"copies per shard after the freeze {[len(v) for v in on.values()]}; trimmed {trimmed}; kept {kept}")
    assert on == want, f"the copies are not each shard's 3 lottery winners: {on} != {want}"
    assert trimmed >= 1
    async with client(SigningKey.generate()) as peers:
        reply = await peers.post(cluster.nodes[0].ip, PORT, "/recp", "shard.locate", {"id": oid}, signed_reply=True)
        m, by_shard = parse_locate(reply, oid)
        await Receiver(peers, m, by_shard, tmp_path / "out").run()
    assert (tmp_path / "out").read_bytes() == data


async def test_reads_during_a_heal_get_the_bytes(make_cluster, monkeypatch, tmp_path) -> None:
    cluster = await start(make_cluster, monkeypatch, tmp_path, 6)
    root = next(d["ip"] for d in await cluster.status() if d["status"] == "root")
    data = os.urandom(2 * SS + 7)
    put = await put_bytes(root, data, SigningKey.generate(), tmp_path)
    victims = [root, next(n.ip for n in cluster.nodes if n.ip != root)]
    for node in cluster.nodes:
        if node.ip in victims:
            cluster.kill(node)
    readers = [n.ip for n in cluster.live()]
    times: list[float] = []
    healing_answers = 0

    def healing(_: object) -> None:
        nonlocal healing_answers
        healing_answers += 1

    t_kill = time.monotonic()
    fetches: list[Receiver] = []
    async with client(SigningKey.generate()) as peers:
        while time.monotonic() - t_kill < 15 or len(times) < len(readers):
            ip = readers[len(times) % len(readers)]
            out = tmp_path / f"out-{len(times)}"
            t0 = time.monotonic()
            reply = await locate_through_heal(peers, ip, PORT, put["id"], on_wait=healing)
            m, per_shard = parse_locate(reply, put["id"])  # "not found" would raise here
            fetches.append(Receiver(peers, m, per_shard, out))
            await fetches[-1].run()
            times.append(time.monotonic() - t0)
            assert out.read_bytes() == data
            await asyncio.sleep(0.2)  # pacing: about 50 reads, not hundreds, on a shared machine
        # an id nobody stored: "not found" once the winners answer (asked again while "healing")
        nobody = model.sha256_hex(os.urandom(8))
        assert (await locate_through_heal(peers, readers[0], PORT, nobody, what="shard.stat"))["found"] is False
        for fetch in fetches:
            await fetch.receipts_handed()  # before the client closes: the hand-in would reopen its session
    print(
        f"{len(times)} reads in the {time.monotonic() - t_kill:.1f}s after killing the root and one more of 6: "
        f"first {times[0]:.2f}s, slowest {max(times):.2f}s, median {sorted(times)[len(times) // 2]:.2f}s; "
        f"answered 'healing' {healing_answers} times"
    )
    assert max(times) < 15  # the figure above is the claim (3 s); this bound allows a loaded machine
