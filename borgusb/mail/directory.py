"""The mail directory: a person's signed entry that binds their Dogecoin address to their key. No I/O.

Mail is sealed to a public key, but people read and say an address (``D…``). The address is a hash
of the key, so it cannot name the key by itself; the person publishes an entry, signed by that key,
and anyone can check it: the address must be the key's own (`address_of`), so another key cannot
claim it (`WrongAddress`), and the signature must be the key's (`BadSignature`).

Wire form, canonical JSON, at most `MAX_ENTRY_BYTES`::

    {"v": 1, "key": "02…", "addr": "D…", "name": "Alice" | "", "ts": 1764000000000, "sig": "3044…"}

* ``sig``: DER ECDSA by ``key`` over every other member plus ``"d": "borgusb.mail.directory"``
  (domain-separated as messages and requests are: `borgusb.signed.signing_bytes`).
* ``ts`` is the entry's version (network time in ms): a newer entry replaces an older one and an
  older one never replaces a newer (`Rollback`); two entries of one time are ordered by id (the
  SHA-256 of the signed bytes), so every reader picks the same one.
* ``name`` is an optional display name, plain text (`check_name`). It is NOT an identifier: anyone
  can sign any name, and two people may pick the same one. Lookups are by address only; a name is
  shown beside the key it came with, never used to find one.

Holders (the mail cells the placement lottery picks for the address) keep the newest entry they
were given; a holder can hide an entry (answer nothing, or an older one) but cannot forge one, and
the reader checks every answer itself and takes the newest valid one (`newest`).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bitcoin.base58 import Base58ChecksumError, CBase58Data, InvalidBase58Error
from bitcoin.core import Hash160

from ..canonical import MAX_SAFE_INT
from ..keys import SigningKey
from ..ledger.accounts import is_account
from ..signed import is_sig_hex, signed_by, signing_bytes
from .errors import (
    BadAddress,
    BadSignature,
    FutureDated,
    MailError,
    Malformed,
    Rollback,
    Stale,
    WrongAddress,
)

VERSION = 1
DOMAIN = "borgusb.mail.directory"
P2PKH_MAIN = 30  # Dogecoin Core's base58Prefixes[PUBKEY_ADDRESS] on main: "D…"
MAX_NAME = 64  # characters of a display name
MAX_ENTRY_BYTES = 1024  # every field is bounded, so a valid entry's canonical JSON is below this
MAX_AGE_MS = 10 * 60_000  # a published entry is signed within this (a hand-off between holders may be older)
MAX_FUTURE_MS = 30_000
FIELDS = frozenset(("v", "key", "addr", "name", "ts", "sig"))
_ADDRESS = re.compile(r"D[1-9A-HJ-NP-Za-km-z]{25,34}")


def address_of(key_hex: str) -> str:
    """The Dogecoin main-network P2PKH address of a compressed public key: `borgusb.keys.doge_address`'s
    result, from python-bitcoinlib (a cell checking entries does not load bip-utils' 22 MB for it)."""
    return str(CBase58Data.from_bytes(Hash160(bytes.fromhex(key_hex)), P2PKH_MAIN))


def check_address(text: Any) -> str:
    """`text` if it is a main-network P2PKH address (shape, base58check checksum, version byte), else `BadAddress`."""
    if not isinstance(text, str) or not _ADDRESS.fullmatch(text):
        raise BadAddress("an address is a Dogecoin P2PKH address: D and 25 to 34 base58 characters")
    try:
        data = CBase58Data(text)
    except (Base58ChecksumError, InvalidBase58Error) as exc:
        raise BadAddress(f"not a base58check address: {exc}") from None
    if data.nVersion != P2PKH_MAIN or len(data) != 20:
        raise BadAddress("not a Dogecoin main-network P2PKH address")
    return text


def check_name(name: Any) -> str:
    """A display name: at most `MAX_NAME` printable characters, NFC, no spaces at either end (or empty).

    Printable excludes control, format (bidirectional overrides) and separator characters but the
    space, so a name cannot rearrange the text shown around it. It is still only a label."""
    if not isinstance(name, str) or len(name) > MAX_NAME:
        raise Malformed(f"a name is text of at most {MAX_NAME} characters")
    if not name.isprintable() or name != name.strip() or unicodedata.normalize("NFC", name) != name:
        raise Malformed("a name is printable text in NFC without spaces at either end")
    return name


@dataclass(frozen=True, slots=True)
class Entry:
    """A checked directory entry. Made only by `sign_entry` and `check_entry`."""

    key: str
    addr: str
    name: str
    ts: int
    sig: str
    id: str

    def to_dict(self) -> dict[str, Any]:
        return {"v": VERSION, "key": self.key, "addr": self.addr, "name": self.name, "ts": self.ts, "sig": self.sig}

    def order(self) -> tuple[int, str]:
        """Newer is larger; one time's entries are ordered by id, the same for every reader."""
        return (self.ts, self.id)


def sign_entry(key: SigningKey, ts: int, name: str = "") -> Entry:
    """`key`'s own entry at `ts`: its address, and the display name if any."""
    body = {"v": VERSION, "key": key.public_key_hex, "addr": address_of(key.public_key_hex), "name": name, "ts": ts}
    return check_entry(dict(body, sig=key.sign(signing_bytes(body, DOMAIN)).hex()))


def check_entry(doc: Any) -> Entry:
    """An `Entry` from a decoded document: `Malformed`, `BadAddress`, `WrongAddress`, then
    (the costly one) `BadSignature`."""
    if not isinstance(doc, dict) or doc.keys() != FIELDS:
        raise Malformed(f"a directory entry has exactly {', '.join(sorted(FIELDS))}")
    if isinstance(doc["v"], bool) or doc["v"] != VERSION:
        raise Malformed(f"unsupported directory entry version (this node reads {VERSION})")
    ts = doc["ts"]
    if isinstance(ts, bool) or not isinstance(ts, int) or not 0 <= ts <= MAX_SAFE_INT:
        raise Malformed("ts is network time in ms")
    if not is_account(doc["key"]):
        raise Malformed("key is a compressed public key in lowercase hex")
    if not is_sig_hex(doc["sig"]):
        raise Malformed("sig is a DER signature in lowercase hex")
    check_name(doc["name"])
    check_address(doc["addr"])
    if doc["addr"] != address_of(doc["key"]):
        raise WrongAddress("the address is not this key's own")
    signed = signing_bytes(doc, DOMAIN)
    if not signed_by(doc["key"], doc["sig"], signed):
        raise BadSignature("the entry is not signed by its key")
    return Entry(doc["key"], doc["addr"], doc["name"], ts, doc["sig"], hashlib.sha256(signed).hexdigest())


def accept(now_ms: int, held: Entry | None, new: Entry, handoff: bool = False) -> str:
    """What a holder that keeps `held` for the address does with `new`: ``"stored"`` or ``"duplicate"``,
    else `Rollback`, `Stale` or `FutureDated`.

    A published entry is fresh (a replay of an old one to a holder that lost the newer is refused);
    a hand-off (a copy another holder kept, passed on after the holder set changed) may be old."""
    if held is not None and held.addr != new.addr:
        raise WrongAddress("the entry is for another address")
    if held is not None and held.id == new.id:
        return "duplicate"
    if held is not None and new.order() < held.order():
        raise Rollback(f"an entry of {held.ts} is held; this one is of {new.ts}")
    if new.ts - now_ms > MAX_FUTURE_MS:
        raise FutureDated(f"dated {new.ts - now_ms} ms ahead (at most {MAX_FUTURE_MS})")
    if not handoff and now_ms - new.ts > MAX_AGE_MS:
        raise Stale(f"signed {now_ms - new.ts} ms ago (at most {MAX_AGE_MS}); sign a new one")
    return "stored"


def newest(addr: str, answers: Iterable[Any]) -> tuple[Entry | None, int]:
    """The newest valid entry for `addr` among holders' answers (``{"holder", "entry": doc | None}``),
    and how many answers did not verify or named another address (dropped, counted)."""
    best: Entry | None = None
    dropped = 0
    for answer in answers:
        doc = answer.get("entry") if isinstance(answer, dict) else answer
        if doc is None:
            continue
        try:
            entry = check_entry(doc)
        except MailError:
            dropped += 1
            continue
        if entry.addr != addr:
            dropped += 1
        elif best is None or entry.order() > best.order():
            best = entry
    return best, dropped


def behind(entry: Entry, answers: Iterable[Any]) -> list[str]:
    """The holders whose answer lacks `entry` (nothing, an older one, junk): what a lookup hands it to."""
    out = []
    for answer in answers:
        if not isinstance(answer, dict) or not isinstance(answer.get("holder"), str):
            continue
        doc = answer.get("entry")
        if not isinstance(doc, dict) or doc.get("sig") != entry.sig or doc.get("ts") != entry.ts:
            out.append(answer["holder"])
    return sorted(out)


class RateWindow:
    """At most `count` events per `window_ms` per key (an address, a signer), for at most `max_keys`
    keys: the least recently used is forgotten first (which only ever errs toward letting one in)."""

    def __init__(self, count: int, window_ms: int, max_keys: int = 10_000) -> None:
        self.count = count
        self.window_ms = window_ms
        self.max_keys = max_keys
        self._times: OrderedDict[str, list[int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._times)

    def allow(self, key: str, now_ms: int) -> bool:
        times = [t for t in self._times.pop(key, []) if now_ms - t < self.window_ms]
        allowed = len(times) < self.count
        self._times[key] = [*times, now_ms] if allowed else times
        while len(self._times) > self.max_keys:
            self._times.popitem(last=False)
        return allowed
