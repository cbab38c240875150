"""History moves with an account (`borgusb.ledger.handoff`, `borgusb.cells.peerpays.handoff`): the
holders a view change adds to an account's set get its settled history from the old holders.

Eight cells in-process (tests/unit/test_peerpays_cell.py's `Net`). V1 lacks the three keys that rank
first for Alice, so her V1 set is ranks 4 to 8; V2 (all eight) gives her ranks 1 to 5: three
newcomers, two kept holders, three dropped.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from borgusb.ledger import ZERO_HASH
from borgusb.ledger.certificate import certify, holder_set, set_digest, sign_acceptance
from borgusb.ledger.handoff import Vouches
from borgusb.ledger.sim import fixed_key
from borgusb.net.peer import PeerRejected
from tests.unit.test_peerpays_cell import SHELL, Net, cells_net, fund, post, transfer

ALICE, BOB, EVE = (fixed_key(n) for n in ("alice", "bob", "eve"))
A = ALICE.public_key_hex


def use(net: Net, keys: list[str]) -> None:
    view = {k: net.by_key[k].ip for k in keys}
    for c in net.cells:
        c.use_members(view)


async def settle(net: Net) -> None:
    """Let every cell's background hand-overs finish."""
    for c in net.cells:
        await asyncio.gather(*list(c._tasks))


async def alice_under_v1(net: Net) -> tuple[list[str], list[str]]:
    """(keys, ranked for Alice): Alice funded with 10 Shells and paying Bob 3 under V1, the view left at V1."""
    keys = list(net.by_key)
    ranked = list(holder_set(A, keys, 8))
    use(net, [k for k in keys if k not in ranked[:3]])
    await fund(net, ALICE, 10)
    await net.send(1, transfer(ALICE, BOB, 3, 1, ZERO_HASH))
    return keys, ranked


def test_vouches_count_distinct_vouchers_of_one_known_set() -> None:
    v = Vouches(faulty=1)
    one, two = ("a", "b", "c"), ("c", "d", "e")
    assert not v.vouch("r", "a", [one, two]) and not v.vouch("r", "a", [one, two])  # one voucher, twice
    assert not v.vouch("r", "d", [one, two])  # two vouchers, but of two sets: one liar in each could do it
    assert v.vouch("r", "b", [one, two]) and len(v) == 1  # two of one set: one of them is honest
    v.done("r")
    assert len(v) == 0


async def test_the_new_holders_get_the_history_when_the_view_changes(tmp_path: Path) -> None:
    async with cells_net(tmp_path, 8) as net:
        keys, ranked = await alice_under_v1(net)
        newcomers = [net.by_key[h] for h in ranked[:3]]
        assert all(c.ledger.holder.balance(A) == 0 for c in newcomers)  # they never held Alice
        use(net, keys)
        await settle(net)
        for c in newcomers:
            answer = c.ledger.holder.answer(A)
            assert (answer.balance, answer.seq) == (7 * SHELL, 1)
            assert c.counters["pay_handoff:taken"] >= 2  # her credit and her chain's entry
        read = await net.balance(A)
        assert read["balance"] == 7 * SHELL  # every holder of V2 agrees: no `disagreement`
        sent = await net.send(0, transfer(ALICE, BOB, 2, 2, read["head"]))  # and her next spend needs no catch-up
        assert set(sent["certificate"]["signers"]) <= set(ranked[:5])
        assert sum(c.counters["pay_catch_ups"] for c in net.cells) == 0


async def test_history_of_an_unknown_set_needs_faulty_plus_one_vouchers_of_a_known_one(tmp_path: Path) -> None:
    """The newcomer no longer knows V1 (its window passed): Alice's certificates are of a set it cannot
    check. It takes them once two holders of a set it knows (the two kept in V2) handed them over; a
    dropped holder is not one, one voucher is not enough, and a record only one holder vouches for
    (a forgery by a lying holder) is never taken."""
    async with cells_net(tmp_path, 8) as net:
        keys, ranked = await alice_under_v1(net)
        kept, dropped = [net.by_key[h] for h in ranked[3:5]], [net.by_key[h] for h in ranked[5:]]
        net.down["pay.handoff"] = set(keys)  # the pushes after the view change are lost
        use(net, keys)
        newcomer = net.by_key[ranked[0]]
        newcomer.sets.past = ()  # the V1 window has passed for it
        assert newcomer.ledger.holder.balance(A) == 0

        def history(c: Any) -> dict[str, Any]:
            return {"account": A, "chain": c.certs_local(A, 1, 99), "credits": c._credits(A), "settled": []}

        with pytest.raises(PeerRejected) as err:
            await post(dropped[0].key, newcomer, "pay.handoff", history(dropped[0]))
        assert err.value.reason == "not_a_holder"
        got = await post(kept[0].key, newcomer, "pay.handoff", history(kept[0]))
        assert got["outcome"] == {"waiting": 2}
        got = await post(kept[0].key, newcomer, "pay.handoff", history(kept[0]))  # the same voucher again
        assert got["outcome"] == {"waiting": 2} and newcomer.ledger.holder.balance(A) == 0
        got = await post(kept[1].key, newcomer, "pay.handoff", history(kept[1]))
        assert got["outcome"] == {"taken": 2}
        assert (newcomer.ledger.holder.balance(A), newcomer.ledger.holder.answer(A).seq) == (7 * SHELL, 1)

        # a lying kept holder hands over a credit to Eve that no quorum ever signed
        gift = transfer(ALICE, EVE, 1000, 9, "ab" * 32)
        liars = [fixed_key(f"liar {i}") for i in range(4)]
        fake_set = set_digest(k.public_key_hex for k in liars)
        forged = certify(gift, [sign_acceptance(k, gift, fake_set) for k in liars], fake_set).to_dict()
        eve_holder = next(c for c in net.cells if c.ledger.holder.holds(EVE.public_key_hex))
        eves = eve_holder.sets.of(EVE.public_key_hex)
        eve_kept = next(c for c in net.cells if c is not eve_holder and c.key.public_key_hex in eves)
        for _ in range(2):
            got = await post(
                eve_kept.key, eve_holder, "pay.handoff", {"account": EVE.public_key_hex, "credits": [forged]}
            )
            assert got["outcome"] == {"waiting": 1}
        assert eve_holder.ledger.holder.balance(EVE.public_key_hex) == 0


