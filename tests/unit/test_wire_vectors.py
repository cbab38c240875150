"""Fixed wire formats, byte for byte: envelope, shard record, manifest, tombstone, keystore v1.

The vectors in tests/vectors/wire/ were made once by tests/vectors/generate_wire.py
with fixed keys, clock and nonces. Each test here runs today's code on the
stored inputs and demands exactly the stored bytes, and runs today's readers
on the stored bytes. A format change therefore fails here even when the
writer and the reader change together; regenerating the files is not enough
either, because the version and the digest of every valid file are pinned
below and change only on purpose (with the format's version).
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from ecdsa import SECP256k1, VerifyingKey
from ecdsa import SigningKey as EcdsaKey
from ecdsa.util import sigdecode_der, sigencode_der_canonize

from borgusb import canonical, envelope, keystore
from borgusb.clock import ManualClock
from borgusb.keys import SigningKey, verify_signature
from borgusb.shard import model
from borgusb.shard.store import ShardStore
from tests.conftest import VECTORS, load_vectors

# Bump a version (and its digest) only together with a deliberate format change.
PINNED = {
    "envelope.json": (2, "f10e2eb4b06d06c1f8a5c447fdc2a8ae984c43400975f970d4a0dff3bbf193dc"),
    "shard_record.json": (1, "6dfccd0fdc332978d59d9abd47b9af6ddcfc7d7d13079567b9e53ad9de1689cf"),
    "manifest.json": (2, "5a6c2c3e85aa0b5fd7d5b00dc38a65859b3187941061b1fd8e32166df90b4097"),
    "manifest_v1.json": (1, "fe443d3112ee6f3b8dd2b0bbc18e899e25622723e245a6583f42e8e10471c2a2"),  # must be refused
    "tombstone.json": (1, "72d30f560c97f9086e586f33c1ea7cb35e2441cb0b0d81274bddf4739b103327"),
    "keystore_v1.json": (1, "26e002b545dfc020bd89c94b65fb36adde691956709381f3cec7f8b4a93a5699"),
}


def vectors(name: str) -> list[dict[str, Any]]:
    return load_vectors(f"wire/{name}", version=PINNED[name.replace("_invalid", "")][0])["cases"]


def cases(name: str) -> Any:
    return pytest.mark.parametrize("case", vectors(name), ids=lambda c: c["name"])


def key(secret_hex: str) -> SigningKey:
    return SigningKey(bytes.fromhex(secret_hex))


def std_canonical(value: Any) -> bytes:
    """The canonical form by the standard library alone (an independent encoder)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def independent_ecdsa(secret_hex: str, signed: bytes, sig_hex: str) -> None:
    """python-ecdsa: the signature verifies and is exactly the RFC 6979 low-S signature."""
    sk = EcdsaKey.from_string(bytes.fromhex(secret_hex), curve=SECP256k1, hashfunc=hashlib.sha256)
    vk: VerifyingKey = sk.get_verifying_key()
    assert vk.verify(bytes.fromhex(sig_hex), signed, hashfunc=hashlib.sha256, sigdecode=sigdecode_der)
    assert sk.sign_deterministic(signed, sigencode=sigencode_der_canonize).hex() == sig_hex


@pytest.mark.parametrize("name", sorted(PINNED))
def test_valid_vector_files_are_the_pinned_ones(name: str) -> None:
    version, digest = PINNED[name]
    load_vectors(f"wire/{name}", version=version)
    if name != "manifest_v1.json":  # kept only to be refused: it has no invalid file
        load_vectors(f"wire/{name.replace('.json', '_invalid.json')}", version=version)
    assert hashlib.sha256((VECTORS / "wire" / name).read_bytes()).hexdigest() == digest, (
        f"{name} changed: a new wire format needs a new version here and in the generator"
    )


def test_format_versions_in_the_code_are_the_vectors_versions() -> None:
    assert envelope.VERSION == PINNED["envelope.json"][0]
    assert keystore.VERSION == PINNED["keystore_v1.json"][0]
    assert model.MANIFEST_VERSION == PINNED["manifest.json"][0]


def test_libsecp256k1_signs_deterministically() -> None:
    k = key(vectors("envelope.json")[0]["key"])
    assert k.sign(b"same message") == k.sign(b"same message")


# ------------------------------------------------------------------ envelopes


