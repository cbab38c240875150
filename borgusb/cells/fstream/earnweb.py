"""The Watch page's Earnings card: who watched your public media, and the content reward for it.

Every viewer's conduit hands the fStream cell that served it a read receipt for your map, once a day
(`cells.fstream.reads`); the reserve pays 0.001 Shell a read once the day has ended (docs/ledger.md,
"The content reward"). ``POST /api/watch/earnings`` counts the wallet's receipts of today and
yesterday on the fStream cells this conduit knows (each receipt checked, one per reader and map, as
the claim counts them); ``POST /api/watch/earn`` claims yesterday's (`payearn.claim_content`, through
the first peerPaysCell that answers), which the person does from the page instead of the CLI
(``borgusb pay earn content``). The outcome of a claim is remembered per (wallet, day) while the
conduit runs (`MAX_REMEMBERED`), so the card says a day was paid without asking the ledger.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from pathlib import Path
from typing import Any

from aiohttp import web

from ...conduit.web import NETWORK, add_script, guarded, require_unlocked
from ...keys import SigningKey
from ...ledger import format_shells
from ...ledger.contentwork import day_of
from ...ledger.rules import amount
from ...payearn import claim_content, gather_reads
from ..peerpays.client import PayClient

HERE = Path(__file__).parent
FSTREAM, PAY = "fStreamCell", "peerPaysCell"
MAX_REMEMBERED = 64
CLAIM_TIMEOUT_S = 90.0  # a claim waits its turn at the reserve's sequencer, and retries a lost seq
CLAIMED = web.AppKey("watch_content_claimed", OrderedDict[tuple[str, int], dict[str, Any]])
EXPLAIN = {
    "no_reads": "Nobody's reads of your public media were kept for that day.",
    "already_paid": "That day's reads are paid already.",
    "no_node": "No fStream or peerPays cell answers right now; try again in a moment.",
}


async def _endpoints(network: Any) -> list[str]:
    """The fStream cells this conduit knows (asked of the registry when it knows none yet)."""
    if not network.cells[FSTREAM].endpoints:
        await network.refresh(FSTREAM)
    return list(network.cells[FSTREAM].endpoints)


def _parts(request: web.Request) -> tuple[SigningKey, Any]:
    state = require_unlocked(request)
    assert state.wallet is not None
    return state.wallet.key, request.app[NETWORK]


async def api_earnings(request: web.Request) -> web.Response:
    key, network = _parts(request)
    peers = network.client_for(key)
    endpoints = await _endpoints(network)
    today = day_of(peers.clock.now_ms())
    me = key.public_key_hex
    now, then = await asyncio.gather(*(gather_reads(peers, endpoints, me, d) for d in (today, today - 1)))
    return web.json_response(
        {
            "today": len(now),
            "day": today - 1,
            "reads": len(then),
            "shells": format_shells(amount("content", len(then))),
            "claimed": request.app[CLAIMED].get((me, today - 1)),
            "endpoints": len(endpoints),
        }
    )


async def api_earn(request: web.Request) -> web.Response:
    key, network = _parts(request)
    peers = network.client_for(key)
    endpoints = await _endpoints(network)
    day = day_of(peers.clock.now_ms()) - 1
    served = await network.use(
        PAY,
        lambda p, ip: claim_content(p, PayClient(p, ip), key, endpoints, day, p.clock.now_ms),
        key=key,
        timeout_s=CLAIM_TIMEOUT_S,
    )
    got: dict[str, Any] = served.result
    if got.get("claimed") or got.get("why") == "already_paid":
        remembered = request.app[CLAIMED]
        remembered[(key.public_key_hex, day)] = {
            "id": got.get("id", ""),
            "shells": format_shells(got.get("amount", 0)),
            "reads": got.get("reads", 0),
        }
        while len(remembered) > MAX_REMEMBERED:
            remembered.popitem(last=False)
    if "amount" in got:
        got["shells"] = format_shells(got["amount"])
    return web.json_response(got)


def setup(app: web.Application) -> None:
    """The card's routes and script (the Watch page includes ``earn_card.html``)."""
    add_script(app, "earn.js", HERE / "static" / "earn.js")
    app[CLAIMED] = OrderedDict()
    app.router.add_post("/api/watch/earnings", guarded(api_earnings, EXPLAIN))
    app.router.add_post("/api/watch/earn", guarded(api_earn, EXPLAIN))
