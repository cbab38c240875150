"""A person's identity: 24 BIP39 words → secp256k1 key → Dogecoin address.

Key scheme
----------
* **Person (wallet) key.** 256 bits from the OS CSPRNG become a 24-word
  English BIP39 mnemonic. The BIP39 seed (PBKDF2 of the words and an optional
  BIP39 passphrase) is derived with bip-utils along BIP44
  ``m/44'/3'/0'/0/0`` (coin type 3 = Dogecoin). That one key signs everything
  the person does, and its P2PKH address (``D...``) is both their Dogecoin
  address and their BorgUSB address. Its WIF export imports into any
  Dogecoin wallet.
* **Node key.** Each machine (a booted stick, a Pi, a hosted node process)
  has its own random secp256k1 key, never derived from a person's words, so
  a node can run without a person present and a stolen node key reveals
  nothing about anyone's wallet. Node keys sign node-to-node traffic and
  pin the node's TLS certificate; they are kept in RAM, or on a Pi's data
  partition in a keystore of kind ``node`` (see keystore.py).

Words are never logged: errors name the position of a bad word, not the
word. The wallet holds its entropy, BIP39 passphrase and private key in
bytearrays that `Wallet.close()` zeroes (best effort: bip-utils and
mnemonic work on immutable strings internally; see keys.py).
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from functools import lru_cache

from bip_utils import Bip39SeedGenerator, Bip44, Bip44Changes, Bip44Coins
from mnemonic import Mnemonic

from .keys import SigningKey, zero

DERIVATION_PATH = "m/44'/3'/0'/0/0"
WORD_COUNTS = (12, 15, 18, 21, 24)
NEW_WALLET_WORDS = 24


class MnemonicError(ValueError):
    """The words are not a valid BIP39 English mnemonic."""


class UnknownWord(MnemonicError):
    def __init__(self, position: int, suggestions: list[str]) -> None:
        self.position = position
        self.suggestions = suggestions
        hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"word {position} is not in the BIP39 English word list{hint}")


class BadChecksum(MnemonicError):
    def __init__(self) -> None:
        super().__init__(
            "the words are all valid but their checksum does not match: a word is wrong or two are swapped"
        )


class WrongWordCount(MnemonicError):
    def __init__(self, count: int) -> None:
        super().__init__(f"expected 24 words (or 12, 15, 18, 21 for an older wallet), got {count}")


@lru_cache(maxsize=1)
def _bip39() -> Mnemonic:
    return Mnemonic("english")


def word_spans(text: str) -> list[tuple[int, int]]:
    """Where each typed word sits in `text` (start, end): what a page marks when one is wrong."""
    spans = []
    for m in re.finditer(r"[^\s,]+", text):
        if m.group().rstrip(".)").isdigit():
            continue  # "1." or "1)" numbering copied from the word sheet
        spans.append(m.span())
    return spans


def normalize_words(text: str) -> list[str]:
    """Split typed words; tolerant of case, extra spaces, newlines and numbering."""
    return [text[a:b].lower() for a, b in word_spans(text)]


def suggest(word: str, limit: int = 3) -> list[str]:
    """Closest valid words: same 4-letter prefix first (BIP39 words are unique by it)."""
    wordlist = _bip39().wordlist
    prefix = [w for w in wordlist if len(word) >= 3 and w.startswith(word[:4])]
    close = difflib.get_close_matches(word, wordlist, n=limit, cutoff=0.6)
    seen: list[str] = []
    for w in prefix + close:
        if w not in seen:
            seen.append(w)
    return seen[:limit]


def validate_mnemonic(text: str) -> str:
    """Return the normalized mnemonic or raise a MnemonicError that says what is wrong."""
    words = normalize_words(text)
    wordset = set(_bip39().wordlist)
    for i, word in enumerate(words, start=1):
        if word not in wordset:
            raise UnknownWord(i, suggest(word))
    if len(words) not in WORD_COUNTS:
        raise WrongWordCount(len(words))
    phrase = " ".join(words)
    if not _bip39().check(phrase):
        raise BadChecksum()
    return phrase


def entropy_to_mnemonic(entropy: bytes | bytearray) -> str:
    return _bip39().to_mnemonic(bytes(entropy))


def mnemonic_to_entropy(phrase: str) -> bytearray:
    return bytearray(_bip39().to_entropy(validate_mnemonic(phrase)))


@dataclass(frozen=True)
class PublicIdentity:
    """What may be shown to anyone."""

    public_key_hex: str
    doge_address: str
    fingerprint: str

    def to_dict(self) -> dict[str, str]:
        return {
            "public_key": self.public_key_hex,
            "doge_address": self.doge_address,
            "fingerprint": self.fingerprint,
            "derivation_path": DERIVATION_PATH,
        }


class Wallet:
    """An unlocked wallet: entropy, optional BIP39 passphrase, identity key."""

    def __init__(self, entropy: bytes | bytearray, bip39_passphrase: str = "") -> None:
        if len(entropy) not in (16, 20, 24, 28, 32):
            raise MnemonicError("BIP39 entropy must be 128 to 256 bits")
        self._entropy = bytearray(entropy)
        self._passphrase = bytearray(bip39_passphrase.encode("utf-8"))
        self.key = _derive_identity_key(self._entropy, bip39_passphrase)

    @classmethod
    def create(cls, bip39_passphrase: str = "") -> Wallet:
        """A new wallet with 256 bits of OS randomness (24 words)."""
        entropy = bytearray(os.urandom(32))
        try:
            return cls(entropy, bip39_passphrase)
        finally:
            zero(entropy)

    @classmethod
    def from_mnemonic(cls, phrase: str, bip39_passphrase: str = "") -> Wallet:
        entropy = mnemonic_to_entropy(phrase)
        try:
            return cls(entropy, bip39_passphrase)
        finally:
            zero(entropy)

    def _check_open(self) -> None:
        if self.key.closed:
            raise RuntimeError("this wallet has been closed")

    @property
    def public(self) -> PublicIdentity:
        return PublicIdentity(self.key.public_key_hex, self.key.doge_address, self.key.fingerprint)

    @property
    def entropy(self) -> bytearray:
        """A copy of the entropy (for the keystore); the caller must zero it."""
        self._check_open()
        return bytearray(self._entropy)

    @property
    def bip39_passphrase(self) -> str:
        self._check_open()
        return self._passphrase.decode("utf-8")

    def mnemonic(self) -> str:
        """The words. Show them to the person only; never log them."""
        self._check_open()
        return entropy_to_mnemonic(self._entropy)

    def wif(self) -> str:
        """The identity key in Dogecoin WIF (compressed), for import elsewhere."""
        self._check_open()
        seed = Bip39SeedGenerator(self.mnemonic()).Generate(self.bip39_passphrase)
        return _bip44_node(seed).PrivateKey().ToWif()

    def close(self) -> None:
        """Zero the entropy, passphrase and private key."""
        zero(self._entropy)
        zero(self._passphrase)
        self.key.close()

    def __enter__(self) -> Wallet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:  # never show secrets, even in a traceback
        state = "closed" if self.key.closed else self.key.doge_address
        return f"<Wallet {state}>"


def _bip44_node(seed: bytes):
    return (
        Bip44.FromSeed(seed, Bip44Coins.DOGECOIN)
        .Purpose()
        .Coin()
        .Account(0)
        .Change(Bip44Changes.CHAIN_EXT)
        .AddressIndex(0)
    )


def _derive_identity_key(entropy: bytearray, bip39_passphrase: str) -> SigningKey:
    phrase = entropy_to_mnemonic(entropy)
    seed = bytearray(Bip39SeedGenerator(phrase).Generate(bip39_passphrase))
    try:
        secret = bytearray(_bip44_node(bytes(seed)).PrivateKey().Raw().ToBytes())
        try:
            return SigningKey(secret)
        finally:
            zero(secret)
    finally:
        zero(seed)


def derive_public(phrase: str, bip39_passphrase: str = "") -> PublicIdentity:
    """Public key and address for a mnemonic, keeping nothing (for `wallet derive`)."""
    with Wallet.from_mnemonic(phrase, bip39_passphrase) as wallet:
        return wallet.public
