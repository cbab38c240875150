"""Identity: BIP39/BIP32 vectors and Dogecoin addresses checked by an independent derivation."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from bip_utils import Bip32Slip10Secp256k1, Bip39SeedGenerator
from coincurve import PrivateKey

from borgusb.identity import (
    BadChecksum,
    UnknownWord,
    Wallet,
    WrongWordCount,
    derive_public,
    entropy_to_mnemonic,
    mnemonic_to_entropy,
    normalize_words,
    validate_mnemonic,
)
from tests.conftest import load_vectors

BIP39 = load_vectors("bip39_english.json")
BIP32 = load_vectors("bip32.json")


@pytest.mark.parametrize("entropy,mnemonic,seed", BIP39["english"])
def test_bip39_vectors(entropy: str, mnemonic: str, seed: str) -> None:
    assert entropy_to_mnemonic(bytes.fromhex(entropy)) == mnemonic
    assert bytes(mnemonic_to_entropy(mnemonic)).hex() == entropy
    assert Bip39SeedGenerator(mnemonic).Generate(BIP39["passphrase"]).hex() == seed


@pytest.mark.parametrize(
    "seed,path,xpub,xprv",
    [(v["seed"], *chain) for v in BIP32["vectors"] for chain in v["chains"]],
)
def test_bip32_vectors(seed: str, path: str, xpub: str, xprv: str) -> None:
    node = Bip32Slip10Secp256k1.FromSeed(bytes.fromhex(seed))
    if path != "m":
        node = node.DerivePath(path)
    assert node.PrivateKey().ToExtended() == xprv
    assert node.PublicKey().ToExtended() == xpub


# --- An independent derivation, written here from the specs (BIP39, BIP32, base58check) ---

_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _ripemd160(data: bytes) -> bytes:
    try:
        return hashlib.new("ripemd160", data).digest()
    except ValueError:  # OpenSSL 3 without the legacy provider
        from Crypto.Hash import RIPEMD160

        return RIPEMD160.new(data).digest()


def _base58check(payload: bytes) -> str:
    data = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def _independent_doge(mnemonic: str, passphrase: str = "") -> tuple[str, str]:
    seed = hashlib.pbkdf2_hmac("sha512", mnemonic.encode(), b"mnemonic" + passphrase.encode(), 2048)
    i = hmac.new(b"Bitcoin seed", seed, hashlib.sha512).digest()
    k, c = int.from_bytes(i[:32], "big"), i[32:]
    for index in (44 | 1 << 31, 3 | 1 << 31, 0 | 1 << 31, 0, 0):
        if index >= 1 << 31:
            data = b"\0" + k.to_bytes(32, "big")
        else:
            data = PrivateKey(k.to_bytes(32, "big")).public_key.format(compressed=True)
        i = hmac.new(c, data + index.to_bytes(4, "big"), hashlib.sha512).digest()
        k, c = (int.from_bytes(i[:32], "big") + k) % _N, i[32:]
    pub = PrivateKey(k.to_bytes(32, "big")).public_key.format(compressed=True)
    h160 = _ripemd160(hashlib.sha256(pub).digest())
    return pub.hex(), _base58check(b"\x1e" + h160)


@pytest.mark.parametrize("row", range(0, 24, 3))
@pytest.mark.parametrize("passphrase", ["", "TREZOR"])
def test_doge_address_matches_independent_derivation(row: int, passphrase: str) -> None:
    mnemonic = BIP39["english"][row][1]
    public = derive_public(mnemonic, passphrase)
    pub, address = _independent_doge(mnemonic, passphrase)
    assert public.public_key_hex == pub
    assert public.doge_address == address
    assert address.startswith("D")


def test_new_wallet_is_24_words_and_round_trips() -> None:
    with Wallet.create() as wallet:
        words = wallet.mnemonic().split()
        assert len(words) == 24
        again = derive_public(" ".join(words))
        assert again == wallet.public
        pub, address = _independent_doge(" ".join(words))
        assert (pub, address) == (wallet.public.public_key_hex, wallet.public.doge_address)


def test_two_new_wallets_differ() -> None:
    with Wallet.create() as a, Wallet.create() as b:
        assert a.mnemonic() != b.mnemonic()


def test_wif_is_the_identity_key() -> None:
    from bip_utils import WifDecoder

    mnemonic = BIP39["english"][8][1]
    with Wallet.from_mnemonic(mnemonic) as wallet:
        secret = WifDecoder.Decode(wallet.wif(), net_ver=b"\x9e")[0]
        assert PrivateKey(secret).public_key.format().hex() == wallet.public.public_key_hex


def test_unknown_word_names_position_and_suggests() -> None:
    words = BIP39["english"][8][1].split()
    words[6] = "abandn"
    with pytest.raises(UnknownWord) as info:
        validate_mnemonic(" ".join(words))
    assert info.value.position == 7
    assert "abandon" in info.value.suggestions
    assert "word 7" in str(info.value)
    assert "abandn" not in str(info.value)  # typed words are never echoed


def test_bad_checksum() -> None:
    words = BIP39["english"][8][1].split()
    words[-1] = "zoo"
    with pytest.raises(BadChecksum):
        validate_mnemonic(" ".join(words))


def test_wrong_word_count() -> None:
    with pytest.raises(WrongWordCount):
        validate_mnemonic("abandon " * 23)


def test_normalize_tolerates_numbering_case_and_spacing() -> None:
    assert normalize_words(" 1. Abandon\n2) ABOUT,  zoo ") == ["abandon", "about", "zoo"]


def test_close_zeroes_secrets() -> None:
    wallet = Wallet.from_mnemonic(BIP39["english"][8][1], "pass")
    entropy_buf, pass_buf, key_buf = wallet._entropy, wallet._passphrase, wallet.key._secret
    wallet.close()
    assert not any(entropy_buf) and not any(pass_buf) and not any(key_buf)
    with pytest.raises(RuntimeError):
        wallet.mnemonic()
    assert "closed" in repr(wallet)
