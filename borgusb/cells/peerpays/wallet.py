"""The Wallet page's decisions, without I/O: who a payee is, what the person confirmed, what is kept.

A send takes two steps: `WalletBook.review` turns what the person typed into
a `Review` (the payee's key, the exact amount in units, parsed with
`parse_shells`, never a float) and keeps it under a one-time token; the
confirmation names only the token, so what is signed is exactly what the
page showed. A Doge address is a hash of a key and cannot be turned back
into it, so an address is accepted only when the book knows its key
(the wallet's history, keys typed earlier in this session, or the network's
directory, which the page asks first: ``pay.whois``); otherwise the refusal
is ``unknown_account``. A signed transaction that gathered no quorum
is kept (`pending`) and sent again, the same bytes, before a new one is
signed for the same account: two transactions for one seq could split the
holders' votes (docs/ledger.md, liveness). Everything kept is bounded.
"""

from __future__ import annotations

import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ...ledger import address, format_shells, is_account, parse_shells
from ...ledger.errors import BadAmount

REVIEW_TTL_S = 300.0  # a confirmation older than this is refused (expired): review again
MAX_REVIEWS = 8  # reviews waiting for a confirmation; the oldest is dropped beyond this
MAX_KNOWN = 512  # addresses whose keys the book remembers
MAX_TEXT = 200  # longest payee or amount text looked at
MAX_RECEIPTS = 16  # certificates of paid-ahead uses not yet handed to their cell
_REF = re.compile(r"(|[0-9a-f]{64})")


class WalletRefusal(Exception):
    """What the person typed or confirmed cannot be sent; `reason` is the word the page shows."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Review:
    """What the confirmation step shows and, once confirmed, what is signed."""

    token: str
    payer: str
    to: str
    amount: int
    made: float
    ref: str = ""  # what the payment is for, when a cell sells it (`ledger.credit.credit_ref`)

    def to_dict(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "to": self.to,
            "to_address": address(self.to),
            "amount": self.amount,
            "shells": format_shells(self.amount),
            "ref": self.ref,
        }


def looks_like_address(text: str) -> bool:
    """A Doge-style P2PKH address's shape (base58, D/A/9 prefix); its checksum is not needed to refuse it."""
    return text[:1] in ("D", "A", "9") and 26 <= len(text) <= 35 and text.isalnum()


class WalletBook:
    """Per-conduit memory of the Wallet page: known addresses, open reviews, unconfirmed transactions."""

    def __init__(self) -> None:
        self.known: OrderedDict[str, str] = OrderedDict()  # address -> account key
        self.reviews: OrderedDict[str, Review] = OrderedDict()
        self.pending: dict[str, dict[str, Any]] = {}  # payer -> its signed tx that gathered no quorum
        # tx id -> (cell endpoint, payee, certificate): a payment for a cell's use, kept until that cell took it
        self.receipts: OrderedDict[str, tuple[str, str, dict[str, Any]]] = OrderedDict()

    def keep_receipt(self, tx_id: str, endpoint: str, payee: str, cert: dict[str, Any]) -> None:
        """Keep a payment's certificate until the selling cell takes it (the oldest goes beyond the bound)."""
        self.receipts[tx_id] = (endpoint, payee, cert)
        while len(self.receipts) > MAX_RECEIPTS:
            self.receipts.popitem(last=False)

    def learn(self, account: str) -> None:
        """Remember the key behind an address (a peer in the history, a key the person typed)."""
        if not is_account(account):
            return
        addr = address(account)
        self.known[addr] = account
        self.known.move_to_end(addr)
        while len(self.known) > MAX_KNOWN:
            self.known.popitem(last=False)

    def unknown_address(self, text: str) -> bool:
        """True when `text` looks like an address whose key this book does not know (ask the network)."""
        t = text.strip()[:MAX_TEXT]
        return looks_like_address(t) and t not in self.known

    def payee(self, text: str) -> str:
        """The account key a payee's text names, or `WalletRefusal` (``unknown_account``)."""
        t = text.strip()[:MAX_TEXT]
        if is_account(t.lower()):
            return t.lower()
        if looks_like_address(t):
            key = self.known.get(t)
            if key is None:
                raise WalletRefusal(
                    "unknown_account",
                    f"unknown account {t}: no node of this network has seen the key behind this address; "
                    "paste the payee's public key (66 hex digits, on their Home page)",
                )
            return key
        raise WalletRefusal(
            "unknown_account", "the payee is a Doge-style address (D…) or an account's public key (66 hex digits)"
        )

    def review(self, payer: str, to_text: str, amount_text: str, now: float, ref: str = "") -> Review:
        """Check what the person typed; the review to confirm (kept under its token). `ref` is set by the
        conduit for a payment a cell sells (never typed)."""
        if not _REF.fullmatch(ref):
            raise WalletRefusal("malformed", "a payment's ref is empty or a SHA-256 in hex")
        try:
            amount = parse_shells(amount_text[:MAX_TEXT])
        except BadAmount as exc:
            raise WalletRefusal("bad_amount", f"bad amount ({exc.problem}): {exc}") from None
        to = self.payee(to_text)
        if to == payer:
            raise WalletRefusal("self_payment", "an account does not pay itself")
        self.learn(to)
        self._expire(now)
        r = Review(secrets.token_urlsafe(16), payer, to, amount, now, ref)
        self.reviews[r.token] = r
        while len(self.reviews) > MAX_REVIEWS:
            self.reviews.popitem(last=False)
        return r

    def confirm(self, payer: str, token: str, now: float) -> Review:
        """The review a confirmation names, taken once; refused when unknown, expired or another wallet's."""
        self._expire(now)
        r = self.reviews.get(token) if isinstance(token, str) else None
        if r is None or r.payer != payer:
            raise WalletRefusal("expired", "this confirmation is no longer open (used, expired, or locked since)")
        del self.reviews[token]
        return r

    def _expire(self, now: float) -> None:
        for token in [t for t, r in self.reviews.items() if now - r.made > REVIEW_TTL_S]:
            del self.reviews[token]
