"""dogeNodeCell as a real process against the dogecoind stand-in (tests/standins, its rules checked by
buidl): a watched deposit seen and credited once, also across SIGKILL, restarts and a rescan; a P2PKH
payment; an HTLC funded, claimed (the secret read back from the chain) and another refunded only after
its locktime; rejections reported with the node's reason and not retried; transient failures retried;
watching another key's address refused; new watches limited per network address; a bridge without a
node refusing everything with ``no_node``.

Run under ``flock /tmp/borgusb-cluster.lock`` (the cell binds fixed ports on 127.0.0.141-143).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from borgusb import dna
from borgusb.cells.dogenode.client import DogeNodeClient
from borgusb.clock import SystemClock
from borgusb.doge.address import p2pkh_address
from borgusb.doge.htlc import build_htlc_claim, build_htlc_refund, extract_secret, htlc_address, htlc_script
from borgusb.doge.tx import Utxo, build_payment
from borgusb.envelope import Verifier
from borgusb.keys import SigningKey
from borgusb.net.peer import PeerClient, PeerRejected
from tests.standins.dogecoind_standin import MATURITY, REWARD, DogecoindStandin

pytestmark = pytest.mark.slow

IP, IP_NO_NODE, IP_LIMITED = "127.0.0.141", "127.0.0.142", "127.0.0.143"
SYBIL_ADDRESS, OTHER_ADDRESS = "127.0.0.144", "127.0.0.145"  # where the watch requests come from
MON = dna.get("dogeNodeCell").mon_port
NET = "regtest"
FEE = 1_000_000
CLOCK = SystemClock()
ALICE, BOB, MINER = (SigningKey(hashlib.sha256(f"bridge test {n}".encode()).digest()) for n in range(3))


def addr(key: SigningKey) -> str:
    return p2pkh_address(key.public_key, NET)


class Bridge:
    """One dogeNodeCell process: started, killed with SIGKILL and started again on the same store."""

    def __init__(self, ip: str, data: Path, env: dict[str, str], args: list[str]) -> None:
        self.ip, self.data, self.env, self.args = ip, data, env, args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *more: str) -> None:
        """Start (again) with the same node key, as a machine's cell restarts: its clients' pins hold."""
        key_file = self.data.parent / f"node-{self.ip}.key"
        if not key_file.exists():
            key_file.write_text(secrets.token_hex(32) + "\n")
        cmd = [sys.executable, "-m", "borgusb.cli", "cell", "run", "dogeNodeCell", "--ip", self.ip]
        cmd += ["--data", str(self.data), "--key-file", str(key_file), "--heartbeat-ms", "300", *self.args, *more]
        with open(self.data.parent / f"bridge-{self.ip}.log", "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}, start_new_session=True
            )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    async def status(self, timeout_s: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while True:
                try:
                    async with session.get(f"http://{self.ip}:{MON}/status") as resp:
                        return dict(await resp.json())
                except (aiohttp.ClientError, OSError, TimeoutError):
                    assert self.proc is not None and self.proc.poll() is None, "the bridge exited"
                    if time.monotonic() > deadline:
                        raise
                await asyncio.sleep(0.2)


async def until(check: Callable[[], Any], what: str, timeout_s: float = 60) -> Any:
    """Poll an async check until it returns something true (generous deadline, no fixed sleeps)."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = await check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: still {got!r}")
        await asyncio.sleep(0.2)


def client(key: SigningKey, ip: str = IP) -> tuple[PeerClient, DogeNodeClient]:
    peers = PeerClient(key, CLOCK, Verifier(CLOCK), timeout_s=60)
    return peers, DogeNodeClient(peers, ip)


@pytest.fixture
async def standin() -> AsyncIterator[DogecoindStandin]:
    node = DogecoindStandin("borgusb", secrets.token_hex(16))
    await node.start()
    yield node
    await node.stop()