@cases("envelope.json")
def test_envelope_is_signed_to_the_stored_bytes(case: dict[str, Any]) -> None:
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
    assert envelope.encode(env) == case["wire"].encode("utf-8")
    assert (
        envelope.sign_bytes(
            key(case["key"]),
            case["type"],
            case["payload"],
            ManualClock(case["ts"]),
            ip=case["ip"],
            port=case["port"],
            to=case["to"],
            nonce=case["nonce"],
        )
        == case["wire"].encode()
    )
    assert env["sig"] == case["sig"]
    body = {k: v for k, v in env.items() if k != "sig"}
    assert canonical.dumps(body) == std_canonical(body) == case["signed"].encode()
    independent_ecdsa(case["key"], case["signed"].encode(), case["sig"])


@cases("envelope.json")
def test_stored_envelope_verifies(case: dict[str, Any]) -> None:
    verifier = envelope.Verifier(ManualClock(case["ts"]))
    env = verifier.verify(
        case["wire"].encode("utf-8"), expected_type=case["type"], expected_signer=key(case["key"]).public_key_hex
    )
    assert env.type == case["type"] and env.payload == case["payload"]
    assert env.sender == envelope.Sender(case["ip"], case["port"], key(case["key"]).public_key_hex)
    assert (env.to, env.ts, env.nonce, env.sig) == (case["to"], case["ts"], case["nonce"], case["sig"])
    assert canonical.dumps(env.to_dict()) == case["wire"].encode()
    assert verifier.counters["accepted"] == 1


@cases("envelope_invalid.json")
def test_stored_invalid_envelope_is_refused_with_its_reason(case: dict[str, Any]) -> None:
    wire = bytes.fromhex(case["wire_hex"]) if "wire_hex" in case else case["wire"].encode("utf-8")
    verifier = envelope.Verifier(
        ManualClock(case["now_ms"]), max_bytes=case.get("max_bytes", envelope.DEFAULT_MAX_BYTES)
    )
    if "answer_to" in case:
        pubkey, ports = case["answer_to"]
        verifier.answer_to(pubkey, ports)
    if case.get("replay"):
        verifier.verify(wire)  # the first copy is accepted
    with pytest.raises(envelope.EnvelopeError) as info:
        verifier.verify(wire, expected_type=case.get("expected_type"), expected_signer=case.get("expected_signer"))
    assert info.value.reason == case["reason"], str(info.value)
    assert verifier.counters[case["reason"]] == 1


# ------------------------------------------------------------------ shard records, manifests, tombstones


def _check_signed(case: dict[str, Any], doc: dict[str, Any], domain: str) -> None:
    body = {k: v for k, v in doc.items() if k != "s"}
    assert case["signed"].encode() == std_canonical({**body, "d": domain})
    assert verify_signature(doc["o"], bytes.fromhex(doc["s"]), case["signed"].encode())
    independent_ecdsa(case["key"], case["signed"].encode(), doc["s"])
    assert canonical.dumps(doc) == case["wire"].encode()
    assert canonical.loads_canonical(case["wire"].encode()) == doc


@cases("shard_record.json")
def test_shard_record_is_signed_to_the_stored_bytes(case: dict[str, Any], tmp_path: Path) -> None:
    data = case["data"].encode()
    rec = model.sign_record(key(case["key"]), hashlib.sha256(data).hexdigest(), len(data), case["t"])
    assert rec == case["record"]
    _check_signed(case, rec, "borgusb.shard")
    assert model.check_record(json.loads(case["wire"])) == rec
    store = ShardStore(tmp_path)
    assert store.put(rec, data, case["obj"]) == "stored"
    assert (tmp_path / "shards" / rec["h"][:2] / f"{rec['h']}.rec").read_bytes() == case["store_rec_file"].encode()


@cases("shard_record.json")
def test_stored_shard_record_file_is_read(case: dict[str, Any], tmp_path: Path) -> None:
    h = case["record"]["h"]
    (tmp_path / "shards" / h[:2]).mkdir(parents=True)
    (tmp_path / "shards" / h[:2] / h).write_bytes(case["data"].encode())
    (tmp_path / "shards" / h[:2] / f"{h}.rec").write_bytes(case["store_rec_file"].encode())
    store = ShardStore(tmp_path)
    assert store.record(h) == case["record"]
    assert store.get(h) == (case["record"], case["data"].encode())
    assert store.counters["load_dropped"] == 0


