"""A wallet that lost its unconfirmed transaction gets it back from the holders (peerpays/unsettled.py).

Alice's payment reaches 3 of her 5 holders (a quorum is 4) and her wallet forgets it: a conduit that
restarted, a stick on another computer. Signing a new payment for that seq would split the votes 3/2,
which no skip can prove, and stop her account for good. Instead the wallet asks her holders what they
voted for after her head and sends that first, the same bytes; then the new payment takes the next seq.
Requests go through the real cells' verifiers and dispatchers (`InProcessPeers` carries them in memory,
as test_peerpays_cell.py's `Net` does between holders).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from borgusb import paycli
from borgusb.cells.peerpays import web as wallet_web
from borgusb.cells.peerpays.client import PayClient
from borgusb.cells.peerpays.wallet import Review, WalletBook
from borgusb.keys import SigningKey
from borgusb.ledger import ZERO_HASH, sign_transfer
from borgusb.net.peer import PeerRejected
from tests.unit.test_peerpays_cell import ALICE, BOB, CAROL, CLOCK, SHELL, Net, cells_net, fund, post, transfer


class InProcessPeers:
    """A `PeerClient`'s `post` for `PayClient`, carried in memory to the cell at that address."""

    def __init__(self, net: Net, key: SigningKey) -> None:
        self.by_ip = {c.ip: c for c in net.cells}
        self.key = key

    async def post(self, ip: str, port: int, path: str, type: str, payload: Any, **kw: Any) -> Any:
        return await post(self.key, self.by_ip[ip], type, payload)


class Served:
    def __init__(self, result: Any, endpoint: str) -> None:
        self.result, self.endpoint = result, endpoint


class InProcessNetwork:
    """The conduit's `Network.use` for the Wallet page's calls, always served by one cell in memory."""

    def __init__(self, net: Net, key: SigningKey) -> None:
        self.peers, self.ip, self.clock = InProcessPeers(net, key), net.cells[0].ip, CLOCK

    async def use(self, cell: str, call: Any, **kw: Any) -> Served:
        return Served(await call(self.peers, self.ip), self.ip)


async def half_sent(net: Net) -> Any:
    """Alice's first payment, voted for by 3 of her 5 holders: no quorum, and no copy kept anywhere."""
    await fund(net, ALICE, 10)
    entry = net.cells[0].key.public_key_hex
    others = [h for h in net.cells[0].sets.of(ALICE.public_key_hex) if h != entry]
    lost = transfer(ALICE, BOB, 2, 1, ZERO_HASH)
    net.down["pay.accept"] = set(others[:2])
    with pytest.raises(PeerRejected) as err:
        await net.send(0, lost)
    assert err.value.reason == "no_quorum"
    net.down = {}
    return lost


async def test_the_holders_answer_what_they_voted_for_after_the_head(tmp_path: Path) -> None:
    async with cells_net(tmp_path, 5) as net:
        nothing = await post(BOB, net.cells[1], "pay.unsettled", {"account": ALICE.public_key_hex})
        assert nothing["txs"] == [] and nothing["seq"] == 1
        lost = await half_sent(net)
        doc = await post(BOB, net.cells[1], "pay.unsettled", {"account": ALICE.public_key_hex})
        assert doc["seq"] == 1 and doc["head"] == ZERO_HASH
        assert [(t["tx"], t["votes"]) for t in doc["txs"]] == [(lost.to_dict(), 3)]
        pay = PayClient(InProcessPeers(net, BOB), net.cells[2].ip)  # type: ignore[arg-type]
        assert (await pay.unsettled_tx(ALICE.public_key_hex))[0] == lost

        # a holder that answers another transaction than the one its vote names is not counted
        voters = [c for c in net.cells if c.ledger.holder.state.votes.get((ALICE.public_key_hex, 1))]
        liar, asked = voters[1], voters[0]
        liar.voted_tx_local = lambda account, seq: transfer(ALICE, CAROL, 1, 1, ZERO_HASH)  # type: ignore[method-assign]
        doc = await post(BOB, asked, "pay.unsettled", {"account": ALICE.public_key_hex})
        assert doc["txs"][0]["votes"] == 2 and asked.counters["pay_unsettled_bad_vote"] == 1


