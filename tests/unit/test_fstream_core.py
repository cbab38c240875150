"""fStream's core: range arithmetic (property-tested against a reference built from slices), the
signed stream map, and the key-frame parser."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from borgusb.files import stream
from borgusb.files.errors import Tampered
from borgusb.fstream import keyframes, ranges
from borgusb.fstream.sealed import RangeOpener
from borgusb.fstream.streammap import DOMAIN, BadMap, Rendition, check_map, encode_map, parse_map, sign_map
from borgusb.keys import SigningKey
from borgusb.shard import model
from borgusb.shard.window import Window
from borgusb.signed import signing_bytes

SIZES = st.integers(min_value=0, max_value=10_000)


def reference(header_first: int | None, header_last: int | None, size: int) -> tuple[int, int] | None:
    """The bytes (first, last) a bytes=first-last / first- / -last range names, by slicing."""
    data = list(range(size))
    if header_first is None:
        picked = data[-header_last:] if header_last else []
    else:
        picked = data[header_first : (header_last + 1 if header_last is not None else size)]
    return (picked[0], picked[-1]) if picked else None


@given(SIZES, st.one_of(st.none(), st.integers(0, 12_000)), st.one_of(st.none(), st.integers(0, 12_000)))
def test_a_range_answers_what_slicing_gives(size: int, first: int | None, last: int | None) -> None:
    if first is None and last is None:
        return
    header = f"bytes={'' if first is None else first}-{'' if last is None else last}"
    got = ranges.answer(header, size)
    if first is not None and last is not None and last < first:
        assert got == ranges.Whole(size)  # invalid: ignored
        return
    want = reference(first, last, size)
    if want is None:
        assert got == ranges.Unsatisfiable(size)
        assert got.content_range == f"bytes */{size}"
    else:
        assert isinstance(got, ranges.Part)
        assert (got.first, got.last) == want
        assert got.content_range == f"bytes {want[0]}-{want[1]}/{size}"


@given(st.text(max_size=300), SIZES)
def test_any_header_gets_an_answer_never_an_exception(header: str, size: int) -> None:
    got = ranges.answer(header, size)
    if isinstance(got, ranges.Part):
        assert 0 <= got.first <= got.last < size


@pytest.mark.parametrize(
    "header", ["bytes=", "bytes=-", "bytes=a-b", "items=0-1", "bytes 0-1", "bytes=5-2", "bytes=0-1;x", "=0-1"]
)
def test_malformed_headers_are_ignored(header: str) -> None:
    assert ranges.answer(header, 100) == ranges.Whole(100)


def test_named_cases() -> None:
    assert ranges.answer("bytes=0-0", 100) == ranges.Part(0, 0, 100)  # the first byte
    assert ranges.answer("bytes=99-99", 100) == ranges.Part(99, 99, 100)  # the last byte
    assert ranges.answer("bytes=-1", 100) == ranges.Part(99, 99, 100)
    assert ranges.answer("bytes=-500", 100) == ranges.Part(0, 99, 100)  # a suffix longer than the object
    assert ranges.answer("bytes=0-", 100) == ranges.Part(0, 99, 100)
    assert ranges.answer("bytes=10-20, 30-40", 100) == ranges.Part(10, 20, 100)  # the first of several
    assert ranges.answer("bytes=100-", 100) == ranges.Unsatisfiable(100)
    assert ranges.answer("bytes=-0", 100) == ranges.Unsatisfiable(100)
    assert ranges.answer("bytes=0-0", 0) == ranges.Unsatisfiable(0)
    assert ranges.answer("bytes=0-" + "9" * 40, 100) == ranges.Whole(100)  # beyond 19 digits: ignored
    assert ranges.answer(None, 7) == ranges.Whole(7)


@given(st.data(), st.integers(1, 5000), st.integers(1, 700))
def test_spans_cover_the_range_exactly_in_shard_order(data: st.DataObject, size: int, ss: int) -> None:
    first = data.draw(st.integers(0, size - 1))
    last = data.draw(st.integers(first, size - 1))
    out = ranges.spans(first, last, size, ss)
    rebuilt = [i * ss + off + k for i, off, n in out for k in range(n)]
    assert rebuilt == list(range(first, last + 1))
    assert all(0 <= off < ss and 0 < n <= ss - off for _, off, n in out)
    assert [i for i, _, _ in out] == list(range(first // ss, last // ss + 1))


def test_spans_refuse_a_range_outside_the_object() -> None:
    for first, last in ((0, 100), (5, 4), (-1, 3)):
        with pytest.raises(ValueError):
            ranges.spans(first, last, 100, 10)


def map_of(
    data: bytes, key: SigningKey, content_type: str, keys: list[tuple[int, int]], ss: int = 1000
) -> tuple[dict, dict]:
    """(the manifest, the map) of data."""
    hashes = [hashlib.sha256(c).hexdigest() for _, c in model.split(data, ss)]
    m = model.sign_manifest(key, len(data), ss, 3, hashes, 1)
    return m, sign_map(key, len(data), ss, hashes, content_type, keys, 5)


def test_the_map_round_trips_and_names_the_manifest_bytes() -> None:
    key = SigningKey.generate()
    m, doc = map_of(bytes(range(256)) * 10, key, "video/webm", [(4000, 2100), (0, 40), (2000, 1500)])
    sm = parse_map(encode_map(doc))
    assert (sm.id, sm.size, sm.ss, sm.type, sm.owner) == (m["id"], 2560, 1000, "video/webm", key.public_key_hex)
    assert sm.shards == tuple(m["shards"]) and doc["shards"][2] == [m["shards"][2], 2000]
    assert sm.keys == (0, 2000, 4000) and sm.key_before(3999) == 2000 and sm.key_before(10**9) == 4000
    assert sm.offsets == (40, 1500, 2100) and doc["keys"][1] == [2000, 1500]
    assert (sm.seek(3999), sm.seek(0), sm.seek(10**9)) == ((2000, 1500), (0, 40), (4000, 2100))


def test_a_version_1_map_is_still_read_without_offsets() -> None:
    key = SigningKey.generate()
    _, doc = map_of(b"z" * 2500, key, "video/webm", [])
    doc.update(v=1, keys=[0, 2000])
    for v3 in ("sig", "bps", "h", "alts"):
        del doc[v3]
    doc["sig"] = key.sign(signing_bytes(doc, DOMAIN)).hex()
    sm = check_map(doc)
    assert (sm.keys, sm.offsets, sm.seek(2500), sm.key_before(2500)) == ((0, 2000), (), None, 2000)


def test_a_map_names_the_owners_other_renditions_best_first() -> None:
    key = SigningKey.generate()
    low = Rendition("a" * 64, "b" * 64, 809_980, "video/webm", 324_000, 240)
    mid = Rendition("c" * 64, "d" * 64, 1_500_000, "video/webm", 600_000, 360)
    hashes = [hashlib.sha256(b"m" * 1000).hexdigest()] * 3
    doc = sign_map(key, 3000, 1000, hashes, "video/webm", [], 5, bps=3_100_000, height=720, alts=(low, mid))
    sm = parse_map(encode_map(doc))
    assert (sm.bps, sm.height, sm.alts) == (3_100_000, 720, (mid, low))  # by bits per second, highest first
    doc["alts"][0]["bps"] = 1  # the owner signed the ladder: a changed rung is not theirs
    with pytest.raises(BadMap, match="bad_signature"):
        check_map(doc)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: d.update(type="text/html"), "bad_type"),
        (lambda d: d.update(keys=[[5, 0], [1, 9]]), "malformed"),  # times descend
        (lambda d: d.update(keys=[[1, 9], [5, 0]]), "malformed"),  # offsets descend
        (lambda d: d.update(keys=[[1, 2500]]), "malformed"),  # an offset past the end
        (lambda d: d.update(keys=[5]), "malformed"),  # a version 1 key in a version 2 map
        (lambda d: d["shards"][1].__setitem__(1, 7), "malformed"),
        (lambda d: d["shards"][0].__setitem__(0, "0" * 64), "id_mismatch"),
        (lambda d: d.update(size=d["size"] - 1), "id_mismatch"),
        (lambda d: d.update(t=6), "bad_signature"),
        (lambda d: d.update(v=4), "unknown_version"),
        (lambda d: d.update(alts=[{"map": "0" * 64}]), "malformed"),
        (lambda d: d.update(h=-1), "malformed"),
        (lambda d: d.pop("keys"), "malformed"),
    ],
)
def test_a_changed_or_malformed_map_is_refused_with_its_reason(change, reason: str) -> None:
    key = SigningKey.generate()
    _, doc = map_of(b"x" * 2500, key, "video/webm", [(0, 0)])
    change(doc)
    with pytest.raises(BadMap) as exc:
        check_map(doc)
    assert exc.value.reason == reason


def test_non_canonical_or_huge_map_bytes_are_refused() -> None:
    key = SigningKey.generate()
    _, doc = map_of(b"y" * 10, key, "audio/ogg", [])
    with pytest.raises(BadMap, match="malformed"):
        parse_map(encode_map(doc) + b" ")
    with pytest.raises(BadMap, match="too_large"):
        parse_map(b"[" * (3 * 1024 * 1024))


def test_a_window_asked_to_prefer_a_later_shard_issues_it_first() -> None:
    win = Window([["a", "b"]] * 10, window=3)
    win.prefer(6)
    assert [i for i, _ in win.next(0)] == [6, 7, 8]
    for i in (6, 7, 8):
        win.ok(i)
    assert [i for i, _ in win.next(0)] == [9]  # nothing before the seek while a shard after it is missing
    win.ok(9)
    assert [i for i, _ in win.next(0)] == [0, 1, 2]


def test_key_frames_and_type_from_ffprobe_text() -> None:
    text = "0.007000,40,K_\n0.049000,90,__\n1.007000,900,K_\nN/A,950,K_\ngarbage\n2.5,1800,K_D\n1.007,900,K_\n"
    text += "3.0,N/A,K_\n3.5,1700,K_\n4.0,2000,K_\n"  # no offset; an offset behind the one before: left out
    assert keyframes.key_frames(text) == [(7, 40), (1007, 900), (2500, 1800), (4000, 2000)]
    assert keyframes.content_type('"matroska,webm"', True) == "video/webm"
    assert keyframes.content_type("matroska,webm", False) == "audio/webm"
    assert keyframes.content_type("avi", True) == "application/octet-stream"


@settings(max_examples=60, deadline=None)
@given(st.data(), st.integers(1, 3 * stream.CHUNK + 100))
def test_a_private_range_opens_from_its_chunks_alone(data: st.DataObject, size: int) -> None:
    key = bytes(range(32))
    plain = bytes(i % 251 for i in range(size))
    cipher = stream.encrypt(key, plain)
    first = data.draw(st.integers(0, size - 1))
    last = data.draw(st.integers(first, size - 1))
    opener = RangeOpener(key, len(cipher), first, last)
    assert opener.plain_size == size
    wanted = cipher[opener.cipher_first : opener.cipher_last + 1]
    cut = data.draw(st.integers(0, len(wanted)))  # two pieces, as from two endpoints one after the other
    got = opener.update(wanted[:cut]) + opener.update(wanted[cut:])
    assert got == plain[first : last + 1] and opener.done and opener.fed == len(wanted)


def test_a_private_range_refuses_changed_or_truncated_ciphertext() -> None:
    key = bytes(32)
    cipher = bytearray(stream.encrypt(key, b"z" * (2 * stream.CHUNK + 5)))
    opener = RangeOpener(key, len(cipher), 0, 10)
    cipher[3] ^= 1
    with pytest.raises(Tampered):
        opener.update(bytes(cipher[opener.cipher_first : opener.cipher_last + 1]))
    short = stream.encrypt(key, b"z" * (2 * stream.CHUNK + 5))[:-1]  # the last chunk would open as not-last
    tail = RangeOpener(key, len(short), 2 * stream.CHUNK, 2 * stream.CHUNK + 3)
    with pytest.raises(Tampered):
        tail.update(short[tail.cipher_first : tail.cipher_last + 1])
