"""Refusals of the exchange core: one typed exception per reason word.

They extend the ledger's `LedgerError` (the same ``reason`` convention, and the
ledger's `Malformed`, `BadSignature`, `BadAmount`, `Stale` and `FutureDated`
are used as they are), so a cell turns any of them into a `RequestError`
with one ``except``.
"""

from __future__ import annotations

from ..ledger.errors import LedgerError


class BadPrice(LedgerError):
    """A price that is not an integer of koinu per Shell within the allowed range."""

    reason = "bad_price"


class TooLarge(LedgerError):
    """An order worth more koinu than the exchange carries in one order."""

    reason = "too_large"


class BadExpiry(LedgerError):
    """An order that expires before it is dated, or lives longer than an order may."""

    reason = "bad_expiry"


class BookFull(LedgerError):
    """This replica keeps no more orders (of this owner, or at all) until some expire."""

    reason = "book_full"


class RateLimited(LedgerError):
    """The owner placed or cancelled too many orders too quickly."""

    reason = "rate_limited"


class TooSmall(LedgerError):
    """An order for less than the smallest amount the exchange matches (1 Shell)."""

    reason = "too_small"


class NotOwner(LedgerError):
    """A cancel of an order that another key owns."""

    reason = "not_owner"
