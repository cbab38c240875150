"""Acceptances, holder sets and confirmation certificates: every way a certificate can lie is refused."""

from __future__ import annotations

import pytest

from borgusb.ledger import (
    RESERVE,
    ZERO_HASH,
    Certificate,
    HolderSets,
    certificate_from_dict,
    certify,
    check_acceptance,
    check_certificate,
    check_reserve_payout,
    holder_set,
    is_equivocation,
    parse_certificate,
    quorum_size,
    set_digest,
    sign_acceptance,
    sign_reward,
    sign_transfer,
)
from borgusb.ledger.certificate import PastMembers
from borgusb.ledger.errors import LedgerError
from borgusb.ledger.sim import fixed_key
from borgusb.shard import placement

NODES = [fixed_key(f"cert node {i}") for i in range(8)]
BY_PUB = {k.public_key_hex: k for k in NODES}
SETS = HolderSets(BY_PUB)
PAYER = fixed_key("cert payer")
PAYEE = fixed_key("cert payee")
TS = 1_764_000_000_000
TX = sign_transfer(PAYER, seq=1, prev=ZERO_HASH, to=PAYEE.public_key_hex, amount=500, ts=TS)
HOLDERS = SETS.of(TX.account)
OUTSIDER = next(k for k in NODES if k.public_key_hex not in HOLDERS)


def _cert(signers: list[str], tx=TX) -> Certificate:
    return certify(
        tx, [sign_acceptance(BY_PUB[h], tx, SETS.digest(tx.account)) for h in signers], SETS.digest(tx.account)
    )


def _refusal(cert: Certificate, holders=HOLDERS, quorum: int | None = None) -> str:
    with pytest.raises(LedgerError) as err:
        check_certificate(cert, holders, quorum)
    return err.value.reason


@pytest.mark.parametrize(
    ("r", "faulty", "q"), [(1, 0, 1), (2, 0, 2), (3, 0, 2), (4, 0, 3), (5, 0, 3), (5, 1, 4), (5, 2, 4), (7, 2, 5)]
)
def test_quorum_sizes_intersect_in_more_than_the_faulty(r: int, faulty: int, q: int) -> None:
    assert quorum_size(r, faulty) == q
    assert 2 * q - r > faulty  # any two quorums share more than `faulty` holders
    if q > 1:
        assert 2 * (q - 1) - r <= faulty  # and q is the smallest that does


def test_quorum_size_misuse() -> None:
    for r, f in ((0, 0), (5, -1), (5, 5), (3, 3)):
        with pytest.raises(ValueError):
            quorum_size(r, f)


def test_holder_set_is_the_placement_lottery() -> None:
    members = list(BY_PUB)
    hs = holder_set(TX.account, members)
    assert len(hs) == 5 == len(set(hs)) and set(hs) <= set(members)
    assert hs == tuple(placement.choose("borgusb.ledger:" + TX.account, members, 5))
    assert hs == holder_set(TX.account, reversed(members))  # the same set whoever computes it
    assert SETS.of(TX.account) == hs and SETS.quorum(TX.account) == 3
    assert set(holder_set(TX.account, members[:3])) == set(members[:3])  # fewer members than R: all of them
    # different accounts get different sets (the lottery spreads them)
    sets = {holder_set(fixed_key(f"acct {i}").public_key_hex, members) for i in range(12)}
    assert len(sets) > 1


def test_a_quorum_certificate_checks_and_round_trips() -> None:
    cert = _cert(list(HOLDERS[:3]))
    assert check_certificate(cert, HOLDERS) is cert
    full = _cert(list(HOLDERS))
    assert check_certificate(full, HOLDERS) is full
    again = parse_certificate(full.encode())
    assert again == full and check_certificate(again, HOLDERS) == full
    assert certificate_from_dict(cert.to_dict()) == cert
    assert cert.signers == tuple(sorted(HOLDERS[:3]))


def test_too_few_signatures() -> None:
    assert _refusal(_cert(list(HOLDERS[:2]))) == "no_quorum"
    assert _refusal(_cert([])) == "no_quorum"
    assert _refusal(_cert(list(HOLDERS[:3])), quorum=4) == "no_quorum"  # a stricter quorum (one faulty holder)


