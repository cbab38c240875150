"""Why an envelope was refused: one `EnvelopeError` subclass per reason, its counter name in `reason`.

`envelope.Verifier.verify` raises them and counts each refusal by reason (`REASONS` lists them);
`replaycache.ReplayCache` raises the two of replays.
"""

from __future__ import annotations


class EnvelopeError(Exception):
    """A message was rejected; `reason` is the counter name."""

    reason = "rejected"


class Malformed(EnvelopeError):
    reason = "malformed"


class TooLarge(EnvelopeError):
    reason = "too_large"


class BadSignature(EnvelopeError):
    reason = "bad_signature"


class Stale(EnvelopeError):
    reason = "stale"


class FutureDated(EnvelopeError):
    reason = "future_dated"


class Replay(EnvelopeError):
    reason = "replay"


class ReplayCacheFull(EnvelopeError):
    """Only under a flood from more keys than the replay cache tracks: a signer it does not
    know yet is refused (retry later) rather than anything being forgotten."""

    reason = "replay_cache_full"


class WrongSigner(EnvelopeError):
    reason = "wrong_signer"


class WrongType(EnvelopeError):
    reason = "wrong_type"


class WrongRecipient(EnvelopeError):
    """Addressed to another node or cell (a replay from elsewhere), or a broadcast where none is taken."""

    reason = "wrong_recipient"


class Unaddressed(EnvelopeError):
    """Names no recipient where one is required: only a hello, which answers no request, may."""

    reason = "unaddressed"


REASONS = tuple(
    cls.reason
    for cls in (
        Malformed,
        TooLarge,
        BadSignature,
        Stale,
        FutureDated,
        Replay,
        ReplayCacheFull,
        WrongSigner,
        WrongType,
        WrongRecipient,
        Unaddressed,
    )
)