async def test_the_cli_sends_the_holders_copy_first_instead_of_splitting_the_seq(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(paycli, "PENDING_DIR", tmp_path / "pay")  # empty: this computer kept nothing
    async with cells_net(tmp_path, 5) as net:
        lost = await half_sent(net)
        pay = PayClient(InProcessPeers(net, ALICE), net.cells[0].ip)  # type: ignore[arg-type]

        def new_payment(seq: int, prev: str) -> Any:
            return sign_transfer(
                ALICE, seq=seq, prev=prev, to=CAROL.public_key_hex, amount=3 * SHELL, ts=CLOCK.now_ms()
            )

        done = await paycli._submit_chain(pay, ALICE, new_payment)
        head = await net.balance(ALICE.public_key_hex)
        assert (head["seq"], head["balance"]) == (2, 5 * SHELL)  # the lost 2 Shells, then the new 3
        assert (await net.balance(BOB.public_key_hex))["balance"] == 2 * SHELL
        assert done["id"] != lost.id and head["head"] == done["id"]
        assert not list((tmp_path / "pay").glob("*"))  # nothing left waiting


async def test_the_wallet_page_sends_the_holders_copy_first(tmp_path: Path) -> None:
    async with cells_net(tmp_path, 5) as net:
        lost = await half_sent(net)
        book = WalletBook()  # a conduit that started afresh: its memory holds nothing
        review = Review("token", ALICE.public_key_hex, CAROL.public_key_hex, 3 * SHELL, time.time())
        sent = await wallet_web.send_reviewed(InProcessNetwork(net, ALICE), ALICE, book, review)  # type: ignore[arg-type]
        assert sent["seq"] == 2 and lost.id[:16] in sent["resent"] and "now confirmed" in sent["resent"]
        assert (await net.balance(ALICE.public_key_hex))["balance"] == 5 * SHELL
        assert book.pending == {}


def age_out(net: Net) -> None:
    """Every holder's age limit down to nothing: what a day away does to a transaction (10 minutes)."""
    for c in net.cells:
        c.ledger.holder.max_age_ms = 0


async def test_a_payment_sent_again_after_its_age_settles_on_its_voters_word(tmp_path: Path) -> None:
    """Sent again after the holders that missed it were away past its age (a stick back the next day):
    the three that voted replay their votes, and with them the other two take it though it is old; one
    voter alone (a liar can be one) is not enough, and votes that do not check count for nothing."""
    async with cells_net(tmp_path, 5) as net:
        lost = await half_sent(net)
        voters = [c for c in net.cells if c.ledger.holder.state.votes.get((ALICE.public_key_hex, 1))]
        others = [c for c in net.cells if c not in voters]
        age_out(net)
        with pytest.raises(PeerRejected) as err:  # to those two alone: old, and nobody vouches
            await post(BOB, others[0], "pay.accept", {"tx": lost.to_dict()})
        assert err.value.reason == "stale"
        one = [(await post(BOB, voters[0], "pay.accept", {"tx": lost.to_dict()}))["acceptance"]]
        with pytest.raises(PeerRejected) as err:  # one voter is not faulty + 1
            await post(BOB, others[0], "pay.accept", {"tx": lost.to_dict(), "taken": one})
        assert err.value.reason == "stale"
        forged = [{**one[0], "holder": h} for h in (voters[1].key.public_key_hex, BOB.public_key_hex)]
        with pytest.raises(PeerRejected) as err:  # another voter's name on it, a stranger's: nothing
            await post(BOB, others[0], "pay.accept", {"tx": lost.to_dict(), "taken": one + forged})
        assert err.value.reason == "stale"

        sent = await net.send(0, lost)  # the entry: 3 replayed votes, then the 2 others shown them
        assert sent["id"] == lost.id and len(sent["certificate"]["signers"]) == 5
        assert (await net.balance(BOB.public_key_hex))["balance"] == 2 * SHELL


async def test_one_voter_cannot_revive_an_old_transaction(tmp_path: Path) -> None:
    async with cells_net(tmp_path, 5) as net:
        await fund(net, ALICE, 10)
        entry = net.cells[0].key.public_key_hex
        others = [h for h in net.cells[0].sets.of(ALICE.public_key_hex) if h != entry]
        old = transfer(ALICE, BOB, 2, 1, ZERO_HASH)
        net.down["pay.accept"] = set(others)  # only the entry votes
        with pytest.raises(PeerRejected):
            await net.send(0, old)
        net.down = {}
        age_out(net)
        with pytest.raises(PeerRejected) as err:
            await net.send(0, old)
        assert err.value.reason == "stale"
