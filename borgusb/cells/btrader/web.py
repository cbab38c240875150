"""The Exchange page of the conduit: the order book through `BtraderClient` (the cell's page hook).

The page (GET ``/exchange``) sends nothing: it shows the person's Doge deposit address
(the P2PKH address of their identity key, as the Home page shows it) with its QR code.
Its script (static/exchange.js) makes the POSTs under ``/api/exchange/``: the book, the
person's fills and swaps, and an order in two steps, review then confirm. The review
parses what was typed exactly (`parse_shells`: Shells, and DOGE per Shell into koinu,
both integers) and keeps it under a one-time token, so what is signed is what was shown;
a cancel is confirmed on the page before it is signed. Numbers leave this module as
integers with their exact decimal text beside them; network text reaches the page only
as text (the script builds elements with textContent).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import segno
from aiohttp import web

from ...conduit.network import Network
from ...conduit.web import (
    NETWORK,
    Handler,
    Refusal,
    add_page,
    add_script,
    guarded,
    json_fields,
    render,
    require_unlocked,
)
from ...exchange.order import sign_cancel, sign_order
from ...keys import SigningKey
from ...ledger import address, format_shells, is_account, parse_shells
from ...ledger.errors import LedgerError
from ...net.peer import PeerError
from .client import BtraderClient
from .runner import SwapRunner
from .settle import MIN_SWAP_KOINU

CELL = "btraderOrganCell"
HERE = Path(__file__).parent
ORDER_LIFE_MS = 24 * 3600_000  # an order placed here rests for a day unless filled or cancelled
REVIEW_TTL_S = 300.0
MAX_REVIEWS = 8
MAX_BODY = 4096
TIMEOUT_S = 20.0
SETTLE_ASK = 3  # replicas asked for a fill's terms before a swap starts on them


@dataclass(frozen=True, slots=True)
class Review:
    side: str
    amount: int  # Shell units
    price: int  # koinu per Shell
    made: float

    def to_dict(self, token: str) -> dict[str, Any]:
        return {
            "token": token,
            "side": self.side,
            "shells": format_shells(self.amount),
            "price": format_shells(self.price),  # koinu as DOGE: the same 8 decimals
            "total": format_shells(self.amount * self.price // 10**8),
        }


REVIEWS = web.AppKey("exchange_reviews", OrderedDict[str, Review])
SWAPS = web.AppKey("exchange_swaps", SwapRunner)


def _guarded(handler: Handler) -> Handler:
    """Refusals as ``{"error", "reason", "detail"}`` JSON, whoever raised them."""
    return guarded(handler, errors=(LedgerError,), peer_silent="the exchange refused")


def _parts(request: web.Request) -> tuple[SigningKey, Network]:
    state = require_unlocked(request)
    assert state.wallet is not None
    return state.wallet.key, request.app[NETWORK]


async def _use(network: Network, key: SigningKey, call: Any) -> tuple[dict[str, Any], str]:
    served = await network.use(CELL, lambda peers, ip: call(BtraderClient(peers, ip)), key=key, timeout_s=TIMEOUT_S)
    return (served.result if isinstance(served.result, dict) else {}), served.endpoint


def _list(doc: dict[str, Any], name: str) -> list[Any]:
    v = doc.get(name)
    return v[:200] if isinstance(v, list) else []


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


async def page(request: web.Request) -> web.Response:
    state = require_unlocked(request)
    assert state.wallet is not None
    public = state.wallet.public
    qr = segno.make(f"dogecoin:{public.doge_address}", error="m").svg_data_uri(scale=4)
    return render(request, "exchange.html", public=public, qr=qr)


def _order_row(o: Any, me: str) -> dict[str, Any] | None:
    if not isinstance(o, dict) or o.get("side") not in ("buy", "sell") or not is_account(o.get("owner")):
        return None
    left, price = _int(o.get("left")), _int(o.get("price"))
    return {
        "id": str(o.get("id", ""))[:64],
        "side": o["side"],
        "shells": format_shells(left),
        "price": format_shells(price),
        "owner": address(o["owner"]),
        "mine": o["owner"] == me,
    }


async def api_book(request: web.Request) -> web.Response:
    key, network = _parts(request)
    doc, ip = await _use(network, key, lambda bt: bt.book())
    me = key.public_key_hex
    rows = {side: [r for o in _list(doc, side) if (r := _order_row(o, me))] for side in ("bids", "asks")}
    return web.json_response({**rows, "served_by": ip})


async def api_fills(request: web.Request) -> web.Response:
    key, network = _parts(request)
    me = key.public_key_hex
    doc, ip = await _use(network, key, lambda bt: bt.swaps(me))
    runner = request.app[SWAPS]
    rows = [
        {
            "fill": str(s.get("fill", ""))[:64],
            "role": "sold" if s.get("role") == "seller" else "bought",
            "shells": format_shells(_int(s.get("amount"))),
            "doge": format_shells(_int(s.get("koinu"))),
            "state": str(s.get("state", ""))[:40],
            "swap": runner.progress(str(s.get("fill", ""))),
        }
        for s in _list(doc, "swaps")
        if isinstance(s, dict)
    ]
    return web.json_response({"fills": rows, "served_by": ip})


async def api_review(request: web.Request) -> web.Response:
    _parts(request)
    form = await json_fields(request, MAX_BODY, max_text=200)
    side = form.get("side", "")
    if side not in ("buy", "sell"):
        raise Refusal("malformed", "choose buy or sell")
    review = Review(side, parse_shells(form.get("amount", "")), parse_shells(form.get("price", "")), time.monotonic())
    reviews = request.app[REVIEWS]
    token = secrets.token_urlsafe(16)
    reviews[token] = review
    while len(reviews) > MAX_REVIEWS:
        reviews.popitem(last=False)
    return web.json_response(review.to_dict(token))


async def api_place(request: web.Request) -> web.Response:
    key, network = _parts(request)
    form = await json_fields(request, MAX_BODY, max_text=200)
    review = request.app[REVIEWS].pop(form.get("token", ""), None)
    if review is None or time.monotonic() - review.made > REVIEW_TTL_S:
        raise Refusal("expired", "that confirmation is no longer open; review the order again")
    now = network.clock.now_ms()
    order = sign_order(
        key,
        side=review.side,
        amount=review.amount,
        price=review.price,
        ts=now,
        expiry=now + ORDER_LIFE_MS,
        nonce=os.urandom(16),
    )
    _, ip = await _use(network, key, lambda bt: bt.place(order))
    return web.json_response({"id": order.id, **review.to_dict(""), "served_by": ip})


async def api_cancel(request: web.Request) -> web.Response:
    key, network = _parts(request)
    oid = (await json_fields(request, MAX_BODY, max_text=200)).get("id", "")
    if len(oid) != 64 or set(oid) - set("0123456789abcdef"):
        raise Refusal("malformed", "that is not an order id")
    cancel = sign_cancel(key, order=oid, ts=network.clock.now_ms(), nonce=os.urandom(16))
    _, ip = await _use(network, key, lambda bt: bt.cancel(cancel))
    return web.json_response({"cancelled": oid, "served_by": ip})


def _fill_ok(f: Any, fid: str, me: str) -> bool:
    if not isinstance(f, dict) or f.get("id") != fid or me not in (f.get("buyer"), f.get("seller")):
        return False
    amounts = [f.get("amount"), f.get("koinu")]
    return all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in amounts) and all(
        is_account(f.get(k)) for k in ("buyer", "seller")
    )


async def _agreed_fill(key: SigningKey, network: Network, fid: str) -> dict[str, Any] | None:
    """The fill as at least two replicas (or the only one) state it, field for field: a swap locks real
    funds on these terms, so one replica's word is not enough where another can be asked."""
    endpoints = (await network.refresh(CELL)).endpoints[:SETTLE_ASK]
    peers = network.client_for(key)

    async def ask(ip: str) -> str:
        try:
            doc = await asyncio.wait_for(BtraderClient(peers, ip).fills(key.public_key_hex), TIMEOUT_S)
        except (TimeoutError, PeerError):
            return ""
        found = next((f for f in _list(doc, "fills") if _fill_ok(f, fid, key.public_key_hex)), None)
        return json.dumps(found, sort_keys=True) if found else ""

    said = Counter(a for a in await asyncio.gather(*(ask(ip) for ip in endpoints)) if a)
    best = said.most_common(1)
    if not best or best[0][1] < min(2, len(endpoints)):
        return None
    agreed: dict[str, Any] = json.loads(best[0][0])
    return agreed


