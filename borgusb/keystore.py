"""The encrypted keystore on the stick.

Format (JSON, version 1)::

    {
      "format": "borgusb-keystore", "version": 1, "kind": "wallet" | "node",
      "public": {"public_key": hex, "doge_address": "D...", "fingerprint": ...},
      "kdf": {"name": "argon2id", "salt": b64, "iterations": 3, "lanes": 4,
              "memory_kib": 65536},
      "cipher": {"name": "aes-256-gcm", "nonce": b64},
      "ciphertext": b64,
      "checksum": sha256 hex of the canonical JSON of all the fields above
    }

Why these choices:

* Argon2id (RFC 9106's second recommended setting, 64 MiB, t=3, p=4) makes
  guessing a passphrase from a stolen stick expensive; ~0.1 s here.
* AES-256-GCM authenticates the ciphertext; the header (format, version,
  kind, public part, KDF parameters) is the associated data, so weakening
  the KDF parameters or swapping the public part fails decryption.
* The checksum tells a corrupted file (a bit flip, a truncated copy) apart
  from a wrong passphrase: both break the GCM tag, but only corruption
  breaks the checksum. It is not a security feature; the tag is.
* Writes are atomic (temp file in the same directory, fsync, rename, fsync
  of the directory), so a stick pulled mid-write leaves the old keystore or
  the new one, never a broken one.

Plaintext: ``b"\\x01" + len(secret) + secret + utf-8 BIP39 passphrase``
(secret = BIP39 entropy for a wallet, the private key for a node).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from . import canonical
from .identity import Wallet
from .keys import SigningKey, zero

FORMAT = "borgusb-keystore"
VERSION = 1
KINDS = ("wallet", "node")
_PLAINTEXT_VERSION = 1


class KeystoreError(Exception):
    """Base of every keystore failure; the message is meant for a person."""


class KeystoreNotFound(KeystoreError):
    pass


class KeystoreCorrupt(KeystoreError):
    pass


class WrongPassphrase(KeystoreError):
    pass


class UnsupportedKeystoreVersion(KeystoreError):
    pass


class WeakPassphrase(KeystoreError, ValueError):
    pass


# The one rule for a new keystore's passphrase, for the pages and the CLI alike. Unlocking does not
# apply it: a keystore made under an older rule still opens.
MIN_PASSPHRASE_CHARS = 8


def check_new_passphrase(passphrase: str) -> None:
    """Raise WeakPassphrase, saying the rule, unless `passphrase` may protect a new keystore."""
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise WeakPassphrase(f"choose a passphrase of at least {MIN_PASSPHRASE_CHARS} characters")


# What a keystore may ask of the machine that unlocks it. The header is only
# authenticated *after* the KDF has run, so a tampered file could otherwise
# make a stick or a Pi spend up to 4 GiB and minutes on one unlock attempt.
# 4x the default memory (64 MiB), ~5x its passes, 4x its lanes.
MAX_KDF_MEMORY_KIB = 256 * 1024
MAX_KDF_ITERATIONS = 16
MAX_KDF_LANES = 16


@dataclass(frozen=True)
class KdfParams:
    iterations: int = 3
    lanes: int = 4
    memory_kib: int = 65536

    def check(self) -> None:
        """Raise KeystoreCorrupt, naming the limit, unless every parameter is within bounds."""
        for name, value, low, high in (
            ("iterations", self.iterations, 1, MAX_KDF_ITERATIONS),
            ("lanes", self.lanes, 1, MAX_KDF_LANES),
            ("memory", self.memory_kib, 8 * self.lanes if _is_int(self.lanes) else 8, MAX_KDF_MEMORY_KIB),
        ):
            if not _is_int(value):
                raise KeystoreCorrupt(f"the keystore KDF {name} parameter is not an integer")
            if not low <= value <= high:
                unit = " KiB" if name == "memory" else ""
                raise KeystoreCorrupt(
                    f"the keystore asks for KDF {name} {value}{unit}; this BorgUSB accepts "
                    f"at least {low}{unit} and at most {high}{unit} (file damaged or tampered with)"
                )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


DEFAULT_KDF = KdfParams()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise KeystoreCorrupt(f"keystore field {what} is missing or not text")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise KeystoreCorrupt(f"keystore field {what} is not valid base64") from None


def _derive(passphrase: str, salt: bytes, params: KdfParams) -> bytearray:
    params.check()  # never run the KDF beyond the limits, whoever asks
    kdf = Argon2id(
        salt=salt,
        length=32,
        iterations=params.iterations,
        lanes=params.lanes,
        memory_cost=params.memory_kib,
    )
    return bytearray(kdf.derive(passphrase.encode("utf-8")))


def _header(doc: dict[str, Any]) -> bytes:
    """Associated data: everything that describes how to decrypt."""
    return canonical.dumps({k: doc[k] for k in ("format", "version", "kind", "public", "kdf")})


def _checksum(doc: dict[str, Any]) -> str:
    body = {k: v for k, v in doc.items() if k != "checksum"}
    return hashlib.sha256(canonical.dumps(body)).hexdigest()


def encrypt(
    kind: str,
    secret: bytes | bytearray,
    passphrase: str,
    public: dict[str, str],
    bip39_passphrase: str = "",
    kdf: KdfParams = DEFAULT_KDF,
    *,
    salt: bytes | None = None,
    nonce: bytes | None = None,
) -> dict[str, Any]:
    """Build a keystore document (does not write it).

    `salt` and `nonce` are for fixed test vectors only (tests/vectors/generate_wire.py)."""
    if kind not in KINDS:
        raise ValueError(f"unknown keystore kind {kind!r}")
    if not passphrase:
        raise KeystoreError("the keystore passphrase must not be empty")
    salt = os.urandom(16) if salt is None else salt
    nonce = os.urandom(12) if nonce is None else nonce
    doc: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "public": dict(public),
        "kdf": {
            "name": "argon2id",
            "salt": _b64(salt),
            "iterations": kdf.iterations,
            "lanes": kdf.lanes,
            "memory_kib": kdf.memory_kib,
        },
    }
    plaintext = bytearray([_PLAINTEXT_VERSION, len(secret)]) + bytearray(secret)
    plaintext += bip39_passphrase.encode("utf-8")
    key = _derive(passphrase, salt, kdf)
    try:
        ciphertext = AESGCM(bytes(key)).encrypt(nonce, bytes(plaintext), _header(doc))
    finally:
        zero(key)
        zero(plaintext)
    doc["cipher"] = {"name": "aes-256-gcm", "nonce": _b64(nonce)}
    doc["ciphertext"] = _b64(ciphertext)
    doc["checksum"] = _checksum(doc)
    return doc


def parse(data: bytes) -> dict[str, Any]:
    """Parse and structurally check a keystore file's bytes."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise KeystoreCorrupt("the keystore file is not valid JSON (truncated or damaged)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise KeystoreCorrupt("this file is not a BorgUSB keystore")
    version = doc.get("version")
    if version != VERSION:
        raise UnsupportedKeystoreVersion(
            f"keystore version {version!r} is not supported by this BorgUSB "
            f"(it reads version {VERSION}); use a newer BorgUSB"
        )
    for field in ("kind", "public", "kdf", "cipher", "ciphertext", "checksum"):
        if field not in doc:
            raise KeystoreCorrupt(f"the keystore has no {field!r} field (damaged)")
    try:
        expected = _checksum(doc)
    except canonical.CanonicalError:
        raise KeystoreCorrupt("the keystore holds values that are not allowed") from None
    if not isinstance(doc["checksum"], str) or not hmac.compare_digest(
        expected.encode(), doc["checksum"].encode("utf-8", "replace")
    ):
        raise KeystoreCorrupt("the keystore checksum does not match: the file is damaged")
    if doc["kind"] not in KINDS or not isinstance(doc["public"], dict):
        raise KeystoreCorrupt("the keystore kind or public part is invalid")
    kdf, cipher = doc["kdf"], doc["cipher"]
    if not isinstance(kdf, dict) or kdf.get("name") != "argon2id":
        raise UnsupportedKeystoreVersion("the keystore uses an unknown key derivation")
    if not isinstance(cipher, dict) or cipher.get("name") != "aes-256-gcm":
        raise UnsupportedKeystoreVersion("the keystore uses an unknown cipher")
    return doc