async def test_bridge_against_the_standin(standin: DogecoindStandin, tmp_path: Path) -> None:
    env = {"BORGUSB_DOGE_RPC_PASSWORD": standin.password}
    args = ["--rpc-url", standin.url, "--rpc-user", "borgusb", "--network", NET]
    args += ["--min-confirmations", "2", "--poll-ms", "100", "--start-height", "0"]
    bridge = Bridge(IP, tmp_path / "bridge", env, args)
    bridge.start()
    alice_peers, alice = client(ALICE)
    bob_peers, bob = client(BOB)
    chain = standin.chain
    try:
        await bridge.status()
        assert (await alice.status())["network"] == NET
        # each key watches its own address; watching another's is refused
        assert (await alice.watch(addr(ALICE)))["new"] is True
        assert (await bob.watch(addr(BOB)))["watching"] is True
        with pytest.raises(PeerRejected) as err:
            await bob.watch(addr(ALICE))
        assert err.value.reason == "not_owner"

        # a coinbase to alice, matured: seen, with its confirmations, and credited once
        chain.generate(1, addr(ALICE))
        chain.generate(MATURITY, addr(MINER))

        async def alice_funded() -> list[dict[str, Any]]:
            found = await alice.deposits(addr(ALICE))
            return found if found and found[0]["credited"] and found[0]["confirmations"] > MATURITY else []

        (coinbase,) = await until(alice_funded, "alice's coinbase credited")
        assert coinbase["amount"] == REWARD and coinbase["coinbase"] and coinbase["spent_by"] is None
        assert await alice.height() == chain.tip
        tip = await alice.tip()
        assert (tip["height"], tip["hash"], tip["chain"]) == (chain.tip, chain.blocks[-1].hash, "regtest")
        assert tip["mediantime"] == chain.median_time_past()

        # a P2PKH payment alice -> bob, then the bridge is killed (SIGKILL) at once and started again
        pay = build_payment(
            [Utxo(coinbase["txid"], coinbase["vout"], REWARD)], [(addr(BOB), 7 * 10**8)], ALICE, NET, FEE
        )
        txid = await alice.broadcast(pay)
        chain.generate(2, addr(MINER))
        bridge.kill()
        bridge.start()
        await bridge.status()

        async def bob_credited() -> list[dict[str, Any]]:
            found = await bob.deposits(addr(BOB))
            return found if found and found[0]["credited"] else []

        (deposit,) = await until(bob_credited, "bob's deposit credited after the restart")
        assert (deposit["txid"], deposit["amount"]) == (txid, 7 * 10**8)
        assert (await bob.tx(txid))["confirmations"] == 2
        # killed again and made to read the whole chain again: still one deposit, credited once, as before
        bridge.kill()
        bridge.start("--rescan-from", "0")
        await bridge.status()
        tip = chain.tip
        await until(lambda: _scanned(alice, tip), "the rescan reached the tip")
        again = await bob.deposits(addr(BOB))
        assert again == [{**deposit, "confirmations": again[0]["confirmations"]}]
        spent = {d["txid"]: d["spent_by"] for d in await alice.deposits(addr(ALICE))}
        assert spent == {coinbase["txid"]: txid, txid: None}  # the coinbase spent, the change not yet
        status = await bob.status()
        assert status["credited"] == status["deposits"] == 3  # alice's coinbase and change, bob's deposit

        # an HTLC funded by alice (alice's change), claimed by bob with the secret; the bridge shows the claim
        change = next(d for d in await alice.deposits(addr(ALICE)) if d["txid"] == txid)
        secret = secrets.token_bytes(32)
        script = htlc_script(hashlib.sha256(secret).digest(), BOB.public_key, ALICE.public_key, chain.tip + 50)
        where = htlc_address(script, NET)
        assert (await alice.watch(where, script))["new"] is True
        miner_peers, miner = client(MINER)
        async with miner_peers:  # closed here: its session would otherwise be left to the collector
            with pytest.raises(PeerRejected) as err:  # a key the script does not name
                await miner.watch(where, script)
        assert err.value.reason == "not_owner"
        amount = 100 * 10**8
        fund = build_payment([Utxo(txid, change["vout"], change["amount"])], [(where, amount)], ALICE, NET, FEE)
        fund_id = await alice.broadcast(fund)
        chain.generate(1, addr(MINER))
        claim_id = await bob.broadcast(build_htlc_claim(fund_id, 0, amount, script, secret, BOB, addr(BOB), FEE, NET))
        chain.generate(1, addr(MINER))

        async def claimed() -> str | None:
            found = await alice.deposits(where)
            return found[0]["spent_by"] if found else None

        assert await until(claimed, "the HTLC's claim seen") == claim_id
        assert extract_secret((await alice.tx(claim_id))["hex"], script) == secret

        # an HTLC refunded: before its locktime the node refuses, the bridge says why and does not retry
        locktime = chain.tip + 3
        script2 = htlc_script(hashlib.sha256(b"never told").digest(), BOB.public_key, ALICE.public_key, locktime)
        fund2 = build_payment(
            [Utxo(fund_id, 1, change["amount"] - amount - FEE)], [(htlc_address(script2, NET), amount)], ALICE, NET, FEE
        )
        fund2_id = await alice.broadcast(fund2)
        chain.generate(1, addr(MINER))
        refund = build_htlc_refund(fund2_id, 0, amount, script2, ALICE, addr(ALICE), FEE, NET)
        sent = standin.calls["sendrawtransaction"]
        with pytest.raises(PeerRejected) as err:
            await alice.broadcast(refund)
        assert err.value.reason == "tx_rejected" and "64: non-final" in str(err.value)
        assert standin.calls["sendrawtransaction"] == sent + 1
        chain.generate(locktime - chain.tip, addr(MINER))
        refund_id = await alice.broadcast(refund)
        assert refund_id in chain.mempool

        # a bad signature: rejected with the node's reason, once
        coin = next(d for d in await bob.deposits(addr(BOB)) if d["spent_by"] is None)
        bad = bytearray.fromhex(
            build_payment([Utxo(coin["txid"], coin["vout"], coin["amount"])], [(addr(ALICE), 10**8)], BOB, NET, FEE)
        )
        bad[50] ^= 1
        sent = standin.calls["sendrawtransaction"]
        with pytest.raises(PeerRejected) as err:
            await bob.broadcast(bad.hex())
        assert err.value.reason == "tx_rejected" and "mandatory-script-verify-flag-failed" in str(err.value)
        assert standin.calls["sendrawtransaction"] == sent + 1

        # a node briefly unavailable: retried with backoff, bounded, then taken
        good = build_payment([Utxo(coin["txid"], coin["vout"], coin["amount"])], [(addr(ALICE), 10**8)], BOB, NET, FEE)
        standin.fail_next("sendrawtransaction", 2)
        sent = standin.calls["sendrawtransaction"]
        assert await bob.broadcast(good) in chain.mempool
        assert standin.calls["sendrawtransaction"] == sent + 3

        # a reorganisation: a deposit seen in a block that then leaves the chain is dropped, never credited
        lost_id = chain.submit(
            build_payment([Utxo(chain.blocks[2].txids[0], 0, REWARD)], [(addr(BOB), 3 * 10**8)], MINER, NET, FEE)
        )
        chain.generate(1, addr(MINER))

        async def lost_seen() -> bool:
            return any(d["txid"] == lost_id and not d["credited"] for d in await bob.deposits(addr(BOB)))

        await until(lost_seen, "the deposit in the block about to leave the chain")
        chain.invalidate(1)
        chain.generate(2, addr(MINER))
        tip = chain.tip
        await until(lambda: _scanned(bob, tip), "the bridge on the new chain")
        assert lost_id not in {d["txid"] for d in await bob.deposits(addr(BOB))}

        # a node gone wrong (answers that are not a height, not a block): counted, survived, then read on
        standin.lie_next("getblockcount", {"height": 1}, -5, "12")
        standin.lie_next("getblock", ["not", "a", "block"])
        chain.generate(1, addr(MINER))
        tip = chain.tip
        await until(lambda: _scanned(bob, tip), "the bridge reading on after the odd answers")
        docs = await bridge.status()
        assert docs["counters"]["scan_failed:ScanError"] >= 4
        assert docs["counters"].get("receptor_errors", 0) == 0 and docs["counters"]["reorg"] >= 1
        assert docs["settings"]["rpc_password"] == "set" and standin.password not in str(docs)
    finally:
        bridge.kill()
        await alice_peers.close()
        await bob_peers.close()


