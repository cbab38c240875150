"""Acceptances, holder sets and confirmation certificates.

* **Holder set**: an account's chain is kept by R holders (default 5) chosen
  by the shard cell's proof-of-work placement lottery (`shard/placement.py`)
  over the live member keys, for the name ``"borgusb.ledger:" + account``:
  every node computes the same set from the same members, and no node can
  steer which accounts it holds. A set is named by `set_digest`.
* **Acceptance**: a holder's node key signs the canonical JSON of
  ``{"d": "borgusb.ledger.accept", "v": 2, "id", "account", "seq", "holder", "set"}``:
  "for this (account, seq) I accept this transaction id, and no other, ever,
  as a holder of the set named `set`". The set is signed so that a vote
  cast under one member view never counts towards a certificate of another
  set: a holder in both the old and the new set of an account that changed
  hands could otherwise complete the old set's transaction after the new set
  certified another (docs/ledger.md, "Membership handover").
* **Certificate** ``{"v": 2, "tx": {...}, "set", "sigs": [{"holder", "sig"}, ...]}``:
  the transaction plus the acceptances of a quorum of the set it names. A
  checker takes it only if that set is the account's set in its view, or in a
  view it used in the last handover window (`HolderSets.known`). A quorum is a
  strict majority (3 of 5): any two quorums of one set share a holder, and a
  holder signs one id per (account, seq), so two conflicting transactions can
  never both be certified (docs/ledger.md). That argument assumes the holders
  in the intersection keep the rule; to survive f holders that lie, use
  ``faulty=f`` (`quorum_size`), e.g. 4 of 5 for f = 1.
"""

from __future__ import annotations

import hashlib
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
    UnknownSet,
)
from .tx import Tx, check_tx, load_bounded

VERSION = 2  # 1 signed no holder set
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


def set_digest(holders: Iterable[str]) -> str:
    """The name of a holder set, which acceptances and votes sign: SHA-256 of its sorted keys."""
    return hashlib.sha256("\n".join(sorted(holders)).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class PastMembers:
    """The members of a view this holder used, and until when certificates of its sets are taken."""

    members: frozenset[str]
    until_ms: int


class HolderSets:
    """Holder sets and quorums for one view of the members (cached: the lottery costs ~16 hashes per member).

    `past` are the views used in the last handover window, newest last: a certificate signed under an
    account's set in one of them is still taken (`known`) until its `until_ms` by `now_ms`, so a
    transaction certified just before a view change is confirmed and credited after it."""

    def __init__(
        self,
        members: Iterable[str],
        r: int = DEFAULT_R,
        faulty: int = 0,
        *,
        past: Sequence[PastMembers] = (),
        now_ms: Callable[[], int] | None = None,
    ) -> None:
        self.members = frozenset(members)
        self.r = r
        self.faulty = faulty
        self.now_ms = now_ms
        self._cache: dict[str, tuple[str, ...]] = {}
        self.past = past

    @property
    def past(self) -> tuple[PastMembers, ...]:
        return self._past

    @past.setter
    def past(self, views: Sequence[PastMembers]) -> None:
        self._past = tuple(views)
        # one cache per past view: certificates naming unknown sets cost each account's lotteries once
        self._past_cache: list[dict[str, tuple[str, ...]]] = [{} for _ in self._past]

    def of(self, account: str) -> tuple[str, ...]:
        return self._lottery(self._cache, account, self.members)

    def _lottery(self, cache: dict[str, tuple[str, ...]], account: str, members: frozenset[str]) -> tuple[str, ...]:
        found = cache.get(account)
        if found is None:
            if len(cache) >= 65536:
                cache.clear()
            found = cache[account] = holder_set(account, members, self.r)
        return found

    def quorum(self, account: str) -> int:
        return quorum_size(len(self.of(account)), self.faulty)

    def digest(self, account: str) -> str:
        return set_digest(self.of(account))

    def known_sets(self, account: str) -> list[tuple[str, ...]]:
        """The account's sets this holder knows: today's first, then those under past views still in
        their window (views with fewer than r members held nothing), each once."""
        found = [self.of(account)]
        now = self.now_ms() if self.now_ms is not None else None
        for view, cache in zip(reversed(self.past), reversed(self._past_cache), strict=True):
            if len(view.members) < self.r or (now is not None and now > view.until_ms):
                continue
            old = self._lottery(cache, account, view.members)
            if old not in found:
                found.append(old)
        return found

    def known(self, account: str, digest: str) -> tuple[tuple[str, ...], int]:
        """(holders, quorum) of the account's known set named `digest` (`known_sets`); `UnknownSet` otherwise."""
        for s in self.known_sets(account):
            if set_digest(s) == digest:
                return s, quorum_size(len(s), self.faulty)
        raise UnknownSet(f"{digest[:16]} is not a holder set of {account[:16]} in this holder's recent views")


# ------------------------------------------------------------------ acceptances


def acceptance_bytes(tx_id: str, account: str, seq: int, holder: str, set_id: str) -> bytes:
    doc = {
        "d": ACCEPT_DOMAIN,
        "v": VERSION,
        "id": tx_id,
        "account": account,
        "seq": seq,
        "holder": holder,
        "set": set_id,
    }
    return canonical.encode_unchecked(doc)


@dataclass(frozen=True, slots=True)
class Acceptance:
    """One holder's signed vote for a transaction at its (account, seq), as a holder of the set named
    `set_id`. Not verified by construction."""

    id: str
    account: str
    seq: int
    holder: str
    set_id: str
    sig: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "id": self.id,
            "account": self.account,
            "seq": self.seq,
            "holder": self.holder,
            "set": self.set_id,
            "sig": self.sig,
        }

    def verify(self) -> bool:
        msg = acceptance_bytes(self.id, self.account, self.seq, self.holder, self.set_id)
        return signed_by(self.holder, self.sig, msg)


