"""btraderOrganCell in-process: requests signed by a caller, through the cell's verifier and dispatcher.

What the three-process integration test does not reach: the per-owner rate limit, a known event
taken again for free, a forged event inside a broadcast, and the anti-entropy doors' bounds."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from borgusb import envelope
from borgusb.cells import spec
from borgusb.cells.btrader.cell import FETCH_BATCH, BtraderCell, ids_hash
from borgusb.cells.btrader.settings import BtraderSettings
from borgusb.clock import SystemClock
from borgusb.exchange.order import Order, sign_cancel, sign_order
from borgusb.keys import SigningKey
from borgusb.ledger.sim import fixed_key
from borgusb.net.peer import PeerRejected

SPEC = spec("btraderOrganCell")
CLOCK = SystemClock()
CALLER = fixed_key("bt caller")
ALICE, BOB = fixed_key("bt alice"), fixed_key("bt bob")


def make_cell(**kw: Any) -> BtraderCell:
    settings = SPEC.settings_class().from_sources({k: str(v) for k, v in kw.items()}, {})
    assert isinstance(settings, BtraderSettings)
    c = SPEC.runtime_class()(SPEC.dna_row(), "127.0.0.20", key=fixed_key("bt cell"), settings=settings)
    assert isinstance(c, BtraderCell)
    return c


def order(key: SigningKey, side: str = "sell", shells: int = 1, price: int = 100) -> Order:
    now = CLOCK.now_ms()
    return sign_order(
        key, side=side, amount=shells * 10**8, price=price, ts=now, expiry=now + 60_000, nonce=os.urandom(16)
    )


async def post(cell: BtraderCell, type: str, payload: Any) -> Any:
    addr = envelope.address(cell.key.public_key_hex, cell.dna.recp_port)
    env = cell.verifier.verify(envelope.sign_bytes(CALLER, type, payload, CLOCK, ip="127.0.0.1", port=1, to=addr))
    reply = await cell._dispatch(env, cell.handlers.receptors.get(type), (env,), "application/json")
    body = json.loads(reply.body)  # type: ignore[arg-type]
    if reply.status != 200:
        raise PeerRejected(reply.status, body["error"], body.get("detail", ""))
    return body["payload"]


async def reason(cell: BtraderCell, type: str, payload: Any) -> str:
    with pytest.raises(PeerRejected) as info:
        await post(cell, type, payload)
    return info.value.reason


async def test_owners_are_rate_limited_and_known_events_cost_nothing() -> None:
    cell = make_cell(owner_rate_x10=1)  # a tenth of an order a second, after a burst of 20
    first = order(ALICE)
    assert (await post(cell, "bt.place", {"order": first.to_dict()}))["new"]
    assert not (await post(cell, "bt.place", {"order": first.to_dict()}))["new"]  # again: known, not charged
    for _ in range(19):
        await post(cell, "bt.place", {"order": order(ALICE).to_dict()})
    assert await reason(cell, "bt.place", {"order": order(ALICE).to_dict()}) == "rate_limited"
    assert (await post(cell, "bt.place", {"order": order(BOB).to_dict()}))["new"]  # another owner is not held
    assert cell.counters["bt_refused:rate_limited"] == 1
    await cell.peers.close()


async def test_cancels_only_by_the_owner_and_forged_broadcasts_dropped() -> None:
    cell = make_cell()
    mine = order(ALICE)
    await post(cell, "bt.place", {"order": mine.to_dict()})
    theirs = sign_cancel(BOB, order=mine.id, ts=CLOCK.now_ms(), nonce=os.urandom(16))
    assert await reason(cell, "bt.cancel", {"cancel": theirs.to_dict()}) == "not_owner"
    assert await reason(cell, "bt.place", {"order": theirs.to_dict()}) == "malformed"  # a cancel is no order
    forged = {**order(ALICE).to_dict(), "owner": BOB.public_key_hex}
    cell._b_events("someone", {"events": [forged, order(BOB).to_dict()], "k": "bt.events"})
    assert cell.counters["bt_broadcast_refused:bad_signature"] == 1
    assert cell.counters["bt_taken_relayed"] == 1
    ok = sign_cancel(ALICE, order=mine.id, ts=CLOCK.now_ms(), nonce=os.urandom(16))
    assert (await post(cell, "bt.cancel", {"cancel": ok.to_dict()}))["new"]
    book = await post(cell, "bt.book", {})
    assert [o["owner"] for o in book["asks"]] == [BOB.public_key_hex]
    await cell.peers.close()


async def test_digest_and_fetch_are_bounded() -> None:
    cell = make_cell()
    placed = [order(ALICE, price=100 + i) for i in range(3)]
    for o in placed:
        await post(cell, "bt.place", {"order": o.to_dict()})
    digest = await post(cell, "bt.digest", {})
    assert digest["ids"] == sorted(o.id for o in placed)
    assert (await post(cell, "bt.digest", {"hash": ids_hash(digest["ids"])}))["same"]
    got = await post(cell, "bt.fetch", {"ids": [placed[1].id, "00" * 32, 7]})
    assert got["events"] == [placed[1].to_dict()]
    assert await reason(cell, "bt.fetch", {"ids": ["00" * 32] * (FETCH_BATCH + 1)}) == "malformed"
    assert await reason(cell, "bt.swaps", {}) == "malformed"
    await cell.peers.close()


async def test_swap_notes_only_from_the_fills_parties() -> None:
    cell = make_cell()
    await post(cell, "bt.place", {"order": order(ALICE, "sell", 2).to_dict()})
    await post(cell, "bt.place", {"order": order(BOB, "buy", 2).to_dict()})
    (fill,) = (await post(cell, "bt.fills", {}))["fills"]
    cell._b_note(CALLER.public_key_hex, {"k": "bt.note", "fill": fill["id"], "lock": "ab" * 32})
    cell._b_note(ALICE.public_key_hex, {"k": "bt.note", "fill": "cd" * 32, "lock": "ab" * 32})  # no such fill
    assert cell.counters["bt_note_refused:not_a_party"] == 2
    cell._b_note(ALICE.public_key_hex, {"k": "bt.note", "fill": fill["id"], "lock": "ab" * 32, "x": 1})
    cell._b_note(BOB.public_key_hex, {"k": "bt.note", "fill": fill["id"], "doge": {"txid": "ef" * 32, "vout": 0}})
    notes = (await post(cell, "bt.notes", {"fill": fill["id"]}))["notes"]
    assert notes == {
        ALICE.public_key_hex: {"fill": fill["id"], "lock": "ab" * 32},
        BOB.public_key_hex: {"fill": fill["id"], "doge": {"txid": "ef" * 32, "vout": 0}},
    }
    cell._b_note(BOB.public_key_hex, {"k": "bt.note", "fill": fill["id"], "doge": "x" * 2000})
    assert cell.counters["bt_note_refused:too_large"] == 1
    await cell.peers.close()


async def test_a_replica_that_missed_events_gets_them_by_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    """The anti-entropy round alone (the cluster test's late replica may get recent events from
    the tree's catch-up instead): digest, the missing ids fetched, each event checked again."""
    has, lacks = make_cell(), make_cell()
    placed = [order(ALICE, price=100 + i) for i in range(3)]
    for o in placed:
        await post(has, "bt.place", {"order": o.to_dict()})

    class ToHas:  # the transport routed in-process to `has`'s verifier and dispatcher
        def __init__(self, *_: Any, **__: Any) -> None:
            pass

        async def digest(self) -> Any:
            return await post(has, "bt.digest", {})

        async def fetch(self, ids: list[str]) -> Any:
            return await post(has, "bt.fetch", {"ids": ids})

    async def only_has() -> None:
        lacks.others = [(has.key.public_key_hex, has.ip)]

    monkeypatch.setattr("borgusb.cells.btrader.cell.BtraderClient", ToHas)
    monkeypatch.setattr(lacks, "_refresh_others", only_has)
    assert await lacks.sync_once() == 3 and lacks.counters["bt_synced"] == 3
    assert (await post(lacks, "bt.digest", {}))["ids"] == sorted(o.id for o in placed)
    assert await lacks.sync_once() == 0  # the same digest now: nothing fetched
    for c in (has, lacks):
        await c.peers.close()
