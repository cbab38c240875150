"""The Wallet page of the conduit: Borg Shells through `PayClient` (the peerPaysCell's page hook).

The page (GET ``/wallet``) sends nothing; its script (static/wallet.js) makes
the POSTs under ``/api/wallet/``: the quorum-agreed balance (a disagreement
or a missing quorum is shown as such, never a number), the history, and a
send in two steps, review then confirm (`wallet.WalletBook`). Amounts leave
this module as integers of units with their exact Shells text beside them
(`format_shells`); the page never computes with them. A refusal is answered
as ``{"error", "reason"}``: the reason word is the ledger's (or
``unknown_account``, ``bad_amount`` ...), so the page shows what happened.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from aiohttp import web

from ...conduit.network import Network
from ...conduit.web import (
    NETWORK,
    Handler,
    add_page,
    add_script,
    guarded,
    json_fields,
    refused,
    render,
    require_unlocked,
)
from ...keys import SigningKey
from ...ledger import address, format_shells, is_account, sign_transfer
from ...ledger.directory import address_hash
from ...ledger.errors import LedgerError
from ...net.peer import PeerRejected
from .client import PayClient
from .wallet import Review, WalletBook, WalletRefusal

CELL = "peerPaysCell"
HERE = Path(__file__).parent
BOOK = web.AppKey("wallet_book", WalletBook)
MAX_BODY = 4096  # a review or a confirmation is a few short fields
SEND_TIMEOUT_S = 60.0  # offer, certify, deliver: bounded waits on up to ten holders
READ_TIMEOUT_S = 20.0

# what a refusal means to the person (the reason word is shown beside it)
EXPLAIN = {
    "insufficient_funds": "Insufficient funds: the balance is lower than the amount.",
    "conflicting_spend": "This account already spent that sequence number on another transaction.",
    "stale": "The transaction was signed too long ago, or this computer's clock is behind the network's.",
    "future_dated": "This computer's clock is ahead of the network's.",
    "bad_amount": "Bad amount.",
    "unknown_account": "Unknown account.",
    "disagreement": "The account's holders do not agree on it right now (a payment in flight?); try again shortly.",
    "no_quorum": "Too few of the account's holders answered. The signed transaction is kept and sent again, "
    "the same one, before any other.",
    "too_few_members": "The ledger network has fewer nodes than an account needs holders.",
    "view_mismatch": "The ledger's nodes are changing; try again.",
    "no_node": "No peerPaysCell node answers right now; start one (or check the conduit's --node).",
    "expired": "That confirmation is no longer open; review the payment again.",
}


def _parts(request: web.Request) -> tuple[SigningKey, Network, WalletBook]:
    state = require_unlocked(request)
    assert state.wallet is not None
    return state.wallet.key, request.app[NETWORK], request.app[BOOK]


async def _use(network: Network, key: SigningKey, timeout_s: float, call: Any) -> tuple[Any, str]:
    served = await network.use(CELL, lambda peers, ip: call(PayClient(peers, ip)), key=key, timeout_s=timeout_s)
    return served.result, served.endpoint


def _guarded(handler: Handler) -> Handler:
    """Refusals as ``{"error", "reason", "detail"}`` JSON, whoever raised them, led by what they mean."""
    return guarded(handler, EXPLAIN, (WalletRefusal,))


async def page(request: web.Request) -> web.Response:
    state = require_unlocked(request)
    assert state.wallet is not None
    return render(request, "wallet.html", public=state.wallet.public)


async def api_balance(request: web.Request) -> web.Response:
    key, network, _ = _parts(request)
    doc, ip = await _use(network, key, READ_TIMEOUT_S, lambda pay: pay.balance(key.public_key_hex))
    bal = doc.get("balance")
    if isinstance(bal, bool) or not isinstance(bal, int) or doc.get("account") != key.public_key_hex:
        return refused("bad_reply", f"{ip} answered no balance", 502, EXPLAIN)
    holders = doc.get("holders")
    return web.json_response(
        {
            "balance": bal,
            "shells": format_shells(bal),
            "seq": doc.get("seq"),
            "agreed_by": len(holders) if isinstance(holders, list) else None,
            "quorum": doc.get("quorum"),
            "served_by": ip,
        }
    )


def _row(h: Any, book: WalletBook) -> dict[str, Any] | None:
    """One history entry as the page shows it, or None when a field is not what the ledger sends."""
    if not isinstance(h, dict):
        return None
    amount, peer = h.get("amount"), h.get("peer")
    if (
        isinstance(amount, bool)
        or not isinstance(amount, int)
        or not isinstance(peer, str)
        or h.get("dir")
        not in (
            "in",
            "out",
        )
    ):
        return None
    book.learn(peer)
    ts = h.get("ts")
    return {
        "dir": h["dir"],
        "shells": format_shells(amount),
        "peer": peer,
        "peer_address": address(peer) if is_account(peer) else "",
        "kind": str(h.get("kind", "")),
        "ts": ts if isinstance(ts, int) and not isinstance(ts, bool) else 0,
        "id": str(h.get("id", "")),
        "confirmed": h.get("confirmed") is True,
    }


async def api_history(request: web.Request) -> web.Response:
    key, network, book = _parts(request)
    doc, ip = await _use(network, key, READ_TIMEOUT_S, lambda pay: pay.history(key.public_key_hex))
    history = doc.get("history") if isinstance(doc.get("history"), list) else []
    rows = [r for h in history[:200] if (r := _row(h, book)) is not None]
    return web.json_response({"history": rows, "agreed": doc.get("agreed") is True, "served_by": ip})


async def api_review(request: web.Request) -> web.Response:
    key, network, book = _parts(request)
    form = await json_fields(request, MAX_BODY)
    to = form.get("to", "")
    if isinstance(to, str) and book.unknown_address(to):  # ask the network for the key behind it
        try:
            h160 = address_hash(to.strip())
        except ValueError:
            h160 = None  # not an address after all: the book says why
        if h160 is not None:
            try:
                found, _ = await _use(network, key, READ_TIMEOUT_S, lambda pay: pay.whois(h160))
                book.learn(found)  # PayClient.whois checked it hashes to the address
            except PeerRejected as exc:
                if exc.reason != "unknown_account":
                    raise
    review = book.review(key.public_key_hex, to, form.get("amount", ""), time.monotonic())
    return web.json_response(review.to_dict())


async def api_send(request: web.Request) -> web.Response:
    key, network, book = _parts(request)
    form = await json_fields(request, MAX_BODY)
    review = book.confirm(key.public_key_hex, form.get("token", ""), time.monotonic())
    if review.ref:  # its certificate must reach the cell that sells it: the Agents page confirms those
        raise WalletRefusal("expired", "that review is the Agents page's; confirm it there")
    sent = await send_reviewed(network, key, book, review)
    sent.pop("cert")
    return web.json_response(sent)


async def send_reviewed(network: Network, key: SigningKey, book: WalletBook, review: Review) -> dict[str, Any]:
    """Sign and confirm what the person confirmed (an earlier unconfirmed payment first): what the page
    shows, and the certificate (``cert``) for a payment a cell sells (the Agents page's credit)."""
    payer = key.public_key_hex
    head = None
    if payer not in book.pending:  # this conduit kept none: the holders may have one (a restart, another PC)
        head = await _holders_unsettled(network, key, book)
    resent = await _resend_pending(network, key, book)
    if head is None:  # a transaction was kept or found (the head moves when it confirms), or none was asked
        head, _ = await _use(network, key, READ_TIMEOUT_S, lambda pay: pay.balance(payer))
    try:
        tx = sign_transfer(
            key,
            seq=head["seq"] + 1,
            prev=head["head"],
            to=review.to,
            amount=review.amount,
            ts=network.clock.now_ms(),
            ref=review.ref,
        )
    except (LedgerError, KeyError, TypeError) as exc:
        raise WalletRefusal(getattr(exc, "reason", "bad_reply"), str(exc)) from None
    book.pending[payer] = tx.to_dict()
    try:
        done, ip = await _use(network, key, SEND_TIMEOUT_S, lambda pay: pay.submit(tx))
    except PeerRejected as exc:
        if exc.reason != "no_quorum":  # refused for good: this transaction will never confirm
            book.pending.pop(payer, None)
        raise
    book.pending.pop(payer, None)
    cert = done.get("certificate") if isinstance(done.get("certificate"), dict) else {}
    return {
        "id": tx.id,
        "to": review.to,
        "to_address": address(review.to),
        "shells": format_shells(review.amount),
        "seq": tx.seq,
        "signers": len(cert.get("signers") or []),
        "holders": cert.get("holders"),
        "resent": resent,
        "served_by": ip,
        "cert": done.get("cert") if isinstance(done.get("cert"), dict) else None,
    }


async def _holders_unsettled(network: Network, key: SigningKey, book: WalletBook) -> dict[str, Any] | None:
    """The payer's transaction its holders voted for and nobody confirmed yet, kept in `book.pending` to be
    sent first (unsettled.py). Returns the agreed head when there is none (what the next transaction
    follows), else None (also when the cell refuses the question: the balance read says why)."""
    payer = key.public_key_hex
    try:
        (tx, head), _ = await _use(network, key, READ_TIMEOUT_S, lambda pay: pay.unsettled_tx(payer))
    except PeerRejected:
        return None
    if tx is None:
        return head
    book.pending[payer] = tx.to_dict()
    return None


async def _resend_pending(network: Network, key: SigningKey, book: WalletBook) -> str:
    """An earlier transaction that gathered no quorum: the same bytes again, before anything new."""
    tx = book.pending.get(key.public_key_hex)
    if tx is None:
        return ""
    try:
        done, _ = await _use(network, key, SEND_TIMEOUT_S, lambda pay: pay.submit(tx))
    except PeerRejected as exc:
        if exc.reason == "no_quorum":
            raise WalletRefusal(
                "no_quorum", f"an earlier payment is still waiting for its holders: {exc.detail}"
            ) from None
        book.pending.pop(key.public_key_hex, None)
        return f"an earlier payment was refused ({exc.reason}) and dropped"
    book.pending.pop(key.public_key_hex, None)
    cert = done.get("cert")
    if tx.get("ref") and isinstance(cert, dict):  # it bought a cell's use: kept for that cell (its node's key)
        book.keep_receipt(str(done.get("id", "")), "", str(tx.get("to", "")), cert)
    return f"an earlier payment {str(done.get('id', ''))[:16]} is now confirmed"


def setup(app: web.Application) -> None:
    """The page hook: the conduit calls this once (SPEC.web)."""
    add_page(app, "/wallet", "Wallet", "wallet", HERE / "templates")
    add_script(app, "wallet.js", HERE / "static" / "wallet.js")
    app[BOOK] = WalletBook()
    app.router.add_get("/wallet", page)
    app.router.add_post("/api/wallet/balance", _guarded(api_balance))
    app.router.add_post("/api/wallet/history", _guarded(api_history))
    app.router.add_post("/api/wallet/review", _guarded(api_review))
    app.router.add_post("/api/wallet/send", _guarded(api_send))
