"""borgusb.mail.directory without I/O: a person's signed entry binding their address to their key.

Forged (another key's signature, another key claiming the address), wrong or malformed addresses,
rollback to an older entry, stale and future-dated publishes, oversize documents, the name's rules,
and the reader's choice of the newest valid entry among lying holders' answers."""

from __future__ import annotations

import hashlib
import json

import pytest
from bitcoin.base58 import CBase58Data
from bitcoin.core import Hash160

from borgusb import canonical
from borgusb.keys import SigningKey
from borgusb.mail import errors
from borgusb.mail.directory import (
    DOMAIN,
    MAX_AGE_MS,
    MAX_ENTRY_BYTES,
    MAX_FUTURE_MS,
    MAX_NAME,
    P2PKH_MAIN,
    VERSION,
    RateWindow,
    accept,
    address_of,
    behind,
    check_address,
    check_entry,
    newest,
    sign_entry,
)
from borgusb.signed import signing_bytes
from tests.conftest import load_vectors

T = 1_764_000_000_000


def key(label: str) -> SigningKey:
    return SigningKey(hashlib.sha256(label.encode()).digest())


A, B, C = key("dir a"), key("dir b"), key("dir c")


def resign(doc: dict, signer: SigningKey) -> dict:
    body = {k: v for k, v in doc.items() if k != "sig"}
    return dict(body, sig=signer.sign(signing_bytes(body, DOMAIN)).hex())


def test_address_is_the_keys_own_as_the_wallet_shows_it() -> None:
    for i in range(20):
        k = key(f"addr {i}")
        assert address_of(k.public_key_hex) == k.doge_address  # bip-utils, the wallet's own derivation
    assert check_address(A.doge_address) == A.doge_address


def test_an_entry_binds_address_name_and_key() -> None:
    e = sign_entry(B, T, "Bob")
    assert (e.key, e.addr, e.name, e.ts) == (B.public_key_hex, B.doge_address, "Bob", T)
    again = check_entry(e.to_dict())
    assert again == e and len(e.id) == 64
    assert sign_entry(B, T).name == ""


@pytest.mark.parametrize(
    "field, value, reason",
    [
        ("name", "Mallory", "bad_signature"),
        ("ts", T + 1, "bad_signature"),
        ("key", "C", "wrong_address"),  # C's key under B's address and B's signature
        ("addr", "A", "wrong_address"),  # A's address with B's key
        ("sig", "30" * 36, "bad_signature"),
    ],
)
def test_a_changed_entry_is_refused(field: str, value: object, reason: str) -> None:
    doc = sign_entry(B, T, "Bob").to_dict()
    doc[field] = {"C": C.public_key_hex, "A": A.doge_address}.get(str(value), value)
    with pytest.raises(errors.MailError) as err:
        check_entry(doc)
    assert err.value.reason == reason


def test_another_key_cannot_claim_an_address_even_signing_itself() -> None:
    doc = dict(sign_entry(C, T, "Bob").to_dict(), addr=B.doge_address)  # C claims B's address
    with pytest.raises(errors.WrongAddress):
        check_entry(resign(doc, C))
    # B's own entry re-signed by C: the key is B's, the signature is not
    with pytest.raises(errors.BadSignature):
        check_entry(resign(sign_entry(B, T).to_dict(), C))


@pytest.mark.parametrize(
    "addr",
    [
        "",
        "not an address",
        "D" + "1" * 40,
        "1BoatSLRHtKNngkdXEeobR76b53LETtpyT",  # Bitcoin's version byte
        "A" + "x" * 33,
        42,
        None,
    ],
)
def test_bad_addresses_refused(addr: object) -> None:
    with pytest.raises(errors.BadAddress):
        check_address(addr)
    doc = sign_entry(B, T).to_dict()
    with pytest.raises(errors.MailError):
        check_entry(resign(dict(doc, addr=addr), B))


def test_checksum_and_version_byte_are_checked() -> None:
    good = B.doge_address
    flipped = good[:-1] + ("2" if good[-1] != "2" else "3")
    with pytest.raises(errors.BadAddress):
        check_address(flipped)
    p2sh = str(CBase58Data.from_bytes(Hash160(B.public_key), 22))  # Dogecoin's P2SH version: "9…"/"A…"
    with pytest.raises(errors.BadAddress):
        check_address("D" + p2sh[1:])
    with pytest.raises(errors.BadAddress):
        check_address(str(CBase58Data.from_bytes(Hash160(B.public_key)[:19], P2PKH_MAIN)))  # a short hash


@pytest.mark.parametrize(
    "name",
    [
        "x" * (MAX_NAME + 1),
        " Bob",
        "Bob ",
        "Bob\nAlice",
        "Bob\u202eecilA",  # a bidirectional override
        "Bob\u200b",  # a zero-width space (format)
        "e\u0301",  # not NFC
        "a\x00b",
        7,
        None,
    ],
)
def test_name_rules(name: object) -> None:
    doc = sign_entry(B, T).to_dict()
    with pytest.raises(errors.Malformed):
        check_entry(resign(dict(doc, name=name), B))


@pytest.mark.parametrize("name", ["", "Bob", "Zoë Ångström", "李小龍", "x" * MAX_NAME, "<b>bold</b> & 'q'"])
def test_names_that_are_fine(name: str) -> None:
    assert check_entry(sign_entry(B, T, name).to_dict()).name == name


