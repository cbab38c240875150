"""HTTP statuses of the ledger's refusals on peerPaysCell's receptors (programs compare the reason word)."""

from __future__ import annotations

from ..kit import RequestError

STATUS = {
    "bad_signature": 403,
    "reserve_rule": 403,
    "unverified_work": 403,
    "not_holder": 403,
    "not_holder_signer": 403,
    "bad_holder_signature": 403,
    "wrong_preimage": 403,
    "not_claimant": 403,
    "not_payer": 403,
    "insufficient_funds": 402,
    "conflicting_spend": 409,
    "already_paid": 409,
    "already_resolved": 409,
    "stale": 409,
    "future_dated": 409,
    "expired": 409,
    "not_expired": 409,
    "unknown_lock": 409,
    "gap": 409,
    "bad_prev": 409,
    "not_skippable": 409,
    "unknown_set": 409,
    "no_quorum": 503,
    "handover_pending": 503,
    "bridge_unverifiable": 503,
    "claims_full": 503,
    "store_corrupt": 500,
    "store_version": 500,
    "wrong_holder": 500,
}


def refusal(reason: str, detail: str) -> RequestError:
    """The `RequestError` carrying a ledger reason, with its status (400 when none is listed)."""
    return RequestError(reason, detail, STATUS.get(reason, 400))