@dataclass
class Unlocked:
    """The secret inside a keystore; `close()` zeroes it."""

    kind: str
    secret: bytearray
    bip39_passphrase: str

    def close(self) -> None:
        zero(self.secret)


def decrypt(doc: dict[str, Any], passphrase: str) -> Unlocked:
    kdf = doc["kdf"]
    try:
        params = KdfParams(kdf["iterations"], kdf["lanes"], kdf["memory_kib"])
    except KeyError:
        raise KeystoreCorrupt("the keystore KDF parameters are missing") from None
    params.check()  # before anything is derived: refused with the limit named
    salt = _unb64(kdf.get("salt"), "kdf.salt")
    nonce = _unb64(doc["cipher"].get("nonce"), "cipher.nonce")
    ciphertext = _unb64(doc["ciphertext"], "ciphertext")
    if len(nonce) != 12 or len(salt) < 16:
        raise KeystoreCorrupt("the keystore nonce or salt has the wrong length")
    key = _derive(passphrase, salt, params)
    try:
        plaintext = bytearray(AESGCM(bytes(key)).decrypt(nonce, ciphertext, _header(doc)))
    except InvalidTag:
        raise WrongPassphrase("wrong passphrase for this keystore") from None
    finally:
        zero(key)
    try:
        if plaintext[0] != _PLAINTEXT_VERSION or len(plaintext) < 2 + plaintext[1]:
            raise KeystoreCorrupt("the keystore content has an unknown layout")
        n = plaintext[1]
        secret = bytearray(plaintext[2 : 2 + n])
        bip39_passphrase = bytes(plaintext[2 + n :]).decode("utf-8")
        return Unlocked(doc["kind"], secret, bip39_passphrase)
    finally:
        zero(plaintext)


