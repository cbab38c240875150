"""The file core: chunked encryption, signed folder manifests, edits, key wrapping, shares."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from borgusb import canonical
from borgusb.files import ops, remote, stream
from borgusb.files.entry import Entry, check_name, tombstone
from borgusb.files.errors import (
    BadName,
    BadSignature,
    Exists,
    Malformed,
    NotFound,
    NotReader,
    Tampered,
    TooLarge,
)
from borgusb.files.keyring import folder_key, readers_for
from borgusb.files.manifest import check_folder, make_folder, open_entries, parse_folder, signing_bytes
from borgusb.files.share import make_share, parse_share
from borgusb.keys import SigningKey

OWNER = SigningKey(hashlib.sha256(b"files owner").digest())
BOB = SigningKey(hashlib.sha256(b"files bob").digest())
EVE = SigningKey(hashlib.sha256(b"files eve").digest())
FOLDER_ID = "ab" * 32


def file_entry(n: int, private: bool = True) -> Entry:
    return Entry("file", hashlib.sha256(b"%d" % n).hexdigest(), n, "text/plain", 1000 + n, "11" * 32 if private else "")


# -- stream --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, stream.CHUNK - 1, stream.CHUNK, stream.CHUNK + 1, 3 * stream.CHUNK + 5])
def test_stream_roundtrip_any_pieces(size: int) -> None:
    key = stream.new_key()
    data = os.urandom(size)
    enc = stream.Encryptor(key)
    ct = b"".join(enc.update(data[i : i + 1000]) for i in range(0, size, 1000)) + enc.finalize()
    assert len(ct) == stream.encrypted_size(size)
    assert ct == stream.encrypt(key, data)  # the counter nonces make it deterministic for one key
    dec = stream.Decryptor(key)
    out = b"".join(dec.update(ct[i : i + 777]) for i in range(0, len(ct), 777)) + dec.finalize()
    assert out == data


def test_stream_holds_at_most_a_chunk() -> None:
    enc = stream.Encryptor(stream.new_key())
    for _ in range(20):
        enc.update(os.urandom(10_000))
        assert len(enc._buf) <= stream.CHUNK


def test_stream_refuses_truncation_reorder_change_and_other_key() -> None:
    key = stream.new_key()
    data = os.urandom(3 * stream.CHUNK)
    ct = stream.encrypt(key, data)
    size = stream.CHUNK + stream.TAG
    chunks = [ct[i : i + size] for i in range(0, len(ct), size)]
    damaged = [
        b"".join(chunks[:2]),  # truncated at a chunk boundary
        ct[:-1],
        chunks[1] + chunks[0] + chunks[2],
        ct[:100] + bytes([ct[100] ^ 1]) + ct[101:],
        ct + chunks[2],
        b"",
    ]
    for bad in damaged:
        with pytest.raises(Tampered):
            stream.decrypt(key, bad)
    with pytest.raises(Tampered):
        stream.decrypt(stream.new_key(), ct)


def test_file_streaming_leaves_nothing_of_a_file_that_fails(tmp_path: Path) -> None:
    key, src = stream.new_key(), tmp_path / "src"
    src.write_bytes(os.urandom(3 * remote.READ_BLOCK + 5))
    cipher, out = tmp_path / "cipher", tmp_path / "out"
    assert remote.encrypt_file(key, src, cipher) == src.stat().st_size
    assert cipher.stat().st_size == stream.encrypted_size(src.stat().st_size)
    sealed = cipher.read_bytes()
    remote.decrypt_in_place(key, cipher, out)  # decrypted over itself, then renamed
    assert out.read_bytes() == src.read_bytes() and not cipher.exists()
    data = bytearray(sealed)
    data[-1] ^= 1  # the last chunk's tag: every chunk before it opens, and is written, first
    cipher.write_bytes(bytes(data))
    with pytest.raises(Tampered):
        remote.decrypt_in_place(key, cipher, tmp_path / "bad")
    assert not (tmp_path / "bad").exists() and not cipher.exists()


@pytest.mark.parametrize("size", [0, 1, stream.CHUNK - 1, stream.CHUNK, stream.CHUNK + 1, 9 * stream.CHUNK, 300_001])
def test_in_place_decryption_is_the_streaming_one(tmp_path: Path, size: int) -> None:
    """The same plaintext as `Decryptor` for every length around the chunk edges, and the same refusals:
    cut at a chunk's edge or inside a tag, a chunk dropped, two swapped, another key."""
    key, plain = stream.new_key(), os.urandom(size)
    sealed = stream.encrypt(key, plain)
    path, out = tmp_path / "c", tmp_path / "out"
    path.write_bytes(sealed)
    remote.decrypt_in_place(key, path, out)
    assert out.read_bytes() == plain == stream.decrypt(key, sealed)
    step = stream.CHUNK + stream.TAG
    damaged = [sealed[:-1], sealed[: stream.TAG - 1], sealed[:step] if len(sealed) > step else b""]
    if len(sealed) > 2 * step:
        damaged += [sealed[step:], sealed[step : 2 * step] + sealed[:step] + sealed[2 * step :]]
    for bad in damaged:
        path.write_bytes(bad)
        with pytest.raises(Tampered):
            stream.decrypt(key, bad)
        with pytest.raises(Tampered):
            remote.decrypt_in_place(key, path, tmp_path / "bad")
        assert not path.exists() and not (tmp_path / "bad").exists()
    path.write_bytes(sealed)
    with pytest.raises(Tampered):
        remote.decrypt_in_place(stream.new_key(), path, tmp_path / "bad")


