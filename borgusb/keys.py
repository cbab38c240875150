"""secp256k1 keys: the small, hard-to-misuse layer every signer goes through.

Signing and verifying use libsecp256k1 through coincurve (about seven times
faster than OpenSSL for secp256k1 verification, and the same library that
Bitcoin and Dogecoin nodes use). Signatures are DER-encoded ECDSA over the
SHA-256 of the message; libsecp256k1 signs deterministically (RFC 6979) and
only accepts low-S signatures, so a signature cannot be re-shaped into a
second valid one.

Secrets live in a `bytearray` that `close()` overwrites. This is best
effort: coincurve keeps its own copy in C memory for the life of the key
object, and CPython may have copied bytes elsewhere; the process that holds
keys is expected to exit (hosted mode and the image both end the process on
removal of the stick).
"""

from __future__ import annotations

import hashlib
import os
import re
from functools import lru_cache
from typing import Any, TypeGuard

from coincurve import PrivateKey, PublicKey

PUBKEY_HEX_LEN = 66  # compressed SEC1 point


class InvalidKey(ValueError):
    """A key or signature could not be parsed."""


def zero(buf: bytearray) -> None:
    """Overwrite a secret buffer in place."""
    for i in range(len(buf)):
        buf[i] = 0


class SigningKey:
    """A secp256k1 private key that can sign and be wiped.

    Both a person's identity key (from the wallet) and a machine's node key
    are SigningKeys; nothing else in BorgUSB touches raw private keys.
    """

    __slots__ = ("_secret", "_key", "public_key", "public_key_hex")

    def __init__(self, secret: bytes | bytearray) -> None:
        if len(secret) != 32:
            raise InvalidKey("a secp256k1 secret is 32 bytes")
        self._secret = bytearray(secret)
        try:
            self._key: PrivateKey | None = PrivateKey(bytes(self._secret))
        except ValueError as exc:
            zero(self._secret)
            raise InvalidKey(f"invalid secp256k1 secret: {exc}") from None
        self.public_key: bytes = self._key.public_key.format(compressed=True)
        self.public_key_hex: str = self.public_key.hex()

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh key from the OS CSPRNG (used for node keys)."""
        while True:
            secret = bytearray(os.urandom(32))
            try:
                return cls(secret)
            except InvalidKey:  # pragma: no cover - probability ~2**-128
                continue
            finally:
                zero(secret)

    def sign(self, message: bytes) -> bytes:
        """DER ECDSA signature over sha256(message)."""
        if self._key is None:
            raise RuntimeError("this key has been closed")
        return self._key.sign(message)

    def sign_digest(self, digest: bytes) -> bytes:
        """DER ECDSA signature (low-S, RFC 6979) over a 32-byte digest computed elsewhere
        (a Dogecoin transaction's sighash, which its script library computes)."""
        if self._key is None:
            raise RuntimeError("this key has been closed")
        if len(digest) != 32:
            raise ValueError("a digest to sign is 32 bytes")
        return self._key.sign(digest, hasher=None)

    def secret_bytes(self) -> bytearray:
        """A copy of the secret for the keystore; the caller must zero it."""
        if self._key is None:
            raise RuntimeError("this key has been closed")
        return bytearray(self._secret)

    def ecdh(self, peer_public_key: bytes) -> bytes:
        """Shared secret with a peer's public key (for later mail encryption)."""
        if self._key is None:
            raise RuntimeError("this key has been closed")
        return self._key.ecdh(peer_public_key)

    @property
    def closed(self) -> bool:
        return self._key is None

    def close(self) -> None:
        zero(self._secret)
        self._key = None

    @property
    def doge_address(self) -> str:
        return doge_address(self.public_key)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)


_PUBKEY_HEX = re.compile(r"0[23][0-9a-f]{64}")


def is_public_key_hex(value: Any) -> TypeGuard[str]:
    """True for a compressed public key in lowercase hex that is a point on the curve (an account, a node)."""
    if not isinstance(value, str) or _PUBKEY_HEX.fullmatch(value) is None:
        return False
    try:
        parse_public_key(value)
    except InvalidKey:
        return False
    return True


@lru_cache(maxsize=65536)
def parse_public_key(pubkey_hex: str) -> PublicKey:
    """Parse a compressed public key in hex; cached because peers repeat."""
    if len(pubkey_hex) != PUBKEY_HEX_LEN:
        raise InvalidKey("public key must be 33 bytes (compressed), hex encoded")
    try:
        return PublicKey(bytes.fromhex(pubkey_hex))
    except ValueError as exc:
        raise InvalidKey(f"invalid public key: {exc}") from None


def verify_signature(pubkey_hex: str, signature: bytes, message: bytes) -> bool:
    """True when signature is a valid DER ECDSA signature of message by pubkey."""
    try:
        return parse_public_key(pubkey_hex).verify(signature, message)
    except (ValueError, TypeError):
        return False


def doge_address(public_key: bytes) -> str:
    """Dogecoin mainnet P2PKH address ('D...') of a compressed public key."""
    # imported here: bip-utils (with pycryptodome and PyNaCl) costs ~20 MB per process,
    # and node processes, which never show an address, should not pay it
    from bip_utils import CoinsConf, P2PKHAddrEncoder

    net_ver = CoinsConf.DogecoinMainNet.ParamByKey("p2pkh_net_ver")
    return P2PKHAddrEncoder.EncodeKey(public_key, net_ver=net_ver)


def fingerprint(public_key: bytes) -> str:
    """A short, readable fingerprint of a public key: 8 groups of 4 hex digits."""
    digest = hashlib.sha256(public_key).hexdigest()[:32]
    return ":".join(digest[i : i + 4] for i in range(0, 32, 4))