def sign_acceptance(key: SigningKey, tx: Tx, set_id: str) -> Acceptance:
    """This key's acceptance of `tx` as a holder of the set named `set_id` (the account's set in its view)."""
    holder = key.public_key_hex
    sig = key.sign(acceptance_bytes(tx.id, tx.account, tx.seq, holder, set_id)).hex()
    return Acceptance(tx.id, tx.account, tx.seq, holder, set_id, sig)


_ACCEPT_FIELDS = frozenset(("v", "id", "account", "seq", "holder", "set", "sig"))
_HEX64 = re.compile(r"[0-9a-f]{64}")


def check_acceptance(doc: Any, *, verify: bool = True) -> Acceptance:
    """An `Acceptance` from a holder's reply, its signature verified (`Malformed`, `BadHolderSignature`);
    ``verify=False`` is for a store's own rows, whose signatures were checked before they were written."""
    if not isinstance(doc, dict) or doc.keys() != _ACCEPT_FIELDS or doc["v"] != VERSION:
        raise Malformed("an acceptance has exactly v, id, account, seq, holder, set, sig")
    tx_id, account, seq, holder, sig = doc["id"], doc["account"], doc["seq"], doc["holder"], doc["sig"]
    set_id = doc["set"]
    if not all(isinstance(h, str) and _HEX64.fullmatch(h) for h in (tx_id, set_id)) or not is_account(account):
        raise Malformed("id and set are SHA-256s and account a public key, in lowercase hex")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1 or not is_account(holder):
        raise Malformed("seq is a positive integer and holder a public key")
    if not is_sig_hex(sig):
        raise Malformed("sig is a DER signature in lowercase hex")
    acc = Acceptance(tx_id, account, seq, holder, set_id, sig)
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
    """A transaction and the signatures of holders of the set named `set_id` over (its id, account, seq,
    that set); proves nothing until checked."""

    tx: Tx
    set_id: str
    sigs: tuple[tuple[str, str], ...]  # (holder key, DER hex), sorted by holder

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "tx": self.tx.to_dict(),
            "set": self.set_id,
            "sigs": [{"holder": h, "sig": s} for h, s in self.sigs],
        }

    def encode(self) -> bytes:
        return canonical.encode_unchecked(self.to_dict())

    @property
    def signers(self) -> tuple[str, ...]:
        return tuple(h for h, _ in self.sigs)