def test_duplicate_signer() -> None:
    good = _cert(list(HOLDERS[:2]))
    dup = Certificate(TX, good.set_id, good.sigs + (good.sigs[0],))  # three signatures, two holders
    assert _refusal(dup) == "duplicate_signer"
    dup_wire = dict(good.to_dict())
    dup_wire["sigs"] = dup_wire["sigs"] + [dup_wire["sigs"][0]]
    assert _refusal(certificate_from_dict(dup_wire)) == "duplicate_signer"


def test_non_holder_signer() -> None:
    # a valid signature, but by a member the lottery did not choose for this account
    cert = certify(
        TX,
        [sign_acceptance(BY_PUB[h], TX, SETS.digest(TX.account)) for h in HOLDERS[:2]]
        + [sign_acceptance(OUTSIDER, TX, SETS.digest(TX.account))],
        SETS.digest(TX.account),
    )
    assert _refusal(cert) == "not_holder_signer"
    stranger = fixed_key("not even a member")
    cert = certify(
        TX,
        [sign_acceptance(BY_PUB[h], TX, SETS.digest(TX.account)) for h in HOLDERS[:3]]
        + [sign_acceptance(stranger, TX, SETS.digest(TX.account))],
        SETS.digest(TX.account),
    )
    assert _refusal(cert) == "not_holder_signer"  # extra signatures are not ignored: every one must be a holder's


def test_tampered_transaction() -> None:
    cert = _cert(list(HOLDERS[:3]))
    wire = cert.to_dict()
    wire["tx"] = dict(wire["tx"], amount=5_000)  # the payer did not sign this
    with pytest.raises(LedgerError) as err:
        certificate_from_dict(wire)
    assert err.value.reason == "bad_signature"
    # another transaction the payer did sign (same seq), carrying the first one's acceptances
    other = sign_transfer(PAYER, seq=1, prev=ZERO_HASH, to=PAYEE.public_key_hex, amount=5_000, ts=TS)
    assert _refusal(Certificate(other, cert.set_id, cert.sigs)) == "bad_holder_signature"


def test_every_holder_signature_is_verified() -> None:
    cert = _cert(list(HOLDERS))
    holder, sig = cert.sigs[-1]
    wrong_seq_tx = sign_transfer(PAYER, seq=2, prev=TX.id, to=PAYEE.public_key_hex, amount=1, ts=TS)
    other_sig = sign_acceptance(BY_PUB[holder], wrong_seq_tx, SETS.digest(wrong_seq_tx.account)).sig
    bad = Certificate(TX, cert.set_id, cert.sigs[:-1] + ((holder, other_sig),))
    assert _refusal(bad) == "bad_holder_signature"  # four good ones are not enough to excuse one bad


def test_bounds_and_misuse() -> None:
    cert = _cert(list(HOLDERS[:3]))
    wire = cert.to_dict()
    with pytest.raises(LedgerError) as err:
        certificate_from_dict(dict(wire, sigs=wire["sigs"] * 6))  # 18 > 16
    assert err.value.reason == "malformed"
    with pytest.raises(LedgerError):
        parse_certificate(cert.encode() + b" " * 9000)
    with pytest.raises(LedgerError):
        certificate_from_dict(dict(wire, v=1))  # signed format 1 named no set
    with pytest.raises(ValueError):
        check_certificate(cert, HOLDERS, quorum=2)  # not a strict majority of five
    with pytest.raises(ValueError):
        check_certificate(cert, list(HOLDERS) + [HOLDERS[0]])


def test_acceptance_wire_and_equivocation_proof() -> None:
    key = BY_PUB[HOLDERS[0]]
    acc = sign_acceptance(key, TX, SETS.digest(TX.account))
    assert check_acceptance(acc.to_dict()) == acc
    with pytest.raises(LedgerError) as err:
        check_acceptance(dict(acc.to_dict(), seq=2))
    assert err.value.reason == "bad_holder_signature"
    with pytest.raises(LedgerError) as err:
        check_acceptance(dict(acc.to_dict(), seq=True))
    assert err.value.reason == "malformed"
    other = sign_transfer(PAYER, seq=1, prev=ZERO_HASH, to=PAYEE.public_key_hex, amount=7, ts=TS)
    second = sign_acceptance(key, other, SETS.digest(other.account))
    assert is_equivocation(acc, second)  # one holder, one (account, seq), two ids: evidence
    assert not is_equivocation(acc, acc)
    assert not is_equivocation(acc, sign_acceptance(BY_PUB[HOLDERS[1]], other, SETS.digest(other.account)))


