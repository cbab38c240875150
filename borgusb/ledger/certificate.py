"""Acceptances, holder sets and confirmation certificates.

* **Holder set**: an account's chain is kept by R holders (default 5) chosen
  by the shard cell's proof-of-work placement lottery (`shard/placement.py`)
  over the live member keys, for the name ``"borgusb.ledger:" + account``:
  every node computes the same set from the same members, and no node can
  steer which accounts it holds.
* **Acceptance**: a holder's node key signs the canonical JSON of
  ``{"d": "borgusb.ledger.accept", "v": 1, "id", "account", "seq", "holder"}``:
  "for this (account, seq) I accept this transaction id, and no other, ever".
* **Certificate** ``{"v": 1, "tx": {...}, "sigs": [{"holder", "sig"}, ...]}``:
  the transaction plus the acceptances of a quorum of its account's holder
  set. A quorum is a strict majority (3 of 5): any two quorums of one set share
  a holder, and a holder signs one id per (account, seq), so two conflicting
  transactions can never both be certified (docs/ledger.md). That argument
  assumes the holders in the intersection keep the rule; to survive f holders
  that lie, use ``faulty=f`` (`quorum_size`), e.g. 4 of 5 for f = 1.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .. import canonical
from ..keys import SigningKey
from ..shard import placement
from ..signed import is_sig_hex, signed_by
from .accounts import RESERVE, is_account
from .errors import (
    BadHolderSignature,
    DuplicateSigner,
    Malformed,
    NoQuorum,
    NotAHolderSigner,
    ReserveRule,
)
from .tx import Tx, check_tx, load_bounded

VERSION = 1
ACCEPT_DOMAIN = "borgusb.ledger.accept"
LOTTERY_PREFIX = "borgusb.ledger:"
DEFAULT_R = 5
MAX_SIGS = 16  # placement.MAX_R's bound: no holder set is larger
MAX_CERT_BYTES = 8192


def quorum_size(r: int, faulty: int = 0) -> int:
    """The smallest q such that any two q-subsets of r holders share more than `faulty` holders.

    ``faulty=0`` is a strict majority (5 → 3); each lying holder tolerated costs
    half a holder more (5 → 4 for one). Liveness needs q holders up."""
    if r < 1 or faulty < 0:
        raise ValueError("a holder set has at least one holder; faulty is not negative")
    q = (r + faulty) // 2 + 1
    if q > r:
        raise ValueError(f"{r} holders cannot outvote {faulty} faulty ones")
    return q


def holder_set(account: str, members: Iterable[str], r: int = DEFAULT_R) -> tuple[str, ...]:
    """The r holders of `account`'s chain among `members`: the placement lottery's winners, best first."""
    return tuple(placement.choose(LOTTERY_PREFIX + account, members, r))


class HolderSets:
    """Holder sets and quorums for one view of the members (cached: the lottery costs ~16 hashes per member)."""

    def __init__(self, members: Iterable[str], r: int = DEFAULT_R, faulty: int = 0) -> None:
        self.members = frozenset(members)
        self.r = r
        self.faulty = faulty
        self._cache: dict[str, tuple[str, ...]] = {}

    def of(self, account: str) -> tuple[str, ...]:
        found = self._cache.get(account)
        if found is None:
            if len(self._cache) >= 65536:
                self._cache.clear()
            found = self._cache[account] = holder_set(account, self.members, self.r)
        return found

    def quorum(self, account: str) -> int:
        return quorum_size(len(self.of(account)), self.faulty)


# ------------------------------------------------------------------ acceptances


def acceptance_bytes(tx_id: str, account: str, seq: int, holder: str) -> bytes:
    doc = {"d": ACCEPT_DOMAIN, "v": VERSION, "id": tx_id, "account": account, "seq": seq, "holder": holder}
    return canonical.encode_unchecked(doc)


@dataclass(frozen=True, slots=True)
class Acceptance:
    """One holder's signed vote for a transaction at its (account, seq). Not verified by construction."""

    id: str
    account: str
    seq: int
    holder: str
    sig: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "id": self.id,
            "account": self.account,
            "seq": self.seq,
            "holder": self.holder,
            "sig": self.sig,
        }

    def verify(self) -> bool:
        msg = acceptance_bytes(self.id, self.account, self.seq, self.holder)
        return signed_by(self.holder, self.sig, msg)


