"""Network parameters: the base58 version bytes of Dogecoin's main, test and regtest chains.

From Dogecoin Core's chainparams.cpp (``base58Prefixes``): main P2PKH 30 (``D``),
P2SH 22, WIF 158; testnet 113, 196, 241; regtest 111, 196, 239. Regtest's P2PKH
and WIF bytes differ from testnet's, which libdogecoin (main and test only)
does not know; `tx.py` deals with that.
"""

from __future__ import annotations

from dataclasses import dataclass

KOINU_PER_DOGE = 100_000_000
MAX_MONEY = 10_000_000_000 * KOINU_PER_DOGE  # Dogecoin Core's MAX_MONEY: no amount is above it


@dataclass(frozen=True, slots=True)
class Net:
    name: str
    p2pkh: int
    p2sh: int
    wif: int


NETS: dict[str, Net] = {
    "main": Net("main", 0x1E, 0x16, 0x9E),
    "test": Net("test", 0x71, 0xC4, 0xF1),
    "regtest": Net("regtest", 0x6F, 0xC4, 0xEF),
}


class UnknownNet(ValueError):
    """A network name other than main, test or regtest."""


def net(name: str) -> Net:
    try:
        return NETS[name]
    except KeyError:
        raise UnknownNet(f"unknown Dogecoin network {name!r} (main, test or regtest)") from None
