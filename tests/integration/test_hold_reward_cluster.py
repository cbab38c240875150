"""The hold reward on real processes: shard cells claim, the reserve's holders audit and pay.

Five addresses, each running a shardTreeCell and a peerPaysCell (two single-type clusters on the
same loopback addresses: the cells of one machine, without the seven other cell types). An object
is stored, the copies are made older than the last whole hour (their files' times set back, the
one thing a test cannot wait for), and then:

* a node that holds its shards claims the last hour: certified, its balance is the hold rule's
  amount for exactly the bytes it held, and the reserve is down by as much (supply conserved);
* the same period claimed again (its local record of claims removed) is ``already_paid``;
* a node whose copies rotted (same size, other bytes) lists them, and the reserve's holders,
  fetching a sample, refuse the claim as ``not_held``; nothing moves;
* two nodes claiming at once are both paid (the loser of the reserve's seq claims again).

Run under ``flock /tmp/borgusb-cluster.lock`` (fixed addresses 127.0.0.2-6).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from borgusb import dna
from borgusb.cells.peerpays.client import PayClient
from borgusb.cells.shard.client import ShardClient
from borgusb.clock import SystemClock
from borgusb.dstream import put_file
from borgusb.envelope import Verifier
from borgusb.keys import SigningKey
from borgusb.ledger import RESERVE, SUPPLY
from borgusb.ledger.work import HOLD_PERIOD_MS, hold_amount, period_start
from borgusb.net.peer import PeerClient

pytestmark = pytest.mark.slow

N = 5
CLOCK = SystemClock()
SHARD_PORT = dna.get("shardTreeCell").recp_port
BACKDATE_S = 3 * HOLD_PERIOD_MS // 1000  # older than the start of the last whole hour


def peers() -> PeerClient:
    return PeerClient(SigningKey.generate(), CLOCK, Verifier(CLOCK), timeout_s=60)


async def settle(cluster, check, what: str, timeout_s: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        docs = await cluster.status()
        if len(docs) == N and all(check(d) for d in docs):
            return docs
        await asyncio.sleep(0.3)
    raise TimeoutError(what)


def shard_files(doc: dict[str, Any]) -> list[Path]:
    root = Path(doc["shard"]["store"]["root"]) / "shards"
    return [p for p in root.glob("*/*") if p.suffix != ".rec"]


async def test_hold_reward_paid_once_for_held_shards_refused_for_rotten(
    make_cluster, monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BORGUSB_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("BORGUSB_SHARD_EARN", "0")  # the test asks for each claim (shard.earn)
    monkeypatch.setenv("BORGUSB_SCRUB_BPS", "0")  # the rotten copies stay until a verifier asks
    shards, pays = make_cluster("shardTreeCell"), make_cluster("peerPaysCell")
    shards.up(N)
    pays.up(N)
    await shards.wait_one_tree(timeout_s=90, expect=N)
    await pays.wait_one_tree(timeout_s=90, expect=N)
    await settle(shards, lambda d: d.get("shard", {}).get("directory") == N, "shard directories did not fill")
    await settle(pays, lambda d: d.get("pay", {}).get("members") == N, "the member views did not settle")
    ips = [n.ip for n in shards.nodes]
    assert ips == [n.ip for n in pays.nodes]

    data = os.urandom(6 * 1024 * 1024 + 12345)  # 7 shards, 3 copies each, on 5 nodes
    src = tmp_path / "object"
    src.write_bytes(data)
    owner = SigningKey.generate()
    async with PeerClient(owner, CLOCK, Verifier(CLOCK), timeout_s=60) as p:
        put = await put_file(p, ips[0], SHARD_PORT, src, owner, r=3)
    assert put["copies_min"] == 3

    docs = await shards.status()
    old = time.time() - BACKDATE_S
    for d in docs:
        for f in shard_files(d):
            os.utime(f, (old, old))
    by_bytes = sorted(docs, key=lambda d: -d["shard"]["store"]["used_bytes"])
    good, rotten = by_bytes[0], by_bytes[1]
    assert rotten["shard"]["store"]["used_bytes"] >= 1024 * 1024  # worth at least one unit an hour
    for f in shard_files(rotten):
        f.write_bytes(bytes(f.stat().st_size))
        os.utime(f, (old, old))

    start = period_start(CLOCK.now_ms()) - HOLD_PERIOD_MS
    claimant = good["shard"]["earn"]["claimant"]
    owed = hold_amount(good["shard"]["store"]["used_bytes"])
    async with peers() as p:
        got = await ShardClient(p, good["ip"]).earn(start)
        assert got["claimed"] is True, got
        assert (got["start"], got["amount"]) == (start, owed) and owed > 0
        for ip in ips:  # certified: every node reads the credit from a quorum of the claimant's holders
            assert (await PayClient(p, ip).balance(claimant))["balance"] == owed
        assert (await PayClient(p, ips[2]).balance(RESERVE))["balance"] == SUPPLY - owed

        again = await ShardClient(p, good["ip"]).earn(start)
        assert again["claimed"] is False and again["why"] == "claimed_before"
        (Path(good["shard"]["data_dir"]) / "earned.json").unlink()  # forget it: the ledger still knows
        again = await ShardClient(p, good["ip"]).earn(start)
        assert again["claimed"] is False and again["why"] == "already_paid", again
        assert again["ref"] == got["ref"]

        bad = await ShardClient(p, rotten["ip"]).earn(start)
        assert bad["claimed"] is False and bad["why"] == "not_held", bad
        # the rotten copies the audits hit were dropped (and fetched again, too new to list): the next
        # claim lists only the rest, still rotten, or nothing at all
        again = await ShardClient(p, rotten["ip"]).earn(start)
        assert again["claimed"] is False and again["why"] in ("not_held", "nothing_owed"), again
        assert (await PayClient(p, ips[3]).balance(rotten["shard"]["earn"]["claimant"]))["balance"] == 0
        reserve = await PayClient(p, ips[4]).balance(RESERVE)
        assert (reserve["balance"], reserve["seq"]) == (SUPPLY - owed, 1)  # one payout, supply conserved

        # two claims at once race for the reserve's next seq: the sequencer offers them one at a time,
        # so the loser is refused by every holder (no split vote) and is paid when it claims again
        two = by_bytes[2:4]
        first = await asyncio.gather(*(ShardClient(p, d["ip"]).earn(start) for d in two))
        for d, got in zip(two, first, strict=True):
            if not got["claimed"]:
                assert got["why"] in ("conflicting_spend", "bad_prev"), got
                assert (await ShardClient(p, d["ip"]).earn(start))["claimed"] is True
        paid = [hold_amount(d["shard"]["store"]["used_bytes"]) for d in two]
        for d, units in zip(two, paid, strict=True):
            assert (await PayClient(p, ips[0]).balance(d["shard"]["earn"]["claimant"]))["balance"] == units
        reserve = await PayClient(p, ips[1]).balance(RESERVE)
        assert (reserve["balance"], reserve["seq"]) == (SUPPLY - owed - sum(paid), 3)
    pay_docs = await pays.status()
    refused = sum(d["counters"].get("pay_work_refused:not_held", 0) for d in pay_docs)
    verified = sum(d["counters"].get("pay_work_verified", 0) for d in pay_docs)
    forwarded = sum(d["counters"].get("pay_reward_forwarded", 0) for d in pay_docs)
    assert refused >= 3 and verified >= 4 and forwarded >= 3, (refused, verified, forwarded)
