"""A page's card for a price paid ahead (`prepaid.Prepaid`): what is left free, the credit, paying more.

The Agents page sells thinking time (``compute``, the agent cell) and the Watch page streaming
(``stream``, the fStream cell) the same way; each page includes ``credit_card.html`` and calls
`setup` with its `Seller`. ``<api>/usage`` shows the wallet's free share left today and its credit
on the first cell of that type that answers (an earlier payment that cell did not take yet is handed
over first). Paying ahead is the Wallet page's two steps (`WalletBook.review`, then
`send_reviewed`) with the payee and ref the cell named: ``<api>/credit/review`` shows the amount and
the node, ``<api>/credit/confirm`` signs, has it confirmed, and hands the certificate to that node's
cell, checked to be the paid key (``pubkey=payee``). A certificate the cell did not take is kept
(`WalletBook.receipts`, in the conduit's memory, at most 16) and handed over at the next look, only
to a cell that sells what it paid for (one node's cells share its account); one the cell refuses for
good (`FINAL_REFUSALS`) is dropped and said. The CLI keeps them on disk (`paycredit`); a conduit
that stops first loses its kept ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from ...conduit.web import NETWORK, TEMPLATE_DIRS, Refusal, add_script, guarded, json_fields, require_unlocked
from ...keys import SigningKey
from ...ledger import format_shells
from ...ledger.accounts import is_account
from ...ledger.credit import FINAL_REFUSALS, credit_ref
from ...net.peer import PeerError, PeerRejected
from .wallet import WalletBook, WalletRefusal
from .web import BOOK, send_reviewed

EXPLAIN = {
    "again": "That payment is already credited.",
    "expired": "That confirmation is no longer open; review the payment again.",
    "insufficient_funds": "Insufficient funds: your balance is lower than the amount.",
    "bad_amount": "Bad amount.",
}
MAX_BODY = 4096
TIMEOUT_S = 10.0
SCRIPT = "credit.js"
HERE = Path(__file__).parent


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def free_today(doc: dict[str, Any]) -> tuple[int, int]:
    """The card's meter for a daily free share: (free a day, free left today)."""
    return _int(doc.get("free")), _int(doc.get("free_left"))


@dataclass(frozen=True)
class Seller:
    """A cell type that sells one price on credit, as a page shows it."""

    rule: str  # the price (`ledger.rules`)
    cell: str  # its DNA name
    client: Callable[..., Any]  # its typed client: (peers, ip, pubkey=...) with usage() and credit(cert)
    label: str  # how the page names it: "agent cell"
    left: Callable[[dict[str, Any]], str]  # the cell's usage reply as the page says what is free
    meter: Callable[[dict[str, Any]], tuple[int, int]] = free_today  # (full, left) of the card's meter

    @property
    def ref(self) -> str:
        return credit_ref(self.rule)


def usage_view(seller: Seller, reply: Any, endpoint: str) -> dict[str, Any]:
    """The cell's usage as the page shows it: the free share as text, Shells as text, checked fields only."""
    doc = reply if isinstance(reply, dict) else {}
    payee, ref = doc.get("payee"), doc.get("ref")
    free, left = seller.meter(doc)
    return {
        "free": free,
        "free_left": left,
        "left": seller.left(doc),
        "paid": format_shells(_int(doc.get("paid"))),
        "charged": format_shells(_int(doc.get("charged"))),
        "balance": format_shells(_int(doc.get("balance"))),
        "payee": payee if is_account(payee) else "",
        "ref": ref if ref == seller.ref else "",
        "exempt": doc.get("exempt") is True,
        "served_by": endpoint,
    }


def _parts(request: web.Request) -> tuple[SigningKey, Any, WalletBook]:
    state = require_unlocked(request)
    assert state.wallet is not None
    if BOOK not in request.app:
        raise Refusal("no_wallet", "this conduit has no Wallet page to pay with")
    return state.wallet.key, request.app[NETWORK], request.app[BOOK]


async def hand_over(seller: Seller, network: Any, key: SigningKey, book: WalletBook, tx_id: str) -> str:
    """Give a kept certificate to the cell it was paid to: "" once taken, else what happened.
    Only the paid key's answer counts; a receipt that names no endpoint (an earlier payment confirmed
    when it was sent again) is offered to each cell of the type this conduit knows, pinned so."""
    entry = book.receipts.get(tx_id)
    if entry is None:
        return ""  # another request handed it over meanwhile
    endpoint, payee, cert = entry
    why = f"no {seller.label} answers"
    for ip in [endpoint] if endpoint else list(network.cells[seller.cell].endpoints):
        try:
            await seller.client(network.client_for(key), ip, pubkey=payee).credit(cert)
        except PeerRejected as exc:
            if exc.reason not in FINAL_REFUSALS:
                return f"Paid, not credited yet ({exc.reason}): kept, and handed over again at the next look."
            book.receipts.pop(tx_id, None)
            if exc.reason == "again":
                return ""
            return f"The {seller.label} refused the payment ({exc.reason}): {exc.detail}"
        except PeerError as exc:
            why = str(exc)
            continue
        book.receipts.pop(tx_id, None)
        return ""
    return f"Paid, not credited yet (the node's {seller.label} did not take it: {why}); kept while this conduit runs."


