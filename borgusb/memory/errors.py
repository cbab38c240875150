"""Memory refusals: each has one reason word, the same in a cell's RequestError and in counters."""

from __future__ import annotations


class MemoryRefused(ValueError):
    """A record, tombstone or query that is refused; `reason` is the word callers match on."""

    reason = "refused"


class Malformed(MemoryRefused):
    reason = "malformed"


class TooLarge(MemoryRefused):
    reason = "too_large"


class BadSignature(MemoryRefused):
    """Not signed by the key it names as its owner (a forged or tampered memory)."""

    reason = "bad_signature"


class Stale(MemoryRefused):
    """An owner-signed query outside the freshness window (a replayed private search)."""

    reason = "stale"


class NotYours(MemoryRefused):
    """A private memory opened with another key than its owner's."""

    reason = "not_yours"


class Undecryptable(MemoryRefused):
    reason = "undecryptable"


class Deleted(MemoryRefused):
    """A memory its owner removed: a replayed put is refused."""

    reason = "deleted"


class HolderFull(MemoryRefused):
    reason = "holder_full"


class RateLimited(MemoryRefused):
    reason = "rate_limited"