@pytest.mark.parametrize(
    "change",
    [
        {"v": 2},
        {"v": True},
        {"ts": -1},
        {"ts": 2**53},
        {"ts": "1"},
        {"ts": True},
        {"key": "02" + "ff" * 32},
        {"key": B.public_key_hex.upper()},
        {"sig": "zz"},
        {"extra": 1},
    ],
)
def test_malformed_entries_refused(change: dict) -> None:
    doc = dict(sign_entry(B, T).to_dict(), **change)
    with pytest.raises(errors.Malformed):
        check_entry(doc)
    junks: list[object] = [None, [], "entry", {}, {"v": 1}]
    for junk in junks:
        with pytest.raises(errors.Malformed):
            check_entry(junk)


@pytest.mark.parametrize("field, value", [("sig", "30" * 600), ("addr", "D" + "z" * 5000), ("name", "x" * 5000)])
def test_oversize_entry_refused(field: str, value: str) -> None:
    doc = dict(sign_entry(B, T).to_dict(), **{field: value})
    with pytest.raises(errors.MailError):
        check_entry(doc if field == "sig" else resign(doc, B))


def test_the_largest_entry_is_within_its_bound() -> None:
    biggest = dict(sign_entry(B, T, "\U0001f600" * MAX_NAME).to_dict(), sig="ff" * 73, ts=2**53 - 1)
    assert len(canonical.encode_unchecked(biggest)) < MAX_ENTRY_BYTES


def test_newer_replaces_older_and_rollback_is_refused() -> None:
    old, new = sign_entry(B, T, "old"), sign_entry(B, T + 5_000, "new")
    now = T + 6_000
    assert accept(now, None, old) == "stored"
    assert accept(now, old, new) == "stored"
    assert accept(now, new, new) == "duplicate"
    with pytest.raises(errors.Rollback):
        accept(now, new, old)
    with pytest.raises(errors.Rollback):
        accept(now, new, old, handoff=True)  # a hand-off cannot roll back either
    # one time, two entries: every holder keeps the one with the larger id
    x, y = sign_entry(B, T, "x"), sign_entry(B, T, "y")
    lo, hi = sorted((x, y), key=lambda e: e.id)
    assert accept(now, lo, hi) == "stored"
    with pytest.raises(errors.Rollback):
        accept(now, hi, lo)
    with pytest.raises(errors.WrongAddress):
        accept(now, sign_entry(A, T), new)


def test_stale_and_future_dated_publishes() -> None:
    e = sign_entry(B, T)
    with pytest.raises(errors.Stale):
        accept(T + MAX_AGE_MS + 1, None, e)
    assert accept(T + MAX_AGE_MS + 1, None, e, handoff=True) == "stored"  # a copy another holder kept
    with pytest.raises(errors.FutureDated):
        accept(T - MAX_FUTURE_MS - 1, None, e)
    with pytest.raises(errors.FutureDated):
        accept(T - MAX_FUTURE_MS - 1, None, e, handoff=True)


def test_the_reader_takes_the_newest_valid_answer() -> None:
    old, new = sign_entry(B, T, "old"), sign_entry(B, T + 1, "new")
    forged = resign(dict(new.to_dict(), name="Mallory", ts=T + 99), C)
    claimed = resign(dict(sign_entry(C, T + 50, "Bob").to_dict(), addr=B.doge_address), C)
    answers = [
        {"holder": "h1", "entry": old.to_dict()},  # a lying holder: an old entry
        {"holder": "h2", "entry": None},  # hides it
        {"holder": "h3", "entry": forged},  # forges a newer one
        {"holder": "h4", "entry": claimed},  # another key claiming the address
        {"holder": "h5", "entry": sign_entry(A, T + 70).to_dict()},  # another address
        {"holder": "h6", "entry": new.to_dict()},
        "junk",
        {"holder": "h7", "entry": "junk"},
    ]
    got, dropped = newest(B.doge_address, answers)
    assert got == new and dropped == 5
    assert behind(new, answers) == ["h1", "h2", "h3", "h4", "h5", "h7"]
    assert newest(B.doge_address, answers[:2]) == (old, 0)  # hidden: only what is there
    assert newest(B.doge_address, []) == (None, 0)


def test_rate_window_is_bounded() -> None:
    w = RateWindow(2, 1000, max_keys=3)
    assert w.allow("a", 0) and w.allow("a", 1) and not w.allow("a", 2)
    assert w.allow("a", 1000)  # the first one left the window
    for k in "bcde":
        w.allow(k, 5)
    assert len(w) == 3


def test_vectors_valid_checked_independently() -> None:
    from bip_utils import CoinsConf, P2PKHAddrEncoder
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    for case in load_vectors("mail/directory.json", version=VERSION)["cases"]:
        doc = case["entry"]
        assert check_entry(doc).to_dict() == doc, case["name"]
        pub = bytes.fromhex(doc["key"])
        net_ver = CoinsConf.DogecoinMainNet.ParamByKey("p2pkh_net_ver")
        assert doc["addr"] == P2PKHAddrEncoder.EncodeKey(pub, net_ver=net_ver), case["name"]
        body = {k: v for k, v in doc.items() if k != "sig"} | {"d": "borgusb.mail.directory"}
        signed = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), pub)
        try:
            point.verify(bytes.fromhex(doc["sig"]), signed, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            pytest.fail(f"{case['name']}: the signature does not verify independently")


def test_vectors_invalid_refused_for_their_reason() -> None:
    for case in load_vectors("mail/directory_invalid.json", version=VERSION)["cases"]:
        with pytest.raises(errors.MailError) as err:
            check_entry(case["entry"])
        assert err.value.reason == case["reason"], case["name"]
