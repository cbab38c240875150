"""peerPaysCell bundles (``pay.accepts``, ``pay.confirms``): offers or certificates to one holder, several a request.

In-process cells (test_peerpays_cell.py's `Net`); a holder-to-holder request takes a few
milliseconds here, as on a network, so transfers sent at once find requests out and queue.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from borgusb.cells.kit.guard import TokenBuckets
from borgusb.cells.peerpays.bundles import MAX_BUNDLE
from borgusb.ledger import ZERO_HASH
from borgusb.ledger.sim import fixed_key
from borgusb.net.peer import PeerRejected

from .test_peerpays_cell import ALICE, BOB, SHELL, Net, cells_net, close_cell, fund, make_cell, post, transfer

PAYERS = [fixed_key(f"bundle payer {i}") for i in range(6)]


def with_latency(net: Net, seconds: float) -> None:
    """Every holder-to-holder request takes `seconds` before it reaches the holder."""
    for c in net.cells:
        ask = c._ask

        async def slow(holder: str, type: str, payload: dict[str, Any], ask: Any = ask) -> dict[str, Any]:
            await asyncio.sleep(seconds)
            return await ask(holder, type, payload)  # type: ignore[no-any-return]

        c._ask = slow  # type: ignore[method-assign]


async def test_transfers_sent_at_once_share_requests_and_all_confirm(tmp_path: Path) -> None:
    async with cells_net(tmp_path, 5) as net:
        await fund(net, ALICE, 100)  # the test-only reward is paid once: Alice funds the payers
        prev = ZERO_HASH
        for seq, payer in enumerate(PAYERS, 1):
            prev = (await net.send(0, transfer(ALICE, payer, 10, seq, prev)))["id"]
        before = [c.counters["pay_bundled:pay.accepts"] for c in net.cells[1:]]
        with_latency(net, 0.005)
        txs = [transfer(payer, BOB, 1, 1, ZERO_HASH) for payer in PAYERS]
        sent = await asyncio.gather(*(net.send(0, tx) for tx in txs))
        assert [s["id"] for s in sent] == [tx.id for tx in txs]
        assert all(s["delivered"] == s["of"] == 5 for s in sent)
        entry = net.cells[0]
        # each transfer: an offer to each of the 4 other holders, then its certificate to each of them
        assert (entry.offers.calls, entry.certs.calls) == (4 * 13, 4 * 13)  # Alice's 7, then these 6
        assert entry.offers.requests < entry.offers.calls and entry.certs.requests < entry.certs.calls
        taken = [c.counters["pay_bundled:pay.accepts"] - b for c, b in zip(net.cells[1:], before, strict=True)]
        assert taken == [6, 6, 6, 6]
        assert (await net.balance(BOB.public_key_hex, entry=3))["balance"] == 6 * SHELL
        for payer in PAYERS:
            got = await net.balance(payer.public_key_hex, entry=2)
            assert (got["balance"], got["seq"]) == (9 * SHELL, 1)
        assert entry.offers.queues == {} and entry.certs.queues == {}  # nothing kept once all is sent


async def test_each_item_of_a_bundle_gets_its_own_answer_in_order(tmp_path: Path) -> None:
    async with cells_net(tmp_path, 5) as net:
        await fund(net, ALICE, 5)
        holder = net.cells[1]
        good = transfer(ALICE, BOB, 1, 1, ZERO_HASH)
        forged = transfer(ALICE, BOB, 2, 1, ZERO_HASH).to_dict()
        forged["sig"] = BOB.sign(b"something else").hex()
        offers = [
            {"tx": good.to_dict(), "view": holder.view},
            {"tx": forged, "view": holder.view},
            {"tx": 5},
            {"tx": transfer(ALICE, BOB, 99, 2, good.id).to_dict(), "view": holder.view},
        ]
        got = await post(net.cells[0].key, holder, "pay.accepts", {"offers": offers})
        results = got["results"]
        assert results[0]["acceptance"]["id"] == good.id
        assert [r.get("error") for r in results[1:]] == ["bad_signature", "malformed", "insufficient_funds"]
        assert holder.counters["pay_bundled:pay.accepts"] == 1 + 4  # the funding offer, then these


async def test_certificates_in_a_bundle_are_taken_in_order(tmp_path: Path) -> None:
    async with cells_net(tmp_path, 5) as net:
        await fund(net, ALICE, 5)
        first = await net.send(0, transfer(ALICE, BOB, 1, 1, ZERO_HASH))
        second = await net.send(0, transfer(ALICE, BOB, 1, 2, first["id"]))
        late = await cells_and_a_newcomer(net, tmp_path)
        got = await post(net.cells[0].key, late, "pay.confirms", {"certs": [first["cert"], second["cert"], "x"]})
        results = got["results"]
        assert [r.get("id") for r in results[:2]] == [first["id"], second["id"]]
        assert results[2]["error"] == "malformed"


async def cells_and_a_newcomer(net: Net, tmp_path: Path) -> Any:
    """A holder of the same view that took nothing yet (its certificates must come in order)."""
    await close_cell(net.cells[4])
    fresh = make_cell(4, tmp_path / "fresh")
    fresh.use_members({c.key.public_key_hex: c.ip for c in net.cells})
    fresh.history_learned = True
    net.cells[4] = fresh
    return fresh


@pytest.mark.parametrize("bad", [None, [], "offers", [{}] * (MAX_BUNDLE + 1)])
async def test_a_malformed_bundle_is_refused(tmp_path: Path, bad: Any) -> None:
    async with cells_net(tmp_path, 5) as net:
        with pytest.raises(PeerRejected) as err:
            await post(net.cells[0].key, net.cells[1], "pay.accepts", {"offers": bad})
        assert err.value.reason == "malformed"
        with pytest.raises(PeerRejected) as err:
            await post(net.cells[0].key, net.cells[1], "pay.confirms", {"certs": bad})
        assert err.value.reason == "malformed"


async def test_a_bundle_costs_its_signer_one_request_per_item(tmp_path: Path) -> None:
    async with cells_net(tmp_path, 5) as net:
        holder = net.cells[1]
        holder.guard.keys = TokenBuckets(rate=0.001, burst=5, max_keys=16)
        caller = net.cells[0].key
        await post(caller, holder, "pay.confirms", {"certs": ["x"] * 4})  # 4 of the 5
        with pytest.raises(PeerRejected) as err:
            await post(caller, holder, "pay.confirms", {"certs": ["x"] * 2})  # 2 more: past the rate
        assert err.value.reason == "rate_limited"
