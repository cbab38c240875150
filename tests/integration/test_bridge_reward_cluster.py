"""The bridge reward on real processes: a swap's parties vouch for the bridge that carried their Dogecoin
transactions, and the bridge claims 1 Shell for each from the reserve, whose holders check the ledger
lock and the Dogecoin chain themselves (issue 16; docs/ledger.md, "The bridge reward").

Five addresses each run a peerPaysCell and a dogeNodeCell connected to the dogecoind stand-in (every
reserve holder asks its own node's dogeNodeCell), two btraderOrganCells carry the fill and the
parties' notes. The bridge is the dogeNodeCell of the first address: both parties' settlements use
it, so Bob's HTLC funding (a deposit) and Alice's claim of it (a withdrawal) go through it, and each
party hands it a voucher. Then:

* before the withdrawal has the bridges' 6 confirmations it is not claimed (``unconfirmed``);
* once the stand-in mined them, ``doge.earn`` claims both: the bridge is paid exactly 2 Shells,
  the reserve down by as much;
* claiming again: nothing left to claim there, and a claim of the same transaction is
  ``already_paid``;
* a party's voucher for a transaction that is not the swap's HTLC is refused ``not_htlc_tx``, one
  whose script has another hash than the lock's ``hash_mismatch``, and a voucher signed by a
  stranger key (handed in by that key) ``not_party``; the holders count each refusal.

Run under ``flock /tmp/borgusb-cluster.lock`` (fixed addresses 127.0.0.2-6).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from borgusb.cells.btrader.client import BtraderClient
from borgusb.cells.btrader.settle import Settlement
from borgusb.cells.dogenode.client import DogeNodeClient
from borgusb.cells.peerpays.claim import RewardRefused, claim_reward
from borgusb.cells.peerpays.client import PayClient
from borgusb.doge.address import p2pkh_address
from borgusb.doge.htlc import htlc_script
from borgusb.envelope import Verifier
from borgusb.exchange.order import sign_order
from borgusb.exchange.swap import SwapTimes
from borgusb.keys import SigningKey
from borgusb.ledger import RESERVE, SUPPLY, ZERO_HASH, sign_reward
from borgusb.ledger.bridgework import make_bridge, sign_voucher
from borgusb.net.peer import PeerClient
from tests.standins.dogecoind_standin import MATURITY, DogecoindStandin

from .test_btrader_cluster import converged
from .test_doge_bridge import Bridge, until
from .test_peerpays_cluster import CLOCK, SHELL, WORK, balance, send, start

pytestmark = pytest.mark.slow

NET = "regtest"
CONFIRMATIONS = 6
TIMES = SwapTimes(
    shell_lock_ms=40 * 60_000,
    doge_lock_ms=10 * 60_000,
    margin_ms=10 * 60_000,
    lock_wait_ms=10 * 60_000,
    confirmations=1,
)


def addr(key: SigningKey) -> str:
    return p2pkh_address(key.public_key, NET)


async def test_a_bridge_is_paid_once_for_each_swap_leg_it_served(make_cluster, monkeypatch, tmp_path: Path) -> None:
    standin = DogecoindStandin("borgusb", secrets.token_hex(16))
    await standin.start()
    chain = standin.chain
    env = {"BORGUSB_DOGE_RPC_PASSWORD": standin.password, "BORGUSB_DOGE_EARN": "no"}  # claimed by doge.earn here
    args = ["--rpc-url", standin.url, "--rpc-user", "borgusb", "--network", NET]
    args += ["--min-confirmations", str(CONFIRMATIONS), "--poll-ms", "100", "--start-height", "0"]
    bridges: list[Bridge] = []
    alice, bob, miner, stranger = (SigningKey.generate() for _ in range(4))
    opened: list[PeerClient] = []
    try:
        pay_cluster = await start(make_cluster, monkeypatch, tmp_path)
        ips = [n.ip for n in pay_cluster.nodes]
        for ip in ips:  # every reserve holder's node has a dogeNodeCell; the first one is the bridge
            (tmp_path / f"bridge-{ip}").mkdir()
            bridges.append(Bridge(ip, tmp_path / f"bridge-{ip}", env, args))
            bridges[-1].start()
        bt_cluster = make_cluster("btraderOrganCell")
        bt_cluster.up(2)
        await bt_cluster.wait_one_tree(timeout_s=60, expect=2)
        bt_ips = [n.ip for n in bt_cluster.nodes]
        for b in bridges:
            await b.status()
        bridge_key = SigningKey(bytes.fromhex((tmp_path / f"node-{ips[0]}.key").read_text().strip()))
        me = bridge_key.public_key_hex

        await send(ips[0], sign_reward(alice, seq=1, prev=ZERO_HASH, amount=100 * SHELL, ref=WORK, ts=CLOCK.now_ms()))
        reserve_before = (await balance(ips[1], RESERVE))["balance"]
        assert reserve_before == SUPPLY - 100 * SHELL
        clients: dict[str, tuple[PayClient, DogeNodeClient, BtraderClient]] = {}
        for who, key, bt_ip in (("alice", alice, bt_ips[0]), ("bob", bob, bt_ips[1])):
            p = PeerClient(key, CLOCK, Verifier(CLOCK), timeout_s=60)
            opened.append(p)
            clients[who] = (PayClient(p, ips[0]), DogeNodeClient(p, ips[0]), BtraderClient(p, bt_ip))
        assert await clients["bob"][1].node_key() == me
        await clients["bob"][1].watch(addr(bob))
        chain.generate(2, addr(bob))
        chain.generate(MATURITY, addr(miner))

        async def two_coinbases() -> list[str]:
            found = await clients["bob"][1].deposits(addr(bob))
            return [d["txid"] for d in found] if len(found) == 2 else []

        coinbase, coinbase2 = await until(two_coinbases, "bob's coinbases seen")

        # the swap: Alice sells 5 Shells at 2.5 DOGE to Bob, both through the bridge
        now = CLOCK.now_ms()
        for key, side, c in ((alice, "sell", clients["alice"]), (bob, "buy", clients["bob"])):
            order = sign_order(
                key, side=side, amount=5 * SHELL, price=250_000_000, ts=now, expiry=now + 600_000, nonce=os.urandom(16)
            )
            await c[2].place(order)
        (fill,) = await converged(bt_ips, 1)
        sides = [
            Settlement(key, fill, TIMES, pay=c[0], doge=c[1], bt=c[2], net=NET, now_ms=CLOCK.now_ms)
            for key, c in ((alice, clients["alice"]), (bob, clients["bob"]))
        ]
        seller, buyer = sides
        deadline = time.monotonic() + 90
        while not all(s.done for s in sides):
            assert time.monotonic() < deadline, [(s.role, s.state, s.log, s.errors[-3:]) for s in sides]
            for s in sides:
                await s.step()
            chain.generate(1, addr(miner))
            await asyncio.sleep(0.2)
        assert [s.state for s in sides] == ["done", "done"], [(s.log, s.errors) for s in sides]
        assert (await balance(ips[2], bob.public_key_hex))["balance"] == 5 * SHELL
        assert seller.lock_tx is not None and not any("voucher" in e for s in sides for e in s.errors)
        withdrawal = next(line.split(": ")[-1] for line in seller.log if line.startswith("claimed the Doge"))
        assert any(line.startswith("vouched for bridge") and buyer.outpoint[0] in line for line in buyer.log)

        # the bridge holds the two parties' vouchers; a leg short of its confirmations is not claimed
        status = await clients["alice"][1].status()
        assert status["vouchers_waiting"] == 2, status
        short = (await clients["alice"][1].tx(withdrawal))["confirmations"]
        if short < CONFIRMATIONS:
            got = await clients["alice"][1].earn()
            mine = {r["txid"]: (r["state"], r["reason"]) for r in got["results"]}
            assert mine[withdrawal] == ("waiting", "unconfirmed"), got
        chain.generate(CONFIRMATIONS, addr(miner))

        async def both_paid() -> Any:
            st = await clients["alice"][1].status()
            if st.get("vouchers_paid", 0) < 2:
                await clients["alice"][1].earn()
                return None
            return st

        await until(both_paid, "both legs paid", timeout_s=60)
        assert (await balance(ips[3], me))["balance"] == 2 * SHELL
        assert (await balance(ips[4], RESERVE))["balance"] == reserve_before - 2 * SHELL

        # claiming again: nothing waits, and the same transaction is paid once
        assert (await clients["alice"][1].earn()) == {"results": [], "paid": 0}
        lock = seller.lock_tx
        again = make_bridge(
            me,
            sign_voucher(alice, me, lock.account, lock.id, "withdrawal", withdrawal, CLOCK.now_ms()),
            seller.script.hex(),
        )
        async with PeerClient(bridge_key, CLOCK, Verifier(CLOCK), timeout_s=60) as p:
            with pytest.raises(RewardRefused) as err:
                await claim_reward(
                    PayClient(p, ips[1]), bridge_key, again.to_dict(), again.ref, again.amount, CLOCK.now_ms
                )
        assert err.value.reason == "already_paid" and err.value.final

        # a party's voucher for a transaction that is not the swap's HTLC; a stranger's voucher
        not_htlc = sign_voucher(bob, me, lock.account, lock.id, "deposit", coinbase, CLOCK.now_ms())
        assert (await clients["bob"][1].voucher(not_htlc, seller.script))["kept"]
        p = PeerClient(stranger, CLOCK, Verifier(CLOCK), timeout_s=60)
        opened.append(p)
        strangers = sign_voucher(stranger, me, lock.account, lock.id, "deposit", coinbase, CLOCK.now_ms())
        assert (await DogeNodeClient(p, ips[0]).voucher(strangers, seller.script))["kept"]
        other_hash = htlc_script(b"\1" * 32, alice.public_key, bob.public_key, 500)  # not the lock's hash
        mismatched = sign_voucher(bob, me, lock.account, lock.id, "deposit", coinbase2, CLOCK.now_ms())
        assert (await clients["bob"][1].voucher(mismatched, other_hash))["kept"]
        got = await clients["alice"][1].earn()
        outcome = {(r["party"], r["txid"]): (r["state"], r["reason"]) for r in got["results"]}
        assert outcome == {
            (bob.public_key_hex, coinbase): ("refused", "not_htlc_tx"),
            (stranger.public_key_hex, coinbase): ("refused", "not_party"),
            (bob.public_key_hex, coinbase2): ("refused", "hash_mismatch"),
        }, got
        assert (await balance(ips[0], me))["balance"] == 2 * SHELL
        counted: dict[str, int] = {}
        for doc in await pay_cluster.status():  # the holders counted their refusals by reason
            for word in ("not_htlc_tx", "not_party", "hash_mismatch"):
                counted[word] = counted.get(word, 0) + doc["counters"].get(f"pay_work_refused:{word}", 0)
        assert min(counted.values()) >= 4, counted
    finally:
        for p in opened:
            await p.close()
        for b in bridges:
            b.kill()
        await standin.stop()
