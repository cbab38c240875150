"""peerPaysCell with real node processes: funding, a transfer round trip, a double spend, a forgery, the CLI.

Five nodes, R = 5, quorum 4 of 5 (the default: one lying holder cannot enable a double spend).
The account is funded by the reserve through the one path the ledger has, a reward certified
by the reserve's holders; the cells are started with the TEST-ONLY setting
``BORGUSB_PAY_TEST_ONLY_WORK_REF`` that makes them approve a claim on one fixed work record.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from borgusb import dna
from borgusb.cells.peerpays.client import PayClient
from borgusb.clock import SystemClock
from borgusb.envelope import Verifier
from borgusb.keys import SigningKey, doge_address
from borgusb.ledger import RESERVE, SUPPLY, UNITS_PER_SHELL, ZERO_HASH, sign_reward, sign_transfer
from borgusb.net.peer import PeerClient, PeerRejected

pytestmark = pytest.mark.slow

DNA = dna.get("peerPaysCell")
WORK = hashlib.sha256(b"peerpays cluster test work record").hexdigest()
SHELL = UNITS_PER_SHELL
CLOCK = SystemClock()
N = 5


def peers(key: SigningKey | None = None) -> PeerClient:
    return PeerClient(key or SigningKey.generate(), CLOCK, Verifier(CLOCK), timeout_s=30)


async def start(make_cluster, monkeypatch, tmp_path: Path):
    monkeypatch.setenv("BORGUSB_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("BORGUSB_PAY_TEST_ONLY_WORK_REF", WORK)
    cluster = make_cluster("peerPaysCell")
    cluster.up(N)
    await cluster.wait_one_tree(timeout_s=60, expect=N)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # every node reads the root's table of all five
        docs = await cluster.status()
        views = {d.get("pay", {}).get("view") for d in docs}
        if len(docs) == N and len(views) == 1 and all(d["pay"]["members"] == N for d in docs):
            return cluster
        await asyncio.sleep(0.3)
    raise TimeoutError("the member views did not settle")


async def send(ip: str, tx) -> dict:
    async with peers() as p:
        return await PayClient(p, ip).submit(tx)


async def balance(ip: str, account: str) -> dict:
    async with peers() as p:
        return await PayClient(p, ip).balance(account)


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "borgusb.cli", "pay", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**{k: v for k, v in os.environ.items() if k != "BORGUSB_NODE"}, **env},
    )


async def test_fund_transfer_double_spend_forgery_and_cli(make_cluster, monkeypatch, tmp_path: Path) -> None:
    cluster = await start(make_cluster, monkeypatch, tmp_path)
    ips = [n.ip for n in cluster.nodes]
    alice, dave, bob, carol = (SigningKey.generate() for _ in range(4))

    # funding: a reward from the reserve, certified by the reserve's holders (test-only work check)
    claim = sign_reward(alice, seq=1, prev=ZERO_HASH, amount=1000 * SHELL, ref=WORK, ts=CLOCK.now_ms())
    funded = await send(ips[0], claim)
    assert funded["certificate"]["quorum"] == 4 and funded["delivered"] == N
    assert (await balance(ips[1], alice.public_key_hex))["balance"] == 1000 * SHELL
    assert (await balance(ips[2], RESERVE))["balance"] == SUPPLY - 1000 * SHELL
    with pytest.raises(PeerRejected) as err:  # the work is paid once
        await send(ips[3], sign_reward(bob, seq=2, prev=funded["id"], amount=SHELL, ref=WORK, ts=CLOCK.now_ms()))
    assert err.value.reason == "already_paid"

    # a transfer round trip, entered on another node, read back on every node
    tx = sign_transfer(alice, seq=1, prev=ZERO_HASH, to=dave.public_key_hex, amount=100 * SHELL, ts=CLOCK.now_ms())
    sent = await send(ips[4], tx)
    assert sent["id"] == tx.id and len(sent["certificate"]["signers"]) >= 4
    for ip in ips:
        assert (await balance(ip, dave.public_key_hex))["balance"] == 100 * SHELL
        a = await balance(ip, alice.public_key_hex)
        assert (a["balance"], a["seq"], a["head"]) == (900 * SHELL, 1, tx.id)

    # a double spend of dave's 100 Shells through two different nodes at once: at most one confirmed
    to_bob = sign_transfer(dave, seq=1, prev=ZERO_HASH, to=bob.public_key_hex, amount=100 * SHELL, ts=CLOCK.now_ms())
    to_carol = sign_transfer(
        dave, seq=1, prev=ZERO_HASH, to=carol.public_key_hex, amount=100 * SHELL, ts=CLOCK.now_ms()
    )
    results = await asyncio.gather(send(ips[1], to_bob), send(ips[3], to_carol), return_exceptions=True)
    confirmed = [r for r in results if isinstance(r, dict)]
    assert len(confirmed) <= 1, results
    for r in results:
        if not isinstance(r, dict):
            assert isinstance(r, PeerRejected) and r.reason in ("conflicting_spend", "no_quorum"), r
    got = (await balance(ips[0], bob.public_key_hex))["balance"] + (await balance(ips[0], carol.public_key_hex))[
        "balance"
    ]
    assert got == (100 * SHELL if confirmed else 0)
    for loser in (to_bob, to_carol):  # offered again, neither that lost can be confirmed now
        if confirmed and loser.id == confirmed[0]["id"]:
            continue
        with pytest.raises(PeerRejected) as err:
            await send(ips[2], loser)
        assert err.value.reason in ("conflicting_spend", "no_quorum")

    # a forged signature: alice's account, bob's signature
    forged = sign_transfer(alice, seq=2, prev=tx.id, to=bob.public_key_hex, amount=SHELL, ts=CLOCK.now_ms()).to_dict()
    forged["sig"] = bob.sign(b"not alice").hex()
    with pytest.raises(PeerRejected) as err:
        await send(ips[0], forged)
    assert err.value.reason == "bad_signature"
    async with peers(bob) as p:  # and offered to a holder directly
        with pytest.raises(PeerRejected) as err:
            await PayClient(p, ips[1]).accept(forged)
        assert err.value.reason == "bad_signature"

    # the CLI: alice's wallet key in a key file, pay send then balance, on different nodes
    keyfile = tmp_path / "alice.key"
    keyfile.write_text(bytes(alice.secret_bytes()).hex() + "\n")
    env = {"BORGUSB_PAY_DIR": str(tmp_path / "pending")}
    proc = cli(
        "send", "--node", ips[2], "--key-file", str(keyfile), "--to", bob.public_key_hex, "2.5", "--json", env=env
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["amount"] == 250_000_000 and out["seq"] == 2 and out["shells"] == "2.5"
    proc = cli("balance", "--node", ips[3], "--key-file", str(keyfile), "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["balance"] == 900 * SHELL - 250_000_000
    proc = cli("balance", bob.public_key_hex, "--node", ips[4], env=env)
    assert proc.returncode == 0 and proc.stdout.startswith(("2.5 Shells", "102.5 Shells")), proc.stdout
    proc = cli("history", "--node", ips[0], "--key-file", str(keyfile), env=env)
    assert proc.returncode == 0 and "-2.5" in proc.stdout and "+1000" in proc.stdout, proc.stdout
    proc = cli("send", "--node", ips[1], "--key-file", str(keyfile), "--to", bob.public_key_hex, "5000", env=env)
    assert proc.returncode == 1 and "insufficient funds (insufficient_funds)" in proc.stderr, proc.stderr
    proc = cli("send", "--node", ips[1], "--key-file", str(keyfile), "--to", bob.public_key_hex, "1.123456789", env=env)
    assert proc.returncode == 2 and "bad amount (fractional)" in proc.stderr

    # paying by Doge address: dave's key was seen (alice paid him through ips[4]), so any node finds it
    dave_address = doge_address(bytes.fromhex(dave.public_key_hex))
    proc = cli("send", "--node", ips[0], "--key-file", str(keyfile), "--to", dave_address, "1", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["to"] == dave.public_key_hex
    nobody = doge_address(bytes.fromhex(SigningKey.generate().public_key_hex))
    proc = cli("balance", nobody, "--node", ips[1], env=env)
    assert proc.returncode == 2 and "unknown account" in proc.stderr and "no node" in proc.stderr, proc.stderr

    docs = await cluster.status()
    assert sum(d["counters"].get("receptor_errors", 0) for d in docs) == 0