# -- names and entries ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", "x\n", "e\u0301", "a" * 256, "\u2028"])
def test_bad_names(name: str) -> None:
    with pytest.raises(BadName):
        check_name(name)


def test_good_names() -> None:
    for name in ["a", "é", "report (1).pdf", "a" * 255, ".hidden", "日本語"]:
        assert check_name(name) == name


@pytest.mark.parametrize(
    "doc",
    [
        {},
        dict(file_entry(1).to_dict(), kind="link"),
        dict(file_entry(1).to_dict(), size=-1),
        dict(file_entry(1).to_dict(), size=True),
        dict(file_entry(1).to_dict(), obj="zz"),
        dict(file_entry(1).to_dict(), key="11"),
        dict(tombstone(5).to_dict(), obj="ab" * 32),
        dict(file_entry(1).to_dict(), extra=1),
    ],
)
def test_malformed_entries(doc: dict[str, object]) -> None:
    with pytest.raises(Malformed):
        Entry.from_dict(doc)


# -- manifests -----------------------------------------------------------------------------------


def private_folder(entries: dict[str, Entry], others: tuple[str, ...] = ()) -> tuple[bytes, object]:
    key = stream.new_key()
    f = make_folder(
        OWNER,
        folder=FOLDER_ID,
        version=1,
        parents=(),
        ts=5,
        machine="laptop",
        entries=entries,
        content_key=key,
        readers=readers_for(OWNER.public_key_hex, others, key, FOLDER_ID),
    )
    return key, f


def test_private_folder_roundtrip_and_no_plaintext() -> None:
    entries = {"secret-name.txt": file_entry(1)}
    key, f = private_folder(entries, (BOB.public_key_hex,))
    wire = f.encode()  # type: ignore[attr-defined]
    plain = entries["secret-name.txt"]
    # neither the name, the file's object id nor its key is readable (whole values: a short run such as
    # "1111" turns up in random ciphertext's hex a few times in a hundred)
    assert not any(v.encode() in wire for v in ("secret-name", plain.obj, plain.key))
    back = parse_folder(wire)
    assert back.id == f.id  # type: ignore[attr-defined]
    assert folder_key(OWNER, back) == key
    assert open_entries(back, folder_key(OWNER, back)) == entries
    assert open_entries(back, folder_key(BOB, back)) == entries  # shared
    with pytest.raises(NotReader):
        folder_key(EVE, back)
    with pytest.raises(Tampered):
        open_entries(back, stream.new_key())


def test_public_folder_is_plain_and_holds_no_private_entry() -> None:
    entries = {"readme": file_entry(2, private=False)}
    f = make_folder(
        OWNER, folder=FOLDER_ID, version=1, parents=(), ts=5, machine="m", entries=entries, content_key=None, readers={}
    )
    assert b"readme" in f.encode()
    assert folder_key(EVE, f) is None
    assert open_entries(f, None) == entries
    with pytest.raises(Malformed):
        make_folder(
            OWNER,
            folder=FOLDER_ID,
            version=1,
            parents=(),
            ts=5,
            machine="m",
            entries={"x": file_entry(3)},
            content_key=None,
            readers={},
        )


