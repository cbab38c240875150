"""peerPaysCell in-process: five holder cells, never started, joined by signed envelopes dispatched in memory.

Each request goes the way a real one does once it is on a cell: signed by the caller, through the
receiving cell's `verifier.verify` and `_dispatch` (as tests/unit/test_shard_targets.py does); the
reply is the receiving cell's signed envelope. Nothing here opens a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from borgusb import envelope
from borgusb.cells import implemented, spec
from borgusb.cells.peerpays.cell import PeerPaysCell
from borgusb.cells.peerpays.settings import PeerPaysSettings
from borgusb.clock import SystemClock
from borgusb.keys import SigningKey
from borgusb.ledger import RESERVE, SUPPLY, UNITS_PER_SHELL, ZERO_HASH, sign_reward, sign_transfer
from borgusb.ledger.sim import fixed_key
from borgusb.net.peer import PeerRejected, PeerUnreachable

SPEC = spec("peerPaysCell")
WORK = hashlib.sha256(b"peerpays unit test work record").hexdigest()
SHELL = UNITS_PER_SHELL
CLOCK = SystemClock()


def settings(**kw: Any) -> PeerPaysSettings:
    s = SPEC.settings_class().from_sources({"test_only_work_ref": WORK, **kw}, {})
    assert isinstance(s, PeerPaysSettings)
    return s


def make_cell(i: int, tmp_path: Path, **kw: Any) -> PeerPaysCell:
    c = SPEC.runtime_class()(
        SPEC.dna_row(),
        f"127.0.0.{10 + i}",
        key=fixed_key(f"peerpays holder {i}"),
        settings=kw.pop("settings", None) or settings(),
        data_dir=tmp_path / f"h{i}",
        **kw,
    )
    assert isinstance(c, PeerPaysCell)
    return c


async def post(caller: SigningKey, to: PeerPaysCell, type: str, payload: Any) -> Any:
    """One signed request to `to`, through its verifier and dispatcher; its reply payload or PeerRejected."""
    addr = envelope.address(to.key.public_key_hex, to.dna.recp_port)
    env = to.verifier.verify(envelope.sign_bytes(caller, type, payload, CLOCK, ip="127.0.0.1", port=1, to=addr))
    reply = await to._dispatch(env, to.handlers.receptors.get(type), (env,), "application/json")
    body = json.loads(reply.body)  # type: ignore[arg-type]
    if reply.status != 200:
        raise PeerRejected(reply.status, body["error"], body.get("detail", ""))
    assert body["sender"]["pubkey"] == to.key.public_key_hex  # signed by the cell that answered
    return body["payload"]


BUNDLED = {"pay.accepts": "pay.accept", "pay.confirms": "pay.confirm"}


class Net:
    """Five cells of one view; `down` holds the holders that do not answer (per request type: a
    bundle of offers or certificates, ``pay.accepts`` or ``pay.confirms``, as ``pay.accept`` or
    ``pay.confirm`` alone)."""

    def __init__(self, cells: list[PeerPaysCell]) -> None:
        self.cells = cells
        self.by_key = {c.key.public_key_hex: c for c in cells}
        self.down: dict[str, set[str]] = {}
        view = {c.key.public_key_hex: c.ip for c in cells}
        for c in cells:
            c.use_members(view)

            async def ask(holder: str, type: str, payload: dict[str, Any], me: PeerPaysCell = c) -> dict[str, Any]:
                alone = BUNDLED.get(type, type)
                if holder in self.down.get(alone, set()) | self.down.get("*", set()):
                    raise PeerUnreachable(f"{holder[:8]} is down for this test")
                return await post(me.key, self.by_key[holder], type, payload)  # type: ignore[no-any-return]

            async def no_refresh(me: PeerPaysCell = c) -> bool:
                return True

            c._ask = ask  # type: ignore[method-assign]
            c.refresh_view = no_refresh  # type: ignore[method-assign]
            c.history_learned = True  # cells never started: none has a past to learn (test_peerpays_handover.py)

    async def send(self, entry: int, tx: Any) -> dict[str, Any]:
        return await post(fixed_key("wallet"), self.cells[entry], "pay.send", {"tx": tx.to_dict()})  # type: ignore[no-any-return]

    async def balance(self, account: str, entry: int = 0) -> dict[str, Any]:
        return await post(fixed_key("wallet"), self.cells[entry], "pay.balance", {"account": account})  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def cells_net(tmp_path: Path, n: int, **kw: Any) -> AsyncIterator[Net]:
    """`n` cells of one view (`kw` for `make_cell`), closed after (their databases and clients) however
    the test ends."""
    cells = [make_cell(i, tmp_path, **kw) for i in range(n)]
    try:
        yield Net(cells)
    finally:
        for c in cells:
            await close_cell(c)


async def close_cell(c: PeerPaysCell) -> None:
    """End a cell's background work (hand-overs after a view change), then close its client and database:
    work left running would find the database closed, its error logged when the task is collected."""
    while c._tasks:  # again: a cancel can land inside another cell's in-process dispatch, which answers it
        for task in list(c._tasks):
            task.cancel()
        await asyncio.wait(list(c._tasks), timeout=0.1)
    await c.peers.close()
    c.ledger.close()


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    async with cells_net(tmp_path, 5) as n:
        yield n


ALICE, BOB, CAROL = fixed_key("alice"), fixed_key("bob"), fixed_key("carol")


async def fund(net: Net, who: SigningKey, shells: int, seq: int = 1, prev: str = ZERO_HASH) -> dict[str, Any]:
    claim = sign_reward(who, seq=seq, prev=prev, amount=shells * SHELL, ref=WORK, ts=CLOCK.now_ms())
    return await net.send(0, claim)


def transfer(payer: SigningKey, to: SigningKey, shells: float | int, seq: int, prev: str, **kw: Any) -> Any:
    return sign_transfer(
        payer,
        seq=seq,
        prev=prev,
        to=to.public_key_hex,
        amount=int(shells * SHELL),
        ts=kw.get("ts", CLOCK.now_ms()),
    )


# ------------------------------------------------------------------ the package


def test_the_cell_is_declared_and_its_default_quorum_tolerates_one_lying_holder(tmp_path: Path) -> None:
    assert "peerPaysCell" in implemented()
    row = SPEC.dna_row()
    assert (row.net_port, row.recp_port, row.mon_port) == (13390, 13392, 13391)
    s = PeerPaysSettings.from_sources({}, {})
    assert (s.r, s.faulty, s.test_only_work_ref) == (5, 1, "")
    c = make_cell(0, tmp_path, settings=s)
    try:
        assert c.status()["pay"]["quorum"] == 4 and not c.status()["pay"]["test_only_work"]
    finally:
        c.ledger.close()
    with pytest.raises(ValueError):
        make_cell(1, tmp_path, settings=PeerPaysSettings.from_sources({"r": "1", "faulty": "1"}, {}))


# ------------------------------------------------------------------ transfers


async def test_a_reward_funds_an_account_and_a_transfer_round_trips(net: Net) -> None:
    got = await fund(net, ALICE, 100)
    assert got["certificate"]["quorum"] == 4 and len(got["certificate"]["signers"]) >= 4
    assert got["delivered"] == got["of"]
    bal = await net.balance(ALICE.public_key_hex)
    assert (bal["balance"], bal["seq"]) == (100 * SHELL, 0)
    reserve = await net.balance(RESERVE, entry=3)
    assert reserve["balance"] == SUPPLY - 100 * SHELL and reserve["seq"] == 1

    tx = transfer(ALICE, BOB, 1.5, 1, ZERO_HASH)
    sent = await net.send(2, tx)  # any cell is an entry point
    assert sent["id"] == tx.id and sent["amount"] == 150_000_000
    alice = await net.balance(ALICE.public_key_hex, entry=4)
    bob = await net.balance(BOB.public_key_hex, entry=1)
    assert (alice["balance"], alice["seq"], alice["head"]) == (100 * SHELL - 150_000_000, 1, tx.id)
    assert bob["balance"] == 150_000_000

    hist = await post(ALICE, net.cells[0], "pay.history", {"account": ALICE.public_key_hex})
    assert hist["agreed"] and [(h["dir"], h["amount"]) for h in hist["history"]][:2] == [
        ("out", 150_000_000),
        ("in", 100 * SHELL),
    ]

    # the same bytes again: each holder answers with its same acceptance; nothing moves twice
    again = await net.send(1, tx)
    assert again["id"] == tx.id
    assert (await net.balance(BOB.public_key_hex))["balance"] == 150_000_000


async def test_a_double_spend_through_two_entry_cells_is_confirmed_at_most_once(net: Net) -> None:
    await fund(net, ALICE, 10)
    to_bob = transfer(ALICE, BOB, 10, 1, ZERO_HASH)
    to_carol = transfer(ALICE, CAROL, 10, 1, ZERO_HASH)
    results = await asyncio.gather(net.send(0, to_bob), net.send(3, to_carol), return_exceptions=True)
    confirmed = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, PeerRejected)]
    assert len(confirmed) <= 1 and len(confirmed) + len(refused) == 2
    for r in refused:
        assert r.reason in ("conflicting_spend", "no_quorum"), r
    bob = (await net.balance(BOB.public_key_hex))["balance"]
    carol = (await net.balance(CAROL.public_key_hex))["balance"]
    assert bob + carol == (10 * SHELL if confirmed else 0)

    # once one is confirmed, the other is refused everywhere with the reason
    if confirmed:
        loser = to_carol if confirmed[0]["id"] == to_bob.id else to_bob
        with pytest.raises(PeerRejected) as err:
            await net.send(4, loser)
        assert err.value.reason == "conflicting_spend" and err.value.status == 409


async def test_refusals_carry_the_ledger_reason(net: Net) -> None:
    await fund(net, ALICE, 5)
    forged = transfer(ALICE, BOB, 1, 1, ZERO_HASH).to_dict()
    forged["sig"] = BOB.sign(b"something else").hex()
    with pytest.raises(PeerRejected) as err:
        await post(BOB, net.cells[0], "pay.send", {"tx": forged})
    assert (err.value.reason, err.value.status) == ("bad_signature", 403)
    with pytest.raises(PeerRejected) as err:
        await post(BOB, net.cells[1], "pay.accept", {"tx": forged, "view": net.cells[1].view})
    assert err.value.reason == "bad_signature"

    cases = [
        (transfer(ALICE, BOB, 6, 1, ZERO_HASH), "insufficient_funds", 402),
        (transfer(ALICE, BOB, 1, 1, ZERO_HASH, ts=CLOCK.now_ms() - 20 * 60_000), "stale", 409),
        (transfer(ALICE, BOB, 1, 1, ZERO_HASH, ts=CLOCK.now_ms() + 5 * 60_000), "future_dated", 409),
        (transfer(ALICE, BOB, 1, 2, "ab" * 32), "gap", 409),
    ]
    for tx, reason, status in cases:
        with pytest.raises(PeerRejected) as err:
            await net.send(0, tx)
        assert (err.value.reason, err.value.status) == (reason, status), err.value
    bad = transfer(ALICE, BOB, 1, 1, ZERO_HASH).to_dict()
    for amount in (0, -1, "1.5", SUPPLY + 1):  # a float cannot even be signed into an envelope
        bad["amount"] = amount
        with pytest.raises(PeerRejected) as err:
            await post(ALICE, net.cells[0], "pay.send", {"tx": bad})
        assert err.value.reason == "bad_amount", amount
    with pytest.raises(PeerRejected) as err:
        await net.balance("not a key")
    assert err.value.reason == "malformed"


async def test_without_the_test_only_setting_no_reward_is_paid(tmp_path: Path) -> None:
    cells = [make_cell(i, tmp_path, settings=PeerPaysSettings.from_sources({}, {})) for i in range(5)]
    net = Net(cells)
    try:
        with pytest.raises(PeerRejected) as err:
            await fund(net, ALICE, 1)
        assert err.value.reason == "unverified_work"
    finally:
        for c in cells:
            await c.peers.close()
            c.ledger.close()


async def test_the_test_only_work_is_bounded_and_paid_once(net: Net) -> None:
    with pytest.raises(PeerRejected) as err:
        await fund(net, ALICE, 1001)
    assert err.value.reason == "unverified_work"
    first = await fund(net, ALICE, 1)
    with pytest.raises(PeerRejected) as err:
        await fund(net, BOB, 1, seq=2, prev=first["id"])
    assert err.value.reason == "already_paid"


async def test_a_quorum_survives_one_holder_down_and_reads_report_disagreement(net: Net) -> None:
    await fund(net, ALICE, 10)
    entry = net.cells[0].key.public_key_hex
    others = [h for h in net.cells[0].sets.of(ALICE.public_key_hex) if h != entry]
    net.down["*"] = {others[0]}
    sent = await net.send(0, transfer(ALICE, BOB, 1, 1, ZERO_HASH))  # 4 of 5 still confirm
    assert len(sent["certificate"]["signers"]) == 4 and sent["delivered"] == 4
    net.down["*"] = {others[0], others[1]}
    tx2 = transfer(ALICE, BOB, 1, 2, sent["id"])
    with pytest.raises(PeerRejected) as err:
        await net.send(0, tx2)
    assert err.value.reason == "no_quorum" and err.value.status == 503
    net.down = {}

    # the wallet resends the same bytes: others[0], which missed the first certificate, is caught
    # up (gap, then the certificates it lacks) and votes; the certificate reaches only 3 of the
    # payee's 5 holders: no 4 agree, and the read says so rather than guess
    net.down["pay.confirm"] = {others[1], others[2]}
    second = await net.send(0, tx2)
    assert second["id"] == tx2.id and len(second["certificate"]["signers"]) == 5 and second["delivered"] == 3
    assert net.cells[0].counters["pay_catch_ups"] == 1
    with pytest.raises(PeerRejected) as err:
        await net.balance(BOB.public_key_hex)
    assert err.value.reason == "disagreement" and "no_quorum" in err.value.detail


async def test_a_holder_of_another_view_refuses_to_vote(net: Net) -> None:
    await fund(net, ALICE, 2)
    tx = transfer(ALICE, BOB, 1, 1, ZERO_HASH)
    holder = next(c for c in net.cells if c.key.public_key_hex in c.sets.of(ALICE.public_key_hex))
    with pytest.raises(PeerRejected) as err:
        await post(ALICE, holder, "pay.accept", {"tx": tx.to_dict(), "view": "0" * 32})
    assert err.value.reason == "view_mismatch"


async def test_a_lone_cell_has_no_holder_set(tmp_path: Path) -> None:
    c = make_cell(0, tmp_path)
    try:
        with pytest.raises(PeerRejected) as err:
            await post(ALICE, c, "pay.send", {"tx": transfer(ALICE, BOB, 1, 1, ZERO_HASH).to_dict()})
        assert (err.value.reason, err.value.status) == ("too_few_members", 503)
    finally:
        await c.peers.close()
        c.ledger.close()


async def test_votes_survive_a_restart(tmp_path: Path) -> None:
    cells = [make_cell(i, tmp_path) for i in range(5)]
    net = Net(cells)
    await fund(net, ALICE, 3)
    sent = await net.send(0, transfer(ALICE, BOB, 1, 1, ZERO_HASH))
    for c in cells:
        await c.peers.close()
        c.ledger.close()
    again = [make_cell(i, tmp_path) for i in range(5)]
    net = Net(again)
    try:
        assert (await net.balance(BOB.public_key_hex))["balance"] == SHELL
        with pytest.raises(PeerRejected) as err:
            await net.send(1, transfer(ALICE, CAROL, 1, 1, ZERO_HASH))
        assert err.value.reason == "conflicting_spend" and sent["id"][:16] in err.value.detail
        assert all(c.status()["pay"]["votes"] >= 1 for c in again if c.ledger.holder.holds(ALICE.public_key_hex))
    finally:
        for c in again:
            await c.peers.close()
            c.ledger.close()