@cases("shard_record_invalid.json")
def test_stored_invalid_shard_record_is_refused_with_its_reason(case: dict[str, Any]) -> None:
    with pytest.raises(model.BadRecord) as info:
        model.check_record(case["doc"])
    assert info.value.reason == case["reason"], str(info.value)


@cases("manifest.json")
def test_manifest_is_signed_to_the_stored_bytes(case: dict[str, Any], tmp_path: Path) -> None:
    data, ss = case["data"].encode(), case["ss"]
    shards = [model.sha256_hex(bytes(chunk)) for _, chunk in model.split(data, ss)]
    m = model.sign_manifest(key(case["key"]), len(data), ss, case["r"], shards, case["t"])
    assert m == case["manifest"]
    assert json.loads(case["id_preimage"])["shards"] == [
        [h, len(c)] for h, (_, c) in zip(shards, model.split(data, ss))
    ]
    assert m["id"] == model.object_id(len(data), ss, shards) == hashlib.sha256(case["id_preimage"].encode()).hexdigest()
    assert std_canonical(json.loads(case["id_preimage"])) == case["id_preimage"].encode()
    _check_signed(case, m, "borgusb.manifest")
    assert model.check_manifest(json.loads(case["wire"])) == m
    store = ShardStore(tmp_path)
    assert store.put_manifest(m) == "stored"
    assert (tmp_path / "manifests" / f"{m['id']}.json").read_bytes() == case["store_file"].encode()
    reopened = ShardStore(tmp_path)
    assert reopened.manifests == {m["id"]: m}


@cases("manifest_v1.json")
def test_format_1_manifests_are_refused_as_the_old_format(case: dict[str, Any], tmp_path: Path) -> None:
    """Format 1 (id = the whole file's SHA-256): refused with its own reason, on the wire and on disk."""
    for doc in (case["manifest"], json.loads(case["wire"])):
        with pytest.raises(model.BadRecord) as info:
            model.check_manifest(doc)
        assert info.value.reason == "old_manifest_format", str(info.value)
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / f"{case['manifest']['id']}.json").write_text(case["store_file"])
    assert ShardStore(tmp_path).manifests == {}


@cases("manifest_invalid.json")
def test_stored_invalid_manifest_is_refused_with_its_reason(case: dict[str, Any]) -> None:
    with pytest.raises(model.BadRecord) as info:
        model.check_manifest(case["doc"])
    assert info.value.reason == case["reason"], str(info.value)


@cases("tombstone.json")
def test_tombstone_is_signed_to_the_stored_bytes(case: dict[str, Any], tmp_path: Path) -> None:
    tomb = model.sign_tomb(key(case["key"]), case["id"], case["t"])
    assert tomb == case["tomb"]
    _check_signed(case, tomb, "borgusb.tomb")
    assert model.check_tomb(json.loads(case["wire"])) == tomb
    store = ShardStore(tmp_path)
    assert store.delete(tomb) == 0
    assert (tmp_path / "tombs" / f"{case['id']}.json").read_bytes() == case["store_file"].encode()
    assert ShardStore(tmp_path).tombs == {case["id"]: tomb}


@cases("tombstone_invalid.json")
def test_stored_invalid_tombstone_is_refused_with_its_reason(case: dict[str, Any]) -> None:
    with pytest.raises(model.BadRecord) as info:
        model.check_tomb(case["doc"])
    assert info.value.reason == case["reason"], str(info.value)


def test_the_envelope_carries_the_stored_tombstone() -> None:
    env = next(c for c in vectors("envelope.json") if c["type"] == "shard.delete")
    assert env["payload"] == {"tomb": vectors("tombstone.json")[0]["tomb"]}


# ------------------------------------------------------------------ keystore v1


