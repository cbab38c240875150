"""Mail refusals: each has one reason word, the same in a cell's RequestError and in counters."""

from __future__ import annotations


class MailError(ValueError):
    """A message, request or deposit that is refused; `reason` is the word callers match on."""

    reason = "refused"


class Malformed(MailError):
    reason = "malformed"


class TooLarge(MailError):
    reason = "too_large"


class BadSignature(MailError):
    """The message or request is not signed by the key it names (a forged sender or recipient)."""

    reason = "bad_signature"


class Stale(MailError):
    reason = "stale"


class FutureDated(MailError):
    reason = "future_dated"


class NotForYou(MailError):
    reason = "not_for_you"


class Undecryptable(MailError):
    """The sealed part does not open: wrong key, tampered, or lifted into another message."""

    reason = "undecryptable"


class RateLimited(MailError):
    reason = "rate_limited"


class InboxFull(MailError):
    reason = "inbox_full"


class Deleted(MailError):
    """A replay of a message the recipient already deleted."""

    reason = "deleted"


class BadAddress(MailError):
    """Not a Dogecoin main-network P2PKH address (base58check, version 30: ``D…``)."""

    reason = "bad_address"


class WrongAddress(MailError):
    """A directory entry whose address is not its key's own (another key claiming someone's address)."""

    reason = "wrong_address"


class Rollback(MailError):
    """A directory entry older than the one held: a newer entry is never replaced by an older one."""

    reason = "rollback"
