"""The content-addressed store: ownership, quota, atomicity, corruption, deletion (no sockets)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

from borgusb.keys import SigningKey
from borgusb.shard import model
from borgusb.shard.freshchecks import FreshChecks
from borgusb.shard.store import ShardStore
from borgusb.shard.storeerrors import Corrupt, DiskFull, Refused, StoreFull

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


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs (root only: the chaos suite's storage scenario mounts one as a holder's store)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def test_full_disk_refuses_cleanly(small_disk: Path) -> None:
    store = ShardStore(small_disk, quota_bytes=1 << 30)  # the quota allows it; the disk does not
    small = shard(b"fits")
    store.put(*small)
    rec, data = shard(os.urandom(100_000))
    with pytest.raises(DiskFull) as err:
        store.put(rec, data)
    assert err.value.reason == "disk_full" and err.value.status == 507
    assert store.counters["refused:disk_full"] == 1
    assert not store.has(rec["h"]) and store.used_bytes == 4
    assert not list((small_disk / "tmp").iterdir())  # the partial write removed
    assert not (small_disk / "shards" / rec["h"][:2] / rec["h"]).exists()
    with pytest.raises(OSError), open(small_disk / "filler", "wb") as filler:  # someone else takes the rest
        while True:
            filler.write(b"x" * 4096)
            filler.flush()
    part = b"tiny"
    oid = model.object_id(len(part), len(part), [model.sha256_hex(part)])
    with pytest.raises(DiskFull):  # a manifest too (any write of the store)
        store.put_manifest(model.sign_manifest(OWNER, len(part), len(part), 3, [model.sha256_hex(part)], 100))
    assert oid not in store.manifests and store.counters["refused:disk_full"] == 2
    assert ShardStore(small_disk).get(small[0]["h"]) == small  # what was stored before stays readable


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


def open_and_close(store: ShardStore, h: str) -> None:
    opened = store.open_checked(h)
    assert opened is not None
    opened[1].close()


def test_a_file_checked_a_moment_ago_is_not_checked_again_unless_it_changed(tmp_path: Path) -> None:
    """A popular shard's read check is not repeated for the very file that just passed; another
    file in its place (another inode, size, mtime or ctime) is checked again, and refused if corrupt."""
    store = ShardStore(tmp_path)
    rec, data = shard(b"popular bytes, read by every viewer")
    store.put(rec, data)
    path = tmp_path / "shards" / rec["h"][:2] / rec["h"]
    with mock.patch("borgusb.shard.store.crc32", wraps=zlib.crc32) as crc:
        open_and_close(store, rec["h"])
        open_and_close(store, rec["h"])
        assert crc.call_count == 1 and store.counters["served_fresh"] == 1
        raw = bytearray(path.read_bytes())
        raw[3] ^= 0x01
        (tmp_path / "rotten").write_bytes(bytes(raw))
        os.replace(tmp_path / "rotten", path)  # another file (inode) in its place
        with pytest.raises(Corrupt):
            store.open_checked(rec["h"])
        assert crc.call_count == 2 and rec["h"] in store.lost
        store.put(rec, data)  # refetched: the new copy is checked, then trusted again
        open_and_close(store, rec["h"])
        open_and_close(store, rec["h"])
        assert crc.call_count == 4 and store.counters["served_fresh"] == 2  # the put's CRC, then one check
        before = os.stat(path)
        with open(path, "r+b") as f:  # rewritten in place: the same file, its times moved
            f.write(b"P" if data[:1] != b"P" else b"Q")
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
        with pytest.raises(Corrupt):
            store.open_checked(rec["h"])
        assert crc.call_count == 5


def test_fresh_checks_expire_are_bounded_and_forgotten(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x")
    st = os.stat(f)
    checks = FreshChecks(fresh_s=30.0, max_entries=2)
    checks.passed("a", st)
    assert checks.fresh("a", st) and not checks.fresh("b", st)
    with mock.patch("borgusb.shard.freshchecks.time.monotonic", return_value=time.monotonic() + 31):
        assert not checks.fresh("a", st)  # too old a check stands for nothing
    os.replace(tmp_path / "f", tmp_path / "g")
    f.write_bytes(b"x")  # the same size and bytes, another inode
    assert not checks.fresh("a", os.stat(f))
    checks.passed("b", st)
    checks.passed("c", st)
    assert not checks.fresh("a", st) and checks.fresh("b", st)  # at most 2: the oldest went
    checks.forget("b")
    assert not checks.fresh("b", st)


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
    rec, _ = shard(data, t=100)
    oid = model.object_id(len(data), 1024, [rec["h"]])
    store.put(rec, data, obj=oid)
    m = model.sign_manifest(OWNER, len(data), 1024, 3, [rec["h"]], 100)
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


# ------------------------------------------------------------------ issue 15.1: a deleted object stays deleted


def stored_object(store: ShardStore, *parts: bytes, key: SigningKey = OWNER, t: int = 100) -> tuple[dict, list]:
    """An object of `parts` (one shard each) put on store the way a holder gets it: records, then manifest."""
    shards = [shard(p, key, t) for p in parts]
    size = sum(len(p) for p in parts)
    oid = model.object_id(size, len(parts[0]), [rec["h"] for rec, _ in shards])
    for rec, data in shards:
        store.put(rec, data, obj=oid)
    m = model.sign_manifest(key, size, len(parts[0]), 3, [rec["h"] for rec, _ in shards], t)
    store.put_manifest(m)
    return m, shards


def refused(reason: str, call, *args, **kw) -> None:
    with pytest.raises(Refused) as err:
        call(*args, **kw)
    assert err.value.reason == reason, str(err.value)


def test_another_keys_tombstone_never_frees_a_deleted_object(tmp_path: Path) -> None:
    """The attack: the owner deletes, a stranger sends its own tombstone for the same id, then
    replays the owner's old manifest and records on every path: all of it stays refused."""
    store = ShardStore(tmp_path)
    m, shards = stored_object(store, b"a" * 8, b"b" * 8)
    oid = m["id"]
    assert store.delete(model.sign_tomb(OWNER, oid, 200)) == 2
    store.delete(model.sign_tomb(OTHER, oid, 300))  # its own tombstone: it can only ever delete its own
    for s in (store, ShardStore(tmp_path)):  # and after a restart
        refused("tombstoned", s.put_manifest, m)
        for rec, data in shards:
            for obj in (oid, None, hashlib.sha256(b"any other id").hexdigest()):
                refused("tombstoned", s.put, rec, data, obj)
        assert not s.records and not s.manifests
    refused("not_owner", store.delete, model.sign_tomb(OTHER, oid, 400), m)  # the owner's manifest as "proof"
    assert store.counters["refused:tomb_not_owner"] == 1


