"""The holder state machine and balance reads, with plain calls and integer time (no I/O)."""

from __future__ import annotations

import pytest

from borgusb.ledger import (
    RESERVE,
    SUPPLY,
    ZERO_HASH,
    Balance,
    BalanceAnswer,
    Certificate,
    Confirmed,
    Credited,
    Disagreement,
    Holder,
    HolderSets,
    Tx,
    certify,
    read_balance,
    set_digest,
    sign_acceptance,
    sign_reward,
    sign_transfer,
)
from borgusb.ledger.errors import LedgerError
from borgusb.ledger.holder import TX_MAX_AGE_MS, TX_MAX_FUTURE_MS
from borgusb.ledger.sim import Network, fixed_key

NODES = [fixed_key(f"holder node {i}") for i in range(5)]
FIVE = set_digest(k.public_key_hex for k in NODES)  # five members: every account's holder set
ALICE, BOB, CAROL = fixed_key("alice"), fixed_key("bob"), fixed_key("carol")
NOW = 1_764_000_000_000
SHELL = 10**8


def _refusal(holder: Holder, tx: Tx, now: int = NOW) -> LedgerError:
    with pytest.raises(LedgerError) as err:
        holder.accept(tx, now)
    return err.value


def _confirm(net: Network, tx: Tx, now: int = NOW) -> Certificate:
    accs, refused = net.submit(tx, now)
    assert not refused, refused
    cert = net.certify(tx, accs)
    assert cert is not None
    assert net.deliver(cert) == {}
    return cert


def _funded(shells: int = 10) -> Network:
    net = Network(NODES)
    work = sign_reward(ALICE, seq=1, prev=ZERO_HASH, amount=shells * SHELL, ref="ab" * 32, ts=NOW)
    _confirm(net, work)
    return net


def _pay(payer=ALICE, seq: int = 1, prev: str = ZERO_HASH, to=BOB, amount: int = SHELL, ts: int = NOW) -> Tx:
    return sign_transfer(payer, seq=seq, prev=prev, to=to.public_key_hex, amount=amount, ts=ts)


def test_transfer_round_trip_moves_units_and_conserves_supply() -> None:
    net = _funded(10)
    t1 = _pay(amount=3 * SHELL)
    cert = _confirm(net, t1)
    for h in net.holders.values():
        assert h.balance(ALICE.public_key_hex) == 7 * SHELL
        assert h.balance(BOB.public_key_hex) == 3 * SHELL
        assert h.balance(RESERVE) == SUPPLY - 10 * SHELL
        assert h.head(ALICE.public_key_hex) == (1, t1.id)
    read = net.read(ALICE.public_key_hex)
    assert isinstance(read, Balance) and (read.balance, read.seq, read.head) == (7 * SHELL, 1, t1.id)
    assert cert.tx == t1


def test_replay_is_idempotent_and_returns_the_same_acceptance() -> None:
    net = _funded()
    h = next(iter(net.holders.values()))
    t1 = _pay()
    first = h.accept(t1, NOW)
    assert first.verify()
    assert h.accept(t1, NOW) == first
    assert h.accept(t1, NOW + 24 * 3600_000) == first  # even long after: nothing new is decided
    assert h.available(ALICE.public_key_hex) == 9 * SHELL  # debited once


def test_conflicting_spend_is_refused_forever() -> None:
    net = _funded()
    h = next(iter(net.holders.values()))
    t1, t1b = _pay(to=BOB), _pay(to=CAROL)
    h.accept(t1, NOW)
    err = _refusal(h, t1b)
    assert err.reason == "conflicting_spend" and err.accepted == t1.id  # type: ignore[attr-defined]
    # a cheaper or later-dated conflict changes nothing either
    assert _refusal(h, _pay(to=CAROL, amount=1, ts=NOW + 5)).reason == "conflicting_spend"


