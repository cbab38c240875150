"""The content reward on real processes: readers' receipts kept by an fStream cell, claimed by the
creator, checked and paid by the reserve's holders (issue 16; docs/ledger.md, "The content reward").

Five addresses each run a shardTreeCell and a peerPaysCell, the first an fStreamCell too, which
(TEST ONLY, ``BORGUSB_FSTREAM_TEST_ONLY_READ_DAYS_BACK=1``) also takes receipts of yesterday, so a
day that has ended can be claimed without waiting for one; the holders' checks are the product's.
A creator publishes a small public media object; two readers each hand in a receipt of it, dated
yesterday; the fStream cell stops cleanly and starts again (it reads its receipts back); then:

* the creator claims yesterday (`payearn.claim_content`, what ``borgusb pay earn content`` runs):
  paid exactly 2 reads (0.002 Shell), the reserve down by as much (supply conserved);
* the same day claimed again is ``already_paid``, also through ``borgusb pay earn content``;
* a record with a receipt the creator signed of its own map is refused ``self_read``;
* a record naming a map someone else stored is refused ``not_owner`` (the fStream cell refused the
  same receipt when it was handed in: the map's signed owner is another);
* a record of today is refused ``not_ended``;
* a person's conduit (in this process) plays two ranges of the creator's listed media on its Watch
  page and hands the fStream cell one read receipt of it for today, which only the creator is given.

Run under ``flock /tmp/borgusb-cluster.lock`` (fixed addresses 127.0.0.2-6).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from borgusb import dna
from borgusb.cells.fstream.client import FStreamClient
from borgusb.cells.fstream.publish import publish
from borgusb.cells.fstream.web import COUNTERS as WATCH_COUNTERS
from borgusb.cells.peerpays.claim import RewardRefused, claim_reward
from borgusb.cells.peerpays.client import PayClient
from borgusb.clock import SystemClock
from borgusb.conduit import ConduitState, create_app
from borgusb.envelope import Verifier
from borgusb.keys import SigningKey
from borgusb.ledger import RESERVE, SUPPLY
from borgusb.ledger.contentwork import DAY_MS, ContentRecord, day_of, make_content, read_id, sign_read
from borgusb.ledger.rules import amount
from borgusb.net.peer import PeerClient, PeerError, PeerRejected
from borgusb.payearn import claim_content
from tests.integration.test_agents_cluster import poll
from tests.integration.test_hold_reward_cluster import N, settle
from tests.integration.test_peerpays_cluster import cli
from tests.unit.test_conduit_routes import FAST, auth, free_port, restore

pytestmark = pytest.mark.slow
CLOCK = SystemClock()
SHARD_PORT = dna.get("shardTreeCell").recp_port


def peers(key: SigningKey) -> PeerClient:
    return PeerClient(key, CLOCK, Verifier(CLOCK), timeout_s=60)


async def published(ip: str, key: SigningKey, tmp_path: Path, listed: bool = False) -> str:
    """A small public media object of `key`'s: its stream map's id."""
    path = tmp_path / f"media-{os.urandom(4).hex()}.bin"
    path.write_bytes(os.urandom(300_000))
    async with peers(key) as p:
        out = await publish(p, ip, SHARD_PORT, path, key, r=3, listed=listed, renditions=())
    assert out.get("listed", False) is listed, out
    return str(out["map"])


async def watched_through_a_conduit(ip: str, mid: str, tmp_path: Path) -> tuple[str, Counter[str]]:
    """A person's conduit (in this process, against the cluster) opens the public listing `mid` on its
    Watch page and plays two ranges of it: its wallet's key, and the Watch page's counters."""
    state = ConduitState(tmp_path / "stick" / "keystore.json", kdf=FAST)
    state.keystore_path.parent.mkdir()
    port = free_port()
    app = create_app(state, seeds=[ip], port=port)
    client = TestClient(TestServer(app, port=port))
    await client.start_server()
    try:
        client.state = state  # type: ignore[attr-defined]
        await restore(client)
        assert state.wallet is not None

        async def listed() -> bool:
            resp = await client.post("/api/watch/public", json={}, headers=auth(client))
            return resp.status == 200 and mid in [x["map"] for x in (await resp.json())["listings"]]

        await poll("the listing reaches the conduit", listed, 60)
        resp = await client.post("/api/watch/open", json={"map": mid}, headers=auth(client))
        assert resp.status == 200, await resp.text()
        src = (await resp.json())["src"]
        for rng in ("bytes=0-99", "bytes=100-199"):  # one read receipt for both
            resp = await client.get(src, headers={"Range": rng})
            assert resp.status == 206 and len(await resp.read()) == 100
        counters = app[WATCH_COUNTERS]

        async def sent() -> bool:
            return counters["read_sent"] == 1

        await poll("the conduit hands in its read receipt", sent, 30)
        return state.wallet.public.public_key_hex, counters
    finally:
        await client.close()


async def claimed_through_a_conduit(ip: str, tmp_path: Path, readers: list[SigningKey], at: int) -> dict[str, Any]:
    """A creator's own conduit (in this process): its wallet publishes media, `readers` hand in receipts
    of it dated `at` (yesterday), and the Watch page's Earnings card counts and claims them."""
    state = ConduitState(tmp_path / "creator-stick" / "keystore.json", kdf=FAST)
    state.keystore_path.parent.mkdir()
    port = free_port()
    client = TestClient(TestServer(create_app(state, seeds=[ip], port=port), port=port))
    await client.start_server()
    try:
        client.state = state  # type: ignore[attr-defined]
        await restore(client)
        assert state.wallet is not None
        me = state.wallet.key
        mid = await published(ip, me, tmp_path)
        for r in readers:
            async with peers(r) as p:
                assert (await FStreamClient(p, ip).read(sign_read(r, mid, me.public_key_hex, at)))["kept"] is True

        async def earnings() -> dict[str, Any]:
            resp = await client.post("/api/watch/earnings", json={}, headers=auth(client))
            assert resp.status == 200, await resp.text()
            return dict(await resp.json())

        seen = await earnings()
        assert (seen["reads"], seen["today"], seen["claimed"]) == (len(readers), 0, None), seen
        assert seen["shells"] == "0.00" + str(len(readers)), seen
        resp = await client.post("/api/watch/earn", json={}, headers=auth(client))
        assert resp.status == 200, await resp.text()
        got = dict(await resp.json())
        assert got["claimed"] is True and got["reads"] == len(readers), got
        after = await earnings()
        assert after["claimed"] == {"id": got["id"], "shells": got["shells"], "reads": len(readers)}, after
        again = await client.post("/api/watch/earn", json={}, headers=auth(client))
        assert (await again.json())["why"] == "already_paid"
        return {"key": me.public_key_hex, **got}
    finally:
        await client.close()