def certify(tx: Tx, acceptances: Iterable[Acceptance], set_id: str) -> Certificate:
    """Gather the acceptances of `tx` under the set `set_id` (others are ignored; one per holder) into a
    certificate to check."""
    sigs: dict[str, str] = {}
    for a in acceptances:
        if (a.id, a.account, a.seq, a.set_id) == (tx.id, tx.account, tx.seq, set_id):
            sigs.setdefault(a.holder, a.sig)
    return Certificate(tx, set_id, tuple(sorted(sigs.items())))


def certificate_from_dict(doc: Any, *, verify_tx: bool = True) -> Certificate:
    """A `Certificate` from its wire form: the transaction fully checked (payer's signature included).

    ``verify_tx=False`` is for the holder's own store, which checked it before writing."""
    if not isinstance(doc, dict) or doc.keys() != {"v", "tx", "set", "sigs"} or doc["v"] != VERSION:
        raise Malformed("a certificate has exactly v, tx, set, sigs")
    pairs = sigs_from_list(doc["sigs"])
    if not isinstance(doc["set"], str) or not _HEX64.fullmatch(doc["set"]):
        raise Malformed("set is a SHA-256 in lowercase hex")
    return Certificate(check_tx(doc["tx"], verify=verify_tx), doc["set"], pairs)


def parse_certificate(data: bytes) -> Certificate:
    """A `Certificate` from wire bytes (bounded, canonical); still to be checked with `check_certificate`."""
    return certificate_from_dict(load_bounded(data, MAX_CERT_BYTES, "a certificate"))


def check_certificate(cert: Certificate, holders: Sequence[str], quorum: int | None = None) -> Certificate:
    """`cert` if a quorum of `holders` (the tx account's holder set, the one the certificate names)
    signed its transaction.

    Refuses, cheapest first: another set named (`UnknownSet`), more signatures
    than any set has (`Malformed`), a signer twice (`DuplicateSigner`), a signer
    outside the set (`NotAHolderSigner`), fewer than `quorum` (`NoQuorum`;
    default: a strict majority of the set), then any signature that does not
    verify (`BadHolderSignature`): every one is checked, none is skipped."""
    tx, set_id = cert.tx, cert.set_id
    check_signers(
        cert.sigs, holders, quorum, tx.account, set_id, lambda h: acceptance_bytes(tx.id, tx.account, tx.seq, h, set_id)
    )
    return cert


def check_known(cert: Certificate, sets: HolderSets) -> Certificate:
    """`check_certificate` against the set the certificate names, if `sets` knows it (`HolderSets.known`)."""
    holders, quorum = sets.known(cert.tx.account, cert.set_id)
    return check_certificate(cert, holders, quorum)


def check_signers(
    sigs: Sequence[tuple[str, str]],
    holders: Sequence[str],
    quorum: int | None,
    account: str,
    set_id: str,
    signed: Callable[[str], bytes],
) -> None:
    """The quorum rules every certificate shares (`check_certificate`, `htlc.check_resolution_certificate`):
    the certificate names `holders` (`set_id`), each of `sigs` is a distinct holder of `account` in it,
    at least `quorum` of them, and each signature verifies over ``signed(holder)``; refusals as in
    `check_certificate`, cheapest first."""
    members = frozenset(holders)
    if len(members) != len(holders) or not members:
        raise ValueError("a holder set is a non-empty sequence of distinct keys")
    need = quorum_size(len(members)) if quorum is None else quorum
    if need <= len(members) // 2:
        raise ValueError("a quorum below a strict majority proves nothing")
    if set_id != set_digest(members):
        raise UnknownSet(f"the certificate names set {set_id[:16]}, not this holder set of {account[:16]}")
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
    return check_known(cert, sets)


__all__ = [
    "Acceptance",
    "Certificate",
    "HolderSets",
    "PastMembers",
    "certificate_from_dict",
    "certify",
    "check_acceptance",
    "check_certificate",
    "check_known",
    "check_reserve_payout",
    "holder_set",
    "is_equivocation",
    "parse_certificate",
    "quorum_size",
    "set_digest",
    "sign_acceptance",
]