def test_gap_bad_prev_and_stale_order() -> None:
    net = _funded()
    h = next(iter(net.holders.values()))
    t1 = _pay()
    h.accept(t1, NOW)
    assert _refusal(h, _pay(seq=3, prev=t1.id)).reason == "gap"
    # t1 is only this holder's vote: another transaction may have won seq 1, whose certificate it lacks
    assert _refusal(h, _pay(seq=2, prev="ab" * 32)).reason == "gap"
    _confirm(net, t1)
    assert _refusal(h, _pay(seq=2, prev="ab" * 32)).reason == "bad_prev"  # certified: the prev is wrong
    assert _refusal(h, _pay(seq=2, prev=t1.id, ts=NOW - 1)).reason == "stale"  # before the previous one
    t2 = _pay(seq=2, prev=t1.id, ts=NOW)
    assert h.accept(t2, NOW).id == t2.id


def test_stale_and_future_dated() -> None:
    net = _funded()
    h = next(iter(net.holders.values()))
    assert _refusal(h, _pay(ts=NOW - TX_MAX_AGE_MS - 1)).reason == "stale"
    assert _refusal(h, _pay(ts=NOW + TX_MAX_FUTURE_MS + 1)).reason == "future_dated"
    assert h.accept(_pay(ts=NOW - TX_MAX_AGE_MS), NOW).seq == 1


def test_insufficient_funds_counts_accepted_but_unconfirmed_spends() -> None:
    net = _funded(10)
    h = next(iter(net.holders.values()))
    err = _refusal(h, _pay(amount=10 * SHELL + 1))
    assert err.reason == "insufficient_funds" and err.available == 10 * SHELL  # type: ignore[attr-defined]
    t1 = _pay(amount=7 * SHELL)
    h.accept(t1, NOW)  # not certified yet: still counted against the next spend
    err = _refusal(h, _pay(seq=2, prev=t1.id, amount=4 * SHELL))
    assert err.reason == "insufficient_funds" and err.available == 3 * SHELL  # type: ignore[attr-defined]
    assert h.balance(ALICE.public_key_hex) == 10 * SHELL  # the confirmed balance has not moved yet
    assert _refusal(h, _pay(payer=CAROL, to=BOB)).reason == "insufficient_funds"  # never credited


def test_not_a_holder() -> None:
    nodes = [fixed_key(f"big net {i}") for i in range(8)]
    net = Network(nodes)
    holders = set(net.sets.of(ALICE.public_key_hex))
    outsider = next(h for p, h in net.holders.items() if p not in holders)
    assert _refusal(outsider, _pay()).reason == "not_holder"


def test_reward_needs_verified_work() -> None:
    sets = HolderSets([k.public_key_hex for k in NODES])
    claim = sign_reward(BOB, seq=1, prev=ZERO_HASH, amount=SHELL, ref="cd" * 32, ts=NOW)
    assert _refusal(Holder(NODES[0], sets), claim).reason == "unverified_work"  # the default verifies nothing
    checked: list[str] = []

    def verify(tx: Tx) -> bool:
        checked.append(tx.ref)
        return tx.ref == "cd" * 32 and tx.amount <= SHELL

    h = Holder(NODES[0], sets, verify_work=verify)
    assert h.accept(claim, NOW).id == claim.id and checked == ["cd" * 32]
    greedy = sign_reward(BOB, seq=2, prev=claim.id, amount=2 * SHELL, ref="ef" * 32, ts=NOW)
    assert _refusal(h, greedy).reason == "unverified_work"
    twice = sign_reward(CAROL, seq=2, prev=claim.id, amount=SHELL, ref="cd" * 32, ts=NOW)
    assert _refusal(h, twice).reason == "already_paid"  # one piece of work is paid once, whoever claims it
    assert checked == ["cd" * 32, "ef" * 32]  # the work check is not even asked again


