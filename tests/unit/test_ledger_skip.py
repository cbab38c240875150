"""Skips (borgusb/ledger/skip.py): a split seq that no transaction can reach a quorum at, shown by
the acceptances signed there, is settled as an entry with no amount and the chain goes on.

R = 5 holders with one liar tolerated (faulty = 1, quorum 4): a 2/2/1 split of all five votes is
a skip; a 3/2 split, or four votes shown of a 2/2 split, is not (the fifth holder and a liar
could still certify one side).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from borgusb.ledger import RESERVE, SUPPLY, ZERO_HASH, sign_reward
from borgusb.ledger.certificate import Acceptance, HolderSets, set_digest, sign_acceptance
from borgusb.ledger.durable import DurableHolder
from borgusb.ledger.errors import LedgerError
from borgusb.ledger.holder import Holder
from borgusb.ledger.holderstate import Skipped
from borgusb.ledger.sim import Network, fixed_key
from borgusb.ledger.skip import Skip, check_skip, gather_skip, skip_from_dict, skip_id
from borgusb.ledger.tx import Tx

NODES = [fixed_key(f"skip holder {i}") for i in range(5)]
FIVE = set_digest(k.public_key_hex for k in NODES)  # five members: every account's holder set
CLAIMANTS = [fixed_key(f"skip claimant {i}") for i in range(3)]
NOW = 1_764_000_000_000
UNIT = 10**8


def _claim(who: int, seq: int = 1, prev: str = ZERO_HASH, amount: int = UNIT) -> Tx:
    return sign_reward(CLAIMANTS[who], seq=seq, prev=prev, amount=amount, ref=f"{who:02x}{seq:02x}" * 16, ts=NOW)


def _paid_work(tx: Tx) -> bool:
    return True  # the reserve's work checks are earn.py's; here any claim is work done


def _net() -> Network:
    return Network(NODES, faulty=1)


def _split(net: Network, groups: list[list[int]]) -> tuple[list[Tx], list[Acceptance]]:
    """Offer claim i of the reserve's seq 1 to the holders in groups[i] (indices into the holder
    set): the votes split as the groups say. Returns the claims and every acceptance."""
    holders = net.sets.of(RESERVE)
    claims, accs = [], []
    for i, group in enumerate(groups):
        tx = _claim(i)
        got, refused = net.submit(tx, NOW, [holders[j] for j in group])
        assert not refused, refused
        claims.append(tx)
        accs += got
    return claims, accs


def _check(net: Network, skip: Skip) -> None:
    check_skip(skip, net.sets.of(RESERVE), net.sets.quorum(RESERVE), net.sets.faulty)


def test_a_two_two_one_split_of_all_five_is_a_skip_and_the_chain_goes_on() -> None:
    net = _net()
    claims, accs = _split(net, [[0, 1], [2, 3], [4]])
    assert all(net.certify(tx, accs) is None for tx in claims)  # stuck: no claim has a quorum
    skip = gather_skip(RESERVE, 1, ZERO_HASH, accs)
    _check(net, skip)
    assert skip.id == skip_id(RESERVE, 1, ZERO_HASH) == gather_skip(RESERVE, 1, ZERO_HASH, accs[::-1]).id
    for h in net.holders.values():
        event = h.skip(skip)
        assert isinstance(event, Skipped) and event.replaced in {tx.id for tx in claims}
        assert h.head(RESERVE) == (1, skip.id) and h.answer(RESERVE).head == skip.id
        assert h.balance(RESERVE) == SUPPLY and h.available(RESERVE) == SUPPLY  # the split paid nothing
        assert not h.skip(skip).new  # the same skip again changes nothing
    nxt = _claim(0, seq=2, prev=skip.id)
    got, refused = net.submit(nxt, NOW)
    assert not refused and net.certify(nxt, got) is not None
    assert net.deliver(net.certs[nxt.id]) == {}
    assert all(h.balance(RESERVE) == SUPPLY - UNIT for h in net.holders.values())
    for tx in claims:  # the split seq's own claims stay refused, forever
        assert set(net.submit(tx, NOW)[1].values()) == {"conflicting_spend"}


@pytest.mark.parametrize(
    ("groups", "shown"),
    [
        ([[0, 1, 2], [3, 4]], 5),  # 3 + a liar = 4: the first claim could still be certified
        ([[0, 1], [2, 3], [4]], 4),  # four shown of a 2/2/1 split: 2 + the fifth + a liar = 4
        ([[0], [1], [2]], 3),  # two holders not shown and a liar: 1 + 2 + 1 = 4
    ],
)
def test_acceptances_that_leave_a_quorum_possible_are_no_skip(groups: list[list[int]], shown: int) -> None:
    net = _net()
    _, accs = _split(net, groups)
    skip = gather_skip(RESERVE, 1, ZERO_HASH, accs[:shown])
    with pytest.raises(LedgerError) as err:
        _check(net, skip)
    assert err.value.reason == "not_skippable"
    with pytest.raises(LedgerError):
        net.holders[net.sets.of(RESERVE)[0]].skip(skip)


def test_a_skip_with_foreign_duplicate_or_forged_votes_is_refused() -> None:
    net = _net()
    _, accs = _split(net, [[0, 1], [2, 3], [4]])
    outsider = sign_acceptance(fixed_key("not a holder"), _claim(2), FIVE)
    with pytest.raises(LedgerError) as err:
        _check(net, Skip(RESERVE, 1, ZERO_HASH, (*accs[:4], outsider)))
    assert err.value.reason == "not_holder_signer"
    with pytest.raises(LedgerError) as err:
        _check(net, Skip(RESERVE, 1, ZERO_HASH, (*accs, accs[0])))
    assert err.value.reason == "duplicate_signer"
    doc = gather_skip(RESERVE, 1, ZERO_HASH, accs).to_dict()
    doc["accs"][0]["id"] = accs[2].id  # holder 0 made to say it voted with holders 2 and 3
    with pytest.raises(LedgerError) as err:
        skip_from_dict(doc)
    assert err.value.reason == "bad_holder_signature"
    assert skip_from_dict(gather_skip(RESERVE, 1, ZERO_HASH, accs).to_dict()).id == skip_id(RESERVE, 1, ZERO_HASH)
    for bad in (None, {"v": 1}, {**doc, "accs": []}, {**doc, "skip": {"account": RESERVE, "seq": 0, "prev": "x"}}):
        with pytest.raises(LedgerError) as err:
            skip_from_dict(bad)
        assert err.value.reason == "malformed"


def test_a_skip_never_passes_a_certified_transaction_or_an_unsettled_prev() -> None:
    net = _net()
    holders = net.sets.of(RESERVE)
    _, accs = _split(net, [[0, 1], [2, 3], [4]])
    skip = gather_skip(RESERVE, 1, ZERO_HASH, accs)
    wrong_prev = Skip(RESERVE, 1, "ab" * 32, skip.accs)
    with pytest.raises(LedgerError) as err:
        net.holders[holders[0]].skip(wrong_prev)
    assert err.value.reason == "bad_prev"
    # a proven skip of seq 2, taken by a holder that has no settled seq 1: it asks for the certificate first
    two = _net()
    first = _claim(0)
    got, _ = two.submit(first, NOW)
    two.deliver(two.certify(first, got))  # type: ignore[arg-type]
    split2 = []
    for who, group in enumerate([[0, 1], [2, 3], [4]]):
        split2 += two.submit(_claim(who, seq=2, prev=first.id), NOW, [holders[j] for j in group])[0]
    later = gather_skip(RESERVE, 2, first.id, split2)
    _check(two, later)
    lone = Holder(NODES[0], HolderSets([k.public_key_hex for k in NODES], 5, 1))
    with pytest.raises(LedgerError) as err:
        lone.decide_skip(later)
    assert err.value.reason == "gap"
    # a holder that holds a certificate at seq 1 (more than one liar signed both sides) refuses the skip
    ok = _net()
    tx = _claim(0)
    got, _ = ok.submit(tx, NOW)
    ok.deliver(ok.certify(tx, got))  # type: ignore[arg-type]
    with pytest.raises(LedgerError) as err:  # the split's votes, from another network's holders of the same keys
        ok.holders[holders[0]].skip(skip)
    assert err.value.reason == "conflicting_spend"


def test_a_skip_is_kept_across_a_restart(tmp_path: Path) -> None:
    net = _net()
    _, accs = _split(net, [[0, 1], [2, 3], [4]])
    skip = gather_skip(RESERVE, 1, ZERO_HASH, accs)
    key = net.sets.of(RESERVE)[0]
    signer = next(k for k in NODES if k.public_key_hex == key)
    path = tmp_path / "ledger.sqlite"
    d = DurableHolder(path, signer, net.sets, verify_work=_paid_work)
    tx = _claim(0)
    d.accept(tx, NOW)
    assert d.skip(skip).replaced == tx.id
    nxt = _claim(1, seq=2, prev=skip.id)
    d.accept(nxt, NOW)
    d.close()
    again = DurableHolder(path, signer, net.sets, verify_work=_paid_work)
    assert again.holder.head(RESERVE) == (2, nxt.id) and again.holder.answer(RESERVE).head == skip.id
    entry = again.holder.state.chains[RESERVE].entries[0]
    assert entry.skip == skip and entry.tx.amount == 0 and entry.tx.kind == "skip"
    with pytest.raises(LedgerError) as err:  # its vote at the skipped seq stays: one vote per seq, forever
        again.accept(_claim(2), NOW)
    assert err.value.reason == "conflicting_spend"
    again.close()