def sign_acceptance(key: SigningKey, tx: Tx) -> Acceptance:
    holder = key.public_key_hex
    sig = key.sign(acceptance_bytes(tx.id, tx.account, tx.seq, holder)).hex()
    return Acceptance(tx.id, tx.account, tx.seq, holder, sig)


_ACCEPT_FIELDS = frozenset(("v", "id", "account", "seq", "holder", "sig"))


def check_acceptance(doc: Any, *, verify: bool = True) -> Acceptance:
    """An `Acceptance` from a holder's reply, its signature verified (`Malformed`, `BadHolderSignature`);
    ``verify=False`` is for a store's own rows, whose signatures were checked before they were written."""
    if not isinstance(doc, dict) or doc.keys() != _ACCEPT_FIELDS or doc["v"] != VERSION:
        raise Malformed("an acceptance has exactly v, id, account, seq, holder, sig")
    tx_id, account, seq, holder, sig = doc["id"], doc["account"], doc["seq"], doc["holder"], doc["sig"]
    if not (isinstance(tx_id, str) and re.fullmatch(r"[0-9a-f]{64}", tx_id)) or not is_account(account):
        raise Malformed("id is a SHA-256 and account a public key, in lowercase hex")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1 or not is_account(holder):
        raise Malformed("seq is a positive integer and holder a public key")
    if not is_sig_hex(sig):
        raise Malformed("sig is a DER signature in lowercase hex")
    acc = Acceptance(tx_id, account, seq, holder, sig)
    if verify and not acc.verify():
        raise BadHolderSignature(f"not signed by holder {holder[:16]}")
    return acc


def is_equivocation(a: Acceptance, b: Acceptance) -> bool:
    """True when a and b prove that one holder accepted two transactions for one (account, seq).

    Both signatures must verify: such a pair is evidence anyone can check, for
    the cell to publish and to drop that holder from every member view."""
    return (
        a.holder == b.holder and (a.account, a.seq) == (b.account, b.seq) and a.id != b.id and a.verify() and b.verify()
    )


# ------------------------------------------------------------------ certificates


@dataclass(frozen=True, slots=True)
class Certificate:
    """A transaction and holders' signatures over (its id, account, seq); proves nothing until checked."""

    tx: Tx
    sigs: tuple[tuple[str, str], ...]  # (holder key, DER hex), sorted by holder

    def to_dict(self) -> dict[str, Any]:
        return {"v": VERSION, "tx": self.tx.to_dict(), "sigs": [{"holder": h, "sig": s} for h, s in self.sigs]}

    def encode(self) -> bytes:
        return canonical.encode_unchecked(self.to_dict())

    @property
    def signers(self) -> tuple[str, ...]:
        return tuple(h for h, _ in self.sigs)


def certify(tx: Tx, acceptances: Iterable[Acceptance]) -> Certificate:
    """Gather the acceptances of `tx` (others are ignored; one per holder) into a certificate to check."""
    sigs: dict[str, str] = {}
    for a in acceptances:
        if (a.id, a.account, a.seq) == (tx.id, tx.account, tx.seq):
            sigs.setdefault(a.holder, a.sig)
    return Certificate(tx, tuple(sorted(sigs.items())))


def certificate_from_dict(doc: Any, *, verify_tx: bool = True) -> Certificate:
    """A `Certificate` from its wire form: the transaction fully checked (payer's signature included).

    ``verify_tx=False`` is for the holder's own store, which checked it before writing."""
    if not isinstance(doc, dict) or doc.keys() != {"v", "tx", "sigs"} or doc["v"] != VERSION:
        raise Malformed("a certificate has exactly v, tx, sigs")
    pairs = sigs_from_list(doc["sigs"])
    return Certificate(check_tx(doc["tx"], verify=verify_tx), pairs)