def test_credit_only_with_a_valid_certificate() -> None:
    net = _funded(10)
    t1 = _pay(amount=2 * SHELL)
    accs, _ = net.submit(t1, NOW)
    bob = BOB.public_key_hex
    h = net.holders[net.sets.of(bob)[0]]
    with pytest.raises(LedgerError) as err:
        h.on_certificate(certify(t1, accs[:2], FIVE))
    assert err.value.reason == "no_quorum"
    forged = certify(t1, accs[:2] + [sign_acceptance(fixed_key("not a holder"), t1, FIVE)], FIVE)
    with pytest.raises(LedgerError) as err:
        h.on_certificate(forged)
    assert err.value.reason == "not_holder_signer"
    assert h.balance(bob) == 0 and h.available(bob) == 0
    cert = certify(t1, accs[:3], FIVE)
    events = h.on_certificate(cert)
    assert any(isinstance(e, Credited) and e.new for e in events)
    assert h.balance(bob) == 2 * SHELL
    again = h.on_certificate(cert)  # the same certificate twice credits once
    assert all(not e.new for e in again) and h.balance(bob) == 2 * SHELL


def test_a_holder_that_voted_for_the_loser_adopts_the_certified_transaction() -> None:
    net = _funded(10)
    hs = list(net.sets.of(ALICE.public_key_hex))
    loser, winner = _pay(to=CAROL), _pay(to=BOB)
    net.offer(loser, hs[0], NOW)
    net.offer(_pay(seq=2, prev=loser.id, amount=1), hs[0], NOW)  # built on the loser
    accs, refused = net.submit(winner, NOW)
    assert refused == {hs[0]: "conflicting_spend"} and len(accs) == 4
    cert = net.certify(winner, accs)
    assert cert is not None
    h0 = net.holders[hs[0]]
    events = h0.on_certificate(cert)
    confirm = next(e for e in events if isinstance(e, Confirmed))
    assert confirm.replaced == loser.id
    assert h0.head(ALICE.public_key_hex) == (1, winner.id)  # the loser and what was built on it are gone
    assert h0.available(ALICE.public_key_hex) == 9 * SHELL
    # it never signs the winner (its vote at seq 1 stays the loser's), nor anything at seq 2, where it
    # voted for the transaction built on the loser: one vote per (account, seq), forever
    assert _refusal(h0, winner).reason == "conflicting_spend"
    t2 = _pay(seq=2, prev=winner.id, amount=SHELL)
    assert _refusal(h0, t2).reason == "conflicting_spend"
    assert net.deliver(cert) == {}
    accs2, refused2 = net.submit(t2, NOW)
    assert refused2 == {hs[0]: "conflicting_spend"}
    cert2 = net.certify(t2, accs2)
    assert cert2 is not None and net.deliver(cert2) == {}  # four of five are a quorum; h0 follows by certificate
    t3 = _pay(seq=3, prev=t2.id, amount=SHELL)
    assert h0.accept(t3, NOW).id == t3.id
    assert h0.available(ALICE.public_key_hex) == 7 * SHELL


def test_a_holder_whose_vote_lost_says_gap_until_it_has_the_winners_certificate() -> None:
    """A partition's minority holder voted for the loser and missed the winner's certificate: the next
    transaction (built on the winner) is a gap to it, which the entry mends by sending that certificate."""
    net = _funded(10)
    hs = list(net.sets.of(ALICE.public_key_hex))
    loser, winner = _pay(to=CAROL), _pay(to=BOB)
    net.offer(loser, hs[0], NOW)
    accs, _ = net.submit(winner, NOW)
    cert = net.certify(winner, accs)
    assert cert is not None
    h0, after = net.holders[hs[0]], _pay(seq=2, prev=winner.id, amount=SHELL)
    assert _refusal(h0, after).reason == "gap"
    h0.on_certificate(cert)
    assert h0.accept(after, NOW).id == after.id


def test_certificates_arrive_in_order_or_are_refused_as_gaps() -> None:
    net = _funded(10)
    t1 = _pay()
    accs1, _ = net.submit(t1, NOW)
    t2 = _pay(seq=2, prev=t1.id)
    h_lagging = net.sets.of(ALICE.public_key_hex)[0]
    others = [h for h in net.sets.of(ALICE.public_key_hex) if h != h_lagging]
    # the lagging holder missed t1 entirely; the others go on to t2
    c1 = certify(t1, accs1, FIVE)
    net.deliver(c1, others)
    accs2, _ = net.submit(t2, NOW, others)
    c2 = net.certify(t2, accs2)
    assert c2 is not None
    fresh = Network(NODES).holders[h_lagging]  # a holder that knows nothing yet
    with pytest.raises(LedgerError) as err:
        fresh.decide_confirm(c2)
    assert err.value.reason == "gap"
    fresh.on_certificate(c1)
    fresh.on_certificate(c2)
    assert fresh.head(ALICE.public_key_hex) == (2, t2.id)


