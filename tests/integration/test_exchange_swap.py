"""A full swap of one fill on real processes: five peerPaysCells (the Shell leg, a hash-time lock on the
ledger), a dogeNodeCell against the dogecoind stand-in (the Doge leg, a P2SH HTLC validated by buidl)
and two btraderOrganCells (the book and the parties' notes). Each party runs its own `Settlement`
with its own key; the seller's Doge claim reveals the secret on the chain and the buyer claims the
Shells with it: both legs complete. And when the seller vanishes after its lock, both refund after
their timeouts.

Run under ``flock /tmp/borgusb-cluster.lock`` (fixed 127.0.0.x addresses and ports).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from pathlib import Path

import pytest

from borgusb.cells.btrader.client import BtraderClient
from borgusb.cells.btrader.runner import SwapRunner
from borgusb.cells.btrader.settle import FEE, Settlement
from borgusb.cells.dogenode.client import DogeNodeClient
from borgusb.cells.peerpays.client import PayClient
from borgusb.conduit.network import Network
from borgusb.doge.address import p2pkh_address
from borgusb.envelope import Verifier
from borgusb.exchange.order import sign_order
from borgusb.exchange.swap import SwapTimes
from borgusb.keys import SigningKey
from borgusb.ledger import ZERO_HASH, sign_reward
from borgusb.net.peer import PeerClient
from tests.standins.dogecoind_standin import MATURITY, DogecoindStandin

from .test_btrader_cluster import converged
from .test_doge_bridge import Bridge, until
from .test_peerpays_cluster import CLOCK, SHELL, WORK, balance, send, start

pytestmark = pytest.mark.slow

NET = "regtest"
BRIDGE_IP = "127.0.0.151"
TIMES = SwapTimes(
    shell_lock_ms=40 * 60_000,
    doge_lock_ms=10 * 60_000,
    margin_ms=10 * 60_000,
    lock_wait_ms=10 * 60_000,
    confirmations=1,
)
# the seller vanishes: timeouts of seconds, the ledger's refund grace shortened to match
SHORT = SwapTimes(shell_lock_ms=15_000, doge_lock_ms=4_000, margin_ms=5_000, lock_wait_ms=5_000, confirmations=1)
GRACE_MS = 300


def addr(key: SigningKey) -> str:
    return p2pkh_address(key.public_key, NET)


@pytest.mark.parametrize("vanish", [False, True], ids=["both_online", "seller_vanishes"])
async def test_a_swap_completes_both_legs_or_refunds_both(
    vanish: bool, make_cluster, monkeypatch, tmp_path: Path
) -> None:
    """Both online: both legs complete. The seller gone from just after its Shell lock until after the
    lock's expiry: the buyer takes its Doge back after the Doge lock's timeout, the seller its Shells."""
    monkeypatch.setenv("BORGUSB_PAY_HTLC_GRACE_MS", str(GRACE_MS))
    standin = DogecoindStandin("borgusb", secrets.token_hex(16))
    await standin.start()
    env = {"BORGUSB_DOGE_RPC_PASSWORD": standin.password}
    args = ["--rpc-url", standin.url, "--rpc-user", "borgusb", "--network", NET]
    args += ["--min-confirmations", "1", "--poll-ms", "100", "--start-height", "0"]
    bridge = Bridge(BRIDGE_IP, tmp_path / "bridge", env, args)
    (tmp_path / "bridge").mkdir()
    bridge.start()
    alice, bob, miner = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    chain = standin.chain
    opened: list[PeerClient] = []
    try:
        pay_cluster = await start(make_cluster, monkeypatch, tmp_path)
        pay_ip = pay_cluster.nodes[0].ip
        bt_cluster = make_cluster("btraderOrganCell")
        bt_cluster.up(2)
        await bt_cluster.wait_one_tree(timeout_s=60, expect=2)
        bt_ips = [n.ip for n in bt_cluster.nodes]
        await bridge.status()

        # Alice has 100 Shells (the test-only reward); Bob has a matured coinbase of DOGE
        await send(pay_ip, sign_reward(alice, seq=1, prev=ZERO_HASH, amount=100 * SHELL, ref=WORK, ts=CLOCK.now_ms()))
        clients = {}
        for who, key, bt_ip in (("alice", alice, bt_ips[0]), ("bob", bob, bt_ips[1])):
            p = PeerClient(key, CLOCK, Verifier(CLOCK), timeout_s=60)
            opened.append(p)
            clients[who] = (PayClient(p, pay_ip), DogeNodeClient(p, BRIDGE_IP), BtraderClient(p, bt_ip))
        await clients["bob"][1].watch(addr(bob))
        await clients["alice"][1].watch(addr(alice))
        chain.generate(1, addr(bob))
        chain.generate(MATURITY, addr(miner))
        await until(lambda: clients["bob"][1].deposits(addr(bob)), "bob's coinbase seen")

        # the fill: Alice sells 5 Shells at 2.5 DOGE, Bob buys them
        now = CLOCK.now_ms()
        ask = sign_order(
            alice, side="sell", amount=5 * SHELL, price=250_000_000, ts=now, expiry=now + 600_000, nonce=os.urandom(16)
        )
        bid = sign_order(
            bob, side="buy", amount=5 * SHELL, price=250_000_000, ts=now + 1, expiry=now + 600_000, nonce=os.urandom(16)
        )
        await clients["alice"][2].place(ask)
        await clients["bob"][2].place(bid)
        (fill,) = await converged(bt_ips, 1)
        assert (fill["seller"], fill["buyer"], fill["koinu"]) == (
            alice.public_key_hex,
            bob.public_key_hex,
            1_250_000_000,
        )

        times = SHORT if vanish else TIMES
        buyer = Settlement(
            bob,
            fill,
            times,
            pay=clients["bob"][0],
            doge=clients["bob"][1],
            bt=clients["bob"][2],
            net=NET,
            now_ms=CLOCK.now_ms,
        )
        if vanish:  # both sides stepped here, the seller not while it is away
            seller = Settlement(
                alice,
                fill,
                times,
                pay=clients["alice"][0],
                doge=clients["alice"][1],
                bt=clients["alice"][2],
                net=NET,
                now_ms=CLOCK.now_ms,
            )
        else:  # the seller's side as the conduit runs it (the Exchange page's Settle): endpoints found by the network
            network = Network([pay_ip, BRIDGE_IP], CLOCK)
            runner = SwapRunner(times, every_s=0.2)
            seller = await runner.start(alice, fill, network)
            assert runner.progress(fill["id"]) == {"state": "start", "role": "seller", "last": [], "problem": []}
        sides = [seller, buyer]
        deadline = time.monotonic() + 180
        while not all(s.done for s in sides):
            if time.monotonic() > deadline:
                notes = [await c[2].notes(fill["id"]) for c in clients.values()]
                raise AssertionError([(s.role, s.state, s.log, s.errors[-3:]) for s in sides] + notes)
            if vanish and (seller.state == "start" or CLOCK.now_ms() >= seller.machine.t1):
                await seller.step()  # the vanished seller comes back only after its lock expired
            await buyer.step()
            chain.generate(1, addr(miner))  # a block a round: confirmations, and the claim mined
            await asyncio.sleep(0.2)
        if vanish:  # both refunded: Alice has her 100 Shells, Bob his DOGE back (less the refund's fee)
            assert [s.state for s in sides] == ["refunded", "refunded"], [(s.log, s.errors) for s in sides]
            assert (await balance(pay_ip, alice.public_key_hex))["balance"] == 100 * SHELL

            async def bob_refunded() -> list:
                return [d for d in await clients["bob"][1].deposits(addr(bob)) if d["amount"] == 1_250_000_000 - FEE]

            assert await until(bob_refunded, "bob's DOGE back at his address")
            return
        assert [s.state for s in sides] == ["done", "done"], [(s.log, s.errors) for s in sides]
        assert runner.progress(fill["id"])["state"] == "done"  # what the Exchange page shows
        await runner.stop()
        await network.close()

        # both legs: Bob has the 5 Shells, Alice the DOGE (less the claim's fee) at her own address
        assert (await balance(pay_ip, bob.public_key_hex))["balance"] == 5 * SHELL
        assert (await balance(pay_ip, alice.public_key_hex))["balance"] == 95 * SHELL

        async def alice_paid() -> list:
            return [d for d in await clients["alice"][1].deposits(addr(alice)) if d["amount"] == 1_250_000_000 - FEE]

        assert await until(alice_paid, "alice's DOGE at her address")
    finally:
        for p in opened:
            await p.close()
        bridge.kill()
        await standin.stop()