async def _scanned(c: DogeNodeClient, tip: int) -> bool:
    return (await c.status())["scanned"] == tip


async def test_bridge_without_a_node_starts_and_refuses_every_request(tmp_path: Path) -> None:
    bridge = Bridge(IP_NO_NODE, tmp_path / "bridge", {"BORGUSB_DOGE_RPC_URL": ""}, [])
    bridge.start()
    peers, doge = client(ALICE, IP_NO_NODE)
    try:
        assert (await bridge.status())["doge"]["node"] == "not configured"
        for call in (
            doge.watch(addr(ALICE)),
            doge.deposits(addr(ALICE)),
            doge.broadcast("00"),
            doge.tx("ab" * 32),
            doge.height(),
            doge.tip(),
            doge.status(),
        ):
            with pytest.raises(PeerRejected) as err:
                await call
            assert err.value.reason == "no_node" and "no Dogecoin node configured" in str(err.value)
    finally:
        bridge.kill()
        await peers.close()


async def test_new_watches_are_limited_per_network_address(standin: DogecoindStandin, tmp_path: Path) -> None:
    """Keys are free: one network address gets at most ``new_watches_per_hour`` new watches (here 3),
    whatever keys sign them; another address is not slowed, and watching again is not new."""
    env = {"BORGUSB_DOGE_RPC_PASSWORD": standin.password, "BORGUSB_DOGE_NEW_WATCHES_PER_HOUR": "3"}
    args = ["--rpc-url", standin.url, "--rpc-user", "borgusb", "--network", NET, "--poll-ms", "1000"]
    bridge = Bridge(IP_LIMITED, tmp_path / "bridge", env, args)
    bridge.start()
    sybils = [SigningKey.generate() for _ in range(5)]
    clients = [
        PeerClient(k, CLOCK, Verifier(CLOCK), timeout_s=60, bind=src)
        for k, src in zip(sybils, [SYBIL_ADDRESS] * 4 + [OTHER_ADDRESS], strict=True)
    ]
    try:
        await bridge.status()
        for peers, key in zip(clients[:3], sybils[:3], strict=True):
            assert (await DogeNodeClient(peers, IP_LIMITED).watch(addr(key)))["new"] is True
        with pytest.raises(PeerRejected) as err:
            await DogeNodeClient(clients[3], IP_LIMITED).watch(addr(sybils[3]))
        assert err.value.reason == "rate_limited" and err.value.status == 429
        again = await DogeNodeClient(clients[0], IP_LIMITED).watch(addr(sybils[0]))
        assert again["watching"] is True and again["new"] is False  # not a new address: not limited
        assert (await DogeNodeClient(clients[4], IP_LIMITED).watch(addr(sybils[4])))["new"] is True
        counters = (await bridge.status())["counters"]
        assert counters["watch_refused:rate_limited"] == 1
    finally:
        bridge.kill()
        for peers in clients:
            await peers.close()
