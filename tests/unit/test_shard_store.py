"""The content-addressed store: ownership, quota, atomicity, corruption, deletion (no sockets)."""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from pathlib import Path
from unittest import mock

import pytest

from borgusb.keys import SigningKey
from borgusb.shard import model
from borgusb.shard.store import Corrupt, Refused, ShardStore, StoreFull

OWNER = SigningKey.generate()
OTHER = SigningKey.generate()


def shard(data: bytes, key: SigningKey = OWNER, t: int = 100) -> tuple[dict, bytes]:
    return model.sign_record(key, model.sha256_hex(data), len(data), t), data


def test_put_get_and_reload(tmp_path: Path) -> None:
    store = ShardStore(tmp_path)
    rec, data = shard(b"hello")
    assert store.put(rec, data, obj=model.EMPTY_SHA256) == "stored"
    assert store.put(rec, data) == "exists"
    assert store.get(rec["h"]) == (rec, data)
    again = ShardStore(tmp_path)
    assert again.get(rec["h"]) == (rec, data) and again.used_bytes == 5
    assert again.hashes_of(model.EMPTY_SHA256) == [rec["h"]]


def test_other_owner_changes_nothing_same_owner_may_replace(tmp_path: Path) -> None:
    store = ShardStore(tmp_path)
    rec, data = shard(b"mine")
    store.put(rec, data)
    theirs, _ = shard(b"mine", OTHER, t=200)
    with pytest.raises(Refused) as err:
        store.put(theirs, data)
    assert err.value.reason == "other_owner"
    assert store.record(rec["h"]) == rec
    newer, _ = shard(b"mine", OWNER, t=300)
    assert store.put(newer, data) == "replaced" and store.record(rec["h"]) == newer
    assert store.counters["refused:other_owner"] == 1


def test_forged_and_mismatched_shards_are_refused(tmp_path: Path) -> None:
    store = ShardStore(tmp_path)
    rec, data = shard(b"abc")
    forged = dict(rec, o=OTHER.public_key_hex)
    with pytest.raises(Refused) as err:
        store.put(forged, data)
    assert err.value.reason == "bad_owner_signature"
    with pytest.raises(Refused) as err:
        store.put(rec, b"abd")
    assert err.value.reason == "hash_mismatch"
    assert not store.has(rec["h"]) and store.used_bytes == 0


def test_quota_refuses_before_writing(tmp_path: Path) -> None:
    store = ShardStore(tmp_path, quota_bytes=10)
    store.put(*shard(b"123456"))
    rec, data = shard(b"abcdef")
    with pytest.raises(StoreFull) as err:
        store.put(rec, data)
    assert "store full" in str(err.value)
    assert not store.has(rec["h"])
    assert not list((tmp_path / "tmp").iterdir())
    assert store.used_bytes == 6


def test_crash_mid_write_leaves_no_partial_shard(tmp_path: Path) -> None:
    store = ShardStore(tmp_path)
    rec, data = shard(b"x" * 1000)
    real_replace = os.replace
    calls = []

    def failing_replace(src, dst):  # the bytes land, then the process "dies" before the record
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("power cut")
        return real_replace(src, dst)

    with mock.patch("borgusb.shard.store.os.replace", failing_replace), pytest.raises(OSError):
        store.put(rec, data)
    assert not store.has(rec["h"]) and store.used_bytes == 0
    reopened = ShardStore(tmp_path)
    assert not reopened.has(rec["h"])
    assert not any(p.is_file() for p in (tmp_path / "shards").rglob("*"))  # stray bytes removed at start


def test_corrupt_copy_is_dropped_never_served(tmp_path: Path) -> None:
    store = ShardStore(tmp_path)
    rec, data = shard(b"precious bytes")
    store.put(rec, data)
    path = tmp_path / "shards" / rec["h"][:2] / rec["h"]
    path.write_bytes(b"precious bytez")
    with pytest.raises(Corrupt):
        store.get(rec["h"])
    assert not store.has(rec["h"]) and rec["h"] in store.lost and not path.exists()
    assert store.get(rec["h"]) is None
    assert store.put(rec, data) == "stored" and rec["h"] not in store.lost  # refetched


