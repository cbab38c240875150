"""peerPaysCell against lying holders (cells/peerpays/equivocation.py), nine cells in-process.

Three holders of Alice's account sign a second transaction at a seq they already certified (more
liars than the 4-of-5 quorum tolerates, so a double confirmation exists). The holder that is handed
the second certificate proves who lied from the two certificates, keeps the evidence on disk, and
drops them from its view; the others learn it from an offer, a refusal or the broadcast, checking
each piece themselves. Requests go through each cell's real verifier and dispatcher (as in
test_peerpays_cell.py); nothing opens a connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from borgusb.cells.peerpays.cell import PeerPaysCell
from borgusb.cells.peerpays.handover import view_digest
from borgusb.ledger import ZERO_HASH, certify, set_digest, sign_acceptance
from borgusb.ledger.evidence import check_evidence, evidence_of
from borgusb.ledger.sim import fixed_key
from borgusb.net.peer import PeerRejected

from .test_peerpays_cell import ALICE, BOB, CAROL, Net, cells_net, close_cell, fund, make_cell, post, transfer

N = 9  # four liars at most (when all five signed the first): five honest cells stay, R = 5


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    async with cells_net(tmp_path, N) as cells:
        yield cells


async def double_confirmed(net: Net) -> tuple[PeerPaysCell, set[str], dict[str, Any]]:
    """Alice's seq 1 certified to Bob the honest way, then a certificate of a payment to Carol at the
    same seq signed by three of those signers and the one holder that did not sign; returns the
    holder that keeps Bob's certificate and was not among the second's signers, the liars (who signed
    both), and the second certificate."""
    await fund(net, ALICE, 10)
    to_bob = transfer(ALICE, BOB, 10, 1, ZERO_HASH)
    sent = await net.send(0, to_bob)
    holders = list(net.cells[0].sets.of(ALICE.public_key_hex))
    first = list(sent["certificate"]["signers"])
    liars = first[:3]
    rest = [h for h in holders if h not in first] or [h for h in holders if h not in liars][-1:]
    to_carol = transfer(ALICE, CAROL, 10, 1, ZERO_HASH)
    d = set_digest(holders)
    second = certify(to_carol, [sign_acceptance(net.by_key[h].key, to_carol, d) for h in [*liars, rest[0]]], d)
    keeper = next(net.by_key[h] for h in holders if h not in second.signers)
    return keeper, set(first) & set(second.signers), second.to_dict()  # 3, or 4 when all five signed Bob's


async def test_a_second_certificate_convicts_the_holders_that_signed_both_and_they_are_dropped(
    net: Net, tmp_path: Path
) -> None:
    keeper, liars, second = await double_confirmed(net)
    before = keeper.view
    with pytest.raises(PeerRejected) as err:
        await post(fixed_key("anyone"), keeper, "pay.confirm", {"cert": second})
    assert err.value.reason == "conflicting_spend"  # refused, and who lied is now proven
    assert set(keeper.excluded) == liars
    assert all(check_evidence(ev.to_dict()).holder == h for h, ev in keeper.excluded.items())
    assert keeper.counters["pay_evidence_found"] == len(liars) >= 3
    assert set(keeper.members) == set(keeper.table) - liars and len(keeper.members) == N - len(liars)
    assert keeper.view == view_digest(keeper.members) != before
    assert not liars & set(keeper.sets.of(ALICE.public_key_hex))  # no holder set names a liar again
    assert keeper.status()["pay"]["evidence"]["excluded"] == sorted(h[:16] for h in liars)

    # kept on disk: a restarted cell drops them from the first table it reads
    i = net.cells.index(keeper)
    await close_cell(keeper)
    again = make_cell(i, tmp_path)
    try:
        assert set(again.excluded) == liars
        again.use_members(keeper.table)
        assert again.view == keeper.view
    finally:
        await close_cell(again)


async def test_the_others_learn_it_from_an_offer_a_refusal_and_the_broadcast_checking_each_piece(net: Net) -> None:
    keeper, liars, second = await double_confirmed(net)
    with pytest.raises(PeerRejected):
        await post(fixed_key("anyone"), keeper, "pay.confirm", {"cert": second})
    honest = [c for c in net.cells if c is not keeper and c.key.public_key_hex not in liars]

    # an entry told "view_mismatch" asks that holder for what it lacks
    entry = honest[0]
    await entry.ask_refusers({keeper.key.public_key_hex: "view_mismatch"})
    assert set(entry.excluded) == liars and entry.view == keeper.view
    assert entry.counters["pay_evidence_learned"] == len(liars)

    # a holder offered a transaction under a view it does not know asks the offerer first
    holder = honest[1]
    bob_tx = transfer(BOB, CAROL, 1, 1, ZERO_HASH)
    offer = {"tx": bob_tx.to_dict(), "view": keeper.view, "excluded": keeper.excluded_keys()}
    try:
        await post(keeper.key, holder, "pay.accept", offer)
    except PeerRejected as exc:  # Bob's credit may be on his old holders only, or a holder of his old set
        # (one that has not learned the evidence yet) cannot answer the handover under this view: not the view
        assert exc.reason in ("insufficient_funds", "handover_pending"), exc
    assert set(holder.excluded) == liars and holder.view == keeper.view

    # the broadcast: a real piece is taken, a forged one and one against a non-member are not
    third = honest[2]
    ev = next(iter(keeper.excluded.values()))
    forged = ev.to_dict()
    forged["b"] = {**forged["b"], "sig": forged["a"]["sig"]}
    third._b_evidence("someone", {"evidence": forged})
    stranger = fixed_key("not a member")
    d = set_digest([stranger.public_key_hex])
    a = sign_acceptance(stranger, bob_tx, d)
    third._b_evidence("someone", {"evidence": {"v": 1, "a": a.to_dict(), "b": a.to_dict()}})
    assert not third.excluded
    assert third.counters["pay_evidence_refused:bad_holder_signature"] == 1
    assert third.counters["pay_evidence_refused:not_evidence"] == 1
    x = sign_acceptance(stranger, bob_tx, d)
    y = sign_acceptance(stranger, transfer(BOB, ALICE, 1, 1, ZERO_HASH), d)
    third._b_evidence("someone", {"evidence": evidence_of(x, y).to_dict()})
    assert not third.excluded and third.counters["pay_evidence_ignored:not_a_member"] == 1
    third._b_evidence("someone", {"evidence": ev.to_dict()})
    assert set(third.excluded) == {ev.holder}

    # once every cell knows, all compute one view without the liars (the liars' own cells too)
    for c in net.cells:
        for piece in keeper.excluded.values():
            c._b_evidence("keeper", {"evidence": piece.to_dict()})
    assert len({c.view for c in net.cells}) == 1
    for c in net.cells:
        assert not liars & set(c.sets.of(BOB.public_key_hex)) and not liars & set(c.sets.of(ALICE.public_key_hex))
