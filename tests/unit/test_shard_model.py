"""Shard records, splitting and manifests; the placement lottery (no sockets)."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter

import pytest

from borgusb.keys import SigningKey
from borgusb.shard import model, placement

OWNER = SigningKey.generate()
OTHER = SigningKey.generate()


@pytest.mark.parametrize("size", [0, 1, 1023, 1024, 1025, 4096, 5000])
def test_split_covers_every_byte_once(size: int) -> None:
    data = random.Random(size).randbytes(size)
    parts = list(model.split(data, 1024))
    assert b"".join(bytes(p) for _, p in parts) == data
    assert [off for off, _ in parts] == list(range(0, size, 1024))
    assert len(parts) == -(-size // 1024)
    assert all(0 < len(p) <= 1024 for _, p in parts)


def test_record_signed_by_owner_and_tamper_evident() -> None:
    h = model.sha256_hex(b"abc")
    rec = model.sign_record(OWNER, h, 3, 1000)
    assert model.check_record(rec) is rec and rec["o"] == OWNER.public_key_hex
    for field, value in (("n", 4), ("t", 1001), ("h", model.sha256_hex(b"abd")), ("o", OTHER.public_key_hex)):
        with pytest.raises(model.BadRecord) as err:
            model.check_record(dict(rec, **{field: value}))
        assert err.value.reason == "bad_owner_signature"
    with pytest.raises(model.BadRecord):
        model.check_record(dict(rec, extra=1))
    for sig in (rec["s"] + "0", rec["s"].upper()):  # odd-length hex once escaped as a bare ValueError
        with pytest.raises(model.BadRecord) as err:
            model.check_record(dict(rec, s=sig))
        assert err.value.reason == "malformed"


def test_manifest_round_trip_and_checks() -> None:
    data = random.Random(1).randbytes(2500)
    hashes = [model.sha256_hex(p) for _, p in model.split(data, 1000)]
    m = model.sign_manifest(OWNER, len(data), 1000, 3, hashes, 5)
    assert model.check_manifest(m)["shards"] == hashes and m["v"] == 2
    assert model.manifest_bounds(m) == [(0, 1000), (1000, 1000), (2000, 500)]
    with pytest.raises(model.BadRecord):
        model.check_manifest(dict(m, shards=hashes[:2]))  # wrong count for the size
    with pytest.raises(model.BadRecord):
        model.check_manifest(dict(m, r=2))  # signature covers r
    empty = model.sign_manifest(OWNER, 0, 1000, 3, [], 5)
    assert model.check_manifest(empty)["shards"] == []


def test_object_id_is_the_shard_lists_and_comes_from_the_content_alone() -> None:
    """The id commits to every shard's hash and size, the shard size and the total size: the
    same bytes give the same id (whoever puts them), any other layout or byte another."""
    data = random.Random(2).randbytes(2500)
    hashes = [model.sha256_hex(p) for _, p in model.split(data, 1000)]
    oid = model.object_id(2500, 1000, hashes)
    preimage = {"d": "borgusb.object", "v": 2, "size": 2500, "ss": 1000}
    preimage["shards"] = [[hashes[0], 1000], [hashes[1], 1000], [hashes[2], 500]]
    std = json.dumps(preimage, sort_keys=True, separators=(",", ":")).encode()
    assert oid == hashlib.sha256(std).hexdigest()  # by the standard library alone
    assert oid != hashlib.sha256(data).hexdigest()
    assert model.sign_manifest(OWNER, 2500, 1000, 3, hashes, 5)["id"] == oid
    assert model.sign_manifest(OTHER, 2500, 1000, 1, hashes, 9)["id"] == oid  # same bytes, same id
    others = {
        model.object_id(2500, 1000, hashes[::-1]),
        model.object_id(2400, 1000, hashes),  # the last shard's size differs
        model.object_id(2500, 1250, [model.sha256_hex(p) for _, p in model.split(data, 1250)]),
        model.object_id(0, 1000, []),
    }
    assert oid not in others and len(others) == 4
    with pytest.raises(model.BadRecord):
        model.object_id(2500, 1000, hashes[:2])


def test_manifest_is_checked_against_its_id_and_the_old_format_is_refused() -> None:
    data = b"x" * 2500
    hashes = [model.sha256_hex(p) for _, p in model.split(data, 1000)]
    m = model.sign_manifest(OWNER, len(data), 1000, 3, hashes, 5)
    forged = model._sign(
        OWNER, "borgusb.manifest", dict({k: v for k, v in m.items() if k not in ("o", "s")}, id="ab" * 32)
    )
    old = model._sign(OWNER, "borgusb.manifest", {k: v for k, v in m.items() if k not in ("v", "o", "s")})
    future = model._sign(OWNER, "borgusb.manifest", dict({k: v for k, v in m.items() if k not in ("o", "s")}, v=3))
    for bad, reason in (
        (forged, "id_mismatch"),  # signed by its owner, but the id is not its shard list's
        (old, "old_manifest_format"),  # format 1: id = the whole file's SHA-256
        (future, "unknown_manifest_format"),
        (dict(m, v=True), "unknown_manifest_format"),
    ):
        with pytest.raises(model.BadRecord) as err:
            model.check_manifest(bad)
        assert err.value.reason == reason, str(err.value)


def test_tombstone_signature() -> None:
    tomb = model.sign_tomb(OWNER, model.EMPTY_SHA256, 9)
    assert model.check_tomb(tomb)
    with pytest.raises(model.BadRecord):
        model.check_tomb(dict(tomb, t=10))


def test_the_manifest_sent_with_a_tombstone_is_its_signers_of_that_object() -> None:
    data = b"deleted bytes"
    m = model.sign_manifest(OWNER, len(data), 1024, 3, [model.sha256_hex(data)], 5)
    oid = m["id"]
    tomb = model.sign_tomb(OWNER, oid, 9)
    assert model.check_tomb_manifest(tomb, m) is m
    theirs = model.sign_manifest(OTHER, len(data), 1024, 3, [model.sha256_hex(data)], 5)
    another = model.sign_manifest(OWNER, 0, 1024, 3, [], 5)
    for bad, reason in (
        (theirs, "not_owner"),  # a stranger's manifest for the id vouches for nothing of the owner's
        (another, "malformed"),  # the owner's manifest of another object
        (dict(m, shards=[model.EMPTY_SHA256]), "id_mismatch"),  # a shard list that is not the id's
    ):
        with pytest.raises(model.BadRecord) as err:
            model.check_tomb_manifest(tomb, bad)
        assert err.value.reason == reason


def test_lottery_is_deterministic_verifiable_and_uniform() -> None:
    nodes = [SigningKey.generate().public_key_hex for _ in range(8)]
    h = model.sha256_hex(b"x")
    assert placement.choose(h, nodes, 3) == placement.choose(h, list(reversed(nodes)), 3)
    value, nonce = placement.ticket(h, nodes[0])
    assert value < 1 << (256 - placement.DIFFICULTY_BITS)
    assert placement.check_ticket(h, nodes[0], nonce) == value
    assert placement.check_ticket(h, nodes[0], nonce + 1) is None  # only the first winning nonce counts
    wins = Counter()
    for i in range(800):
        wins.update(placement.choose(model.sha256_hex(str(i).encode()), nodes, 3))
    # each node should hold about 3/8 of 800 = 300 shards
    assert all(200 < wins[n] < 400 for n in nodes), wins


def test_lottery_moves_only_the_departed_nodes_shards() -> None:
    nodes = [SigningKey.generate().public_key_hex for _ in range(6)]
    gone = nodes[2]
    for i in range(100):
        h = model.sha256_hex(str(i).encode())
        before = placement.choose(h, nodes, 3)
        after = placement.choose(h, [n for n in nodes if n != gone], 3)
        assert set(before) - {gone} <= set(after)
        assert placement.choose(h, nodes, 3, exclude=before) == placement.rank(h, nodes)[3:6]
