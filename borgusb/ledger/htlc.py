"""Hash-time-locked transfers: how a lock is resolved, by a claim or a refund, exactly once.

A lock is an ordinary chain transaction of its payer (``kind = "htlc-lock"``,
`tx.sign_lock`): it debits ``amount`` when it is certified, names the
claimant (``to``), the hash lock (``ref`` = SHA-256 of the secret) and
the ``expiry`` (network time, ms). Its units are then nobody's until one
**resolution** of it is certified:

* a **claim** (``htlc-claim``), signed by the claimant, carries the secret
  (``preimage``); it credits the claimant;
* a **refund** (``htlc-refund``), signed by the payer; it credits the payer.

Who decides: the **lock's holders** (the payer's holder set, who certified
the lock). Each votes for at most one resolution per lock id, as it votes
for at most one transaction per (account, seq), and persists the vote before
answering (`durable.DurableHolder`). One exception, which only a claim can
use: a holder that voted for the refund votes for the claim when shown
claim votes of `yield_threshold` holders, since the refund can then never
be certified (so a claim that reached some holders only before the expiry
does not leave the lock unresolved). A holder's first vote goes to a claim
only while its network time is before ``expiry``, and for a refund only from
``expiry + grace_ms`` (`HTLC_GRACE_MS`, docs/ledger.md). A quorum of votes is
a `ResolutionCertificate`: the payer's holders record the lock as resolved,
and the beneficiary's holders credit it, once per lock. Two quorums of one
holder set share a holder, so a claim and a refund (or two claims) can never
both be certified, whatever the clocks say (docs/ledger.md gives the argument
with the exception); the clocks decide only which one may be. A certified
claim carries the secret, so the payer learns it from the ledger (the atomic
swap, docs/exchange.md).

Wire form of a resolution (canonical JSON, at most `MAX_RESOLUTION_BYTES`)::

    {"by": "03…claimant", "kind": "htlc-claim", "lock": {…the lock tx…},
     "preimage": "<hex, 1 to 520 bytes>" (a refund: ""), "sig": "3044…", "v": 1}

Signed bytes: the canonical JSON of ``{"d": "borgusb.ledger.htlc", "v",
"kind", "lock": <lock id>, "by", "preimage"}``; the resolution's id is their
SHA-256. A holder's vote signs ``{"d": "borgusb.ledger.htlc-vote", "v": 2, "lock",
"id", "holder", "set"}``: another domain than a transaction's acceptance, so no vote
can pass for the other; like an acceptance it names the holder set it was cast in
(`certificate.set_digest`), and a resolution certificate (``{"v": 2, "resolution",
"set", "sigs"}``) counts only votes of the set it names.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .. import canonical
from ..keys import SigningKey
from ..signed import is_sig_hex, signed_by
from .accounts import is_account
from .certificate import HolderSets, check_signers, sigs_from_list
from .errors import (
    BadHolderSignature,
    BadSignature,
    Expired,
    Malformed,
    NotClaimant,
    NotExpired,
    NotPayer,
    WrongPreimage,
)
from .tx import Tx, check_tx, load_bounded

VERSION = 1
VOTE_VERSION = 2  # votes and resolution certificates; 1 named no holder set
DOMAIN = "borgusb.ledger.htlc"
VOTE_DOMAIN = "borgusb.ledger.htlc-vote"
# A refund waits this long past expiry: holders' network clocks agree within the envelope window (30 s),
# so once any honest holder votes for a refund, every honest holder's clock is past expiry and none
# votes for a claim any more (claim and refund windows are disjoint in real time, with 2x margin).
HTLC_GRACE_MS = 60_000
MAX_PREIMAGE_BYTES = 520  # Dogecoin's largest script push: any secret a Doge HTLC claim can reveal
MAX_RESOLUTION_BYTES = 3072  # a resolution is ~900 bytes (the lock tx inside is ~560), ~1,900 with 520
_PREIMAGE = re.compile(rf"(?:[0-9a-f]{{2}}){{1,{MAX_PREIMAGE_BYTES}}}")
MAX_RES_CERT_BYTES = 8192
FIELDS = frozenset(("v", "kind", "lock", "by", "preimage", "sig"))

Kind = Literal["htlc-claim", "htlc-refund"]
_HEX64 = re.compile(r"[0-9a-f]{64}")


def hash_lock(secret: bytes) -> str:
    """The hash lock of a new 32-byte secret: SHA-256 in hex (the Doge HTLC's OP_SHA256 of the same bytes).

    Only secrets we draw are held to 32 bytes. A claim accepts any preimage of 1 to 520 bytes: the Doge
    HTLC (`borgusb.doge.htlc`) has no size check, so whatever secret opened the Doge leg must open the
    ledger leg too, or an initiator with an odd-sized secret could take the Doge and refund the Shells."""
    if len(secret) != 32:
        raise ValueError("a new swap secret is 32 bytes")
    return hashlib.sha256(secret).hexdigest()


def signing_bytes(kind: str, lock_id: str, by: str, preimage: str) -> bytes:
    doc = {"d": DOMAIN, "v": VERSION, "kind": kind, "lock": lock_id, "by": by, "preimage": preimage}
    return canonical.encode_unchecked(doc)


@dataclass(frozen=True, slots=True)
class Resolution:
    """A checked claim or refund of `lock`. Made only by `sign_claim`, `sign_refund`, `check_resolution`."""

    kind: Kind
    lock: Tx
    by: str
    preimage: str  # 1 to 520 bytes in hex for a claim, "" for a refund
    sig: str
    id: str

    @property
    def beneficiary(self) -> str:
        """Whom a certificate of this resolution credits: the claimant, or the payer back."""
        return self.lock.to if self.kind == "htlc-claim" else self.lock.account

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "kind": self.kind,
            "lock": self.lock.to_dict(),
            "by": self.by,
            "preimage": self.preimage,
            "sig": self.sig,
        }

    def encode(self) -> bytes:
        return canonical.encode_unchecked(self.to_dict())


def check_resolution(doc: Any, *, verify: bool = True) -> Resolution:
    """A `Resolution` from its decoded wire form. Refuses, cheapest first: `Malformed` (shape; the lock
    must be a valid ``htlc-lock``, its payer's signature checked), `NotClaimant` / `NotPayer` (``by`` is
    not who may sign this kind), `WrongPreimage`, then `BadSignature`. ``verify=False``: the holder's
    own store only."""
    if not isinstance(doc, dict) or doc.keys() != FIELDS or doc["v"] != VERSION:
        raise Malformed(f"a resolution has exactly {', '.join(sorted(FIELDS))}")
    kind, by, preimage, sig = doc["kind"], doc["by"], doc["preimage"], doc["sig"]
    if kind not in ("htlc-claim", "htlc-refund") or not is_account(by):
        raise Malformed("kind is htlc-claim or htlc-refund, by a public key in lowercase hex")
    if not isinstance(preimage, str) or not (_PREIMAGE.fullmatch(preimage) if kind == "htlc-claim" else preimage == ""):
        raise Malformed(f"a claim's preimage is 1 to {MAX_PREIMAGE_BYTES} bytes in lowercase hex; a refund's is empty")
    if not is_sig_hex(sig):
        raise Malformed("sig is a DER signature in lowercase hex")
    if not isinstance(doc["lock"], dict) or doc["lock"].get("kind") != "htlc-lock":
        raise Malformed("lock is an htlc-lock transaction")
    lock = check_tx(doc["lock"], verify=verify)
    if kind == "htlc-claim" and by != lock.to:
        raise NotClaimant(f"{by[:16]} is not the lock's claimant")
    if kind == "htlc-refund" and by != lock.account:
        raise NotPayer(f"{by[:16]} is not the lock's payer")
    if kind == "htlc-claim" and hashlib.sha256(bytes.fromhex(preimage)).hexdigest() != lock.ref:
        raise WrongPreimage("sha256(preimage) is not the lock's hash lock")
    signed = signing_bytes(kind, lock.id, by, preimage)
    if verify and not signed_by(by, sig, signed):
        raise BadSignature(f"the resolution is not signed by its {'claimant' if kind == 'htlc-claim' else 'payer'}")
    return Resolution(kind, lock, by, preimage, sig, hashlib.sha256(signed).hexdigest())


def parse_resolution(data: bytes) -> Resolution:
    """A `Resolution` from wire bytes: bounded, canonical, then `check_resolution`."""
    return check_resolution(load_bounded(data, MAX_RESOLUTION_BYTES, "a resolution"))


def _sign(key: SigningKey, kind: Kind, lock: Tx, preimage: str) -> Resolution:
    by = key.public_key_hex
    sig = key.sign(signing_bytes(kind, lock.id, by, preimage)).hex()
    doc = {"v": VERSION, "kind": kind, "lock": lock.to_dict(), "by": by, "preimage": preimage, "sig": sig}
    return check_resolution(doc)


def sign_claim(key: SigningKey, lock: Tx, secret: bytes) -> Resolution:
    """The claimant `key` claims `lock` with its secret (refusals as in `check_resolution`)."""
    return _sign(key, "htlc-claim", lock, secret.hex())


def sign_refund(key: SigningKey, lock: Tx) -> Resolution:
    """The payer `key` takes `lock`'s units back (valid once the lock's holders see it expired)."""
    return _sign(key, "htlc-refund", lock, "")


def check_time(res: Resolution, now_ms: int, grace_ms: int = HTLC_GRACE_MS) -> Resolution:
    """`res` if a holder whose network time is `now_ms` may vote for it, else `Expired` / `NotExpired`."""
    expiry = res.lock.expiry
    if res.kind == "htlc-claim" and now_ms >= expiry:
        raise Expired(f"the lock expired {now_ms - expiry} ms ago")
    if res.kind == "htlc-refund" and now_ms < expiry + grace_ms:
        raise NotExpired(f"refundable in {expiry + grace_ms - now_ms} ms (expiry + {grace_ms} ms grace)")
    return res


def refund_id(lock: Tx) -> str:
    """The id of `lock`'s one possible refund (it signs only the kind, the lock, the payer and "")."""
    return hashlib.sha256(signing_bytes("htlc-refund", lock.id, lock.account, "")).hexdigest()