def test_tombstone_of_another_key_is_refused_while_the_owners_manifest_is_held(tmp_path: Path) -> None:
    store = ShardStore(tmp_path)
    m, shards = stored_object(store, b"mine")
    refused("not_owner", store.delete, model.sign_tomb(OTHER, m["id"], 200))
    theirs = model.sign_manifest(OTHER, m["size"], m["ss"], m["r"], m["shards"], 150)
    refused("not_owner", store.delete, model.sign_tomb(OTHER, m["id"], 200), theirs)
    assert store.has(shards[0][0]["h"]) and store.manifests[m["id"]] == m
    assert store.counters["refused:tomb_not_owner"] == 2
    assert store.delete(model.sign_tomb(OWNER, m["id"], 200)) == 1


def test_a_stranger_tombstoning_first_cannot_block_the_owners_deletion(tmp_path: Path) -> None:
    """A node holding only shards (no manifest) hears a stranger's tombstone first: the owner's,
    arriving later, still deletes and still refuses the owner's old records."""
    holder = ShardStore(tmp_path / "holder")
    m, shards = stored_object(ShardStore(tmp_path / "manifest_holder"), b"x" * 8, b"y" * 8)
    for rec, data in shards:
        holder.put(rec, data)  # placed without naming the object
    holder.delete(model.sign_tomb(OTHER, m["id"], 150))
    assert len(holder.records) == 2
    assert holder.delete(model.sign_tomb(OWNER, m["id"], 200), m) == 2
    for rec, data in shards:
        refused("tombstoned", holder.put, rec, data)


