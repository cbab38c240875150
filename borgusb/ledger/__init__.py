"""The Borg Shell ledger's protocol core (issue 16, peerPaysCell): no I/O but the holder's SQLite store.

Not a blockchain: each account is a chain of its own transactions, signed by
its owner and kept by a handful of holders the placement lottery chose; a
transaction is confirmed by a certificate of a strict majority of them, and
a holder signs at most one transaction per (account, seq), so two
conflicting spends can never both be confirmed. docs/ledger.md tells the
protocol step by step.

Modules: `units` (amounts), `rules` (every price and reward), `accounts`
(keys, the reserve, genesis), `tx` (the signed transaction), `certificate`
(acceptances, holder sets, certificates), `htlc` (a hash-time lock's claim
or refund, decided once by the payer's holders), `holder` (the state machine),
`store` (SQLite, durable before answered), `balance` (quorum reads), `sim`
(holders in memory), `errors` (one typed refusal per reason).
"""

from __future__ import annotations

from .accounts import RESERVE, address, genesis_balance, is_account
from .balance import Balance, BalanceAnswer, Disagreement, read_balance
from .certificate import (
    Acceptance,
    Certificate,
    HolderSets,
    certificate_from_dict,
    certify,
    check_acceptance,
    check_certificate,
    check_reserve_payout,
    holder_set,
    is_equivocation,
    parse_certificate,
    quorum_size,
    set_digest,
    sign_acceptance,
)
from .errors import REASONS, LedgerError
from .holder import Holder
from .holderstate import Accepted, Confirmed, Credited, HolderState, LockAnswer, Settled, Voted
from .htlc import (
    Resolution,
    ResolutionCertificate,
    check_resolution,
    check_resolution_certificate,
    hash_lock,
    sign_claim,
    sign_refund,
)
from .tx import ZERO_HASH, Tx, check_tx, parse_tx, sign_lock, sign_reward, sign_transfer
from .units import SUPPLY, UNITS_PER_SHELL, check_amount, format_shells, parse_shells

__all__ = [
    "REASONS",
    "RESERVE",
    "SUPPLY",
    "UNITS_PER_SHELL",
    "ZERO_HASH",
    "Acceptance",
    "Accepted",
    "Balance",
    "BalanceAnswer",
    "Certificate",
    "Confirmed",
    "Credited",
    "Disagreement",
    "Holder",
    "HolderSets",
    "HolderState",
    "LedgerError",
    "LockAnswer",
    "Resolution",
    "ResolutionCertificate",
    "Settled",
    "Tx",
    "Voted",
    "address",
    "certificate_from_dict",
    "certify",
    "check_acceptance",
    "check_amount",
    "check_certificate",
    "check_reserve_payout",
    "check_resolution",
    "check_resolution_certificate",
    "check_tx",
    "format_shells",
    "genesis_balance",
    "hash_lock",
    "holder_set",
    "is_account",
    "is_equivocation",
    "parse_certificate",
    "parse_shells",
    "parse_tx",
    "quorum_size",
    "read_balance",
    "set_digest",
    "sign_acceptance",
    "sign_claim",
    "sign_lock",
    "sign_refund",
    "sign_reward",
    "sign_transfer",
]
