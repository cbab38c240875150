"""Generate the fixed wire-format vectors in tests/vectors/wire/ (run once per format version).

    .venv/bin/python tests/vectors/generate_wire.py          # write the files
    .venv/bin/python tests/vectors/generate_wire.py --check  # exit 1 if a file would change

Everything is fixed: keys (SHA-256 of a label), clock, nonces, salts. ECDSA
needs no fixed nonce: libsecp256k1 (coincurve) signs deterministically with
RFC 6979 nonces, and this script confirms every signature it writes against an
independent RFC 6979 implementation (python-ecdsa, ``sign_deterministic``
with low-S DER), and every canonical byte string against the standard
library's ``json.dumps``. Keystore ciphertexts with one Argon2 lane are
re-derived with libsodium (PyNaCl ``argon2id.kdf``) and decrypted with
PyCryptodome's AES-GCM, neither of which BorgUSB uses.

Regenerate only together with a bump of the ``version`` of the file whose
format changed: tests/unit/test_wire_vectors.py pins the versions, so a
format change fails the tests even when the writer and the reader change
together.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import sys
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ecdsa import SECP256k1  # noqa: E402  (independent checks only)
from ecdsa import SigningKey as EcdsaKey  # noqa: E402
from ecdsa.util import sigdecode_der, sigencode_der, sigencode_der_canonize  # noqa: E402

from borgusb import canonical, envelope, keystore  # noqa: E402
from borgusb.clock import ManualClock  # noqa: E402
from borgusb.identity import Wallet  # noqa: E402
from borgusb.keys import SigningKey  # noqa: E402
from borgusb.shard import model  # noqa: E402

OUT = Path(__file__).resolve().parent / "wire"
VERSIONS = {
    "envelope": envelope.VERSION,
    "shard_record": 1,
    "manifest": model.MANIFEST_VERSION,
    "tombstone": 1,
    "keystore_v1": keystore.VERSION,
}
T0 = 1_764_000_000_000  # 2025-11-24T16:00:00Z, the fixed clock


def fixed_secret(label: str) -> str:
    return hashlib.sha256(f"borgusb wire vectors: {label}".encode()).hexdigest()


OWNER, OTHER, NODE = fixed_secret("owner"), fixed_secret("other"), fixed_secret("node")


def key(secret_hex: str) -> SigningKey:
    return SigningKey(bytes.fromhex(secret_hex))


def pub(secret_hex: str) -> str:
    return key(secret_hex).public_key_hex


# ------------------------------------------------------------------ independent checks


def std_canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def rfc6979(secret_hex: str, message: bytes) -> str:
    sk = EcdsaKey.from_string(bytes.fromhex(secret_hex), curve=SECP256k1, hashfunc=hashlib.sha256)
    return sk.sign_deterministic(message, sigencode=sigencode_der_canonize).hex()


def high_s(sig_hex: str) -> str:
    """The same signature with s replaced by n - s (valid ECDSA, refused as malleable)."""
    n = SECP256k1.order
    r, s = sigdecode_der(bytes.fromhex(sig_hex), n)
    return sigencode_der(r, n - s, n).hex()


def confirm_signature(secret_hex: str, signed: bytes, sig_hex: str) -> None:
    assert rfc6979(secret_hex, signed) == sig_hex, "coincurve and python-ecdsa RFC 6979 disagree"


# ------------------------------------------------------------------ envelopes


ENVELOPE_INPUTS = [
    {
        "name": "app_message",
        "key": OWNER,
        "type": "app.message",
        "payload": {"hello": "world"},
        "ip": "",
        "port": 0,
        "to": "",
        "ts": T0,
        "nonce": "00112233445566778899aabbccddeeff",
    },
    {
        "name": "tree_message_from_a_node",
        "key": NODE,
        "type": "tree.heartbeat",
        "payload": {"t": "tree.heartbeat", "pos": 2, "ver": 7, "kids": [4, 5, 6]},
        "ip": "127.0.0.2",
        "port": 13300,
        "to": "<pubkey:other>:13360",
        "ts": T0 + 1,
        "nonce": "0f" * 16,
    },
    {
        "name": "unicode_escapes_and_big_ints",
        "key": OWNER,
        "type": "app.message",
        "payload": {
            "text": 'Grüße "quoted" \\ / \u2028 \U0001f600 \x01',
            "max": 2**53 - 1,
            "min": -(2**53 - 1),
            "list": [True, False, None, [], {}],
        },
        "ip": "::1",
        "port": 65535,
        "to": "*:13361",
        "ts": T0 + 2,
        "nonce": "ffeeddccbbaa99887766554433221100",
    },
    {
        "name": "shard_delete_carrying_a_tombstone",
        "key": OWNER,
        "type": "shard.delete",
        "payload": {"tomb": "<tombstone:one_shard_object>"},
        "ip": "",
        "port": 0,
        "to": "<pubkey:node>:13355",
        "ts": T0 + 3,
        "nonce": "a5" * 16,
    },
]


def make_envelope(case: dict[str, Any]) -> dict[str, Any]:
    env = envelope.sign(
        key(case["key"]),
        case["type"],
        case["payload"],
        ManualClock(case["ts"]),
        ip=case["ip"],
        port=case["port"],
        to=case["to"],
        nonce=case["nonce"],
    )
    wire = envelope.encode(env)
    signed = canonical.encode_unchecked({k: v for k, v in env.items() if k != "sig"})
    assert wire == std_canonical(env) and signed == std_canonical({k: v for k, v in env.items() if k != "sig"})
    confirm_signature(case["key"], signed, env["sig"])
    return {**case, "signed": signed.decode(), "sig": env["sig"], "wire": wire.decode()}


def envelope_files(tomb: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    valid = []
    for inputs in ENVELOPE_INPUTS:
        inputs = copy.deepcopy(inputs)
        if inputs["payload"] == {"tomb": "<tombstone:one_shard_object>"}:
            inputs["payload"] = {"tomb": tomb}
        inputs["to"] = inputs["to"].replace("<pubkey:other>", pub(OTHER)).replace("<pubkey:node>", pub(NODE))
        valid.append(make_envelope(inputs))
    base = valid[0]
    wire, ts = base["wire"], base["ts"]
    doc = json.loads(wire)

    def resigned(**changes: Any) -> str:
        """A correctly signed envelope with one field changed (so only that field is wrong)."""
        body = {k: v for k, v in doc.items() if k != "sig"}
        body.update(changes)
        body["sig"] = key(OWNER).sign(std_canonical(body)).hex()
        return std_canonical(body).decode()

    def resigned_without_to() -> str:
        """A correctly signed envelope of the version 1 shape (no ``to``) under version 2."""
        body = {k: v for k, v in doc.items() if k not in ("sig", "to")}
        body["sig"] = key(OWNER).sign(std_canonical(body)).hex()
        return std_canonical(body).decode()

    def rewritten(**changes: Any) -> str:
        return std_canonical({**doc, **changes}).decode()

    inv: list[dict[str, Any]] = [
        {"name": "payload_changed", "wire": wire.replace('"world"', '"w0rld"'), "reason": "bad_signature"},
        {"name": "ts_changed", "wire": rewritten(ts=ts + 1), "reason": "bad_signature"},
        {
            "name": "sender_ip_changed",
            "wire": rewritten(sender={**doc["sender"], "ip": "10.0.0.1"}),
            "reason": "bad_signature",
        },
        {
            "name": "signed_by_another_key_than_named",
            "wire": rewritten(sender={**doc["sender"], "pubkey": pub(OTHER)}),
            "reason": "bad_signature",
        },
        {"name": "high_s_malleated_signature", "wire": rewritten(sig=high_s(doc["sig"])), "reason": "bad_signature"},
        {
            "name": "whitespace_not_canonical",
            "wire": json.dumps(doc, sort_keys=True, ensure_ascii=False),
            "reason": "malformed",
        },
        {
            "name": "keys_unsorted",
            "wire": json.dumps(
                {k: doc[k] for k in sorted(doc, reverse=True)}, separators=(",", ":"), ensure_ascii=False
            ),
            "reason": "malformed",
        },
        {
            "name": "ascii_escaped_unicode_not_canonical",
            "wire": json.dumps(json.loads(valid[2]["wire"]), sort_keys=True, separators=(",", ":")),
            "reason": "malformed",
            "now_ms": valid[2]["ts"],
        },
        {"name": "extra_field", "wire": resigned(x=1), "reason": "malformed"},
        {"name": "version_1", "wire": resigned(v=1), "reason": "malformed"},
        {"name": "version_3", "wire": resigned(v=3), "reason": "malformed"},
        {"name": "to_missing", "wire": resigned_without_to(), "reason": "malformed"},
        {"name": "to_not_a_recipient", "wire": resigned(to="someone"), "reason": "malformed"},
        {"name": "to_changed", "wire": rewritten(to=envelope.address(pub(NODE), 13355)), "reason": "bad_signature"},
        {
            "name": "addressed_to_another_node",
            "wire": resigned(to=envelope.address(pub(OTHER), 13355)),
            "answer_to": [pub(NODE), [13355]],
            "reason": "wrong_recipient",
        },
        {
            "name": "addressed_to_another_cell_of_the_node",
            "wire": resigned(to=envelope.address(pub(NODE), 13421)),
            "answer_to": [pub(NODE), [13355]],
            "reason": "wrong_recipient",
        },
        {
            "name": "broadcast_where_none_is_taken",
            "wire": resigned(to=envelope.everyone(13355)),
            "answer_to": [pub(NODE), [13355]],
            "reason": "wrong_recipient",
        },
        {
            "name": "unaddressed_at_a_cell",
            "wire": wire,
            "answer_to": [pub(NODE), [13355]],
            "reason": "unaddressed",
        },
        {"name": "nonce_uppercase", "wire": resigned(nonce=doc["nonce"].upper()), "reason": "malformed"},
        {"name": "float_in_payload", "wire": wire.replace('"world"', "1.5"), "reason": "malformed"},
        {"name": "int_beyond_2_53", "wire": wire.replace('"world"', str(2**53)), "reason": "malformed"},
        {"name": "not_utf8", "wire_hex": wire.encode().replace(b"world", b"w\xffrld").hex(), "reason": "malformed"},
        {"name": "stale_by_1ms", "wire": wire, "now_ms": ts + 30_001, "reason": "stale"},
        {"name": "future_by_1ms", "wire": wire, "now_ms": ts - 30_001, "reason": "future_dated"},
        {"name": "unexpected_type", "wire": wire, "expected_type": "tree.join", "reason": "wrong_type"},
        {"name": "unexpected_signer", "wire": wire, "expected_signer": pub(OTHER), "reason": "wrong_signer"},
        {"name": "too_large", "wire": wire, "max_bytes": len(wire.encode()) - 1, "reason": "too_large"},
        {"name": "replayed", "wire": wire, "replay": True, "reason": "replay"},
    ]
    for case in inv:
        case.setdefault("now_ms", ts)
    return valid, inv


# ------------------------------------------------------------------ shard records, manifests, tombstones


def record_files(oid: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    valid = []
    for name, data, t, obj in (
        ("one_byte", "a", T0, None),
        ("empty_shard", "", T0, None),
        ("shard_of_an_object", "hello, borgusb\n", T0 + 10, oid),
    ):
        raw = data.encode()
        h = hashlib.sha256(raw).hexdigest()
        rec = model.sign_record(key(OWNER), h, len(raw), t)
        signed = model._signed("borgusb.shard", rec)
        assert signed == std_canonical({"d": "borgusb.shard", "h": h, "n": len(raw), "o": pub(OWNER), "t": t})
        confirm_signature(OWNER, signed, rec["s"])
        entry = {"rec": rec, "objs": [obj] if obj else [], "crc": zlib.crc32(raw)}
        valid.append(
            {
                "name": name,
                "key": OWNER,
                "data": data,
                "obj": obj,
                "t": t,
                "record": rec,
                "signed": signed.decode(),
                "wire": std_canonical(rec).decode(),
                "store_rec_file": json.dumps(entry),
            }
        )
    rec = valid[0]["record"]
    wrong_domain = dict(rec, s=key(OWNER).sign(model._signed("borgusb.tomb", rec)).hex())
    inv = [
        {"name": "size_changed", "doc": dict(rec, n=2), "reason": "bad_owner_signature"},
        {"name": "time_changed", "doc": dict(rec, t=rec["t"] + 1), "reason": "bad_owner_signature"},
        {"name": "owner_replaced", "doc": dict(rec, o=pub(OTHER)), "reason": "bad_owner_signature"},
        {"name": "signed_under_the_tombstone_domain", "doc": wrong_domain, "reason": "bad_owner_signature"},
        {"name": "high_s_malleated_signature", "doc": dict(rec, s=high_s(rec["s"])), "reason": "bad_owner_signature"},
        {"name": "hash_uppercase", "doc": dict(rec, h=rec["h"].upper()), "reason": "malformed"},
        {"name": "extra_member", "doc": dict(rec, x=1), "reason": "malformed"},
        {"name": "missing_time", "doc": {k: v for k, v in rec.items() if k != "t"}, "reason": "malformed"},
        {"name": "size_is_a_bool", "doc": dict(rec, n=True), "reason": "malformed"},
        {"name": "size_above_max_shard", "doc": dict(rec, n=model.MAX_SHARD + 1), "reason": "malformed"},
        {"name": "owner_uncompressed", "doc": dict(rec, o="04" + rec["o"][2:]), "reason": "malformed"},
        {"name": "signature_not_hex", "doc": dict(rec, s="zz" + rec["s"][2:]), "reason": "malformed"},
    ]
    return valid, inv


def resigned(m: dict[str, Any], **change: Any) -> dict[str, Any]:
    """m changed (a member set to None is removed) and signed again by its owner: refused for
    what it says, not for its signature."""
    body = {k: v for k, v in dict(m, **change).items() if k not in ("o", "s") and v is not None}
    return model._sign(key(OWNER), "borgusb.manifest", body)


def manifest_files() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    valid = []
    for name, data, ss, r, t in (
        ("empty_object", "", 1024 * 1024, 3, T0),
        ("one_shard_object", "hello, borgusb\n", 1024 * 1024, 3, T0 + 10),
        ("three_shards_of_4_bytes", "0123456789", 4, 2, T0 + 20),
    ):
        raw = data.encode()
        shards = [hashlib.sha256(raw[i : i + ss]).hexdigest() for i in range(0, len(raw), ss)]
        sizes = [len(raw[i : i + ss]) for i in range(0, len(raw), ss)]
        id_preimage = std_canonical(
            {"d": "borgusb.object", "v": 2, "size": len(raw), "ss": ss, "shards": [list(x) for x in zip(shards, sizes)]}
        )
        oid = hashlib.sha256(id_preimage).hexdigest()
        m = model.sign_manifest(key(OWNER), len(raw), ss, r, shards, t)
        assert m["id"] == oid
        signed = model._signed("borgusb.manifest", m)
        assert signed == std_canonical(
            {
                "d": "borgusb.manifest",
                "v": 2,
                "id": oid,
                "size": len(raw),
                "ss": ss,
                "r": r,
                "shards": shards,
                "o": pub(OWNER),
                "t": t,
            }
        )
        confirm_signature(OWNER, signed, m["s"])
        valid.append(
            {
                "name": name,
                "key": OWNER,
                "data": data,
                "ss": ss,
                "r": r,
                "t": t,
                "id_preimage": id_preimage.decode(),
                "manifest": m,
                "signed": signed.decode(),
                "wire": std_canonical(m).decode(),
                "store_file": json.dumps(m),
            }
        )
    m = valid[2]["manifest"]
    empty = valid[0]["manifest"]
    inv = [
        {"name": "shards_reordered", "doc": dict(m, shards=m["shards"][::-1]), "reason": "id_mismatch"},
        {"name": "r_raised", "doc": dict(m, r=3), "reason": "bad_owner_signature"},
        {"name": "owner_replaced", "doc": dict(m, o=pub(OTHER)), "reason": "bad_owner_signature"},
        {
            "name": "signed_under_the_record_domain",
            "doc": dict(m, s=key(OWNER).sign(model._signed("borgusb.shard", m)).hex()),
            "reason": "bad_owner_signature",
        },
        {"name": "one_shard_missing", "doc": dict(m, shards=m["shards"][:2]), "reason": "malformed"},
        {"name": "size_not_matching_shards", "doc": dict(m, size=13), "reason": "malformed"},
        {"name": "shard_size_zero", "doc": dict(m, ss=0), "reason": "malformed"},
        {"name": "r_above_max", "doc": dict(m, r=model.MAX_R + 1), "reason": "malformed"},
        {"name": "empty_object_with_another_id", "doc": resigned(empty, id=m["id"]), "reason": "id_mismatch"},
        {"name": "id_of_another_shard_list", "doc": resigned(m, id=empty["id"]), "reason": "id_mismatch"},
        {
            "name": "id_the_whole_files_sha256",
            "doc": resigned(m, id=hashlib.sha256(b"0123456789").hexdigest()),
            "reason": "id_mismatch",
        },
        {"name": "format_1_no_v", "doc": resigned(m, v=None), "reason": "old_manifest_format"},
        {"name": "format_3", "doc": resigned(m, v=3), "reason": "unknown_manifest_format"},
        {"name": "version_a_string", "doc": resigned(m, v="2"), "reason": "unknown_manifest_format"},
        {"name": "id_not_a_hash", "doc": dict(m, id=m["id"][:-1]), "reason": "malformed"},
        {"name": "extra_member", "doc": dict(m, d="borgusb.manifest"), "reason": "malformed"},
    ]
    return valid, inv


def tomb_files(oid: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    valid = []
    for name, t in (("delete_one_shard_object", T0 + 1000),):
        tomb = model.sign_tomb(key(OWNER), oid, t)
        signed = model._signed("borgusb.tomb", tomb)
        assert signed == std_canonical({"d": "borgusb.tomb", "id": oid, "o": pub(OWNER), "t": t})
        confirm_signature(OWNER, signed, tomb["s"])
        valid.append(
            {
                "name": name,
                "key": OWNER,
                "id": oid,
                "t": t,
                "tomb": tomb,
                "signed": signed.decode(),
                "wire": std_canonical(tomb).decode(),
                "store_file": json.dumps(tomb),
            }
        )
    tomb = valid[0]["tomb"]
    inv = [
        {"name": "time_changed", "doc": dict(tomb, t=tomb["t"] + 1), "reason": "bad_owner_signature"},
        {"name": "id_changed", "doc": dict(tomb, id=model.EMPTY_SHA256), "reason": "bad_owner_signature"},
        {"name": "owner_replaced", "doc": dict(tomb, o=pub(OTHER)), "reason": "bad_owner_signature"},
        {
            "name": "signed_under_the_manifest_domain",
            "doc": dict(tomb, s=key(OWNER).sign(model._signed("borgusb.manifest", tomb)).hex()),
            "reason": "bad_owner_signature",
        },
        {"name": "time_negative", "doc": dict(tomb, t=-1), "reason": "malformed"},
        {"name": "extra_member", "doc": dict(tomb, r=3), "reason": "malformed"},
        {"name": "id_missing", "doc": {k: v for k, v in tomb.items() if k != "id"}, "reason": "malformed"},
    ]
    return valid, inv


# ------------------------------------------------------------------ keystore


def keystore_file_bytes(doc: dict[str, Any]) -> bytes:
    """How save_wallet / save_node_key write a keystore (checked against them by the test)."""
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


KEYSTORE_INPUTS = [
    {
        "name": "wallet_default_kdf",
        "kind": "wallet",
        "secret": bytes(range(32)).hex(),
        "passphrase": "correct horse battery staple",
        "bip39_passphrase": "",
        "kdf": {"iterations": 3, "lanes": 4, "memory_kib": 65536},
        "salt": "000102030405060708090a0b0c0d0e0f",
        "nonce": "a0a1a2a3a4a5a6a7a8a9aaab",
    },
    {
        "name": "wallet_cheap_kdf_bip39_passphrase",
        "kind": "wallet",
        "secret": "7f" * 32,
        "passphrase": "pässwörd ☃",
        "bip39_passphrase": "TREZOR",
        "kdf": {"iterations": 1, "lanes": 1, "memory_kib": 8},
        "salt": "101112131415161718191a1b1c1d1e1f",
        "nonce": "b0b1b2b3b4b5b6b7b8b9babb",
    },
    {
        "name": "node_key_cheap_kdf",
        "kind": "node",
        "secret": NODE,
        "passphrase": "node passphrase",
        "bip39_passphrase": "",
        "kdf": {"iterations": 2, "lanes": 1, "memory_kib": 64},
        "salt": "202122232425262728292a2b2c2d2e2f",
        "nonce": "c0c1c2c3c4c5c6c7c8c9cacb",
    },
]


def public_of(case: dict[str, Any]) -> dict[str, str]:
    if case["kind"] == "wallet":
        with Wallet(bytes.fromhex(case["secret"]), case["bip39_passphrase"]) as wallet:
            return wallet.public.to_dict()
    k = key(case["secret"])
    return {"public_key": k.public_key_hex, "fingerprint": k.fingerprint}


def independent_decrypt(doc: dict[str, Any], passphrase: str) -> bytes:
    """libsodium's Argon2id (one lane only) and PyCryptodome's AES-GCM."""
    import nacl.pwhash.argon2id as argon2id
    from Cryptodome.Cipher import AES

    kdf = doc["kdf"]
    assert kdf["lanes"] == 1
    k = argon2id.kdf(
        32,
        passphrase.encode(),
        base64.b64decode(kdf["salt"]),
        opslimit=kdf["iterations"],
        memlimit=kdf["memory_kib"] * 1024,
    )
    header = std_canonical({f: doc[f] for f in ("format", "version", "kind", "public", "kdf")})
    raw = base64.b64decode(doc["ciphertext"])
    cipher = AES.new(k, AES.MODE_GCM, nonce=base64.b64decode(doc["cipher"]["nonce"]))
    cipher.update(header)
    return cipher.decrypt_and_verify(raw[:-16], raw[-16:])


def keystore_files() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    valid = []
    for case in KEYSTORE_INPUTS:
        params = keystore.KdfParams(**case["kdf"])
        public = public_of(case)
        doc = keystore.encrypt(
            case["kind"],
            bytes.fromhex(case["secret"]),
            case["passphrase"],
            public,
            case["bip39_passphrase"],
            params,
            salt=bytes.fromhex(case["salt"]),
            nonce=bytes.fromhex(case["nonce"]),
        )
        body = {k: v for k, v in doc.items() if k != "checksum"}
        assert doc["checksum"] == hashlib.sha256(std_canonical(body)).hexdigest()
        if params.lanes == 1:
            secret = bytes.fromhex(case["secret"])
            plain = bytes([1, len(secret)]) + secret + case["bip39_passphrase"].encode()
            assert independent_decrypt(doc, case["passphrase"]) == plain
        valid.append({**case, "public": public, "file": keystore_file_bytes(doc).decode()})

    cheap = valid[1]
    doc = json.loads(cheap["file"])

    def with_checksum(d: dict[str, Any]) -> str:
        d = copy.deepcopy(d)
        d["checksum"] = hashlib.sha256(std_canonical({k: v for k, v in d.items() if k != "checksum"})).hexdigest()
        return keystore_file_bytes(d).decode()

    def edited(**changes: Any) -> dict[str, Any]:
        return {**copy.deepcopy(doc), **changes}

    ct = doc["ciphertext"]
    flipped = ct[:-6] + ("A" if ct[-6] != "A" else "B") + ct[-5:]
    pw = cheap["passphrase"]
    inv = [
        {"name": "wrong_passphrase", "file": cheap["file"], "passphrase": pw + "!", "reason": "WrongPassphrase"},
        {
            "name": "ciphertext_flipped_checksum_kept",
            "file": keystore_file_bytes(edited(ciphertext=flipped)).decode(),
            "passphrase": pw,
            "reason": "KeystoreCorrupt",
        },
        {
            "name": "ciphertext_flipped_checksum_recomputed",
            "file": with_checksum(edited(ciphertext=flipped)),
            "passphrase": pw,
            "reason": "WrongPassphrase",
        },
        {
            "name": "kdf_weakened_checksum_recomputed",
            "file": with_checksum(edited(kdf={**doc["kdf"], "memory_kib": 16})),
            "passphrase": pw,
            "reason": "WrongPassphrase",
        },
        {
            "name": "public_part_swapped_checksum_recomputed",
            "file": with_checksum(edited(public=valid[0]["public"])),
            "passphrase": pw,
            "reason": "WrongPassphrase",
        },
        {
            "name": "kdf_memory_out_of_range",
            "file": with_checksum(edited(kdf={**doc["kdf"], "memory_kib": 4})),
            "passphrase": pw,
            "reason": "KeystoreCorrupt",
        },
        {
            "name": "nonce_too_short",
            "file": with_checksum(edited(cipher={**doc["cipher"], "nonce": "AAAA"})),
            "passphrase": pw,
            "reason": "KeystoreCorrupt",
        },
        {
            "name": "version_2",
            "file": with_checksum(edited(version=2)),
            "passphrase": pw,
            "reason": "UnsupportedKeystoreVersion",
        },
        {
            "name": "unknown_cipher",
            "file": with_checksum(edited(cipher={**doc["cipher"], "name": "chacha20-poly1305"})),
            "passphrase": pw,
            "reason": "UnsupportedKeystoreVersion",
        },
        {
            "name": "truncated",
            "file": cheap["file"][: len(cheap["file"]) // 2],
            "passphrase": pw,
            "reason": "KeystoreCorrupt",
        },
        {
            "name": "not_a_keystore",
            "file": '{"format": "something-else", "version": 1}\n',
            "passphrase": pw,
            "reason": "KeystoreCorrupt",
        },
        {
            "name": "checksum_missing",
            "file": keystore_file_bytes({k: v for k, v in doc.items() if k != "checksum"}).decode(),
            "passphrase": pw,
            "reason": "KeystoreCorrupt",
        },
    ]
    return valid, inv


# ------------------------------------------------------------------ files

ECDSA_NOTE = (
    "ECDSA secp256k1 over SHA-256, DER, low-S; libsecp256k1 (coincurve) derives the nonce by RFC 6979, "
    "so signatures are reproducible; every signature here equals python-ecdsa's independent RFC 6979 "
    "sign_deterministic output, and every canonical byte string equals json.dumps(sort_keys=True, "
    "separators=(',', ':'), ensure_ascii=False)"
)

SOURCES = {
    "envelope": "BorgUSB custom vectors: borgusb/envelope.py sign()/encode() with fixed keys (SHA-256 of a label), "
    "a fixed ManualClock and fixed nonces; 'wire' is the exact bytes on the wire (UTF-8), 'signed' the "
    "bytes the signature covers (the envelope without sig). ",
    "shard_record": "BorgUSB custom vectors: borgusb/shard/model.py sign_record() (domain borgusb.shard); 'wire' is "
    "the record's canonical JSON as carried in shard.put payloads, 'store_rec_file' the exact bytes "
    "ShardStore.put writes to shards/xx/<hash>.rec. ",
    "manifest": "BorgUSB custom vectors: borgusb/shard/model.py sign_manifest() (domain borgusb.manifest); 'wire' is "
    "the canonical JSON carried in shard.manifest payloads, 'store_file' the exact bytes "
    "ShardStore.put_manifest writes to manifests/<id>.json, 'id_preimage' the canonical JSON whose SHA-256 is the "
    "object id (model.object_id: the shard hashes and sizes, the shard size, the total size). ",
    "tombstone": "BorgUSB custom vectors: borgusb/shard/model.py sign_tomb() (domain borgusb.tomb); 'wire' is the "
    "canonical JSON carried in shard.delete payloads, 'store_file' the exact bytes ShardStore.delete "
    "writes to tombs/<id>.json. ",
    "keystore_v1": "BorgUSB custom vectors: borgusb/keystore.py encrypt() with fixed salts and nonces, written as "
    "save_wallet/save_node_key write it ('file', exact bytes). Argon2id is deterministic for fixed "
    "salt and parameters, AES-256-GCM for a fixed nonce. Cases with one Argon2 lane were decrypted "
    "independently (libsodium argon2id via PyNaCl, AES-GCM via PyCryptodome); the default-KDF case "
    "(4 lanes, which libsodium does not offer) only by BorgUSB itself. Invalid cases name the "
    "KeystoreError subclass expected.",
}


def documents() -> dict[str, dict[str, Any]]:
    manifests, manifests_inv = manifest_files()
    # the id that records, tombstones and envelopes name: the one-shard object's format-1 id (the
    # SHA-256 of its bytes), kept so that those vectors stay byte for byte what they were; they
    # carry an id, they do not derive it
    oid = hashlib.sha256(manifests[1]["data"].encode()).hexdigest()
    tombs, tombs_inv = tomb_files(oid)
    records, records_inv = record_files(oid)
    envs, envs_inv = envelope_files(tombs[0]["tomb"])
    stores, stores_inv = keystore_files()
    docs: dict[str, dict[str, Any]] = {}
    for topic, valid, inv in (
        ("envelope", envs, envs_inv),
        ("shard_record", records, records_inv),
        ("manifest", manifests, manifests_inv),
        ("tombstone", tombs, tombs_inv),
        ("keystore_v1", stores, stores_inv),
    ):
        note = "" if topic == "keystore_v1" else ECDSA_NOTE
        docs[f"{topic}.json"] = {
            "source": SOURCES[topic] + note,
            "version": VERSIONS[topic],
            "generator": "tests/vectors/generate_wire.py",
            "cases": valid,
        }
        docs[f"{topic}_invalid.json"] = {
            "source": SOURCES[topic] + "Each invalid case gives the expected reason.",
            "version": VERSIONS[topic],
            "generator": "tests/vectors/generate_wire.py",
            "cases": inv,
        }
    return docs


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    docs = documents()
    changed = [
        name
        for name, doc in docs.items()
        if not (OUT / name).exists() or (OUT / name).read_text(encoding="utf-8") != render(doc)
    ]
    if "--check" in argv:
        for name in changed:
            print(f"{name} would change", file=sys.stderr)
        return 1 if changed else 0
    OUT.mkdir(exist_ok=True)
    for name, doc in docs.items():
        (OUT / name).write_text(render(doc), encoding="utf-8")
    print(f"wrote {len(docs)} files to {OUT} ({len(changed)} changed)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
