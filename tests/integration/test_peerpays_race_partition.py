"""peerPaysCell on five real processes: 50 spends of the same funds at once, and a partitioned minority.

* **The race**: 50 conflicting transfers of one account's whole balance, all at its seq 1, entered at
  once through all five nodes: at most one is confirmed, every other is refused with the ledger's
  reason, and the supply is conserved.
* **The partition**: nftables drops the ledger's requests between two nodes (the minority) and the
  other three (the majority). The tree's own traffic (another port) is left alone, so the member view
  stays the same and the test judges the ledger alone, not the tree's healing. With ``faulty = 0``
  (quorum 3 of 5) the majority confirms and the minority cannot; after the partition heals, the
  minority's transaction can never be confirmed, and the account goes on from the majority's.
* **A lost copy**: a payment that reached three of five holders across the same partition, its wallet
  gone; the next `pay send` from a computer that kept nothing sends it first (`pay.unsettled`).
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from borgusb import dna
from borgusb.cells.peerpays.client import PayClient
from borgusb.keys import SigningKey
from borgusb.ledger import RESERVE, SUPPLY, UNITS_PER_SHELL, ZERO_HASH, sign_reward, sign_transfer
from borgusb.net.peer import PeerRejected

from .test_peerpays_cluster import CLOCK, WORK, N, balance, cli, peers, send, start

pytestmark = pytest.mark.slow

SHELL = UNITS_PER_SHELL
RECP = dna.get("peerPaysCell").recp_port
TABLE = "borgusb_partition_test"


def nft(script: str) -> None:
    subprocess.run(["nft", "-f", "-"], input=script, text=True, check=True, capture_output=True)


def drop_table() -> None:
    subprocess.run(["nft", "delete", "table", "inet", TABLE], capture_output=True)


@contextmanager
def partition(side_a: list[str], side_b: list[str]) -> Iterator[None]:
    """Silently drop the ledger's requests (recpPort) between the two sides, both ways; always removed."""
    a, b = ", ".join(side_a), ", ".join(side_b)
    drop_table()
    try:
        nft(
            f"""table inet {TABLE} {{
  chain input {{
    type filter hook input priority 0; policy accept;
    ip saddr {{ {a} }} ip daddr {{ {b} }} tcp dport {RECP} counter drop
    ip saddr {{ {b} }} ip daddr {{ {a} }} tcp dport {RECP} counter drop
  }}
}}
"""
        )
        yield
    finally:
        drop_table()


def dropped() -> int:
    out = subprocess.run(["nft", "list", "table", "inet", TABLE], capture_output=True, text=True).stdout
    return sum(int(w.split()[0]) for w in out.split("counter packets")[1:])


async def fund(ip: str, who: SigningKey, shells: int) -> None:
    claim = sign_reward(who, seq=1, prev=ZERO_HASH, amount=shells * SHELL, ref=WORK, ts=CLOCK.now_ms())
    assert (await send(ip, claim))["delivered"] == N