def test_only_the_owners_signature_makes_a_folder() -> None:
    _, f = private_folder({"a": file_entry(1)})
    doc = canonical.loads(f.encode())  # type: ignore[attr-defined]
    eve_signed = dict(doc, sig=EVE.sign(signing_bytes(doc)).hex())  # another key signing the owner's folder
    with pytest.raises(BadSignature):
        check_folder(eve_signed)
    changed = dict(doc, machine="other")
    with pytest.raises(BadSignature):
        check_folder(changed)


def test_ciphertext_bound_to_its_version() -> None:
    """A private folder's sealed entries moved into another version's header do not open."""
    key, f = private_folder({"a": file_entry(1)})
    doc = canonical.loads(f.encode())  # type: ignore[attr-defined]
    body = {k: v for k, v in doc.items() if k != "sig"}
    body["version"], body["parents"] = 2, ["cd" * 32]
    resigned = check_folder(dict(body, sig=OWNER.sign(signing_bytes(body)).hex()))
    with pytest.raises(Tampered):
        open_entries(resigned, key)


@pytest.mark.parametrize(
    "change",
    [
        {"v": 2},
        {"parents": ["cd" * 32]},  # version 1 with a parent
        {"version": 0},
        {"folder": "xyz"},
        {"public": 1},
        {"readers": {}},  # private without its owner among readers
        {"entries": {"a": file_entry(1).to_dict()}},  # private with clear entries
        {"machine": "x" * 65},
        {"sig": "zz"},
    ],
)
def test_malformed_folders(change: dict[str, object]) -> None:
    _, f = private_folder({"a": file_entry(1)})
    doc = dict(canonical.loads(f.encode()), **change)  # type: ignore[attr-defined]
    with pytest.raises(Malformed):
        check_folder(doc)


def test_oversized_manifest_refused_before_parsing() -> None:
    with pytest.raises(TooLarge):
        parse_folder(b"{" + b" " * (4 * 1024 * 1024) + b"}")
    with pytest.raises(Malformed):
        parse_folder(b"[1.5]")


# -- edits ---------------------------------------------------------------------------------------


def test_edits_and_tombstones() -> None:
    a, b = file_entry(1), file_entry(2)
    e = ops.put({}, "a", a)
    e = ops.put(e, "b", b)
    e2 = ops.rename(e, "a", "c", 50)
    assert ops.live(e2) == {"b": b, "c": a} and e2["a"] == tombstone(50)
    assert e == {"a": a, "b": b}  # the input is left alone
    with pytest.raises(Exists):
        ops.rename(e2, "b", "c", 51)
    with pytest.raises(NotFound):
        ops.remove(e2, "a", 52)
    sub = Entry("folder", "cd" * 32, 0, "", 7, "22" * 32)
    e3 = ops.put(e2, "docs", sub)
    with pytest.raises(Exists):
        ops.put(e3, "docs", a)
    src, dst = ops.move(e3, "b", {}, "b2", 60)
    assert "b" not in ops.live(src) and dst == {"b2": b}
    assert ops.put(e3, "b", file_entry(9))["b"] == file_entry(9)  # a new upload replaces a file
    e4 = ops.remove(e3, "b", 70)
    assert ops.put(e4, "b", a)["b"] == a  # a name freed by removal can be used again


def test_restore_tombstones_what_the_old_version_lacked() -> None:
    old = {"a": file_entry(1)}
    current = {"a": file_entry(2), "b": file_entry(3)}
    assert ops.restore(current, old, 99) == {"a": file_entry(1), "b": tombstone(99)}


# -- shares --------------------------------------------------------------------------------------


def test_file_share_opens_only_for_its_recipient() -> None:
    entry = Entry("file", "ef" * 32, 10, "text/plain", 3, stream.new_key().hex())
    share = make_share(OWNER, BOB.public_key_hex, "notes.txt", entry, 4)
    wire = share.encode()
    assert entry.key not in wire.decode()
    back = parse_share(wire)
    assert back.file_entry(BOB) == entry
    with pytest.raises(Tampered):
        back.file_entry(EVE)
    doc = canonical.loads(wire)
    with pytest.raises(BadSignature):
        parse_share(canonical.dumps(dict(doc, to=EVE.public_key_hex)))
    with pytest.raises(TooLarge):
        parse_share(b" " * 5000)