async def test_a_lagging_holder_catches_up_across_a_view_change_older_than_the_window(tmp_path: Path) -> None:
    """One of Alice's five holders replaced; her first spend was certified under the old set, whose
    window has passed, and the newcomer missed the hand-over. Her next spend finds it lagging (`gap`); the
    old certificate is `unknown_set` to it, so the four holders that have the spend settled sign it again
    for today's set, and the newcomer takes that."""
    async with cells_net(tmp_path, 6) as net:
        keys = list(net.by_key)
        ranked = list(holder_set(A, keys, 6))
        newcomer = net.by_key[ranked[0]]
        use(net, [k for k in keys if k != ranked[0]])  # her set: ranks 2 to 6
        await fund(net, ALICE, 10)
        first = await net.send(1, transfer(ALICE, BOB, 3, 1, ZERO_HASH))
        net.down["pay.handoff"] = set(keys)
        use(net, keys)  # her set: ranks 1 to 5, one holder replaced (quorum overlap: no handover round)
        for c in net.cells:
            c.sets.past = ()  # the old view's window has passed everywhere
        assert newcomer.ledger.holder.head(A) == (0, ZERO_HASH)
        sent = await net.send(2, transfer(ALICE, BOB, 2, 2, first["id"]))
        assert sent["id"] and net.cells[2].counters["pay_recertified"] >= 1
        assert newcomer.ledger.holder.head(A)[0] >= 1  # caught up: the first spend settled there
        assert newcomer.ledger.holder.state.chains[A].entries[0].tx.id == first["id"]


async def test_an_entry_settled_by_a_later_certificate_gets_its_own_before_the_hand_over(tmp_path: Path) -> None:
    """A kept holder missed the certificate of Alice's first spend and settled it by the second's (whose
    chain names it): it had no certificate of its own to hand over, so its chain stopped before it. Before
    the hand-over it assembles one from the votes her holders keep, and a newcomer takes its whole chain."""
    async with cells_net(tmp_path, 8) as net:
        keys = list(net.by_key)
        ranked = list(holder_set(A, keys, 8))
        use(net, [k for k in keys if k not in ranked[:3]])
        await fund(net, ALICE, 10)
        lagging, newcomer = net.by_key[ranked[3]], net.by_key[ranked[0]]
        net.down["pay.confirm"] = {ranked[3]}
        first = await net.send(1, transfer(ALICE, BOB, 3, 1, ZERO_HASH))
        net.down = {}
        await net.send(1, transfer(ALICE, BOB, 2, 2, first["id"]))
        chain = lagging.ledger.holder.state.chains[A]
        assert chain.confirmed == 2 and chain.entries[0].cert is None
        assert len(lagging.certs_local(A, 1, 3)) == 1  # the second only: a newcomer would answer `gap`

        net.down["pay.handoff"] = set(keys)  # the pushes are lost; the history is handed below, by one holder
        use(net, keys)
        deadline = asyncio.get_running_loop().time() + 30
        while len(lagging.certs_local(A, 1, 3)) < 2:  # filled by the push's first step, in the background
            assert asyncio.get_running_loop().time() < deadline, lagging.counters
            await asyncio.sleep(0.01)
        assert lagging.counters["pay_proofs_filled"] == 1 and lagging.counters["pay_recertified"] == 0
        history = {"account": A, "chain": lagging.certs_local(A, 1, 99), "credits": lagging._credits(A)}
        got = await post(lagging.key, newcomer, "pay.handoff", history)
        assert got["outcome"] == {"taken": 3}
        assert (newcomer.ledger.holder.balance(A), newcomer.ledger.holder.answer(A).seq) == (5 * SHELL, 2)
