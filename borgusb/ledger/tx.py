"""The transaction: what a payer signs, and the one function that lets one in.

Wire form, canonical JSON (`borgusb.canonical`), at most `MAX_TX_BYTES`::

    {"account": "02…payer", "amount": 150000000, "kind": "transfer",
     "prev": "00…00", "ref": "", "seq": 1, "sig": "3044…", "to": "03…payee",
     "ts": 1764000000000, "v": 1}

* ``account``: the payer's identity key (compressed secp256k1, hex); people
  read it as its Doge address (`accounts.address`). Each account is a chain of
  its own transactions: ``seq`` counts them from 1 and ``prev`` is the id of
  the payer's previous one (`ZERO_HASH` for seq 1), so a replay, a gap or a
  second spend of one sequence number is visible to any holder.
* ``to``: the payee's key; ``amount``: units (`units.check_amount`).
* ``kind``: ``transfer`` (signed by ``account``) or ``reward`` (from the
  reserve, which has no key: signed by the claimant ``to``, and valid only
  with a certificate of the reserve's holders, who verified the work named by
  ``ref``), or ``htlc-lock`` (signed by ``account``): a hash-time lock that
  debits ``amount`` now and credits nobody until it is resolved (`htlc`);
  ``ref`` is then the hash lock (SHA-256 of the secret, required) and the
  lock alone has one more member, ``expiry`` (network time, ms). Its claim or
  refund is no chain transaction but a resolution (`htlc.Resolution`), so
  ``htlc-claim`` and ``htlc-refund`` are refused here as ``unsupported_kind``.
* ``ref``: ``""`` or 64 hex digits: the SHA-256 of the work record a reward
  pays for (required for rewards), or a payer's reference (invoice, order).
* ``ts``: the payer's network time in ms; holders refuse stale ones.
* ``sig``: DER ECDSA over the canonical JSON of every other member plus
  ``"d": "borgusb.ledger.tx"`` (the domain, so no other signed BorgUSB
  record, envelope or shard record, can pass for a transaction).

**The id** is the SHA-256 of those signed bytes (not of the signature): what
the payer signed, fixed before signing, so no re-encoding of a signature can
make a second id for the same transaction (Bitcoin's txid malleability).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from .. import canonical
from ..canonical import MAX_SAFE_INT
from ..keys import SigningKey
from ..signed import is_sig_hex, signed_by
from ..signed import signing_bytes as doc_signing_bytes
from .accounts import RESERVE, is_account
from .errors import BadExpiry, BadPrev, BadSignature, FutureDated, Malformed, ReserveRule, Stale, UnsupportedKind
from .units import check_amount

VERSION = 1
DOMAIN = "borgusb.ledger.tx"
ZERO_HASH = "0" * 64
KINDS = ("transfer", "reward", "htlc-lock")
RESOLUTION_KINDS = ("htlc-claim", "htlc-refund")  # kinds of `htlc.Resolution`, never of a chain transaction
MAX_TX_BYTES = 1024  # a transaction is ~470 bytes; anything larger is not one
MAX_SEQ = MAX_SAFE_INT
TX_MAX_AGE_MS = 10 * 60_000  # a payer re-signs a transaction no holder took within 10 minutes
TX_MAX_FUTURE_MS = 30_000  # the envelope window: clocks agree within it (cronoTreeCell)
FIELDS = frozenset(("v", "account", "seq", "prev", "to", "amount", "kind", "ref", "ts", "sig"))
LOCK_FIELDS = FIELDS | {"expiry"}  # only an htlc-lock has an expiry: every other kind's bytes are unchanged
MAX_LOCK_MS = 7 * 24 * 3_600_000  # a lock holds its units at most a week after it is signed

_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Tx:
    """A checked transaction. Made only by `sign_transfer`, `sign_reward`, `check_tx` and `parse_tx`."""

    account: str
    seq: int
    prev: str
    to: str
    amount: int
    kind: str
    ref: str
    ts: int
    sig: str
    id: str
    expiry: int = 0  # htlc-lock only: network time (ms) from which the payer may take the units back

    @property
    def signer(self) -> str:
        """Whose signature `sig` is: the payer's, or for a reward the claimant's (the reserve has no key)."""
        return self.to if self.kind == "reward" else self.account

    def body(self) -> dict[str, Any]:
        extra = {"expiry": self.expiry} if self.kind == "htlc-lock" else {}
        return {
            **extra,
            "v": VERSION,
            "account": self.account,
            "seq": self.seq,
            "prev": self.prev,
            "to": self.to,
            "amount": self.amount,
            "kind": self.kind,
            "ref": self.ref,
            "ts": self.ts,
        }

    def to_dict(self) -> dict[str, Any]:
        return dict(self.body(), sig=self.sig)

    def encode(self) -> bytes:
        """The wire bytes (canonical JSON)."""
        return canonical.encode_unchecked(self.to_dict())


def signing_bytes(body: dict[str, Any]) -> bytes:
    """What the signature covers and the id hashes: the body plus the domain (`borgusb.signed`)."""
    return doc_signing_bytes(body, DOMAIN)


def tx_id(body: dict[str, Any]) -> str:
    return hashlib.sha256(signing_bytes(body)).hexdigest()


def _int(doc: dict[str, Any], name: str, lo: int, hi: int) -> int:
    v = doc[name]
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise Malformed(f"{name} must be an integer in {lo}..{hi}")
    return v


def _check_fields(doc: Any) -> None:
    """Every rule except the signature, cheapest first."""
    fields = LOCK_FIELDS if isinstance(doc, dict) and doc.get("kind") == "htlc-lock" else FIELDS
    if not isinstance(doc, dict) or doc.keys() != fields:
        raise Malformed(f"a transaction of this kind has exactly {', '.join(sorted(fields))}")
    if _int(doc, "v", 0, MAX_SAFE_INT) != VERSION:
        raise Malformed(f"unsupported transaction version {doc['v']} (this node reads {VERSION})")
    if not is_account(doc["account"]) or not is_account(doc["to"]):
        raise Malformed("account and to are compressed secp256k1 public keys in lowercase hex")
    if doc["account"] == doc["to"]:
        raise Malformed("an account does not pay itself")
    seq = _int(doc, "seq", 1, MAX_SEQ)
    ts = _int(doc, "ts", 0, MAX_SAFE_INT)
    prev, ref, kind, sig = doc["prev"], doc["ref"], doc["kind"], doc["sig"]
    if not isinstance(prev, str) or not _HEX64.fullmatch(prev):
        raise Malformed("prev is a SHA-256 in lowercase hex")
    if not isinstance(ref, str) or not (ref == "" or _HEX64.fullmatch(ref)):
        raise Malformed("ref is empty or a SHA-256 in lowercase hex")
    if not is_sig_hex(sig):
        raise Malformed("sig is a DER signature in lowercase hex")
    if not isinstance(kind, str) or len(kind) > 16:
        raise Malformed("kind is a short string")
    check_amount(doc["amount"])
    if kind in RESOLUTION_KINDS:
        raise UnsupportedKind(f"{kind} is a lock's resolution (ledger.htlc), not a chain transaction")
    if kind not in KINDS:
        raise UnsupportedKind(f"unknown kind {kind!r}")
    if (kind == "reward") != (doc["account"] == RESERVE):
        raise ReserveRule("the reserve pays rewards only, and rewards come only from the reserve")
    if kind == "reward" and not ref:
        raise Malformed("a reward names the work it pays for (ref)")
    if kind == "htlc-lock":
        if not ref:
            raise Malformed("a lock names its hash lock (ref)")
        if not ts < _int(doc, "expiry", 0, MAX_SAFE_INT) <= ts + MAX_LOCK_MS:
            raise BadExpiry(f"a lock expires after it is signed and at most {MAX_LOCK_MS} ms later")
    if (seq == 1) != (prev == ZERO_HASH):
        raise BadPrev("seq 1 has the zero prev, and only seq 1 has it")


def check_tx(doc: Any, *, verify: bool = True) -> Tx:
    """A `Tx` from a decoded transaction (an envelope's payload, a certificate's member).

    Raises a `LedgerError` subclass: `Malformed`, `BadAmount`, `UnsupportedKind`,
    `ReserveRule`, `BadPrev`, and last, because it is the costly one,
    `BadSignature`. ``verify=False`` is for the holder's own store only, which
    re-reads what it checked before writing."""
    _check_fields(doc)
    body = {k: v for k, v in doc.items() if k != "sig"}
    signed = signing_bytes(body)
    tx = Tx(
        account=doc["account"],
        seq=doc["seq"],
        prev=doc["prev"],
        to=doc["to"],
        amount=doc["amount"],
        kind=doc["kind"],
        ref=doc["ref"],
        ts=doc["ts"],
        sig=doc["sig"],
        id=hashlib.sha256(signed).hexdigest(),
        expiry=doc.get("expiry", 0),
    )
    if verify and not signed_by(tx.signer, tx.sig, signed):
        raise BadSignature(
            "the transaction is not signed by " + ("its claimant" if tx.kind == "reward" else "its payer")
        )
    return tx


def load_bounded(data: bytes, limit: int, what: str) -> Any:
    """Wire bytes of a ledger document: at most `limit` bytes and canonical (one document, one byte
    form), else `Malformed` naming `what`."""
    if len(data) > limit:
        raise Malformed(f"{what} is at most {limit} bytes")
    try:
        return canonical.loads_canonical(data)
    except canonical.CanonicalError as exc:
        raise Malformed(str(exc)) from None


def parse_tx(data: bytes) -> Tx:
    """A `Tx` from wire bytes: bounded, canonical, then `check_tx`."""
    return check_tx(load_bounded(data, MAX_TX_BYTES, "a transaction"))


def check_fresh(tx: Tx, now_ms: int, max_age_ms: int = TX_MAX_AGE_MS, max_future_ms: int = TX_MAX_FUTURE_MS) -> Tx:
    """`tx` if signed within the window around `now_ms` (network time), else `Stale` or `FutureDated`.

    A holder applies it to new transactions only: a replay of one it already
    accepted gets its acceptance back whatever its age, and a certificate is
    valid whenever it arrives, so freshness is not part of `check_tx`."""
    if now_ms - tx.ts > max_age_ms:
        raise Stale(f"signed {now_ms - tx.ts} ms ago (at most {max_age_ms})")
    if tx.ts - now_ms > max_future_ms:
        raise FutureDated(f"dated {tx.ts - now_ms} ms ahead (at most {max_future_ms})")
    return tx


def _sign(key: SigningKey, body: dict[str, Any]) -> Tx:
    _check_fields(dict(body, sig="00" * 8))
    return check_tx(dict(body, sig=key.sign(signing_bytes(body)).hex()))


def sign_transfer(key: SigningKey, *, seq: int, prev: str, to: str, amount: int, ts: int, ref: str = "") -> Tx:
    """The payer `key` pays `amount` units to `to` as its transaction number `seq` (refusals as in `check_tx`)."""
    body = {
        "v": VERSION,
        "account": key.public_key_hex,
        "seq": seq,
        "prev": prev,
        "to": to,
        "amount": amount,
        "kind": "transfer",
        "ref": ref,
        "ts": ts,
    }
    return _sign(key, body)


def sign_reward(key: SigningKey, *, seq: int, prev: str, amount: int, ref: str, ts: int) -> Tx:
    """A claim, signed by the worker `key`, that the reserve pay it `amount` for the work record `ref`.

    `seq`/`prev` are the reserve's chain position. Worth nothing until a quorum
    of the reserve's holders has verified the work and accepted it."""
    body = {
        "v": VERSION,
        "account": RESERVE,
        "seq": seq,
        "prev": prev,
        "to": key.public_key_hex,
        "amount": amount,
        "kind": "reward",
        "ref": ref,
        "ts": ts,
    }
    return _sign(key, body)


def sign_lock(
    key: SigningKey, *, seq: int, prev: str, to: str, amount: int, hash_lock: str, expiry: int, ts: int
) -> Tx:
    """The payer `key` locks `amount` units for `to` as its transaction number `seq`: `to` may claim them
    with the preimage of `hash_lock` (SHA-256, hex) before `expiry`, the payer take them back after it
    (network time, ms; `htlc`)."""
    body = {
        "v": VERSION,
        "account": key.public_key_hex,
        "seq": seq,
        "prev": prev,
        "to": to,
        "amount": amount,
        "kind": "htlc-lock",
        "ref": hash_lock,
        "ts": ts,
        "expiry": expiry,
    }
    return _sign(key, body)
