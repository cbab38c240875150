"""The membership handover: three of an account's five holders replaced at once cannot certify a
second spend while the first one's votes are in flight (the rule: `borgusb.ledger.handover`; the
cells: in-process, as tests/unit/test_peerpays_cell.py runs them).

Eight cells. Alice's holder set is the lottery's top five of the member view, so a view without the
three keys that rank first for her (V1) gives her the set of ranks 4 to 8, and the view of all eight
(V2) the set of ranks 1 to 5: three holders replaced, two kept. Her first spend is voted by the three
V1 holders that V2 drops (3 votes: not certified, q = 4), then the view changes. Without a handover
the five V2 holders, none of which saw those votes, would certify a second spend at the same seq,
while the first could still be certified under V1: two confirmed spends.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from borgusb.cells.kit import RequestError
from borgusb.cells.peerpays import handover as handover_cell
from borgusb.cells.peerpays.handover import view_digest
from borgusb.clock import OffsetClock
from borgusb.ledger import ZERO_HASH, hash_lock, sign_claim, sign_lock, sign_refund
from borgusb.ledger.certificate import (
    Certificate,
    certify,
    check_acceptance,
    check_certificate,
    holder_set,
    set_digest,
    sign_acceptance,
)
from borgusb.ledger.errors import ConflictingSpend, HandoverPending, LedgerError
from borgusb.ledger.handover import WINDOW_MS, Answer, PastView, judge, old_sets, wanted
from borgusb.ledger.htlc import certify_resolution, check_resolution_certificate, check_vote
from borgusb.ledger.sim import fixed_key
from borgusb.net.peer import PeerRejected
from tests.unit.test_peerpays_cell import SHELL, Net, cells_net, fund, post, settings, transfer

ALICE, BOB, CAROL = (fixed_key(n) for n in ("alice", "bob", "carol"))
A = ALICE.public_key_hex
SECRET = bytes(range(32))


def use(net: Net, keys: list[str]) -> None:
    view = {k: net.by_key[k].ip for k in keys}
    for c in net.cells:
        c.use_members(view)


# ------------------------------------------------------------------ the rule, pure


def test_wanted_answers_tolerate_the_liars_allowed_and_not_more_than_are_left() -> None:
    old = tuple(f"h{i}" for i in range(5))
    assert wanted(old, 4, 1) == 3 and wanted(old, 3, 0) == 3 and wanted(old, 4, 0) == 2
    assert wanted(old, 4, 1, frozenset({"h0"})) == 2  # the one liar allowed is known: r - q + 1 of the rest
    assert wanted(old, 4, 1, frozenset({"h0", "h1", "h2"})) == 2  # all the honest ones left


def test_judge_refuses_another_vote_and_too_few_answers() -> None:
    keys = [fixed_key(f"old {i}") for i in range(5)]
    old = tuple(k.public_key_hex for k in keys)
    one, other = transfer(ALICE, BOB, 1, 1, ZERO_HASH), transfer(ALICE, CAROL, 1, 1, ZERO_HASH)
    silent = [Answer(h, ()) for h in old[:3]]
    judge(other.id, 1, old, silent, 4, 1)  # three sealed answers, no vote: it may vote
    voted = [Answer(old[0], (sign_acceptance(keys[0], one, set_digest(old)),)), *silent[1:]]
    with pytest.raises(ConflictingSpend) as err:
        judge(other.id, 1, old, voted, 4, 1)
    assert err.value.accepted == one.id
    judge(one.id, 1, old, voted, 4, 1)  # the same transaction: it may
    with pytest.raises(HandoverPending):
        judge(other.id, 1, old, silent[:2], 4, 1)
    judge(other.id, 1, old, silent, 4, 1, frozenset({old[0]}))  # the liar allowed is known: two others do
    with pytest.raises(HandoverPending):  # a proven liar's answer does not count
        judge(other.id, 1, old, silent[:2], 4, 1, frozenset({old[0]}))


def test_old_sets_are_the_recent_views_whose_set_differs() -> None:
    keys = [fixed_key(f"member {i}").public_key_hex for i in range(8)]
    ranked = holder_set(A, keys, 8)
    now = 10**12
    v1 = PastView("v1", {k: "ip" for k in ranked[3:]}, now - 1000)
    same = PastView("same", {k: "ip" for k in ranked[:5]}, now - 1000)
    small = PastView("small", {k: "ip" for k in ranked[:4]}, now - 1000)  # fewer than r: no sets
    stale = PastView("old", {k: "ip" for k in ranked[3:]}, now - WINDOW_MS - 1)
    assert old_sets(A, ranked[:5], [v1, same, small, stale, v1], 5, now) == [ranked[3:]]
    one = PastView("one", {k: "ip" for k in (*ranked[:4], ranked[5])}, now - 1000)  # one holder replaced
    assert old_sets(A, ranked[:5], [one], 5, now) == [holder_set(A, (*ranked[:4], ranked[5]), 5)]
    assert old_sets(A, ranked[:5], [one, v1], 5, now, q=4, faulty=1) == [ranked[3:]]  # overlap covers one


# ------------------------------------------------------------------ on cells


async def alice_paid_under_both_views(net: Net) -> tuple[list[str], list[str], list[str]]:
    """(the keys, ranked for Alice, V1's keys), the view left at V1. Alice is paid under V2 (all eight)
    and under V1 (all but the three that rank first for her), so every holder of either of her sets
    knows her funds: by Dave, whose holders are the same five under both."""
    keys = list(net.by_key)
    ranked = list(holder_set(A, keys, 8))
    v1 = [k for k in keys if k not in ranked[:3]]
    dave = next(
        k
        for i in range(5000)
        if not set(holder_set((k := fixed_key(f"dave {i}")).public_key_hex, keys, 5)) & set(ranked[:3])
    )
    use(net, keys)
    await fund(net, dave, 30)
    paid = await net.send(1, transfer(dave, ALICE, 10, 1, ZERO_HASH))
    use(net, v1)
    await net.send(2, transfer(dave, ALICE, 10, 2, paid["id"]))
    return keys, ranked, v1


async def test_three_holders_replaced_cannot_certify_a_second_spend(tmp_path: Path) -> None:
    async with cells_net(tmp_path, 8) as net:
        keys, ranked, v1 = await alice_paid_under_both_views(net)
        dropped = ranked[5:]  # Alice's V1 holders that V2 replaces
        view1 = net.cells[0].view

        # her first spend: voted by the three V1 holders that V2 drops, not certified (q = 4)
        to_bob = transfer(ALICE, BOB, 10, 1, ZERO_HASH)
        for h in dropped:
            got = await post(ALICE, net.by_key[h], "pay.accept", {"tx": to_bob.to_dict(), "view": view1})
            assert got["acceptance"]["id"] == to_bob.id

        use(net, keys)  # three of her five holders replaced at once
        assert set(net.cells[0].sets.of(A)) == set(ranked[:5])
        to_carol = transfer(ALICE, CAROL, 10, 1, ZERO_HASH)
        with pytest.raises(PeerRejected) as err:
            await net.send(0, to_carol)
        assert err.value.reason == "conflicting_spend", err.value  # the new holders learned the old votes
        assert not any((A, 1) in net.by_key[h].ledger.holder.state.votes for h in ranked[:3])

        # an old holder sealed the account: were its view to go back to V1, it would not vote there
        old = net.by_key[dropped[0]]
        assert old.sealed[A][0] == frozenset(ranked[:5])
        old.use_members({k: net.by_key[k].ip for k in v1})
        with pytest.raises(RequestError) as sealed:
            old.check_sealed(A, 1)
        assert sealed.value.reason == "handover_pending"
        old.use_members({k: net.by_key[k].ip for k in keys})

        # the first spend, sent again under V2, is certified: the new holders take the old votes' side
        sent = await net.send(3, to_bob)
        assert set(sent["certificate"]["signers"]) <= set(ranked[:5])
        assert (await net.balance(BOB.public_key_hex))["balance"] == 10 * SHELL
        assert (await net.balance(CAROL.public_key_hex))["balance"] == 0
        assert sum(c.counters["pay_handover:conflicting_spend"] for c in net.cells) >= 3


async def test_too_few_old_holders_answering_is_pending_then_goes_through(tmp_path: Path) -> None:
    async with cells_net(tmp_path, 8) as net:
        keys = list(net.by_key)
        ranked = list(holder_set(A, keys, 8))
        use(net, keys)
        await fund(net, ALICE, 10, seq=1)
        use(net, [k for k in keys if k not in ranked[:3]])
        use(net, keys)
        net.down["pay.handover"] = set(ranked[3:])  # three of the five old holders do not answer
        to_bob = transfer(ALICE, BOB, 5, 1, ZERO_HASH)
        with pytest.raises(PeerRejected) as err:
            await net.send(0, to_bob)
        assert err.value.reason == "handover_pending", err.value
        net.down.clear()
        sent = await net.send(0, to_bob)  # the same bytes, once they answer
        assert sent["id"] == to_bob.id
        assert (await net.balance(BOB.public_key_hex))["balance"] == 5 * SHELL


async def test_a_starting_cell_learns_the_recent_views_before_it_votes(tmp_path: Path) -> None:
    async with cells_net(tmp_path, 6) as net:
        keys = list(net.by_key)
        use(net, keys[:5])
        use(net, keys)  # every cell has the five-member view among its past ones
        late = net.cells[5]
        late.past_views.clear()
        late.history_learned = False  # as a cell that has just started
        mine = late.key.public_key_hex
        payer = next(k for i in range(500) if mine in late.sets.of((k := fixed_key(f"p{i}")).public_key_hex))
        offer = {"tx": transfer(payer, BOB, 1, 1, ZERO_HASH).to_dict(), "view": late.view}
        net.down["pay.views"] = set(keys[:5])  # nobody tells it the recent views yet
        with pytest.raises(PeerRejected) as err:
            await post(payer, late, "pay.accept", offer)
        assert err.value.reason == "handover_pending"  # one of the payer's holders, it votes on nothing yet
        net.down.clear()
        liar = net.cells[0]
        ghost = {fixed_key("ghost").public_key_hex: "127.0.0.99", **{k: "127.0.0.1" for k in keys[:4]}}
        liar.past_views.append(PastView(view_digest(ghost), ghost, liar.clock.now_ms()))
        assert await late.learn_history()
        learned = {v.digest for v in late.past_views}
        assert view_digest(keys[:5]) in learned  # reported by all five others
        assert view_digest(ghost) not in learned  # reported by one: a liar cannot add a view
        assert late.history_learned and late.counters["pay_history_learned"] == 1
        five = next(v for v in late.past_views if v.digest == view_digest(keys[:5]))
        assert five.until_ms <= late.clock.now_ms()  # no reporter's end is past now, nor a liar's


async def test_a_handover_done_under_a_view_is_not_reused_after_the_view_came_back(tmp_path: Path) -> None:
    async with cells_net(tmp_path, 8) as net:
        keys, ranked, v1 = await alice_paid_under_both_views(net)
        use(net, keys)
        too_much = transfer(ALICE, BOB, 100, 1, ZERO_HASH)
        with pytest.raises(PeerRejected) as err:  # handed over (nobody voted yet), then refused by the core
            await net.send(0, too_much)
        assert err.value.reason == "insufficient_funds"
        use(net, v1)  # the view goes back: Alice's first spend is certified by her V1 set
        to_bob = transfer(ALICE, BOB, 10, 1, ZERO_HASH)
        assert (await net.send(4, to_bob))["id"] == to_bob.id
        use(net, keys)  # and forth: V2's holders must ask again, not reuse what they heard before
        with pytest.raises(PeerRejected) as err:
            await net.send(0, transfer(ALICE, CAROL, 10, 1, ZERO_HASH))
        assert err.value.reason == "conflicting_spend", err.value


async def test_one_holder_replaced_needs_no_handover_round(tmp_path: Path) -> None:
    async with cells_net(tmp_path, 6) as net:
        keys = list(net.by_key)
        ranked = list(holder_set(A, keys, 6))
        use(net, keys)
        await fund(net, ALICE, 10)
        use(net, [k for k in keys if k != ranked[0]])  # her first holder leaves: one of five replaced
        asked = sum(c.counters["pay_handover_asked"] for c in net.cells)
        assert (await net.send(1, transfer(ALICE, BOB, 1, 1, ZERO_HASH)))["id"]
        assert sum(c.counters["pay_handover_asked"] for c in net.cells) == asked  # quorum overlap covers it


async def test_a_holder_in_both_sets_cannot_complete_the_old_sets_spend(tmp_path: Path) -> None:
    """The hole the review found before votes named their set. Alice's first spend has the votes of the
    three V1 holders that V2 drops; one of them lies ("no vote") and the two others are slow, so the
    new holders hear "no vote" from three old holders (the liar and the two kept in both sets) and
    vote a second spend. The two kept holders then vote at once, one for each spend: with a vote that
    counted for any set, the second spend would be certified under V2 and the first under V1. A vote
    names the set it was cast in, so the kept holder's vote for the first spend counts for V2 only."""
    async with cells_net(tmp_path, 8) as net:
        keys, ranked, v1 = await alice_paid_under_both_views(net)
        dropped, kept, new = ranked[5:], ranked[3:5], ranked[:3]
        view1, s1 = net.cells[0].view, set_digest(ranked[3:8])
        to_bob = transfer(ALICE, BOB, 10, 1, ZERO_HASH)
        first = [
            await post(ALICE, net.by_key[h], "pay.accept", {"tx": to_bob.to_dict(), "view": view1}) for h in dropped
        ]
        assert {a["acceptance"]["set"] for a in first} == {s1}

        use(net, keys)
        view2, s2 = net.cells[0].view, set_digest(ranked[:5])
        net.by_key[dropped[0]]._votes_from = lambda account, start: []  # type: ignore[method-assign]  # the liar
        net.down["pay.handover"] = set(dropped[1:])  # the honest old holders answer too slowly
        to_carol = transfer(ALICE, CAROL, 10, 1, ZERO_HASH)
        second = [
            await post(ALICE, net.by_key[h], "pay.accept", {"tx": to_carol.to_dict(), "view": view2}) for h in new
        ]
        later = await asyncio.gather(
            post(ALICE, net.by_key[kept[0]], "pay.accept", {"tx": to_carol.to_dict(), "view": view2}),
            post(ALICE, net.by_key[kept[1]], "pay.accept", {"tx": to_bob.to_dict(), "view": view2}),
        )
        second.append(later[0])
        kept_for_bob = check_acceptance(later[1]["acceptance"])
        assert kept_for_bob.id == to_bob.id and kept_for_bob.set_id == s2  # it did vote the first spend

        carol_cert = certify(to_carol, [check_acceptance(a["acceptance"]) for a in second], s2)
        check_certificate(carol_cert, ranked[:5], 4)  # the second spend is certified under V2
        bob_votes = [check_acceptance(a["acceptance"]) for a in first] + [kept_for_bob]
        with pytest.raises(LedgerError) as err:  # the first is not, under V1: three votes of its set
            check_certificate(certify(to_bob, bob_votes, s1), ranked[3:8], 4)
        assert err.value.reason == "no_quorum"
        lifted = Certificate(to_bob, s1, tuple(sorted((a.holder, a.sig) for a in bob_votes)))
        with pytest.raises(LedgerError) as err:  # nor with the kept holder's V2 signature passed off as V1's
            check_certificate(lifted, ranked[3:8], 4)
        assert err.value.reason == "bad_holder_signature"
        with pytest.raises(LedgerError) as err:  # and under V2 it has one vote
            check_certificate(certify(to_bob, bob_votes, s2), ranked[:5], 4)
        assert err.value.reason == "no_quorum"


async def test_a_certificate_made_just_before_a_view_change_is_still_confirmed_and_credited(tmp_path: Path) -> None:
    """Alice's spend is certified under V1; the view changes before it is delivered. Each holder takes
    a certificate of the set it names while that set is one of its recent views' (the handover window),
    and refuses it as `unknown_set` once the window has passed."""
    async with cells_net(tmp_path, 8) as net:
        keys, ranked, v1 = await alice_paid_under_both_views(net)
        to_bob = transfer(ALICE, BOB, 10, 1, ZERO_HASH)
        view1, s1 = net.cells[0].view, set_digest(ranked[3:8])
        votes = [
            await post(ALICE, net.by_key[h], "pay.accept", {"tx": to_bob.to_dict(), "view": view1}) for h in ranked[3:8]
        ]
        cert = certify(to_bob, [check_acceptance(v["acceptance"]) for v in votes], s1)
        use(net, keys)  # three of Alice's five holders replaced before the certificate went out
        newcomer = net.by_key[ranked[0]]
        assert not newcomer.ledger.holder.holds(A) or set_digest(newcomer.sets.of(A)) != s1
        got = await post(ALICE, newcomer, "pay.verify", {"cert": cert.to_dict()})
        assert got["id"] == to_bob.id and got["quorum"] == 4
        bob_holder = net.by_key[newcomer.sets.of(BOB.public_key_hex)[0]]
        events = await post(ALICE, bob_holder, "pay.confirm", {"cert": cert.to_dict()})
        assert any(e.startswith("credited") for e in events["events"])

        for c in net.cells:  # the window passes
            c.sets.past = tuple(replace(p, until_ms=c.clock.now_ms() - 1) for p in c.sets.past)
        with pytest.raises(PeerRejected) as err:
            await post(ALICE, newcomer, "pay.verify", {"cert": cert.to_dict()})
        assert err.value.reason == "unknown_set"


async def test_a_lock_claimed_under_the_old_set_cannot_be_refunded_by_the_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock's resolution is handed over too. Alice's lock for Bob is claimed under V1 by the three
    holders V2 drops and one it keeps (four votes: certified under V1), then the view changes before the
    claim is delivered and the history's hand-over is lost. After the expiry and its grace the new set
    (three newcomers and the other kept holder: four) would certify the refund; asked first, the old set
    reports the claim's votes and the refund is refused. Switched off by hand, the refund goes through."""
    clock = OffsetClock()
    async with cells_net(tmp_path, 8, settings=settings(htlc_grace_ms="1000", faulty="1"), clock=clock) as net:
        keys, ranked, v1 = await alice_paid_under_both_views(net)
        dropped, kept = ranked[5:], ranked[3:5]
        now = clock.now_ms()
        lock = sign_lock(
            ALICE,
            seq=1,
            prev=ZERO_HASH,
            to=BOB.public_key_hex,
            amount=4 * SHELL,
            hash_lock=hash_lock(SECRET),
            expiry=now + 5_000,
            ts=now,
        )
        await net.send(3, lock)
        claim = sign_claim(BOB, lock, SECRET)
        view1 = net.cells[0].view
        votes = [
            check_vote(
                (await post(BOB, net.by_key[h], "pay.resolve", {"resolution": claim.to_dict(), "view": view1}))["vote"]
            )
            for h in [*dropped, kept[0]]
        ]
        check_resolution_certificate(certify_resolution(claim, votes, set_digest(ranked[3:8])), ranked[3:8], 4)

        net.down["pay.handoff"] = set(keys)
        use(net, keys)
        clock.set_offset(7_000)  # past the expiry and its grace
        refund = {"resolution": sign_refund(ALICE, lock).to_dict()}
        with pytest.raises(PeerRejected) as err:
            await post(ALICE, net.by_key[ranked[0]], "pay.refund", refund)
        assert err.value.reason == "already_resolved", err.value
        assert sum(c.counters["pay_handover:already_resolved"] for c in net.cells) >= 1

        monkeypatch.setattr(handover_cell, "judge_lock", lambda *args, **kw: None)  # the old votes unheard
        got = await post(ALICE, net.by_key[ranked[0]], "pay.refund", refund)
        assert set(got["certificate"]["signers"]) == {*ranked[:3], kept[1]}  # both resolutions certified


async def test_the_recent_views_are_given_to_members_only(tmp_path: Path) -> None:
    async with cells_net(tmp_path, 5) as net:
        with pytest.raises(PeerRejected) as err:
            await post(fixed_key("not a member"), net.cells[0], "pay.views", {})
        assert err.value.reason == "not_member" and net.cells[0].counters["pay_views_refused:not_member"] == 1
        views = (await post(net.cells[1].key, net.cells[0], "pay.views", {}))["views"]
        assert [set(v["members"]) for v in views] == [{net.cells[0].key.public_key_hex}]  # its view before the net