def _sold_here(seller: Seller, book: WalletBook, tx_id: str) -> bool:
    """A kept receipt that pays for what `seller` sells (the same node's other cell refuses it for good)."""
    entry = book.receipts.get(tx_id)
    tx = entry[2].get("tx") if entry is not None and isinstance(entry[2], dict) else None
    return isinstance(tx, dict) and tx.get("ref") == seller.ref


async def _usage_at(seller: Seller, network: Any, key: SigningKey, endpoint: str) -> dict[str, Any]:
    try:
        return usage_view(seller, await seller.client(network.client_for(key), endpoint).usage(), endpoint)
    except PeerError as exc:
        raise Refusal("no_node", f"the {seller.label} on {endpoint} did not answer: {exc}") from None


def _known(seller: Seller, network: Any, endpoint: str) -> str:
    """`endpoint` if it is a cell of the type this conduit found (the page names it; no other host is asked)."""
    if endpoint not in network.cells[seller.cell].endpoints:
        raise Refusal("no_node", f"that node's {seller.label} is not one this conduit knows; reload the page")
    return endpoint


def setup(app: web.Application, seller: Seller, api: str, explain: Mapping[str, str] | None = None) -> None:
    """``<api>/usage``, ``<api>/credit/review`` and ``<api>/credit/confirm`` for `seller`, and the card's
    script (once); refusals (the wallet's too) as JSON led by what they mean (`explain`, else `EXPLAIN`)."""
    if explain is None:
        no_node = f"No {seller.label} ({seller.cell}) answers right now: start one, or give the conduit its node."
        explain = {**EXPLAIN, "no_node": no_node}

    async def api_usage(request: web.Request) -> web.Response:
        key, network, book = _parts(request)
        kept = [t for t in list(book.receipts) if _sold_here(seller, book, t)]
        notes = [n for t in kept if (n := await hand_over(seller, network, key, book, t))]
        served = await network.use(
            seller.cell, lambda peers, ip: seller.client(peers, ip).usage(), key=key, timeout_s=TIMEOUT_S
        )
        return web.json_response({**usage_view(seller, served.result, served.endpoint), "notes": notes})

    async def api_review(request: web.Request) -> web.Response:
        key, network, book = _parts(request)
        form = await json_fields(request, MAX_BODY, 200)
        endpoint = _known(seller, network, form.get("node", ""))
        usage = await _usage_at(seller, network, key, endpoint)
        if not usage["payee"] or not usage["ref"]:
            raise Refusal("bad_reply", f"the {seller.label} on {endpoint} did not say which account to pay")
        review = book.review(key.public_key_hex, usage["payee"], form.get("amount", ""), time.monotonic(), usage["ref"])
        return web.json_response({**review.to_dict(), "node": endpoint})

    async def api_confirm(request: web.Request) -> web.Response:
        key, network, book = _parts(request)
        form = await json_fields(request, MAX_BODY, 200)
        endpoint = _known(seller, network, form.get("node", ""))
        review = book.confirm(key.public_key_hex, form.get("token", ""), time.monotonic())
        if review.ref != seller.ref:
            raise Refusal("malformed", f"that confirmation is not a payment to the {seller.label}")
        sent = await send_reviewed(network, key, book, review)
        if not isinstance(sent["cert"], dict):
            raise Refusal("bad_reply", "the ledger confirmed the payment without its certificate")
        book.keep_receipt(sent["id"], endpoint, review.to, sent.pop("cert"))
        note = await hand_over(seller, network, key, book, sent["id"])
        try:
            usage = await _usage_at(seller, network, key, endpoint)
        except Refusal:
            usage = None  # paid and handed over: the page asks again on its next look
        return web.json_response({**sent, "note": note, "usage": usage})

    for path, handler in (("usage", api_usage), ("credit/review", api_review), ("credit/confirm", api_confirm)):
        app.router.add_post(f"{api}/{path}", guarded(handler, explain, (WalletRefusal,)))
    if not any(r.get_info().get("path") == f"/static/cells/{SCRIPT}" for r in app.router.resources()):
        add_script(app, SCRIPT, HERE / "static" / SCRIPT)
    if HERE / "templates" not in app[TEMPLATE_DIRS]:  # credit_card.html, also without the Wallet page's hook
        app[TEMPLATE_DIRS].append(HERE / "templates")