def yield_threshold(r: int, quorum: int, faulty: int) -> int:
    """How many holders' votes for a claim let a holder that voted for the refund vote for the claim too.

    With ``r - quorum + 1 + faulty`` of them, at least ``r - quorum + 1`` are honest holders that voted
    for the claim first, and an honest holder never leaves a claim: at most ``quorum - 1`` holders can
    ever sign the refund, so it can never be certified (docs/ledger.md). 3 of 5 with quorum 4."""
    return r - quorum + 1 + faulty


# ------------------------------------------------------------------ holders' votes


def vote_bytes(lock_id: str, res_id: str, holder: str, set_id: str) -> bytes:
    doc = {"d": VOTE_DOMAIN, "v": VOTE_VERSION, "lock": lock_id, "id": res_id, "holder": holder, "set": set_id}
    return canonical.encode_unchecked(doc)


@dataclass(frozen=True, slots=True)
class Vote:
    """A lock holder's signed vote: "this lock is resolved by this resolution id, and no other, ever"."""

    lock: str
    id: str
    holder: str
    set_id: str
    sig: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": VOTE_VERSION,
            "lock": self.lock,
            "id": self.id,
            "holder": self.holder,
            "set": self.set_id,
            "sig": self.sig,
        }

    def verify(self) -> bool:
        return signed_by(self.holder, self.sig, vote_bytes(self.lock, self.id, self.holder, self.set_id))