def _file_bytes(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def _public(case: dict[str, Any]) -> dict[str, str]:
    from borgusb.identity import Wallet

    if case["kind"] == "wallet":
        with Wallet(bytes.fromhex(case["secret"]), case["bip39_passphrase"]) as wallet:
            return wallet.public.to_dict()
    k = key(case["secret"])
    return {"public_key": k.public_key_hex, "fingerprint": k.fingerprint}


@cases("keystore_v1.json")
def test_keystore_is_encrypted_to_the_stored_bytes(case: dict[str, Any]) -> None:
    assert _public(case) == case["public"]
    doc = keystore.encrypt(
        case["kind"],
        bytes.fromhex(case["secret"]),
        case["passphrase"],
        case["public"],
        case["bip39_passphrase"],
        keystore.KdfParams(**case["kdf"]),
        salt=bytes.fromhex(case["salt"]),
        nonce=bytes.fromhex(case["nonce"]),
    )
    assert _file_bytes(doc) == case["file"].encode("utf-8")


@cases("keystore_v1.json")
def test_stored_keystore_is_read_and_unlocked(case: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "keystore.json"
    path.write_bytes(case["file"].encode("utf-8"))
    doc = keystore.read(path)
    assert (doc["format"], doc["version"], doc["kind"]) == ("borgusb-keystore", 1, case["kind"])
    unlocked = keystore.decrypt(doc, case["passphrase"])
    assert (bytes(unlocked.secret).hex(), unlocked.bip39_passphrase) == (case["secret"], case["bip39_passphrase"])
    assert keystore.peek_public(path) == case["public"]
    if case["kind"] == "wallet":
        with keystore.load_wallet(path, case["passphrase"]) as wallet:
            assert wallet.public.to_dict() == case["public"]
    else:
        assert keystore.load_node_key(path, case["passphrase"]).public_key_hex == case["public"]["public_key"]


@cases("keystore_v1.json")
def test_one_lane_keystore_decrypts_with_independent_argon2id_and_aes_gcm(case: dict[str, Any]) -> None:
    if case["kdf"]["lanes"] != 1:
        pytest.skip("libsodium's Argon2id has one lane; this case is checked by BorgUSB alone")
    import nacl.pwhash.argon2id as argon2id
    from Cryptodome.Cipher import AES

    doc = json.loads(case["file"])
    kdf = doc["kdf"]
    k = argon2id.kdf(
        32,
        case["passphrase"].encode(),
        base64.b64decode(kdf["salt"]),
        opslimit=kdf["iterations"],
        memlimit=kdf["memory_kib"] * 1024,
    )
    raw = base64.b64decode(doc["ciphertext"])
    aes = AES.new(k, AES.MODE_GCM, nonce=base64.b64decode(doc["cipher"]["nonce"]))
    aes.update(std_canonical({f: doc[f] for f in ("format", "version", "kind", "public", "kdf")}))
    secret = bytes.fromhex(case["secret"])
    assert (
        aes.decrypt_and_verify(raw[:-16], raw[-16:])
        == bytes([1, len(secret)]) + secret + case["bip39_passphrase"].encode()
    )
    body = {f: v for f, v in doc.items() if f != "checksum"}
    assert doc["checksum"] == hashlib.sha256(std_canonical(body)).hexdigest()


def test_save_wallet_writes_the_stored_layout(tmp_path: Path) -> None:
    """save_wallet's own output (fresh salt and nonce) has the stored file's layout and fields."""
    from borgusb.identity import Wallet

    case = next(c for c in vectors("keystore_v1.json") if c["kind"] == "wallet" and c["kdf"]["lanes"] == 1)
    path = tmp_path / "keystore.json"
    with Wallet(bytes.fromhex(case["secret"]), case["bip39_passphrase"]) as wallet:
        keystore.save_wallet(path, wallet, case["passphrase"], keystore.KdfParams(**case["kdf"]))
    written, stored = path.read_bytes(), json.loads(case["file"])
    doc = json.loads(written)
    assert written == _file_bytes(doc)
    assert {k: (sorted(v) if isinstance(v, dict) else type(v).__name__) for k, v in doc.items()} == {
        k: (sorted(v) if isinstance(v, dict) else type(v).__name__) for k, v in stored.items()
    }
    assert doc["kdf"]["salt"] != stored["kdf"]["salt"]  # fresh, not the vector's
    assert {k: doc[k] for k in ("format", "version", "kind", "public")} == {
        k: stored[k] for k in ("format", "version", "kind", "public")
    }


@cases("keystore_v1_invalid.json")
def test_stored_invalid_keystore_is_refused_with_its_reason(case: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "keystore.json"
    path.write_bytes(case["file"].encode("utf-8"))
    with pytest.raises(keystore.KeystoreError) as info:
        with keystore.load_wallet(path, case["passphrase"]):
            pass
    assert type(info.value).__name__ == case["reason"], str(info.value)