def test_partitioned_minority_cannot_confirm() -> None:
    net = _funded(10)
    hs = list(net.sets.of(ALICE.public_key_hex))
    minority, majority = hs[:2], hs[2:]
    a, b = _pay(to=CAROL, amount=10 * SHELL), _pay(to=BOB, amount=10 * SHELL)
    accs_a, _ = net.submit(a, NOW, minority)
    assert net.certify(a, accs_a) is None  # two of five: no certificate
    accs_b, _ = net.submit(b, NOW, majority)
    assert net.certify(b, accs_b) is not None
    # healed: the majority refuses a, so a can never gather a quorum
    more, refused = net.submit(a, NOW, majority)
    assert not more and set(refused.values()) == {"conflicting_spend"}


# ------------------------------------------------------------------ balance reads


def _answers(balances: list[int], seq: int = 1, head: str = "ab" * 32) -> list[BalanceAnswer]:
    return [BalanceAnswer(NODES[i].public_key_hex, "acct", b, seq, head) for i, b in enumerate(balances)]


HS = tuple(k.public_key_hex for k in NODES)


def test_read_balance_returns_only_what_a_quorum_agrees_on() -> None:
    ok = read_balance("acct", _answers([5, 5, 5, 9, 9]), HS)
    assert isinstance(ok, Balance) and ok.balance == 5 and len(ok.holders) == 3
    split = read_balance("acct", _answers([5, 5, 9, 9]), HS)
    assert isinstance(split, Disagreement) and split.why == "no_quorum" and len(split.answers) == 4
    few = read_balance("acct", _answers([5, 5]), HS)
    assert isinstance(few, Disagreement) and few.why == "too_few_answers"
    # the same balance at another confirmed seq is another answer
    mixed = _answers([5, 5]) + _answers([0, 0, 5], seq=2)[2:]
    assert isinstance(read_balance("acct", mixed, HS), Disagreement)


def test_read_balance_ignores_non_holders_other_accounts_and_self_contradiction() -> None:
    stranger = BalanceAnswer(fixed_key("stranger").public_key_hex, "acct", 9, 1, "ab" * 32)
    answers = _answers([9, 9, 5, 5, 5])
    # holders 0 and 1 say 9; holder 2 also says 9, then 5: it contradicted itself and does not count
    contradictory = [answers[0], answers[1], BalanceAnswer(HS[2], "acct", 9, 1, "ab" * 32), answers[2]]
    got = read_balance("acct", [*contradictory, stranger, stranger, BalanceAnswer(HS[3], "other", 9, 1, "")], HS)
    assert isinstance(got, Disagreement) and len(got.answers) == 2
    same_twice = read_balance("acct", [answers[2], answers[2], answers[3], answers[4]], HS)
    assert isinstance(same_twice, Balance) and same_twice.balance == 5


def test_lagging_credits_are_reported_not_guessed() -> None:
    net = _funded(10)
    t1 = _pay(amount=SHELL)
    accs, _ = net.submit(t1, NOW)
    cert = certify(t1, accs, FIVE)
    bob_holders = list(net.sets.of(BOB.public_key_hex))
    net.deliver(cert, bob_holders[:2])
    asked = bob_holders[:4]  # two have the credit, two have not
    got = net.read(BOB.public_key_hex, asked)
    assert isinstance(got, Disagreement) and sorted(a.balance for a in got.answers) == [0, 0, SHELL, SHELL]
    net.deliver(cert, bob_holders[2:3])
    got = net.read(BOB.public_key_hex, asked)
    assert isinstance(got, Balance) and got.balance == SHELL
