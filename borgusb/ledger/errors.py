"""Refusals of the ledger core: one typed exception per reason.

Every refusal is a `LedgerError` whose ``reason`` is a short word, the same
word a cell will put in its `RequestError` and the CLI will print (``bad_amount``,
``conflicting_spend``, ...): programs compare reasons, never text. Like h11's
`ProtocolError`, a refusal says the *input* was wrong (a peer, a payer or a
certificate); misuse of the API by our own code raises ordinary
`ValueError`/`TypeError` instead.
"""

from __future__ import annotations

from typing import Literal

AmountProblem = Literal["not_integer", "fractional", "zero", "negative", "above_supply"]


class LedgerError(Exception):
    """A transaction, acceptance, certificate or store was refused; `reason` names why."""

    reason = "rejected"

    def __init__(self, detail: str = "") -> None:
        super().__init__(f"{self.reason}: {detail}" if detail else self.reason)
        self.detail = detail


class Malformed(LedgerError):
    """Not the shape the format allows (fields, types, sizes, hex)."""

    reason = "malformed"


class BadAmount(LedgerError):
    """An amount that is not a positive integer of units within the supply; `problem` says which rule."""

    reason = "bad_amount"

    def __init__(self, problem: AmountProblem, detail: str = "") -> None:
        super().__init__(f"{problem}: {detail}" if detail else problem)
        self.problem: AmountProblem = problem


class BadSignature(LedgerError):
    """The payer's (or a holder's) signature does not verify."""

    reason = "bad_signature"


class UnsupportedKind(LedgerError):
    """A kind this version does not carry out yet (the HTLC kinds are reserved for the exchange)."""

    reason = "unsupported_kind"


class ReserveRule(LedgerError):
    """The reserve pays only rewards, and only rewards come from the reserve."""

    reason = "reserve_rule"


class UnverifiedWork(LedgerError):
    """A reward claim whose work this reserve holder could not verify."""

    reason = "unverified_work"


class AlreadyPaid(LedgerError):
    """A reward for work (its ``ref``) that the reserve's chain already pays."""

    reason = "already_paid"


class Stale(LedgerError):
    """Signed too long ago, or before the payer's previous transaction."""

    reason = "stale"


class FutureDated(LedgerError):
    """Dated ahead of the holder's network clock beyond the allowed skew."""

    reason = "future_dated"


class NotHolder(LedgerError):
    """This holder does not hold the account's chain (the lottery chose others)."""

    reason = "not_holder"


class Gap(LedgerError):
    """The sequence number skips one this holder has not seen."""

    reason = "gap"


class BadPrev(LedgerError):
    """`prev` is not the hash of the payer's previous transaction as this holder has it."""

    reason = "bad_prev"


class ConflictingSpend(LedgerError):
    """Another transaction was already accepted for this (account, seq); `accepted` is its id."""

    reason = "conflicting_spend"

    def __init__(self, accepted: str, detail: str = "") -> None:
        super().__init__(detail or f"this holder accepted {accepted} for that sequence number")
        self.accepted = accepted


class HandoverPending(LedgerError):
    """Too few holders of the account's previous holder set answered (sealed) for this holder to vote
    yet (`ledger.handover`): try again in a moment."""

    reason = "handover_pending"


class InsufficientFunds(LedgerError):
    """The amount exceeds the account's available balance as this holder knows it."""

    reason = "insufficient_funds"

    def __init__(self, available: int, amount: int) -> None:
        super().__init__(f"available {available} units, asked {amount}")
        self.available = available
        self.amount = amount


class BadExpiry(LedgerError):
    """A hash-time lock whose expiry is not after its date, too far ahead, or already past."""

    reason = "bad_expiry"


# ------------------------------------------------------------- hash-time-locked transfers (htlc.py)


class UnknownLock(LedgerError):
    """No certified lock with that id in this holder's chain of the payer (yet)."""

    reason = "unknown_lock"


class WrongPreimage(LedgerError):
    """A claim whose preimage does not hash to the lock's hash lock."""

    reason = "wrong_preimage"


class NotClaimant(LedgerError):
    """A claim signed by someone other than the lock's claimant (``to``)."""

    reason = "not_claimant"


class NotPayer(LedgerError):
    """A refund signed by someone other than the lock's payer (``account``)."""

    reason = "not_payer"


class Expired(LedgerError):
    """A claim on a lock whose expiry has passed (network time)."""

    reason = "expired"


class NotExpired(LedgerError):
    """A refund before the lock's expiry plus the grace margin (network time)."""

    reason = "not_expired"


class AlreadyResolved(LedgerError):
    """This holder already voted for (or saw certified) another resolution of the lock; `resolved` is its id."""

    reason = "already_resolved"

    def __init__(self, resolved: str, detail: str = "") -> None:
        super().__init__(detail or f"this holder resolved the lock by {resolved}")
        self.resolved = resolved


# ------------------------------------------------------------- certificates


class CertificateError(LedgerError):
    """A confirmation certificate that proves nothing."""

    reason = "bad_certificate"


class NoQuorum(CertificateError):
    reason = "no_quorum"


class DuplicateSigner(CertificateError):
    reason = "duplicate_signer"


class NotAHolderSigner(CertificateError):
    reason = "not_holder_signer"


class BadHolderSignature(CertificateError):
    reason = "bad_holder_signature"


class UnknownSet(CertificateError):
    """Signed under a holder set that is not the account's set in this holder's view, nor in a view it
    used in the last handover window: it cannot tell whether those signers ever held the account."""

    reason = "unknown_set"


class NotSkippable(CertificateError):
    """The acceptances shown do not prove that no transaction can reach a quorum at that seq."""

    reason = "not_skippable"


# ------------------------------------------------------------- the store


class StoreError(LedgerError):
    """The holder's database cannot be used as it is (never silently repaired)."""

    reason = "store"


class StoreCorrupt(StoreError):
    reason = "store_corrupt"


class StoreVersion(StoreError):
    reason = "store_version"


class WrongHolder(StoreError):
    """The database belongs to another node key: its votes are not this key's votes."""

    reason = "wrong_holder"


REASONS: tuple[str, ...] = tuple(
    cls.reason
    for cls in (
        Malformed,
        BadAmount,
        BadSignature,
        UnsupportedKind,
        ReserveRule,
        UnverifiedWork,
        AlreadyPaid,
        Stale,
        FutureDated,
        NotHolder,
        Gap,
        BadPrev,
        ConflictingSpend,
        HandoverPending,
        InsufficientFunds,
        BadExpiry,
        UnknownLock,
        WrongPreimage,
        NotClaimant,
        NotPayer,
        Expired,
        NotExpired,
        AlreadyResolved,
        NoQuorum,
        DuplicateSigner,
        NotAHolderSigner,
        BadHolderSignature,
        UnknownSet,
        NotSkippable,
        StoreCorrupt,
        StoreVersion,
        WrongHolder,
    )
)
