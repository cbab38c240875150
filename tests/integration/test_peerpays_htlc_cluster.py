"""Hash-time locks on five real peerPaysCell processes: a claim with the secret, a refund after expiry,
and a claim racing a refund at the expiry (at most one is ever confirmed).

The cluster and its funding are tests/integration/test_peerpays_cluster.py's (R = 5, quorum 4 of 5,
the TEST-ONLY work record); the holders' refund grace is shortened to 300 ms
(``BORGUSB_PAY_HTLC_GRACE_MS``) so expiries can be seconds away.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from borgusb.cells.peerpays.client import PayClient
from borgusb.keys import SigningKey
from borgusb.ledger import ZERO_HASH, Tx, hash_lock, sign_claim, sign_lock, sign_refund, sign_reward
from borgusb.net.peer import PeerRejected

from .test_peerpays_cluster import CLOCK, SHELL, WORK, balance, cli, peers, send, start

pytestmark = pytest.mark.slow
GRACE_MS = 300


async def call(ip: str, method: str, *args: object) -> dict:
    async with peers() as p:
        return await getattr(PayClient(p, ip), method)(*args)  # type: ignore[no-any-return]


def lock(payer: SigningKey, to: SigningKey, shells: int, seq: int, prev: str, secret: bytes, in_ms: int) -> Tx:
    now = CLOCK.now_ms()
    return sign_lock(
        payer,
        seq=seq,
        prev=prev,
        to=to.public_key_hex,
        amount=shells * SHELL,
        hash_lock=hash_lock(secret),
        expiry=now + in_ms,
        ts=now,
    )


async def test_claim_refund_and_a_race_at_expiry(make_cluster, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BORGUSB_PAY_HTLC_GRACE_MS", str(GRACE_MS))
    cluster = await start(make_cluster, monkeypatch, tmp_path)
    ips = [n.ip for n in cluster.nodes]
    alice, bob = SigningKey.generate(), SigningKey.generate()
    funded = await send(
        ips[0], sign_reward(alice, seq=1, prev=ZERO_HASH, amount=100 * SHELL, ref=WORK, ts=CLOCK.now_ms())
    )
    assert funded["delivered"] == funded["of"]

    # a lock claimed with the secret credits the claimant; the payer reads the secret off the ledger
    secret1 = os.urandom(32)
    lock1 = lock(alice, bob, 10, 1, ZERO_HASH, secret1, 60_000)
    sent = await call(ips[1], "lock", lock1)
    assert sent["id"] == lock1.id and sent["delivered"] == sent["of"] == 5
    assert (await balance(ips[2], alice.public_key_hex))["balance"] == 90 * SHELL
    assert (await call(ips[3], "lock_status", alice.public_key_hex, lock1.id))["state"] == "open"
    claimed = await call(ips[2], "claim", sign_claim(bob, lock1, secret1))
    assert claimed["beneficiary"] == bob.public_key_hex and claimed["delivered"] == claimed["of"]
    assert (await balance(ips[4], bob.public_key_hex))["balance"] == 10 * SHELL
    st = await call(ips[0], "lock_status", alice.public_key_hex, lock1.id)
    assert st["state"] == "claimed" and bytes.fromhex(st["preimage"]) == secret1

    # a lock refunded after its expiry returns the units; refused as not_expired before
    secret2 = os.urandom(32)
    lock2 = lock(alice, bob, 5, 2, lock1.id, secret2, 1_500)
    await call(ips[4], "lock", lock2)
    refund = sign_refund(alice, lock2)
    with pytest.raises(PeerRejected) as err:
        await call(ips[1], "refund", refund)
    assert err.value.reason == "not_expired"
    deadline = time.monotonic() + 30
    while True:  # poll until every holder's network clock is past expiry + grace
        try:
            refunded = await call(ips[1], "refund", refund)
            break
        except PeerRejected as exc:
            assert exc.reason in ("not_expired", "no_quorum") and time.monotonic() < deadline, exc
            await asyncio.sleep(0.2)
    assert refunded["beneficiary"] == alice.public_key_hex
    assert (await balance(ips[3], alice.public_key_hex))["balance"] == 90 * SHELL
    with pytest.raises(PeerRejected) as err:
        await call(ips[0], "claim", sign_claim(bob, lock2, secret2))
    assert err.value.reason in ("already_resolved", "expired")

    # a claim racing a refund at the expiry, through two different nodes, again and again: never both
    secret3 = os.urandom(32)
    lock3 = lock(alice, bob, 20, 3, lock2.id, secret3, 1_500)
    await call(ips[2], "lock", lock3)
    claim3, refund3 = sign_claim(bob, lock3, secret3), sign_refund(alice, lock3)
    while CLOCK.now_ms() < lock3.expiry - 200:
        await asyncio.sleep(0.05)
    confirmed: set[str] = set()
    deadline = time.monotonic() + 30
    while not confirmed and time.monotonic() < deadline:
        results = await asyncio.gather(
            call(ips[0], "claim", claim3), call(ips[3], "refund", refund3), return_exceptions=True
        )
        for r in results:
            if isinstance(r, dict):
                confirmed.add(r["kind"])
            else:
                assert isinstance(r, PeerRejected), r
                assert r.reason in ("expired", "not_expired", "already_resolved", "no_quorum"), r
        await asyncio.sleep(0.05)
    assert len(confirmed) <= 1, confirmed  # never both
    st = await call(ips[4], "lock_status", alice.public_key_hex, lock3.id)
    a = (await balance(ips[1], alice.public_key_hex))["balance"]
    b = (await balance(ips[1], bob.public_key_hex))["balance"]
    if confirmed:
        assert st["state"] == ("claimed" if confirmed == {"htlc-claim"} else "refunded")
        assert a + b == 100 * SHELL  # every lock resolved: nothing locked, nothing made
        assert b == (30 if confirmed == {"htlc-claim"} else 10) * SHELL
    else:  # a loaded machine delivered the claim to only two holders before the expiry: the 2/3 split
        assert st["state"] == "open" and a + b + 20 * SHELL == 100 * SHELL  # (docs/ledger.md, liveness limit)

    # the CLI: alice locks 2.5 Shells for bob under a secret it draws; bob claims with it; alice reads it back
    alice_key, bob_key, secret_file = tmp_path / "alice.key", tmp_path / "bob.key", tmp_path / "swap.secret"
    alice_key.write_text(bytes(alice.secret_bytes()).hex() + "\n")
    bob_key.write_text(bytes(bob.secret_bytes()).hex() + "\n")
    env = {"BORGUSB_PAY_DIR": str(tmp_path / "pending")}
    proc = cli("lock", "--node", ips[0], "--key-file", str(alice_key), "--to", bob.public_key_hex, "2.5",
               "--secret-file", str(secret_file), "--expires-in", "1", "--json", env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    made = json.loads(proc.stdout)
    secret = bytes.fromhex(secret_file.read_text().strip())
    assert made["seq"] == 4 and made["hash"] == hash_lock(secret) and len(secret) == 32
    proc = cli("lock-status", made["id"], "--node", ips[1], "--key-file", str(alice_key), env=env)
    assert proc.returncode == 0 and ": open" in proc.stdout, proc.stdout + proc.stderr
    proc = cli("claim", made["id"], "--from", alice.public_key_hex, "--secret-file", str(secret_file),
               "--node", ips[2], "--key-file", str(bob_key), env=env)  # fmt: skip
    assert proc.returncode == 0 and "claimed 2.5 Shells" in proc.stdout, proc.stdout + proc.stderr
    proc = cli("lock-status", made["id"], "--from", alice.public_key_hex, "--node", ips[3], "--json", env=env)
    assert proc.returncode == 0 and json.loads(proc.stdout)["preimage"] == secret.hex(), proc.stderr
    proc = cli("refund", made["id"], "--node", ips[4], "--key-file", str(alice_key), env=env)
    assert proc.returncode == 1 and "is claimed, not open" in proc.stderr, proc.stderr

    docs = await cluster.status()
    assert sum(d["counters"].get("receptor_errors", 0) for d in docs) == 0
