"""The serve reward on real processes: a reader's receipts reach the holders that served it, and a
holder is paid for exactly the bytes its receipts name.

Five addresses, each running a shardTreeCell (with a node key file and a data directory, so one can
stop and start again as itself) and a peerPaysCell. An owner stores an object; a reader (a plain
key, not a node) fetches it with DStream's `Receiver`, which signs a receipt per holder and hands
it in. Then:

* every holder kept the receipts for what it served (``shard_receipts_kept``), and refuses a
  receipt for bytes it never served (``not_served``) and one handed in by another key
  (``not_reader``);
* one holder is stopped and its kept receipts are dated one hour back, re-signed by the reader's
  key (the reader read an hour ago: the one thing a test cannot wait for); started again, it
  claims that period's serve reward: certified, its balance is exactly the serve rule's amount for
  the bytes it served the reader, and the reserve is down by as much (supply conserved);
* the same period claimed again is ``claimed_before``; a node with no receipts has nothing owed.

Run under ``flock /tmp/borgusb-cluster.lock`` (fixed addresses 127.0.0.2-6).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from borgusb import dna
from borgusb.cells.peerpays.client import PayClient
from borgusb.cells.shard.client import ShardClient, locate_through_heal
from borgusb.clock import SystemClock
from borgusb.cluster import NodeProc
from borgusb.dstream import Receiver, parse_locate, put_file
from borgusb.envelope import Verifier
from borgusb.keys import SigningKey
from borgusb.ledger import RESERVE, SUPPLY
from borgusb.ledger.rules import amount
from borgusb.ledger.work import HOLD_PERIOD_MS, period_start
from borgusb.net.peer import PeerClient, PeerRejected
from borgusb.shard.receipt import sign_receipt
from tests.integration.test_hold_reward_cluster import N, settle

pytestmark = pytest.mark.slow

CLOCK = SystemClock()
SHARD_PORT = dna.get("shardTreeCell").recp_port


def client(key: SigningKey | None = None) -> PeerClient:
    return PeerClient(key or SigningKey.generate(), CLOCK, Verifier(CLOCK), timeout_s=60)


def kept(doc: dict[str, Any]) -> int:
    return doc["counters"].get("shard_receipts_kept", 0)


async def refused(p: PeerClient, ip: str, receipt: dict[str, Any]) -> str:
    with pytest.raises(PeerRejected) as err:
        await p.post(ip, SHARD_PORT, "/recp", "shard.receipt", {"receipt": receipt})
    return err.value.reason


async def test_serve_reward_paid_for_the_bytes_readers_signed(make_cluster, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BORGUSB_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("BORGUSB_SHARD_EARN", "0")  # the test asks for each claim (shard.earn)
    shards, pays = make_cluster("shardTreeCell"), make_cluster("peerPaysCell")
    for i in range(N):
        ip, home = f"127.0.0.{2 + i}", tmp_path / f"n{i}"  # the addresses cluster.up gives, in order
        home.mkdir(mode=0o700)
        (home / "node.key").write_text(SigningKey.generate().secret_bytes().hex())
        shards.args[ip] = ["--key-file", str(home / "node.key"), "--data", str(home)]
    shards.up(N)
    pays.up(N)
    await shards.wait_one_tree(timeout_s=90, expect=N)
    await pays.wait_one_tree(timeout_s=90, expect=N)
    await settle(shards, lambda d: d.get("shard", {}).get("directory") == N, "shard directories did not fill")
    await settle(pays, lambda d: d.get("pay", {}).get("members") == N, "the member views did not settle")
    ips = [n.ip for n in shards.nodes]

    data = os.urandom(6 * 1024 * 1024 + 12345)  # 7 shards, 2 copies each, on 5 nodes
    src = tmp_path / "object"
    src.write_bytes(data)
    owner, reader = SigningKey.generate(), SigningKey.generate()
    async with client(owner) as p:
        oid = str((await put_file(p, ips[0], SHARD_PORT, src, owner, r=2))["id"])
    async with client(reader) as p:
        m, holders = parse_locate(await locate_through_heal(p, ips[1], SHARD_PORT, oid), oid)
        fetch = Receiver(p, m, holders, tmp_path / "read")
        stats = await fetch.run()
        handed = await fetch.receipts_handed()
    assert (tmp_path / "read").read_bytes() == data
    served = {pk: dict(s) for pk, s in fetch.served.items()}
    assert handed == len(served) >= 2, (fetch.receipts_refused, stats)
    docs = await settle(shards, lambda d: True, "status")
    by_key = {d["shard"]["earn"]["claimant"]: d for d in docs}
    for pk in served:
        assert kept(by_key[pk]) >= 1, by_key[pk]["counters"]

    # refused: bytes never served to this reader, and a receipt handed in by another key
    pk, shard_sizes = next(iter(served.items()))
    target = by_key[pk]
    not_given = next(h for h in m["shards"] if h not in shard_sizes) if len(shard_sizes) < 7 else "ab" * 32
    async with client(reader) as p:
        forged = sign_receipt(reader, pk, {not_given: 1024 * 1024}, CLOCK.now_ms())
        assert await refused(p, target["ip"], forged) == "not_served"
        honest = sign_receipt(reader, pk, shard_sizes, CLOCK.now_ms())
    async with client() as stranger:
        assert await refused(stranger, target["ip"], honest) == "not_reader"
    counted = next(d for d in await shards.status() if d["ip"] == target["ip"])["counters"]
    assert counted.get("shard_rejected:not_served") == counted.get("shard_rejected:not_reader") == 1, counted

    # the reader read an hour ago: the holder's kept receipts dated back one period, re-signed by the reader
    node = next(n for n in shards.nodes if n.ip == target["ip"])
    shards.kill(node, signal.SIGTERM)
    await _exited(node)
    path = Path(target["shard"]["data_dir"]) / "receipts.json"
    back = CLOCK.now_ms() - HOLD_PERIOD_MS
    start = period_start(back)
    receipts = [r for rs in json.loads(path.read_text()).values() for r in rs]
    assert receipts and all(r["reader"] == reader.public_key_hex for r in receipts)
    moved = [sign_receipt(reader, r["holder"], dict(map(tuple, r["shards"])), back) for r in receipts]
    path.write_text(json.dumps({str(start): moved}))
    shards.spawn(target["ip"], [ips[0] if target["ip"] != ips[0] else ips[1]])
    await settle(shards, lambda d: d.get("shard", {}).get("directory") == N, "the holder did not come back")

    owed = amount("serve", sum(shard_sizes.values()))
    async with client() as p:
        got = await ShardClient(p, target["ip"]).earn(start, rule="serve")
        assert got["claimed"] is True, got
        assert (got["start"], got["amount"], got["rule"]) == (start, owed, "serve") and owed > 0
        for ip in ips:  # certified: every node reads the credit from a quorum of the holder's holders
            assert (await PayClient(p, ip).balance(pk))["balance"] == owed
        reserve = await PayClient(p, ips[2]).balance(RESERVE)
        assert (reserve["balance"], reserve["seq"]) == (SUPPLY - owed, 1)  # one payout, supply conserved

        again = await ShardClient(p, target["ip"]).earn(start, rule="serve")
        assert again["claimed"] is False and again["why"] == "claimed_before", again
        other = next(d for d in docs if d["ip"] != target["ip"])
        none = await ShardClient(p, other["ip"]).earn(start, rule="serve")
        assert none["claimed"] is False and none["why"] == "nothing_owed", none  # its receipts are this hour's
    pay_docs = await pays.status()
    assert sum(d["counters"].get("pay_work_verified", 0) for d in pay_docs) >= 4


async def _exited(node: NodeProc, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while node.running():
        if time.monotonic() > deadline:
            raise TimeoutError(f"node {node.ip} did not stop")
        await asyncio.sleep(0.1)