def sign_vote(key: SigningKey, res: Resolution, set_id: str) -> Vote:
    """This key's vote for `res` as a holder of the set named `set_id` (the lock payer's set in its view)."""
    holder = key.public_key_hex
    sig = key.sign(vote_bytes(res.lock.id, res.id, holder, set_id)).hex()
    return Vote(res.lock.id, res.id, holder, set_id, sig)


_VOTE_FIELDS = frozenset(("v", "lock", "id", "holder", "set", "sig"))


def check_vote(doc: Any, *, verify: bool = True) -> Vote:
    """A `Vote` from a holder's reply, its signature verified (`Malformed`, `BadHolderSignature`).
    ``verify=False``: the shape only, for proofs that `Holder.decide_resolve` verifies if it uses them."""
    if not isinstance(doc, dict) or doc.keys() != _VOTE_FIELDS or doc["v"] != VOTE_VERSION:
        raise Malformed("a vote has exactly v, lock, id, holder, set, sig")
    lock, res_id, holder, set_id, sig = doc["lock"], doc["id"], doc["holder"], doc["set"], doc["sig"]
    if not all(isinstance(h, str) and _HEX64.fullmatch(h) for h in (lock, res_id, set_id)) or not is_account(holder):
        raise Malformed("lock, id and set are SHA-256s, holder a public key, in lowercase hex")
    if not is_sig_hex(sig):
        raise Malformed("sig is a DER signature in lowercase hex")
    vote = Vote(lock, res_id, holder, set_id, sig)
    if verify and not vote.verify():
        raise BadHolderSignature(f"not signed by holder {holder[:16]}")
    return vote