def _unchecked(claimant: str, day: int, reads: list[dict[str, Any]]) -> ContentRecord:
    """A record as a claimant could send it, not checked here (the holders check it)."""
    return ContentRecord(claimant, day, tuple(sorted(reads, key=read_id)), amount("content", len(reads)))


async def refused(pay: PayClient, key: SigningKey, rec: Any) -> str:
    with pytest.raises(RewardRefused) as err:
        await claim_reward(pay, key, rec.to_dict(), rec.ref, rec.amount, CLOCK.now_ms, tries=2)
    return err.value.reason


async def test_content_reward_paid_once_for_others_reads(make_cluster: Any, monkeypatch: Any, tmp_path: Path) -> None:
    monkeypatch.setenv("BORGUSB_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("BORGUSB_SHARD_EARN", "0")  # no hold claims race these for the reserve's seq
    monkeypatch.setenv("BORGUSB_FSTREAM_TEST_ONLY_READ_DAYS_BACK", "1")
    shards, pays, fstream = make_cluster("shardTreeCell"), make_cluster("peerPaysCell"), make_cluster("fStreamCell")
    shards.up(N)
    pays.up(N)
    fstream.up(1)
    await shards.wait_one_tree(timeout_s=90, expect=N)
    await pays.wait_one_tree(timeout_s=90, expect=N)
    await settle(shards, lambda d: d.get("shard", {}).get("directory") == N, "shard directories did not fill")
    await settle(pays, lambda d: d.get("pay", {}).get("members") == N, "the member views did not settle")
    a1 = shards.nodes[0].ip

    creator, other, r1, r2 = (SigningKey.generate() for _ in range(4))
    mine = await published(a1, creator, tmp_path)
    theirs = await published(a1, other, tmp_path)
    yesterday = day_of(CLOCK.now_ms()) - 1
    at = CLOCK.now_ms() - DAY_MS

    async def hand_in(reader: SigningKey, receipt: dict[str, Any]) -> dict[str, Any]:
        async with peers(reader) as p:
            return await FStreamClient(p, a1).read(receipt)

    async def answers() -> bool:
        try:
            return bool(await hand_in(r1, sign_read(r1, mine, creator.public_key_hex, at)))
        except PeerError:
            return False  # not up yet

    await poll("the fStream cell takes a read receipt", answers, 90)
    assert (await hand_in(r2, sign_read(r2, mine, creator.public_key_hex, at + 1)))["kept"] is True
    again = await hand_in(r1, sign_read(r1, mine, creator.public_key_hex, at + 2))
    assert again["kept"] is False  # one read per reader, map and day
    with pytest.raises(PeerRejected) as err:  # the map's signed owner is not the one the receipt names
        await hand_in(r1, sign_read(r1, theirs, creator.public_key_hex, at))
    assert err.value.reason == "not_owner"
    with pytest.raises(PeerRejected) as err:  # a receipt is handed in by its reader only
        await hand_in(r2, sign_read(r1, theirs, other.public_key_hex, at))
    assert err.value.reason == "not_reader"
    fs = (await fstream.status())[0]["counters"]
    assert fs.get("fstream_read_kept") == 2 and fs.get("fstream_refused:not_owner") == 1, fs

    # a clean stop and a new process: the receipts are read back from the cell's directory
    (node,) = fstream.nodes
    fstream.kill(node, signal.SIGTERM)

    async def stopped() -> bool:
        return not node.running()

    await poll("the fStream cell stops", stopped, 30)
    fstream.spawn(node.ip, [])
    await fstream.wait_ready()

    owed = 2 * amount("content", 1)
    async with peers(creator) as p:
        pay = PayClient(p, a1)
        got = await claim_content(p, pay, creator, [a1], yesterday, CLOCK.now_ms)
        assert got["claimed"] is True, got
        assert (got["reads"], got["amount"]) == (2, owed) and owed == 200_000  # 0.002 Shell
        for ip in [n.ip for n in pays.nodes]:
            assert (await PayClient(p, ip).balance(creator.public_key_hex))["balance"] == owed
        reserve = await PayClient(p, pays.nodes[3].ip).balance(RESERVE)
        assert (reserve["balance"], reserve["seq"]) == (SUPPLY - owed, 1)  # supply conserved

        again_claim = await claim_content(p, pay, creator, [a1], yesterday, CLOCK.now_ms)
        assert again_claim["claimed"] is False and again_claim["why"] == "already_paid", again_claim
        keyfile = tmp_path / "creator.key"
        keyfile.write_text(bytes(creator.secret_bytes()).hex() + "\n")
        args = ("earn", "content", "--day", str(yesterday), "--node", a1, "--key-file", str(keyfile), "--json")
        proc = await asyncio.to_thread(cli, *args, env={"BORGUSB_PAY_DIR": str(tmp_path / "pending")})
        assert proc.returncode == 1, proc.stderr  # the command, too: found the 2 reads, already paid
        shown = json.loads(proc.stdout)
        assert (shown["why"], shown["reads"], shown["ref"]) == ("already_paid", 2, got["ref"]), shown

        r3 = SigningKey.generate()
        reads = [sign_read(r3, mine, creator.public_key_hex, at), sign_read(creator, mine, creator.public_key_hex, at)]
        rec = _unchecked(creator.public_key_hex, yesterday, reads)
        assert await refused(pay, creator, rec) == "self_read"

        today = make_content(
            creator.public_key_hex, yesterday + 1, [sign_read(r3, mine, creator.public_key_hex, CLOCK.now_ms())]
        )
        assert await refused(pay, creator, today) == "not_ended"

    async with peers(other) as p:  # `other` claims reads of the creator's map, as if it were theirs
        rec = make_content(other.public_key_hex, yesterday, [sign_read(r1, mine, other.public_key_hex, at)])
        assert await refused(PayClient(p, a1), other, rec) == "not_owner"
        assert (await PayClient(p, a1).balance(other.public_key_hex))["balance"] == 0
        reserve = await PayClient(p, pays.nodes[2].ip).balance(RESERVE)
        assert (reserve["balance"], reserve["seq"]) == (SUPPLY - owed, 1)  # nothing else paid

    # a person watches the creator's listed media through their conduit: it hands in one receipt for today
    listed_map = await published(a1, creator, tmp_path, listed=True)
    viewer, watch_counters = await watched_through_a_conduit(a1, listed_map, tmp_path)
    async with peers(creator) as p:
        kept = await FStreamClient(p, a1).reads(yesterday + 1)
    assert [(r["reader"], r["map"]) for r in kept] == [(viewer, listed_map)], kept
    assert watch_counters["read_sent"] == 1 and not any(
        k.startswith("read_") and k != "read_sent" for k in watch_counters
    )
    async with peers(other) as p:  # only the owner is given their receipts
        assert await FStreamClient(p, a1).reads(yesterday + 1) == []

    counters = [d["counters"] for d in await pays.status()]
    for reason in ("self_read", "not_owner", "not_ended"):
        assert sum(c.get(f"pay_work_refused:{reason}", 0) for c in counters) >= 1, reason
    fs = (await fstream.status())[0]["counters"]
    assert fs.get("fstream_read_kept") == 1, fs  # the conduit's, since the restart

    # the creator's own conduit: its Watch page counts yesterday's reads of its media and claims them
    paid = await claimed_through_a_conduit(a1, tmp_path, [r1, r2, r3], at)
    async with peers(r1) as p:
        assert (await PayClient(p, pays.nodes[1].ip).balance(paid["key"]))["balance"] == 3 * amount("content", 1)