def test_reserve_payout_needs_a_quorum_of_the_reserves_holders() -> None:
    worker = fixed_key("cert worker")
    reward = sign_reward(worker, seq=1, prev=ZERO_HASH, amount=10**8, ref="cd" * 32, ts=TS)
    reserve_holders = SETS.of(RESERVE)
    good = certify(
        reward,
        [sign_acceptance(BY_PUB[h], reward, SETS.digest(reward.account)) for h in reserve_holders[:3]],
        SETS.digest(reward.account),
    )
    assert check_reserve_payout(good, SETS) is good
    few = certify(
        reward,
        [sign_acceptance(BY_PUB[h], reward, SETS.digest(reward.account)) for h in reserve_holders[:2]],
        SETS.digest(reward.account),
    )
    with pytest.raises(LedgerError) as err:
        check_reserve_payout(few, SETS)
    assert err.value.reason == "no_quorum"
    outsiders = [k for k in NODES if k.public_key_hex not in reserve_holders]
    others = certify(
        reward,
        [sign_acceptance(k, reward, SETS.digest(reward.account)) for k in outsiders]
        + [sign_acceptance(worker, reward, SETS.digest(reward.account))],
        SETS.digest(reward.account),
    )
    with pytest.raises(LedgerError) as err:
        check_reserve_payout(others, SETS)  # the claimant and non-holders cannot approve it
    assert err.value.reason == "not_holder_signer"
    with pytest.raises(LedgerError) as err:
        check_reserve_payout(_cert(list(HOLDERS[:3])), SETS)
    assert err.value.reason == "reserve_rule"


def test_a_certificate_counts_only_the_acceptances_of_the_set_it_names() -> None:
    """An acceptance signs the holder set it was cast in: the same holders' votes under another set
    neither fill a certificate of this one nor pass for its signatures."""
    s = SETS.digest(TX.account)
    elsewhere = set_digest([*HOLDERS[:4], OUTSIDER.public_key_hex])  # the set under another view
    votes = [sign_acceptance(BY_PUB[h], TX, elsewhere) for h in HOLDERS[:3]]
    assert certify(TX, votes, s).sigs == ()
    lifted = Certificate(TX, s, tuple(sorted((a.holder, a.sig) for a in votes)))
    assert _refusal(lifted) == "bad_holder_signature"
    assert _refusal(certify(TX, votes, elsewhere)) == "unknown_set"  # checked against another set


def test_known_sets_are_todays_and_the_recent_views_until_their_window_ends() -> None:
    now = [TS]
    members = [k.public_key_hex for k in NODES]
    before = [m for m in members if m != HOLDERS[0]]  # a view without one of the account's holders
    sets = HolderSets(members, 5, 1, past=[PastMembers(frozenset(before), TS + 1000)], now_ms=lambda: now[0])
    old = holder_set(TX.account, before, 5)
    assert sets.known(TX.account, SETS.digest(TX.account)) == (HOLDERS, 4)
    assert sets.known(TX.account, set_digest(old)) == (old, 4) and HOLDERS[0] not in old
    now[0] = TS + 1001
    with pytest.raises(LedgerError) as err:
        sets.known(TX.account, set_digest(old))
    assert err.value.reason == "unknown_set"
    few = HolderSets(members, 5, past=[PastMembers(frozenset(members[:4]), TS + 10**6)], now_ms=lambda: TS)
    with pytest.raises(LedgerError):  # a view of fewer than r members held nothing
        few.known(TX.account, set_digest(members[:4]))


def test_unknown_set_digests_cost_each_past_lottery_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream of certificates naming sets nobody knows must not redo the past views' lotteries each time."""
    members = [k.public_key_hex for k in NODES]
    views = [PastMembers(frozenset(m for m in members if m != h), TS + 10**6) for h in HOLDERS[:2]]
    sets = HolderSets(members, 5, past=views, now_ms=lambda: TS)
    draws = []
    real = placement.choose
    monkeypatch.setattr(placement, "choose", lambda *a: draws.append(a[0]) or real(*a))
    for forged in range(20):
        with pytest.raises(LedgerError):
            sets.known(TX.account, f"{forged:064x}")
    assert len(draws) == 3  # today's set and one per past view
    sets.past = views[:1]  # a new history: its lotteries are drawn afresh
    with pytest.raises(LedgerError):
        sets.known(TX.account, "f" * 64)
    assert len(draws) == 4
