"""Accounts, the reserve and genesis.

An account is an identity public key: compressed secp256k1, 66 lowercase hex
digits. People read it as the key's Dogecoin P2PKH address (`address`), which
is a hash of the key and so cannot name an account by itself; the wire always
carries the key, which is what verifies the payer's signature.

**The reserve** holds the whole genesis supply (`units.SUPPLY`). Its account
is a *nothing-up-my-sleeve* point: the first ``x = sha256("borgusb.ledger.reserve:" i)``
(i = 0, 1, ...) that is the x-coordinate of a curve point, with an even y.
Finding its private key would take breaking secp256k1's discrete logarithm,
so nobody, the founders included, can sign for the reserve: no single key
spends it. It pays out only ``reward`` transactions, and a reward is valid
only with a confirmation certificate of a quorum of the reserve's holders,
each of which verified the work before it accepted (holder.py,
certificate.py, docs/ledger.md).
"""

from __future__ import annotations

import hashlib

from coincurve import PublicKey

from ..keys import doge_address, is_public_key_hex
from .units import SUPPLY

RESERVE_LABEL = b"borgusb.ledger.reserve:"


def _nums_point(label: bytes) -> str:
    i = 0
    while True:
        x = hashlib.sha256(label + str(i).encode()).digest()
        try:
            return PublicKey(b"\x02" + x).format(compressed=True).hex()
        except ValueError:  # about half of all x are not on the curve
            i += 1


RESERVE: str = _nums_point(RESERVE_LABEL)


# an account is an identity key: compressed, lowercase hex, on the curve
is_account = is_public_key_hex


def genesis_balance(account: str) -> int:
    """What an account held before any transaction: the whole supply for the reserve, else 0."""
    return SUPPLY if account == RESERVE else 0


def address(account: str) -> str:
    """The account's Doge-style address, for people to read (never used to identify it on the wire).

    Loads bip-utils (~20 MB) on first use: only whoever shows an address pays for it."""
    return doge_address(bytes.fromhex(account))
