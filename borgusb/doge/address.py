"""Dogecoin addresses: the P2PKH address of a key (the wallet's own) and P2SH addresses of scripts.

The main-network P2PKH address is `borgusb.keys.doge_address`, the one the
wallet shows; other networks use the same bip-utils encoder with their version
byte. Decoding checks the base58check checksum and the network's version byte,
so an address of another network is refused rather than paid.
"""

from __future__ import annotations

from bip_utils import Base58Decoder, Base58Encoder, P2PKHAddrEncoder
from bitcoin.core import Hash160
from bitcoin.core.script import OP_CHECKSIG, OP_DUP, OP_EQUAL, OP_EQUALVERIFY, OP_HASH160, CScript

from ..keys import doge_address
from .params import net


class BadAddress(ValueError):
    """Not a valid address of the expected network."""


def p2pkh_address(pubkey33: bytes, net_name: str) -> str:
    """The P2PKH address of a compressed public key (main: the wallet's ``D...`` address)."""
    n = net(net_name)
    if len(pubkey33) != 33:
        raise BadAddress("a P2PKH address here is of a 33-byte compressed public key")
    if n.name == "main":
        return doge_address(pubkey33)
    return P2PKHAddrEncoder.EncodeKey(pubkey33, net_ver=bytes([n.p2pkh]))


def p2sh_address(script: bytes, net_name: str) -> str:
    """The P2SH address of a redeem script."""
    return Base58Encoder.CheckEncode(bytes([net(net_name).p2sh]) + Hash160(script))


def decode(address: str, net_name: str) -> tuple[str, bytes]:
    """``("p2pkh" | "p2sh", hash160)`` of an address of this network."""
    n = net(net_name)
    try:
        raw = Base58Decoder.CheckDecode(address)
    except Exception as exc:  # bip-utils raises several types for bad characters and checksums
        raise BadAddress(f"not a base58check address: {exc}") from None
    if len(raw) != 21:
        raise BadAddress("an address holds a version byte and a 20-byte hash")
    if raw[0] == n.p2pkh:
        return "p2pkh", raw[1:]
    if raw[0] == n.p2sh:
        return "p2sh", raw[1:]
    raise BadAddress(f"not an address of the {n.name} network (version byte {raw[0]})")


def script_pubkey(address: str, net_name: str) -> bytes:
    """The output script that pays an address."""
    kind, h = decode(address, net_name)
    if kind == "p2pkh":
        return bytes(CScript([OP_DUP, OP_HASH160, h, OP_EQUALVERIFY, OP_CHECKSIG]))
    return bytes(CScript([OP_HASH160, h, OP_EQUAL]))


def p2pkh_script(pubkey33: bytes) -> bytes:
    """The output script paying a public key's hash (also the scriptCode its signatures commit to)."""
    return bytes(CScript([OP_DUP, OP_HASH160, Hash160(pubkey33), OP_EQUALVERIFY, OP_CHECKSIG]))


def reencode(address: str, from_net: str, to_net: str) -> str:
    """The same hash under another network's version byte (same output script)."""
    kind, h = decode(address, from_net)
    n = net(to_net)
    return Base58Encoder.CheckEncode(bytes([n.p2pkh if kind == "p2pkh" else n.p2sh]) + h)
