"""Equivocation evidence between real peerPaysCell processes: one holder proves it, every cell drops the liars.

Six nodes with known node keys (``--key-file``, as a stick's node has its key), so the test can
play the lying holders: a transfer is certified the honest way, then the test signs, with the keys
of three or four of its signers and one more holder, a certificate of a conflicting transfer at
the same seq, and hands it to a holder that keeps the first. That holder refuses it, convicts the
holders that signed both, and the evidence reaches every other cell by the ``payevidence``
broadcast over the real tree; each cell checks it and leaves the liars out of its member view.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import pytest

from borgusb.cells.peerpays.client import PayClient
from borgusb.clock import SystemClock
from borgusb.envelope import Verifier
from borgusb.keys import SigningKey
from borgusb.ledger import (
    UNITS_PER_SHELL,
    ZERO_HASH,
    certify,
    set_digest,
    sign_acceptance,
    sign_reward,
    sign_transfer,
)
from borgusb.ledger.certificate import holder_set
from borgusb.net.peer import PeerClient, PeerRejected

pytestmark = pytest.mark.slow

WORK = hashlib.sha256(b"peerpays evidence cluster test work record").hexdigest()
CLOCK = SystemClock()
N = 6


def peers() -> PeerClient:
    return PeerClient(SigningKey.generate(), CLOCK, Verifier(CLOCK), timeout_s=30)


async def settled(cluster, expect: int, timeout_s: float = 60) -> list[dict]:
    """Every node's status once all read one view of `expect` members."""
    deadline = time.monotonic() + timeout_s
    while True:
        docs = await cluster.status()
        views = {d.get("pay", {}).get("view") for d in docs}
        if len(docs) == N and len(views) == 1 and all(d["pay"]["members"] == expect for d in docs):
            return docs
        if time.monotonic() > deadline:
            raise TimeoutError(f"views did not settle at {expect} members: {[d.get('pay') for d in docs]}")
        await asyncio.sleep(0.3)


async def test_a_proven_liar_leaves_every_cells_view(make_cluster, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BORGUSB_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("BORGUSB_PAY_TEST_ONLY_WORK_REF", WORK)
    cluster = make_cluster("peerPaysCell")
    keys: dict[str, SigningKey] = {}
    ip_of: dict[str, str] = {}
    for i in range(N):
        ip = f"127.0.0.{2 + i}"  # the addresses cluster.up gives, in order
        key = SigningKey.generate()
        keys[key.public_key_hex], ip_of[key.public_key_hex] = key, ip
        (tmp_path / f"n{i}").mkdir(mode=0o700)
        (tmp_path / f"n{i}" / "node.key").write_text(key.secret_bytes().hex())
        cluster.args[ip] = ["--key-file", str(tmp_path / f"n{i}" / "node.key"), "--data", str(tmp_path / f"n{i}")]
    cluster.up(N)
    await cluster.wait_one_tree(timeout_s=60, expect=N)
    assert sorted(n.ip for n in cluster.nodes) == sorted(ip_of.values())
    await settled(cluster, N)
    ips = sorted(ip_of.values())

    alice, bob, carol = (SigningKey.generate() for _ in range(3))
    async with peers() as p:
        funded = await PayClient(p, ips[0]).submit(
            sign_reward(alice, seq=1, prev=ZERO_HASH, amount=10 * UNITS_PER_SHELL, ref=WORK, ts=CLOCK.now_ms())
        )
        assert funded["delivered"] == funded["of"]
        to_bob = sign_transfer(alice, seq=1, prev=ZERO_HASH, to=bob.public_key_hex, amount=5, ts=CLOCK.now_ms())
        sent = await PayClient(p, ips[1]).submit(to_bob)
        first = list(sent["certificate"]["signers"])
        assert len(first) >= 4 and sent["delivered"] == sent["of"]

        # the liars: three of the first certificate's signers, and a fourth signature from another of
        # alice's holders (one that did not sign, or a fourth signer of the first: then four liars)
        alice_holders = holder_set(alice.public_key_hex, keys, 5)  # every cell's view: the six keys
        assert set(first) <= set(alice_holders)
        to_carol = sign_transfer(alice, seq=1, prev=ZERO_HASH, to=carol.public_key_hex, amount=5, ts=CLOCK.now_ms())
        signers = [*first[:3], next(h for h in alice_holders if h not in first[:3])]
        d = set_digest(alice_holders)
        second = certify(to_carol, [sign_acceptance(keys[h], to_carol, d) for h in signers], d)
        liars = set(first) & set(signers)
        keeper = next(h for h in alice_holders if h not in signers)  # it has the first certificate

        with pytest.raises(PeerRejected) as err:
            await PayClient(p, ip_of[keeper]).confirm(second.to_dict())
        assert err.value.reason == "conflicting_spend"

    docs = await settled(cluster, N - len(liars))  # the broadcast reached every cell, each checked it
    for d in docs:
        assert sorted(d["pay"]["evidence"]["excluded"]) == sorted(h[:16] for h in liars), d["pay"]
    found = sum(d["counters"].get("pay_evidence_found", 0) for d in docs)
    learned = sum(d["counters"].get("pay_evidence_learned", 0) for d in docs)
    assert found == len(liars) and learned == len(liars) * (N - 1), (found, learned)
    assert sum(d["counters"].get("receptor_errors", 0) for d in docs) == 0