def test_the_deleted_shard_list_travels_with_the_tombstone(tmp_path: Path) -> None:
    """A node that never held the manifest learns the object's shards from the owner's manifest sent
    with the tombstone: old records are refused even naming no object; newer ones are the owner's new puts."""
    m, shards = stored_object(ShardStore(tmp_path / "elsewhere"), b"p" * 8, b"q" * 8)
    store = ShardStore(tmp_path / "here")
    assert store.delete(model.sign_tomb(OWNER, m["id"], 200), m) == 0
    rec, data = shards[1]
    refused("tombstoned", store.put, rec, data)
    newer, _ = shard(data, t=300)
    assert store.put(newer, data) == "stored"


def test_forged_or_foreign_manifest_sent_with_a_tombstone_is_refused(tmp_path: Path) -> None:
    store = ShardStore(tmp_path)
    m, _ = stored_object(ShardStore(tmp_path / "elsewhere"), b"z" * 8)
    tomb = model.sign_tomb(OWNER, m["id"], 200)
    refused("bad_owner_signature", store.delete, tomb, dict(m, r=2))
    other, _ = stored_object(ShardStore(tmp_path / "elsewhere"), b"w" * 8)
    refused("malformed", store.delete, tomb, other)  # another object's manifest
    assert not store.tombs


def test_a_shard_shared_with_a_live_object_needs_that_objects_manifest(tmp_path: Path) -> None:
    """Two objects of one owner share a shard; the first is deleted. A copy of the shared shard is
    still taken for the live object, but only where its manifest vouches for it."""
    common = b"c" * 8
    first, _ = stored_object(ShardStore(tmp_path / "a"), common, b"1" * 8)
    live, shards = stored_object(ShardStore(tmp_path / "a2"), common, b"2" * 8)
    store = ShardStore(tmp_path / "here")
    store.delete(model.sign_tomb(OWNER, first["id"], 200), first)
    rec, data = shards[0]
    refused("tombstoned", store.put, rec, data, live["id"])  # the object is named, not proven
    refused("tombstoned", store.put, rec, data, live["id"], live=first)  # the deleted one proves nothing
    assert store.put(rec, data, live["id"], live=live) == "stored"
    held = ShardStore(tmp_path / "held")
    held.delete(model.sign_tomb(OWNER, first["id"], 200), first)
    held.put_manifest(live)
    assert held.put(rec, data, live["id"]) == "stored"  # the manifest held here vouches


def test_deleting_one_object_keeps_the_shard_of_another_and_its_refetch(tmp_path: Path) -> None:
    store = ShardStore(tmp_path)
    common = b"s" * 8
    first, _ = stored_object(store, common, b"1" * 8)
    live, shards = stored_object(store, common, b"2" * 8)
    assert store.delete(model.sign_tomb(OWNER, first["id"], 200), first) == 1
    rec, data = shards[0]
    assert store.records[rec["h"]]["objs"] == [live["id"]]
    (tmp_path / "shards" / rec["h"][:2] / rec["h"]).write_bytes(b"S" * 8)
    with pytest.raises(Corrupt):
        store.get(rec["h"])
    assert store.put(rec, data, live["id"]) == "stored"  # the refetch of a copy kept for the live object


def test_deleting_drops_a_lost_copy_of_the_object_so_it_is_never_refetched(tmp_path: Path) -> None:
    store = ShardStore(tmp_path)
    m, shards = stored_object(store, b"l" * 8)
    rec, data = shards[0]
    (tmp_path / "shards" / rec["h"][:2] / rec["h"]).write_bytes(b"L" * 8)
    with pytest.raises(Corrupt):
        store.get(rec["h"])
    store.delete(model.sign_tomb(OWNER, m["id"], 200))
    assert rec["h"] not in store.lost
    refused("tombstoned", store.put, rec, data, m["id"])