def atomic_write(path: Path, data: bytes) -> None:
    """Write data so that path holds either the old content or the new, never a mix."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read(path: Path) -> dict[str, Any]:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise KeystoreNotFound(f"no keystore at {path}") from None
    except IsADirectoryError:
        raise KeystoreNotFound(f"{path} is a directory, not a keystore") from None
    return parse(data)


def save_wallet(path: Path, wallet: Wallet, passphrase: str, kdf: KdfParams = DEFAULT_KDF) -> None:
    entropy = wallet.entropy
    try:
        doc = encrypt("wallet", entropy, passphrase, wallet.public.to_dict(), wallet.bip39_passphrase, kdf)
    finally:
        zero(entropy)
    atomic_write(Path(path), (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())


def read_wallet(path: Path) -> dict[str, Any]:
    """The wallet keystore's document, checked before any passphrase is asked for.

    A missing, damaged or foreign file is told as such at once (KeystoreNotFound, KeystoreCorrupt,
    UnsupportedKeystoreVersion), not after a passphrase has been typed for nothing."""
    doc = read(path)
    if doc["kind"] != "wallet":
        raise KeystoreCorrupt(f"{path} holds a {doc['kind']} key, not a wallet")
    return doc


def load_wallet(path: Path, passphrase: str) -> Wallet:
    """Unlock a wallet keystore; raises a KeystoreError subclass that says why not."""
    doc = read_wallet(path)
    unlocked = decrypt(doc, passphrase)
    try:
        wallet = Wallet(unlocked.secret, unlocked.bip39_passphrase)
    except ValueError:
        raise KeystoreCorrupt("the keystore secret is not valid BIP39 entropy") from None
    finally:
        unlocked.close()
    if wallet.key.public_key_hex != doc["public"].get("public_key"):
        wallet.close()
        raise KeystoreCorrupt("the keystore's public part does not match its secret")
    return wallet


def save_node_key(path: Path, key: SigningKey, passphrase: str, kdf: KdfParams = DEFAULT_KDF) -> None:
    secret = key.secret_bytes()
    try:
        public = {"public_key": key.public_key_hex, "fingerprint": key.fingerprint}
        doc = encrypt("node", secret, passphrase, public, "", kdf)
    finally:
        zero(secret)
    atomic_write(Path(path), (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())


def load_node_key(path: Path, passphrase: str) -> SigningKey:
    doc = read(path)
    if doc["kind"] != "node":
        raise KeystoreError(f"{path} holds a {doc['kind']} key, not a node key")
    unlocked = decrypt(doc, passphrase)
    try:
        return SigningKey(unlocked.secret)
    finally:
        unlocked.close()


def peek_public(path: Path) -> dict[str, str]:
    """The public part, without the passphrase (unverified until unlocked)."""
    return dict(read(path)["public"])