def test_read_check_is_the_crc_kept_since_the_sha256_was_verified(tmp_path: Path) -> None:
    store = ShardStore(tmp_path)
    rec, data = shard(b"checked once by SHA-256, then by CRC-32")
    store.put(rec, data)
    rec_path = tmp_path / "shards" / rec["h"][:2] / (rec["h"] + ".rec")
    assert json.loads(rec_path.read_bytes())["crc"] == zlib.crc32(data)  # kept on disk
    assert ShardStore(tmp_path).records[rec["h"]]["crc"] == zlib.crc32(data)  # and reloaded
    opened = store.open_checked(rec["h"])
    assert opened is not None and opened[2] == len(data)
    opened[1].close()


def test_record_without_crc_is_checked_by_sha256(tmp_path: Path) -> None:
    """A store written before CRCs were kept: its reads still refuse a corrupt copy."""
    store = ShardStore(tmp_path)
    rec, data = shard(b"an older record")
    store.put(rec, data)
    base = tmp_path / "shards" / rec["h"][:2] / rec["h"]
    doc = json.loads(base.with_suffix(".rec").read_bytes())
    del doc["crc"]
    base.with_suffix(".rec").write_text(json.dumps(doc))
    old = ShardStore(tmp_path)
    assert "crc" not in old.records[rec["h"]] and old.get(rec["h"]) == (rec, data)
    base.write_bytes(b"an older recorc")
    with pytest.raises(Corrupt):
        old.open_checked(rec["h"])
    assert rec["h"] in old.lost


def test_scrub_catches_tampering_that_kept_the_crc(tmp_path: Path) -> None:
    """Someone with the disk rewrote a shard and its record's CRC: reads pass the CRC, the
    SHA-256 scrub drops the copy for a refetch (and every reader's own SHA-256 check refuses it)."""
    store = ShardStore(tmp_path)
    rec, data = shard(b"the real bytes")
    store.put(rec, data)
    assert store.scrub(rec["h"]) and store.counters["scrubbed"] == 1
    base = tmp_path / "shards" / rec["h"][:2] / rec["h"]
    forged = b"forged  bytes!"
    base.write_bytes(forged)
    doc = json.loads(base.with_suffix(".rec").read_bytes())
    doc["crc"] = zlib.crc32(forged)
    base.with_suffix(".rec").write_text(json.dumps(doc))
    tampered = ShardStore(tmp_path)
    assert tampered.get(rec["h"]) == (rec, forged)  # the CRC alone cannot tell
    assert model.sha256_hex(forged) != rec["h"]  # what a reader checks
    assert tampered.scrub(rec["h"]) is False
    assert not tampered.has(rec["h"]) and rec["h"] in tampered.lost and not base.exists()
    assert tampered.counters["scrub_corrupt"] == 1


def test_delete_by_owner_and_tombstone_refuses_replay(tmp_path: Path) -> None:
    store = ShardStore(tmp_path)
    data = b"object bytes"
    oid = hashlib.sha256(data).hexdigest()
    rec, _ = shard(data, t=100)
    store.put(rec, data, obj=oid)
    m = model.sign_manifest(OWNER, oid, len(data), 1024, 3, [rec["h"]], 100)
    store.put_manifest(m)
    with pytest.raises(Refused):
        store.delete(model.sign_tomb(OTHER, oid, 200))  # not the owner
    assert store.has(rec["h"])
    assert store.delete(model.sign_tomb(OWNER, oid, 200)) == 1
    assert not store.has(rec["h"]) and oid not in store.manifests
    with pytest.raises(Refused) as err:
        store.put(rec, data, obj=oid)  # the old store request, replayed
    assert err.value.reason == "tombstoned"
    with pytest.raises(Refused):
        store.put_manifest(m)
    newer, _ = shard(data, t=300)
    assert store.put(newer, data, obj=oid) == "stored"  # the owner may store it again later