async def test_fifty_spends_of_the_same_funds_at_most_one_confirmed(make_cluster, monkeypatch, tmp_path) -> None:
    cluster = await start(make_cluster, monkeypatch, tmp_path)
    ips = [n.ip for n in cluster.nodes]
    alice = SigningKey.generate()
    await fund(ips[0], alice, 100)
    payees = [SigningKey.generate().public_key_hex for _ in range(50)]
    spends = [
        sign_transfer(alice, seq=1, prev=ZERO_HASH, to=p, amount=(100 - i % 3) * SHELL, ts=CLOCK.now_ms())
        for i, p in enumerate(payees)
    ]
    results = await asyncio.gather(*(send(ips[i % N], tx) for i, tx in enumerate(spends)), return_exceptions=True)
    confirmed = [r for r in results if isinstance(r, dict)]
    assert len(confirmed) <= 1, [r["id"] for r in confirmed]
    for r in results:
        if not isinstance(r, dict):
            assert isinstance(r, PeerRejected) and r.reason in ("conflicting_spend", "no_quorum"), r
    spent = confirmed[0]["amount"] if confirmed else 0

    # every node reads the same, and not one unit was made or lost
    for ip in ips:
        a = await balance(ip, alice.public_key_hex)
        assert a["balance"] == 100 * SHELL - spent and a["seq"] == (1 if confirmed else 0)
    credited = [(await balance(ips[i % N], p))["balance"] for i, p in enumerate(payees)]
    assert sum(credited) == spent and sum(1 for c in credited if c) == len(confirmed)
    reserve = (await balance(ips[1], RESERVE))["balance"]
    assert reserve + (100 * SHELL - spent) + sum(credited) == SUPPLY

    # the account is not stuck when one spend won: seq 2 goes on from it
    if confirmed:
        more = sign_transfer(alice, seq=2, prev=confirmed[0]["id"], to=payees[0], amount=SHELL // 2, ts=CLOCK.now_ms())
        if spent < 100 * SHELL:
            assert (await send(ips[3], more))["id"] == more.id
    docs = await cluster.status()
    assert sum(d["counters"].get("receptor_errors", 0) for d in docs) == 0


async def test_a_partitioned_minority_cannot_confirm(make_cluster, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("BORGUSB_PAY_FAULTY", "0")  # quorum 3 of 5: the majority side can confirm
    monkeypatch.setenv("BORGUSB_PAY_TIMEOUT_MS", "1500")
    cluster = await start(make_cluster, monkeypatch, tmp_path)
    ips = [n.ip for n in cluster.nodes]
    minority, majority = ips[:2], ips[2:]
    alice, bob, carol = (SigningKey.generate() for _ in range(3))
    await fund(ips[0], alice, 100)

    to_bob = sign_transfer(alice, seq=1, prev=ZERO_HASH, to=bob.public_key_hex, amount=60 * SHELL, ts=CLOCK.now_ms())
    to_carol = sign_transfer(
        alice, seq=1, prev=ZERO_HASH, to=carol.public_key_hex, amount=60 * SHELL, ts=CLOCK.now_ms()
    )
    with partition(minority, majority):
        with pytest.raises(PeerRejected) as err:  # two holders of five: no quorum of three
            await send(minority[0], to_bob)
        assert err.value.reason == "no_quorum", err.value
        assert "2 of 5 holders accepted" in str(err.value), err.value
        won = await send(majority[0], to_carol)  # three holders of five: a quorum
        assert won["id"] == to_carol.id and sorted(won["certificate"]["signers"]) == sorted(
            d["node"] for d in await cluster.status() if d["ip"] in majority
        )
        assert dropped() > 0
        with pytest.raises(PeerRejected):  # the minority still cannot read a quorum-agreed balance
            await balance(minority[1], carol.public_key_hex)

    # healed: the minority's spend can never be confirmed, on either side
    for ip in (minority[1], majority[1]):
        with pytest.raises(PeerRejected) as err:
            await send(ip, to_bob)
        assert err.value.reason in ("conflicting_spend", "no_quorum"), err.value
    for ip in ips:
        assert (await balance(ip, bob.public_key_hex))["balance"] == 0
        assert (await balance(ip, carol.public_key_hex))["balance"] == 60 * SHELL
        assert (await balance(ip, alice.public_key_hex))["balance"] == 40 * SHELL
    # and the account goes on from the majority's transaction, through a minority node, whose
    # holders learn the certificate they missed (catch up) before they vote again
    nxt = sign_transfer(alice, seq=2, prev=to_carol.id, to=bob.public_key_hex, amount=10 * SHELL, ts=CLOCK.now_ms())
    went = await send(minority[0], nxt)
    assert went["delivered"] == N, went["refused"]
    for ip in minority:
        async with peers() as p:
            seen = await PayClient(p, ip).balance(alice.public_key_hex)
        assert (seen["balance"], seen["seq"], seen["head"]) == (30 * SHELL, 2, nxt.id)


async def test_a_wallet_that_lost_its_copy_sends_the_holders_one_first(make_cluster, monkeypatch, tmp_path) -> None:
    """Alice's payment to Bob reaches only three of her five holders (quorum 4): no quorum, and the wallet
    that sent it is gone (a conduit that restarted). Her next `pay send` is from a computer that kept
    nothing, after the two came back: the CLI fetches what her holders voted for (`pay.unsettled`), sends
    that first and then the new payment at the next seq, rather than a second transaction for seq 1
    (3 votes against 2: a split that would stop her account for good)."""
    monkeypatch.setenv("BORGUSB_PAY_TIMEOUT_MS", "1500")
    cluster = await start(make_cluster, monkeypatch, tmp_path)
    ips = [n.ip for n in cluster.nodes]
    alice, bob, carol = (SigningKey.generate() for _ in range(3))
    await fund(ips[0], alice, 100)
    to_bob = sign_transfer(alice, seq=1, prev=ZERO_HASH, to=bob.public_key_hex, amount=10 * SHELL, ts=CLOCK.now_ms())
    with partition(ips[:2], ips[2:]):
        with pytest.raises(PeerRejected) as err:
            await send(ips[2], to_bob)
        assert err.value.reason == "no_quorum" and "3 of 5 holders accepted" in str(err.value), err.value

    keyfile = tmp_path / "alice.key"
    keyfile.write_text(bytes(alice.secret_bytes()).hex() + "\n")
    common = ["--node", ips[3], "--key-file", str(keyfile), "--to", carol.public_key_hex, "5"]
    sent = cli("send", *common, env={"BORGUSB_PAY_DIR": str(tmp_path / "another-pc")})
    assert sent.returncode == 0, sent.stderr
    assert f"your holders have an earlier transaction {to_bob.id[:16]}" in sent.stderr, sent.stderr
    assert "is now confirmed" in sent.stderr, sent.stderr
    for ip in ips:
        assert (await balance(ip, alice.public_key_hex))["balance"] == 85 * SHELL
        assert (await balance(ip, bob.public_key_hex))["balance"] == 10 * SHELL
        assert (await balance(ip, carol.public_key_hex))["balance"] == 5 * SHELL