# ------------------------------------------------------------------ certificates


@dataclass(frozen=True, slots=True)
class ResolutionCertificate:
    """A resolution and the votes for it of the lock holders of the set named `set_id`; proves nothing
    until `check_resolution_certificate`."""

    resolution: Resolution
    set_id: str
    sigs: tuple[tuple[str, str], ...]  # (holder key, DER hex), sorted by holder

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": VOTE_VERSION,
            "resolution": self.resolution.to_dict(),
            "set": self.set_id,
            "sigs": [{"holder": h, "sig": s} for h, s in self.sigs],
        }

    def encode(self) -> bytes:
        return canonical.encode_unchecked(self.to_dict())

    @property
    def signers(self) -> tuple[str, ...]:
        return tuple(h for h, _ in self.sigs)


def certify_resolution(res: Resolution, votes: Iterable[Vote], set_id: str) -> ResolutionCertificate:
    """Gather the votes for `res` under the set `set_id` (others are ignored; one per holder) into a
    certificate to check."""
    sigs: dict[str, str] = {}
    for v in votes:
        if (v.lock, v.id, v.set_id) == (res.lock.id, res.id, set_id):
            sigs.setdefault(v.holder, v.sig)
    return ResolutionCertificate(res, set_id, tuple(sorted(sigs.items())))


def resolution_certificate_from_dict(doc: Any, *, verify: bool = True) -> ResolutionCertificate:
    """A `ResolutionCertificate` from its wire form, the resolution fully checked (signatures included)."""
    if not isinstance(doc, dict) or doc.keys() != {"v", "resolution", "set", "sigs"} or doc["v"] != VOTE_VERSION:
        raise Malformed("a resolution certificate has exactly v, resolution, set, sigs")
    pairs = sigs_from_list(doc["sigs"])
    if not isinstance(doc["set"], str) or not _HEX64.fullmatch(doc["set"]):
        raise Malformed("set is a SHA-256 in lowercase hex")
    return ResolutionCertificate(check_resolution(doc["resolution"], verify=verify), doc["set"], pairs)


def parse_resolution_certificate(data: bytes) -> ResolutionCertificate:
    return resolution_certificate_from_dict(load_bounded(data, MAX_RES_CERT_BYTES, "a resolution certificate"))


def check_resolution_certificate(
    cert: ResolutionCertificate, holders: Sequence[str], quorum: int | None = None
) -> ResolutionCertificate:
    """`cert` if a quorum of `holders` (the lock's payer's holder set, the one the certificate names)
    voted for its resolution (refusals as `certificate.check_certificate`'s)."""
    res, set_id = cert.resolution, cert.set_id
    check_signers(
        cert.sigs, holders, quorum, res.lock.account, set_id, lambda h: vote_bytes(res.lock.id, res.id, h, set_id)
    )
    return cert


def check_known_resolution(cert: ResolutionCertificate, sets: HolderSets) -> ResolutionCertificate:
    """`check_resolution_certificate` against the set the certificate names, if `sets` knows it."""
    holders, quorum = sets.known(cert.resolution.lock.account, cert.set_id)
    return check_resolution_certificate(cert, holders, quorum)


__all__ = [
    "HTLC_GRACE_MS",
    "Resolution",
    "ResolutionCertificate",
    "Vote",
    "certify_resolution",
    "check_resolution",
    "check_known_resolution",
    "check_resolution_certificate",
    "check_time",
    "check_vote",
    "hash_lock",
    "refund_id",
    "yield_threshold",
    "parse_resolution",
    "parse_resolution_certificate",
    "resolution_certificate_from_dict",
    "sign_claim",
    "sign_refund",
    "sign_vote",
]