def parse_certificate(data: bytes) -> Certificate:
    """A `Certificate` from wire bytes (bounded, canonical); still to be checked with `check_certificate`."""
    return certificate_from_dict(load_bounded(data, MAX_CERT_BYTES, "a certificate"))


def check_certificate(cert: Certificate, holders: Sequence[str], quorum: int | None = None) -> Certificate:
    """`cert` if a quorum of `holders` (the tx account's holder set) signed its transaction.

    Refuses, cheapest first: more signatures than any set has (`Malformed`), a
    signer twice (`DuplicateSigner`), a signer outside the set
    (`NotAHolderSigner`), fewer than `quorum` (`NoQuorum`; default: a strict
    majority of the set), then any signature that does not verify
    (`BadHolderSignature`): every one is checked, none is skipped."""
    tx = cert.tx
    check_signers(cert.sigs, holders, quorum, tx.account, lambda h: acceptance_bytes(tx.id, tx.account, tx.seq, h))
    return cert


def check_signers(
    sigs: Sequence[tuple[str, str]],
    holders: Sequence[str],
    quorum: int | None,
    account: str,
    signed: Callable[[str], bytes],
) -> None:
    """The quorum rules every certificate shares (`check_certificate`, `htlc.check_resolution_certificate`):
    each of `sigs` is a distinct holder of `account` (`holders`), at least `quorum` of them, and each
    signature verifies over ``signed(holder)``; refusals as in `check_certificate`, cheapest first."""
    members = frozenset(holders)
    if len(members) != len(holders) or not members:
        raise ValueError("a holder set is a non-empty sequence of distinct keys")
    need = quorum_size(len(members)) if quorum is None else quorum
    if need <= len(members) // 2:
        raise ValueError("a quorum below a strict majority proves nothing")
    if len(sigs) > MAX_SIGS:
        raise Malformed(f"at most {MAX_SIGS} signatures")
    seen: set[str] = set()
    for holder, _ in sigs:
        if holder in seen:
            raise DuplicateSigner(f"{holder[:16]} signed twice")
        seen.add(holder)
        if holder not in members:
            raise NotAHolderSigner(f"{holder[:16]} does not hold {account[:16]}")
    if len(seen) < need:
        raise NoQuorum(f"{len(seen)} of {len(members)} holders signed, {need} needed")
    for holder, sig in sigs:
        if not signed_by(holder, sig, signed(holder)):
            raise BadHolderSignature(f"{holder[:16]}'s signature is not over this document")


def sigs_from_list(sigs: Any) -> tuple[tuple[str, str], ...]:
    """The ``[{"holder", "sig"}, ...]`` member of a certificate's wire form, shape-checked (`Malformed`)."""
    if not isinstance(sigs, list) or len(sigs) > MAX_SIGS:
        raise Malformed(f"sigs is a list of at most {MAX_SIGS}")
    pairs: list[tuple[str, str]] = []
    for s in sigs:
        if not isinstance(s, dict) or s.keys() != {"holder", "sig"}:
            raise Malformed("each signature has exactly holder, sig")
        if not is_account(s["holder"]) or not is_sig_hex(s["sig"]):
            raise Malformed("holder is a public key and sig DER, in lowercase hex")
        pairs.append((s["holder"], s["sig"]))
    return tuple(pairs)


def check_reserve_payout(cert: Certificate, sets: HolderSets) -> Certificate:
    """`cert` if it is a reward from the reserve confirmed by a quorum of the reserve's holders.

    This is the only way the reserve's units move: the reserve has no private
    key (accounts.RESERVE), and each of its holders accepts a reward only after
    it verified the work the reward names."""
    if cert.tx.kind != "reward" or cert.tx.account != RESERVE:
        raise ReserveRule("a reserve payout is a reward transaction from the reserve")
    return check_certificate(cert, sets.of(RESERVE), sets.quorum(RESERVE))


__all__ = [
    "Acceptance",
    "Certificate",
    "HolderSets",
    "certificate_from_dict",
    "certify",
    "check_acceptance",
    "check_certificate",
    "check_reserve_payout",
    "holder_set",
    "is_equivocation",
    "parse_certificate",
    "quorum_size",
    "sign_acceptance",
]
