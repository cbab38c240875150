"""The Agents page's thinking time: what is left of it, and paying ahead for more (`compute.py`).

``/api/agents/usage`` shows the wallet's free seconds left today and its credit on the first agent
cell that answers (an earlier payment that cell did not take yet is handed over first).
Paying ahead is the Wallet page's two steps (`WalletBook.review`, then `send_reviewed`) with the
payee and ref the agent cell named: ``/api/agents/credit/review`` shows the amount and the node,
``/api/agents/credit/confirm`` signs, has it confirmed, and hands the certificate to that node's
agent cell, checked to be the paid key (`AgentClient(..., pubkey=payee)`). A certificate the cell
did not take is kept (`WalletBook.receipts`, in the conduit's memory, at most 16) and handed over
at the next look; one the cell refuses for good (`FINAL_REFUSALS`) is dropped and said. The CLI
keeps them on disk (`paycredit`); a conduit that stops first loses its kept ones.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ...conduit.web import NETWORK, Refusal, guarded, json_fields, require_unlocked
from ...keys import SigningKey
from ...ledger.credit import FINAL_REFUSALS
from ...net.peer import PeerError, PeerRejected
from ..peerpays.wallet import WalletBook, WalletRefusal
from ..peerpays.web import BOOK, send_reviewed
from . import pageview
from .client import AgentClient

CELL = "borgAgentCell"
MAX_BODY = 4096
TIMEOUT_S = 10.0


def _parts(request: web.Request) -> tuple[SigningKey, Any, WalletBook]:
    state = require_unlocked(request)
    assert state.wallet is not None
    if BOOK not in request.app:
        raise Refusal("no_wallet", "this conduit has no Wallet page to pay with")
    return state.wallet.key, request.app[NETWORK], request.app[BOOK]


async def hand_over(network: Any, key: SigningKey, book: WalletBook, tx_id: str) -> str:
    """Give a kept certificate to the agent cell it was paid to: "" once taken, else what happened.
    Only the paid key's answer counts; a receipt that names no endpoint (an earlier payment confirmed
    when it was sent again) is offered to each agent cell this conduit knows, pinned so."""
    entry = book.receipts.get(tx_id)
    if entry is None:
        return ""  # another request handed it over meanwhile
    endpoint, payee, cert = entry
    why = "no agent cell answers"
    for ip in [endpoint] if endpoint else list(network.cells[CELL].endpoints):
        try:
            await AgentClient(network.client_for(key), ip, pubkey=payee).credit(cert)
        except PeerRejected as exc:
            if exc.reason not in FINAL_REFUSALS:
                return f"Paid, not credited yet ({exc.reason}): kept, and handed over again at the next look."
            book.receipts.pop(tx_id, None)
            return "" if exc.reason == "again" else f"The agent cell refused the payment ({exc.reason}): {exc.detail}"
        except PeerError as exc:
            why = str(exc)
            continue
        book.receipts.pop(tx_id, None)
        return ""
    return f"Paid, not credited yet (the node's agent cell did not take it: {why}); kept while this conduit runs."


async def _usage_at(network: Any, key: SigningKey, endpoint: str) -> dict[str, Any]:
    try:
        return await AgentClient(network.client_for(key), endpoint).usage()
    except PeerError as exc:
        raise Refusal("no_node", f"the agent cell on {endpoint} did not answer: {exc}") from None


def _known(network: Any, endpoint: str) -> str:
    """`endpoint` if it is an agent cell this conduit found (the page names it; no other host is asked)."""
    if endpoint not in network.cells[CELL].endpoints:
        raise Refusal("no_node", "that node's agent cell is not one this conduit knows; reload the page")
    return endpoint


async def api_usage(request: web.Request) -> web.Response:
    key, network, book = _parts(request)
    notes = [n for t in list(book.receipts) if (n := await hand_over(network, key, book, t))]
    served = await network.use(CELL, lambda peers, ip: AgentClient(peers, ip).usage(), key=key, timeout_s=TIMEOUT_S)
    return web.json_response({**pageview.usage(served.result, served.endpoint), "notes": notes})


async def api_review(request: web.Request) -> web.Response:
    key, network, book = _parts(request)
    form = await json_fields(request, MAX_BODY, 200)
    endpoint = _known(network, form.get("node", ""))
    usage = pageview.usage(await _usage_at(network, key, endpoint), endpoint)
    if not usage["payee"] or not usage["ref"]:
        raise Refusal("bad_reply", f"the agent cell on {endpoint} did not say which account to pay")
    review = book.review(key.public_key_hex, usage["payee"], form.get("amount", ""), time.monotonic(), usage["ref"])
    return web.json_response({**review.to_dict(), "node": endpoint})


async def api_confirm(request: web.Request) -> web.Response:
    key, network, book = _parts(request)
    form = await json_fields(request, MAX_BODY, 200)
    endpoint = _known(network, form.get("node", ""))
    review = book.confirm(key.public_key_hex, form.get("token", ""), time.monotonic())
    if not review.ref:
        raise Refusal("malformed", "that confirmation is a Wallet payment, not thinking time")
    sent = await send_reviewed(network, key, book, review)
    if not isinstance(sent["cert"], dict):
        raise Refusal("bad_reply", "the ledger confirmed the payment without its certificate")
    book.keep_receipt(sent["id"], endpoint, review.to, sent.pop("cert"))
    note = await hand_over(network, key, book, sent["id"])
    try:
        usage = pageview.usage(await _usage_at(network, key, endpoint), endpoint)
    except Refusal:
        usage = None  # paid and handed over: the page asks again on its next look
    return web.json_response({**sent, "note": note, "usage": usage})


def setup(app: web.Application, explain: Mapping[str, str]) -> None:
    """The routes; their refusals (the wallet's too) as JSON led by what they mean (`explain`)."""
    for path, handler in (("usage", api_usage), ("credit/review", api_review), ("credit/confirm", api_confirm)):
        app.router.add_post(f"/api/agents/{path}", guarded(handler, explain, (WalletRefusal,)))
