"""borgusb.seal: pinned vectors, an independent re-derivation, and every refusal."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from coincurve import PrivateKey, PublicKey
from Crypto.Cipher import AES

from borgusb import seal
from borgusb.keys import SigningKey
from tests.conftest import load_vectors

VALID = load_vectors("seal/seal.json", version=seal.VERSION)["cases"]
INVALID = load_vectors("seal/seal_invalid.json", version=seal.VERSION)["cases"]


def _hkdf(ikm: bytes, info: bytes) -> bytes:
    """RFC 5869 HKDF-SHA256 written out from hmac: the independent check."""
    prk = hmac.new(b"\x00" * 32, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def _independent_open(recipient_secret: bytes, box: bytes, context: bytes) -> bytes:
    eph_pub, nonce, body = box[1:34], box[34:46], box[46:]
    point = PublicKey(eph_pub).multiply(recipient_secret).format(compressed=True)
    recipient_pub = PrivateKey(recipient_secret).public_key.format(compressed=True)
    info = b"borgusb-seal-v1" + bytes([len(context)]) + context + eph_pub + recipient_pub
    key = _hkdf(hashlib.sha256(point).digest(), info)
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce)
    cipher.update(box[:46])
    return cipher.decrypt_and_verify(body[:-16], body[-16:])


@pytest.mark.parametrize("case", VALID, ids=lambda c: c["name"])
def test_vectors_reproduce_and_open(case: dict[str, Any]) -> None:
    h = bytes.fromhex
    box = seal._seal_with(
        h(case["recipient_pubkey"]),
        h(case["plaintext"]),
        h(case["context"]),
        h(case["ephemeral_secret"]),
        h(case["nonce"]),
    )
    assert box.hex() == case["sealed"]
    key = SigningKey(h(case["recipient_secret"]))
    assert seal.unseal(key, box, h(case["context"])) == h(case["plaintext"])
    assert _independent_open(h(case["recipient_secret"]), box, h(case["context"])) == h(case["plaintext"])


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c["name"])
def test_invalid_vectors_refused_with_reason(case: dict[str, Any]) -> None:
    key = SigningKey(bytes.fromhex(case["recipient_secret"]))
    with pytest.raises(seal.SealError) as err:
        seal.unseal(key, bytes.fromhex(case["sealed"]), bytes.fromhex(case["context"]))
    assert err.value.reason == case["reason"]


def test_fresh_ephemeral_and_nonce_per_box() -> None:
    k = SigningKey.generate()
    a, b = seal.seal(k.public_key, b"same", b"ctx"), seal.seal(k.public_key, b"same", b"ctx")
    assert a[1:46] != b[1:46] and a != b
    assert seal.unseal(k, a, b"ctx") == seal.unseal(k, b, b"ctx") == b"same"
    assert _independent_open(bytes(k.secret_bytes()), a, b"ctx") == b"same"


def test_size_and_argument_limits() -> None:
    k = SigningKey.generate()
    with pytest.raises(seal.SealError) as err:
        seal.seal(k.public_key, b"x" * 101, b"c", max_plaintext=100)
    assert err.value.reason == "too_large"
    box = seal.seal(k.public_key, b"x" * 100, b"c", max_plaintext=100)
    assert seal.unseal(k, box, b"c", max_plaintext=100) == b"x" * 100
    with pytest.raises(seal.SealError) as err:
        seal.unseal(k, box + b"\x00", b"c", max_plaintext=100)
    assert err.value.reason == "too_large"
    with pytest.raises(seal.SealError) as err:
        seal.seal(k.public_key, b"", b"c" * 256)
    assert err.value.reason == "bad_context"
    for bad in (b"\x02" + b"\xff" * 32, k.public_key[:32], PrivateKey().public_key.format(compressed=False)):
        with pytest.raises(seal.SealError) as err:
            seal.seal(bad, b"", b"c")
        assert err.value.reason == "bad_recipient"
