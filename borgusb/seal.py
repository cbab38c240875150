"""Sealed boxes to an identity key: only the holder of the recipient's key can open one.

Used by mail (the message body and subject, attachments) and by the file manager:
the cells that store and forward a sealed box see ciphertext only, and the box
is opened where the person's wallet is unlocked (CLI, conduit).

Construction (version 1), primitives only from `coincurve` and `cryptography`:

- a fresh ephemeral secp256k1 key per box (never reused, so one box's key
  leaks nothing about another's);
- ECDH between the ephemeral key and the recipient's key, as libsecp256k1 does it
  by default: ikm = SHA-256(compressed shared point);
- HKDF-SHA256 (no salt), info = INFO_LABEL || len(context) (1 byte) || context ||
  ephemeral public key (33) || recipient public key (33): the key is bound to what
  the box is for (a mail body cannot be replayed as a file) and to both keys;
- AES-256-GCM with a random 96-bit nonce; the header (version, ephemeral key,
  nonce) is the associated data.

Wire format: version (1 byte, 0x01) || ephemeral public key (33) || nonce (12) ||
ciphertext || tag (16). Every failure to open raises `SealError` with a reason
word; a wrong key, a wrong context and a tampered box are one reason
("undecryptable"), since AES-GCM cannot tell them apart and should not.
"""

from __future__ import annotations

import os

from coincurve import PublicKey
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from borgusb.keys import InvalidKey, SigningKey

VERSION = 1
INFO_LABEL = b"borgusb-seal-v1"
PUBKEY_LEN = 33
NONCE_LEN = 12
TAG_LEN = 16
HEADER_LEN = 1 + PUBKEY_LEN + NONCE_LEN
OVERHEAD = HEADER_LEN + TAG_LEN
MAX_CONTEXT = 255
MAX_PLAINTEXT = 64 * 1024 * 1024  # a shard-sized attachment piece fits; a box is held in memory


class SealError(ValueError):
    """A box could not be made or opened; `reason` is one word for counters and logs."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


def _derive(shared: bytes, context: bytes, eph_pub: bytes, recipient_pub: bytes) -> bytes:
    info = INFO_LABEL + bytes([len(context)]) + context + eph_pub + recipient_pub
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)


def _check_context(context: bytes) -> None:
    if len(context) > MAX_CONTEXT:
        raise SealError("bad_context", f"a context is at most {MAX_CONTEXT} bytes")


def _seal_with(
    recipient_pubkey33: bytes,
    plaintext: bytes,
    context: bytes,
    ephemeral_secret: bytes,
    nonce: bytes,
    max_plaintext: int = MAX_PLAINTEXT,
) -> bytes:
    """`seal` with the ephemeral key and nonce given: only tests and vectors call this."""
    _check_context(context)
    if len(plaintext) > max_plaintext:
        raise SealError("too_large", f"plaintext over {max_plaintext} bytes")
    if len(nonce) != NONCE_LEN:
        raise SealError("bad_nonce", f"a nonce is {NONCE_LEN} bytes")
    if len(recipient_pubkey33) != PUBKEY_LEN:
        raise SealError("bad_recipient", "the recipient key must be compressed (33 bytes)")
    try:
        PublicKey(bytes(recipient_pubkey33))
    except ValueError:
        raise SealError("bad_recipient", "not a secp256k1 public key") from None
    eph = SigningKey(ephemeral_secret)
    try:
        shared = eph.ecdh(bytes(recipient_pubkey33))
        header = bytes([VERSION]) + eph.public_key + nonce
        key = _derive(shared, context, eph.public_key, bytes(recipient_pubkey33))
    finally:
        eph.close()
    return header + AESGCM(key).encrypt(nonce, plaintext, header)


def seal(recipient_pubkey33: bytes, plaintext: bytes, context: bytes, max_plaintext: int = MAX_PLAINTEXT) -> bytes:
    """A box only `recipient_pubkey33`'s private key opens, for the purpose `context`."""
    while True:
        secret = bytearray(os.urandom(32))
        try:
            return _seal_with(
                recipient_pubkey33, plaintext, context, bytes(secret), os.urandom(NONCE_LEN), max_plaintext
            )
        except InvalidKey:  # pragma: no cover - probability ~2**-128
            continue
        finally:
            for i in range(len(secret)):
                secret[i] = 0


def unseal(key: SigningKey, sealed: bytes, context: bytes, max_plaintext: int = MAX_PLAINTEXT) -> bytes:
    """The plaintext of a box sealed to `key` for `context`, or SealError."""
    _check_context(context)
    if len(sealed) > max_plaintext + OVERHEAD:
        raise SealError("too_large", f"a box is at most {max_plaintext + OVERHEAD} bytes")
    if len(sealed) < OVERHEAD:
        raise SealError("malformed", "shorter than the header and tag")
    if sealed[0] != VERSION:
        raise SealError("bad_version", f"box version {sealed[0]}, this node reads {VERSION}")
    header = bytes(sealed[:HEADER_LEN])
    eph_pub = header[1 : 1 + PUBKEY_LEN]
    nonce = header[1 + PUBKEY_LEN :]
    if eph_pub[0] not in (2, 3):
        raise SealError("malformed", "the ephemeral key is not a compressed point")
    try:
        shared = key.ecdh(eph_pub)
    except ValueError:
        raise SealError("malformed", "the ephemeral key is not a secp256k1 point") from None
    aead_key = _derive(shared, context, eph_pub, key.public_key)
    try:
        return AESGCM(aead_key).decrypt(nonce, bytes(sealed[HEADER_LEN:]), header)
    except InvalidTag:
        raise SealError("undecryptable", "wrong key, wrong context or tampered") from None