async def api_settle(request: web.Request) -> web.Response:
    """Start the person's side of one of their final fills (the page confirmed it first)."""
    key, network = _parts(request)
    fid = (await json_fields(request, MAX_BODY, max_text=200)).get("fill", "")
    fill = await _agreed_fill(key, network, fid)
    if fill is None:
        raise Refusal("unknown_fill", "no two exchange nodes agree that this is one of your fills")
    if fill.get("final") is not True:
        raise Refusal("not_final", "a fill settles once it is final (90 s after it was matched)")
    if fill["koinu"] < MIN_SWAP_KOINU:
        raise Refusal("too_small", f"a swap moves at least {format_shells(MIN_SWAP_KOINU)} DOGE (its claim's fee)")
    settlement = await request.app[SWAPS].start(key, fill, network)
    return web.json_response({"fill": fid, "role": settlement.role, "state": settlement.state})


async def _stop_swaps(app: web.Application) -> None:
    await app[SWAPS].stop()


def setup(app: web.Application) -> None:
    """The page hook: the conduit calls this once (SPEC.web)."""
    add_page(app, "/exchange", "Exchange", "exchange", HERE / "templates")
    add_script(app, "exchange.js", HERE / "static" / "exchange.js")
    app[REVIEWS] = OrderedDict()
    app[SWAPS] = SwapRunner()
    app.on_cleanup.append(_stop_swaps)
    app.router.add_get("/exchange", page)
    app.router.add_post("/api/exchange/book", _guarded(api_book))
    app.router.add_post("/api/exchange/fills", _guarded(api_fills))
    app.router.add_post("/api/exchange/review", _guarded(api_review))
    app.router.add_post("/api/exchange/place", _guarded(api_place))
    app.router.add_post("/api/exchange/cancel", _guarded(api_cancel))
    app.router.add_post("/api/exchange/settle", _guarded(api_settle))
