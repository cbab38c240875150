"""The content-addressed store: ownership, quota, atomicity, corruption, deletion (no sockets)."""

from __future__ import annotations

import hashlib
import os
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
