"""Orders and cancels: what an owner signs, and the one function that lets each in.

Wire form of an order, canonical JSON (`borgusb.canonical`), at most `MAX_ORDER_BYTES`::

    {"amount": 500000000, "expiry": 1764000600000, "nonce": "00…0f", "owner": "02…",
     "price": 2500000000, "side": "sell", "sig": "3044…", "ts": 1764000000000, "v": 1}

* ``owner``: the owner's identity key (its Doge address is their deposit address).
* ``side``: ``buy`` or ``sell``, of Shells; the other asset is Dogecoin.
* ``amount``: Shell units (1 Shell = 10^8 units, `borgusb.ledger.units`), at least `MIN_AMOUNT`.
* ``price``: koinu per Shell (1 DOGE = 10^8 koinu), an integer in 1..`MAX_PRICE`. A fill of
  ``q`` units at price ``p`` moves ``q * p // 10^8`` koinu (`koinu_for`): integers only.
* ``ts``: the owner's network time in ms; ``expiry``: network ms after which it no longer
  matches (``ts < expiry <= ts + MAX_LIFETIME_MS``); ``nonce``: 16 random bytes, so two
  otherwise equal orders are two orders.
* ``sig``: DER ECDSA by ``owner`` over the canonical JSON of every other member plus
  ``"d": "borgusb.exchange.order"`` (a cancel's domain is ``borgusb.exchange.cancel``; the
  ledger's is ``borgusb.ledger.tx``: no signed record passes for another kind).

A cancel is ``{"order": id, "owner", "ts", "nonce", "sig", "v"}``; it means something only
when its signer owns the order it names (`borgusb.exchange.book`). Both ids are the SHA-256
of the signed bytes, fixed before signing (as the ledger's transaction id).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from .. import canonical
from ..canonical import MAX_SAFE_INT
from ..keys import SigningKey
from ..ledger.accounts import is_account
from ..ledger.errors import BadSignature, FutureDated, Malformed, Stale
from ..ledger.tx import load_bounded
from ..ledger.units import UNITS_PER_SHELL, check_amount
from ..signed import is_sig_hex, signed_by, signing_bytes
from .errors import BadExpiry, BadPrice, TooLarge, TooSmall

VERSION = 1
ORDER_DOMAIN = "borgusb.exchange.order"
CANCEL_DOMAIN = "borgusb.exchange.cancel"
SIDES = ("buy", "sell")
MAX_ORDER_BYTES = 1024  # an order is ~330 bytes
MIN_AMOUNT = UNITS_PER_SHELL  # 1 Shell: smaller fills would not pay a Dogecoin fee
MAX_PRICE = 10**12  # koinu per Shell: 10,000 DOGE for one Shell
MAX_KOINU = 10**15  # one order moves at most 10 million DOGE (below 2^53: exact in JSON)
MAX_LIFETIME_MS = 7 * 24 * 3600_000  # an order lives a week at most
ORDER_FIELDS = frozenset(("v", "owner", "side", "amount", "price", "ts", "expiry", "nonce", "sig"))
CANCEL_FIELDS = frozenset(("v", "owner", "order", "ts", "nonce", "sig"))

_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def koinu_for(amount: int, price: int) -> int:
    """Koinu a fill of `amount` Shell units at `price` koinu per Shell moves (rounded down)."""
    return amount * price // UNITS_PER_SHELL


@dataclass(frozen=True, slots=True)
class Order:
    """A checked order. Made only by `sign_order`, `check_order` and `parse_order`."""

    owner: str
    side: str
    amount: int
    price: int
    ts: int
    expiry: int
    nonce: str
    sig: str
    id: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "owner": self.owner,
            "side": self.side,
            "amount": self.amount,
            "price": self.price,
            "ts": self.ts,
            "expiry": self.expiry,
            "nonce": self.nonce,
            "sig": self.sig,
        }

    def encode(self) -> bytes:
        return canonical.encode_unchecked(self.to_dict())


@dataclass(frozen=True, slots=True)
class Cancel:
    """A checked cancel: `owner` withdraws its order `order` from `ts` on."""

    owner: str
    order: str
    ts: int
    nonce: str
    sig: str
    id: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "owner": self.owner,
            "order": self.order,
            "ts": self.ts,
            "nonce": self.nonce,
            "sig": self.sig,
        }

    def encode(self) -> bytes:
        return canonical.encode_unchecked(self.to_dict())


def _ts(doc: dict[str, Any], name: str) -> int:
    v = doc[name]
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_SAFE_INT:
        raise Malformed(f"{name} is an integer of network ms")
    return v


def _common(doc: Any, fields: frozenset[str], what: str) -> dict[str, Any]:
    if not isinstance(doc, dict) or doc.keys() != fields:
        raise Malformed(f"{what} has exactly {', '.join(sorted(fields))}")
    if doc["v"] != VERSION or isinstance(doc["v"], bool):
        raise Malformed(f"unsupported {what} version (this node reads {VERSION})")
    if not is_account(doc["owner"]):
        raise Malformed("owner is a compressed secp256k1 public key in lowercase hex")
    if not isinstance(doc["nonce"], str) or not _HEX32.fullmatch(doc["nonce"]):
        raise Malformed("nonce is 16 bytes in lowercase hex")
    if not is_sig_hex(doc["sig"]):
        raise Malformed("sig is a DER signature in lowercase hex")
    _ts(doc, "ts")
    return doc


def _verified(owner: str, sig: str, signed: bytes, what: str) -> str:
    if not signed_by(owner, sig, signed):
        raise BadSignature(f"the {what} is not signed by its owner")
    return hashlib.sha256(signed).hexdigest()


def _check_order_fields(doc: Any) -> None:
    """Every order rule except the signature, cheapest first."""
    _common(doc, ORDER_FIELDS, "an order")
    if doc["side"] not in SIDES:
        raise Malformed("side is buy or sell (of Shells)")
    amount = check_amount(doc["amount"])
    if amount < MIN_AMOUNT:
        raise TooSmall(f"an order is at least {MIN_AMOUNT} units (1 Shell), not {amount}")
    price = doc["price"]
    if isinstance(price, bool) or not isinstance(price, int) or not 1 <= price <= MAX_PRICE:
        raise BadPrice(f"price is an integer of koinu per Shell in 1..{MAX_PRICE}")
    if koinu_for(amount, price) > MAX_KOINU:
        raise TooLarge(f"an order moves at most {MAX_KOINU} koinu")
    ts, expiry = doc["ts"], _ts(doc, "expiry")
    if not ts < expiry <= ts + MAX_LIFETIME_MS:
        raise BadExpiry(f"expiry is after ts and at most {MAX_LIFETIME_MS} ms later")


def check_order(doc: Any) -> Order:
    """An `Order` from a decoded document; raises a `LedgerError` subclass (`BadSignature` last)."""
    _check_order_fields(doc)
    signed = signing_bytes(doc, ORDER_DOMAIN)
    oid = _verified(doc["owner"], doc["sig"], signed, "order")
    return Order(
        doc["owner"], doc["side"], doc["amount"], doc["price"], doc["ts"], doc["expiry"], doc["nonce"], doc["sig"], oid
    )


def check_cancel(doc: Any) -> Cancel:
    """A `Cancel` from a decoded document; raises a `LedgerError` subclass (`BadSignature` last)."""
    _common(doc, CANCEL_FIELDS, "a cancel")
    if not isinstance(doc["order"], str) or not _HEX64.fullmatch(doc["order"]):
        raise Malformed("order is an order id (SHA-256 in lowercase hex)")
    signed = signing_bytes(doc, CANCEL_DOMAIN)
    cid = _verified(doc["owner"], doc["sig"], signed, "cancel")
    return Cancel(doc["owner"], doc["order"], doc["ts"], doc["nonce"], doc["sig"], cid)


def parse_order(data: bytes) -> Order:
    """An `Order` from wire bytes: bounded, canonical, then `check_order`."""
    return check_order(load_bounded(data, MAX_ORDER_BYTES, "an order"))


def parse_cancel(data: bytes) -> Cancel:
    """A `Cancel` from wire bytes: bounded, canonical, then `check_cancel`."""
    return check_cancel(load_bounded(data, MAX_ORDER_BYTES, "a cancel"))


def check_fresh(ts: int, now_ms: int, window_ms: int) -> None:
    """Refuse an event dated more than `window_ms` before `now_ms` (`Stale`) or after it (`FutureDated`)."""
    if now_ms - ts > window_ms:
        raise Stale(f"dated {now_ms - ts} ms ago (at most {window_ms})")
    if ts - now_ms > window_ms:
        raise FutureDated(f"dated {ts - now_ms} ms ahead (at most {window_ms})")


def sign_order(key: SigningKey, *, side: str, amount: int, price: int, ts: int, expiry: int, nonce: bytes) -> Order:
    """`key`'s order (refusals as in `check_order`); `nonce` is 16 bytes (random in use, fixed in vectors)."""
    body = {
        "v": VERSION,
        "owner": key.public_key_hex,
        "side": side,
        "amount": amount,
        "price": price,
        "ts": ts,
        "expiry": expiry,
        "nonce": nonce.hex(),
    }
    _check_order_fields(dict(body, sig="00" * 8))
    return check_order(dict(body, sig=key.sign(signing_bytes(body, ORDER_DOMAIN)).hex()))


def sign_cancel(key: SigningKey, *, order: str, ts: int, nonce: bytes) -> Cancel:
    """`key`'s cancel of its order `order`, from `ts` on."""
    body = {"v": VERSION, "owner": key.public_key_hex, "order": order, "ts": ts, "nonce": nonce.hex()}
    _common(dict(body, sig="00" * 8), CANCEL_FIELDS, "a cancel")
    return check_cancel(dict(body, sig=key.sign(signing_bytes(body, CANCEL_DOMAIN)).hex()))
