"""Who is behind an address: the keys the network has seen, found again by their Doge address.

People share Doge-style addresses; the ledger names accounts by key, and an
address is a hash of the key (HASH160: RIPEMD-160 of SHA-256), so it cannot be
turned back. But a *binding* "this key is behind that address" proves itself:
anyone re-hashes the key and compares. So the directory needs no trust and no
signature: a cell keeps the keys it has seen (payers and payees of checked
transactions, accounts asked about), each under its HASH160, and answers a
lookup only with a key that hashes to what was asked.

Where bindings live: a key's **directory holders** are the placement
lottery's winners for ``"borgusb.ledger.who:" + hash160`` among the member
view (as an account's holders are for its chain), so a lookup asks a few
nodes, not all of them. The cell (``cells/peerpays/directory.py``) tells
those holders each key it learns; this module is the part without I/O.

The address to HASH160 step (base58check) happens where addresses are shown
and typed (the CLI, the conduit: `address_hash`), so a node's cells never
load the address library.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict

from ..keys import is_public_key_hex

LOTTERY_PREFIX = "borgusb.ledger.who:"
MAX_KEYS = 65_536  # bindings a cell keeps (~200 bytes each), least recently used forgotten first
_HASH160 = re.compile(r"[0-9a-f]{40}")
DOGE_P2PKH_VERSION = 0x1E  # mainnet "D..." addresses


def key_hash(key: str) -> str:
    """HASH160 of a compressed public key (hex): what its Doge address encodes."""
    return hashlib.new("ripemd160", hashlib.sha256(bytes.fromhex(key)).digest()).hexdigest()


def is_key_hash(text: object) -> bool:
    return isinstance(text, str) and _HASH160.fullmatch(text) is not None


def address_hash(addr: str) -> str:
    """The HASH160 inside a Doge P2PKH address (base58check and version checked); ValueError if it
    is not one. Loads bip-utils (~20 MB): for the CLI and the conduit, which show addresses anyway."""
    from bip_utils import Base58Decoder

    try:
        raw = Base58Decoder.CheckDecode(addr)
    except Exception as exc:  # bip-utils raises its own types for a bad checksum or alphabet
        raise ValueError(f"not a Doge address: {exc}") from None
    if len(raw) != 21 or raw[0] != DOGE_P2PKH_VERSION:
        raise ValueError("not a Doge P2PKH address (D...)")
    return raw[1:].hex()


class KeyDirectory:
    """Keys seen, by HASH160; bounded (`MAX_KEYS`), least recently used forgotten first."""

    def __init__(self, capacity: int = MAX_KEYS) -> None:
        self.capacity = capacity
        self._keys: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def learn(self, key: str) -> bool:
        """Keep `key` (a compressed public key in hex); True when it was new here."""
        if not is_public_key_hex(key):
            return False
        h = key_hash(key)
        new = h not in self._keys
        self._keys[h] = key
        self._keys.move_to_end(h)
        while len(self._keys) > self.capacity:
            self._keys.popitem(last=False)
        return new

    def get(self, h160: str) -> str | None:
        key = self._keys.get(h160)
        if key is not None:
            self._keys.move_to_end(h160)
        return key


def proves(key: object, h160: str) -> bool:
    """True when `key` is a public key behind `h160`: a lookup's answer is taken only then."""
    return isinstance(key, str) and is_public_key_hex(key) and key_hash(key) == h160


__all__ = ["KeyDirectory", "address_hash", "is_key_hash", "key_hash", "proves"]
