"""The membership handover on real processes: three new nodes take three of an account's five
holder places while a spend's votes are in flight, and refuse a second spend at that seq.

Five peerPaysCells with known node keys; Alice is funded (the test-only work record). Three more
keys are drawn that the lottery ranks above every first node for Alice, so when their cells join,
Alice's holder set keeps two of its five holders and gains the three. The new cells never had the
five-member view: they learn it from the others (``pay.views``) before they vote on anything. Before they join, Alice's
first spend is voted by the three holders that will drop out (three votes: short of q = 4). After
the join and the views settle, a second spend at the same seq is refused by every new holder as
``conflicting_spend``: each asked the old set (``pay.handover``) before voting and saw the old votes
(without the handover they would refuse it for lack of Alice's credit, and the two kept holders
would vote for it). The old holders are sealed.

Run under ``flock /tmp/borgusb-cluster.lock`` (fixed addresses 127.0.0.2-9).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from borgusb import dna
from borgusb.cells.peerpays.client import PayClient
from borgusb.keys import SigningKey
from borgusb.ledger import RESERVE, UNITS_PER_SHELL, ZERO_HASH, sign_reward, sign_transfer
from borgusb.ledger.certificate import holder_set
from borgusb.net.peer import PeerRejected

from .test_peerpays_cluster import CLOCK, WORK, peers

pytestmark = pytest.mark.slow

FIRST, MORE = 5, 3
RECP = dna.get("peerPaysCell").recp_port


def keyed(cluster: Any, tmp_path: Path, keys: list[SigningKey], base: int) -> dict[str, str]:
    """Node key files for the addresses cluster.up gives from 127.0.0.<base> on: key -> address."""
    where = {}
    for i, key in enumerate(keys):
        ip, home = f"127.0.0.{base + i}", tmp_path / f"n{base + i}"
        home.mkdir(mode=0o700)
        (home / "node.key").write_text(key.secret_bytes().hex())
        cluster.args[ip] = ["--key-file", str(home / "node.key"), "--data", str(home)]
        where[key.public_key_hex] = ip
    return where


async def settled(cluster: Any, expect: int, timeout_s: float = 90) -> str:
    """The one member view every cell reads, once each has `expect` members."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        docs = await cluster.status()
        views = {d.get("pay", {}).get("view") for d in docs}
        if len(docs) == expect and len(views) == 1 and all(d["pay"]["members"] == expect for d in docs):
            return str(views.pop())
        await asyncio.sleep(0.3)
    raise TimeoutError(f"the member views did not settle at {expect}")


async def test_new_holders_learn_the_old_sets_votes_before_they_vote(make_cluster, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BORGUSB_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("BORGUSB_PAY_TEST_ONLY_WORK_REF", WORK)
    alice, bob, carol = (SigningKey.generate() for _ in range(3))
    a = alice.public_key_hex
    first = [SigningKey.generate() for _ in range(FIRST)]
    late: list[SigningKey] = []
    while len(late) < MORE:  # keys the lottery ranks above every first node for Alice (about one in six)
        key = SigningKey.generate()
        if holder_set(a, [k.public_key_hex for k in (*first, key)], FIRST + 1)[0] == key.public_key_hex:
            late.append(key)
    cluster = make_cluster("peerPaysCell")
    where = keyed(cluster, tmp_path, first, 2)
    cluster.up(FIRST)
    await cluster.wait_one_tree(timeout_s=60, expect=FIRST)
    view1 = await settled(cluster, FIRST)
    ips = list(where.values())

    async with peers() as p:
        funded = await PayClient(p, ips[0]).submit(
            sign_reward(alice, seq=1, prev=ZERO_HASH, amount=10 * UNITS_PER_SHELL, ref=WORK, ts=CLOCK.now_ms())
        )
        assert funded["delivered"] == funded["of"]
        everyone = [k.public_key_hex for k in first + late]
        new_set = holder_set(a, everyone, 5)
        dropping = [k for k in (k.public_key_hex for k in first) if k not in new_set]
        assert len(dropping) == MORE and not set(new_set) & set(dropping)
        to_bob = sign_transfer(
            alice, seq=1, prev=ZERO_HASH, to=bob.public_key_hex, amount=UNITS_PER_SHELL, ts=CLOCK.now_ms()
        )
        for h in dropping:  # Alice's first spend, voted by the three holders that the join replaces
            offer = {"tx": to_bob.to_dict(), "view": view1}
            got = await p.post(where[h], RECP, "/recp", "pay.accept", offer, expect_pubkey=h, signed_reply=True)
            assert got["acceptance"]["id"] == to_bob.id

    where |= keyed(cluster, tmp_path, late, 2 + FIRST)
    cluster.up(MORE, join=[ips[0]])
    await settled(cluster, FIRST + MORE)
    deadline = time.monotonic() + 60
    while True:  # the new cells learned the views of the last minutes from the others (pay.views)
        docs = await cluster.status()
        if all(
            d["counters"].get("pay_history_learned", 0) >= 1 for d in docs if d["node"] in where and d["ip"] > ips[-1]
        ):
            break
        assert time.monotonic() < deadline, "the new cells did not learn the recent views"
        await asyncio.sleep(0.3)

    to_carol = sign_transfer(
        alice, seq=1, prev=ZERO_HASH, to=carol.public_key_hex, amount=UNITS_PER_SHELL, ts=CLOCK.now_ms()
    )
    async with peers() as p:
        with pytest.raises(PeerRejected) as err:
            await PayClient(p, where[late[0].public_key_hex]).submit(to_carol)
        assert err.value.reason == "conflicting_spend", err.value
    docs = {d["node"]: d["counters"] for d in await cluster.status()}
    for k in late:  # each new holder asked the old set and saw the old votes
        counted = docs[k.public_key_hex]
        assert counted.get("pay_handover:conflicting_spend", 0) >= 1 and counted.get("pay_handover_asked", 0) >= 1, (
            counted
        )
    for h in dropping:  # the old holders answered and sealed the account
        assert docs[h].get("pay_handover_sealed", 0) >= 1, docs[h]

    # the join handed Alice's and the reserve's settled history to their new holders (pay.handoff): a
    # balance read through a new node agrees, where before the new holders had nothing to answer with
    async with peers() as p:
        client = PayClient(p, where[late[0].public_key_hex])
        for account, want in ((a, 10 * UNITS_PER_SHELL), (RESERVE, None)):
            deadline = time.monotonic() + 60
            while True:
                try:
                    read = await client.balance(account)
                    break
                except PeerRejected as exc:
                    assert exc.reason == "disagreement", exc
                    assert time.monotonic() < deadline, f"the new holders never agreed on {account[:16]}: {exc}"
                    await asyncio.sleep(0.5)
            assert want is None or read["balance"] == want, read
    docs = {d["node"]: d["counters"] for d in await cluster.status()}
    assert sum(docs[k.public_key_hex].get("pay_handoff:taken", 0) for k in late) >= 1
