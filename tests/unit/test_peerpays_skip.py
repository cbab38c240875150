"""peerPaysCell past a split seq of the reserve (borgusb/cells/peerpays/skipping.py), five cells in-process.

The split is made the way it happens: claims at the reserve's seq 1 that reached different holders
first (two entry cells with different holder sets for a moment), each holder voting for the one it
saw. The next claim, through the sequencer, is refused by all of them; the sequencer then asks every
holder for its vote, proves the split from those votes and has them skip the seq, and the claim
after that is paid at seq 2. A split the votes do not prove (one side could still be certified) is
left alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from borgusb.ledger import RESERVE, SUPPLY, ZERO_HASH, sign_reward
from borgusb.ledger.sim import fixed_key
from borgusb.ledger.skip import skip_id
from borgusb.net.peer import PeerRejected

from .test_peerpays_cell import CLOCK, SHELL, WORK, Net, cells_net, post

CLAIMANTS = [fixed_key(f"skip claimant {i}") for i in range(5)]


def claim(who: int, seq: int = 1, prev: str = ZERO_HASH, shells: int = 1) -> Any:
    return sign_reward(CLAIMANTS[who], seq=seq, prev=prev, amount=shells * SHELL, ref=WORK, ts=CLOCK.now_ms())


async def no_audit(tx: Any, work: Any) -> None:
    """The work checks (earn.py, taskcheck.py) have their own tests: here every claim's work is done."""


def by_holder_order(net: Net) -> list[Any]:
    return [net.by_key[h] for h in net.cells[0].sets.of(RESERVE)]


def sequencer(net: Net) -> Any:
    """The reserve's first holder in key order, which offers every reward claim (earn.py)."""
    return net.by_key[min(net.cells[0].sets.of(RESERVE))]


async def split(net: Net, groups: list[list[int]]) -> list[Any]:
    """Claim i offered to the holders groups[i] only; the claims."""
    holders, claims = by_holder_order(net), []
    for who, group in enumerate(groups):
        tx = claim(who)
        for i in group:
            got = await post(CLAIMANTS[who], holders[i], "pay.accept", {"tx": tx.to_dict(), "view": holders[i].view})
            assert got["acceptance"]["id"] == tx.id
        claims.append(tx)
    return claims


async def send_claim(net: Net, tx: Any) -> dict[str, Any]:
    payload = {"tx": tx.to_dict(), "work": {"rule": "hold", "test": True}}
    return await post(fixed_key("wallet"), net.cells[0], "pay.send", payload)  # type: ignore[no-any-return]


@pytest.fixture
async def net(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    async with cells_net(tmp_path, 5) as n:
        for c in n.cells:
            monkeypatch.setattr(c, "check_work", no_audit)
        yield n


async def test_a_proven_split_is_skipped_and_the_reserve_pays_again(net: Net) -> None:
    await split(net, [[0, 1], [2, 3], [4]])
    with pytest.raises(PeerRejected) as err:
        await send_claim(net, claim(3))
    assert err.value.reason == "skipped" and "claim again at 2" in err.value.detail
    skipped = skip_id(RESERVE, 1, ZERO_HASH)
    for c in net.cells:
        assert c.ledger.holder.answer(RESERVE).head == skipped and c.status()["pay"]["skips"] == 1
    assert sequencer(net).counters["pay_skips_proven"] == 1
    paid = await send_claim(net, claim(3, seq=2, prev=skipped, shells=2))
    assert paid["seq"] == 2 and paid["delivered"] == paid["of"]
    got = await net.balance(RESERVE)
    assert (got["balance"], got["seq"]) == (SUPPLY - 2 * SHELL, 2)
    history = await post(fixed_key("wallet"), net.cells[1], "pay.history", {"account": RESERVE})
    kinds = {h["seq"]: h["kind"] for h in history["history"]}
    assert kinds == {1: "skip", 2: "reward"}
    with pytest.raises(PeerRejected) as err:  # the split seq's own claims can never be paid now
        await send_claim(net, claim(0))
    assert err.value.reason == "conflicting_spend"


async def test_a_split_one_side_could_still_win_is_not_skipped(net: Net) -> None:
    await split(net, [[0, 1, 2], [3, 4]])  # 3 votes and a tolerated liar make the quorum of 4
    with pytest.raises(PeerRejected) as err:
        await send_claim(net, claim(2))
    assert err.value.reason == "conflicting_spend"
    assert sequencer(net).counters["pay_skip_not_proven"] == 1
    assert all(c.status()["pay"]["skips"] == 0 for c in net.cells)


async def test_a_holder_that_missed_the_skip_catches_up_and_votes_are_answered(net: Net) -> None:
    claims = await split(net, [[0, 1], [2, 3], [4]])
    late = by_holder_order(net)[4]
    net.down["pay.confirm"] = {late.key.public_key_hex}  # the skip does not reach it
    with pytest.raises(PeerRejected) as err:
        await send_claim(net, claim(3))
    assert err.value.reason == "skipped" and late.status()["pay"]["skips"] == 0
    net.down.clear()
    vote = await post(fixed_key("anyone"), late, "pay.vote", {"account": RESERVE, "seq": 1})
    assert vote["acceptance"]["id"] == claims[2].id
    with pytest.raises(PeerRejected) as err:
        await post(fixed_key("anyone"), late, "pay.vote", {"account": RESERVE, "seq": 2})
    assert err.value.reason == "no_vote"
    skipped = skip_id(RESERVE, 1, ZERO_HASH)
    paid = await send_claim(net, claim(3, seq=2, prev=skipped))  # its "gap" is caught up with the skip
    assert paid["delivered"] == paid["of"] and late.status()["pay"]["skips"] == 1
    assert late.ledger.holder.head(RESERVE) == (2, paid["id"])
