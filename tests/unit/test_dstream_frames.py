"""DStream's frame codec and the locate reply a receiver is handed: hostile inputs are refused
with typed errors, never an IndexError or KeyError from deep inside."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from borgusb import envelope
from borgusb.dstream import Holder, StreamError, frame, parse_locate, unframe
from borgusb.keys import SigningKey
from borgusb.shard import model


def test_frame_round_trip_keeps_the_bytes_as_a_view() -> None:
    data = bytes(range(256)) * 3 + b"\n\n"
    wire, rest = unframe(frame(b'{"v":1}', data))
    assert wire == b'{"v":1}' and bytes(rest) == data and isinstance(rest, memoryview)
    assert unframe(frame(b"{}")) == (b"{}", memoryview(b""))
    with pytest.raises(envelope.Malformed):
        unframe(b'{"no newline"}')


@pytest.mark.parametrize(
    "doc",
    [
        None,
        "x",
        [],
        ["k", "1.2.3.4"],
        ["k", "1.2.3.4", "80"],
        [1, "ip", 80],
        ["k", 5, 80],
        ["k", "ip", True],
        ["k", "ip", 80, 1],
        {"k": 1},
    ],
)
def test_holder_from_json_refuses_what_is_not_one(doc: Any) -> None:
    with pytest.raises(ValueError):
        Holder.from_json(doc)
    assert Holder.from_json(["k", "ip", 80]).to_json() == ["k", "ip", 80]


def located(**change: Any) -> tuple[dict[str, Any], str]:
    key = SigningKey.generate()
    data = b"abc" * 1000
    m = model.sign_manifest(key, len(data), 1 << 20, 1, [hashlib.sha256(data).hexdigest()], 1_700_000_000_000)
    reply = {"found": True, "manifest": m, "holders": [[key.public_key_hex, "10.0.0.1", 13355]], "shards": [[0]]}
    reply.update(change)
    return reply, m["id"]


def test_parse_locate_gives_the_manifest_and_holders() -> None:
    reply, h = located()
    m, per_shard = parse_locate(reply, h)
    assert m["id"] == h and per_shard[0][0].ip == "10.0.0.1"


@pytest.mark.parametrize(
    "change",
    [
        {"found": False},
        {"holders": "nope"},
        {"holders": [["k", "ip"]]},
        {"shards": [[3]]},  # an index past the holders
        {"shards": [["0"]]},
        {"shards": None},
        {"shards": [[0], [0]]},  # more entries than the manifest's shards
    ],
)
def test_parse_locate_refuses_malformed_replies(change: dict[str, Any]) -> None:
    reply, h = located(**change)
    with pytest.raises(StreamError):
        parse_locate(reply, h)


def test_parse_locate_refuses_another_objects_manifest() -> None:
    reply, _ = located()
    with pytest.raises(StreamError):
        parse_locate(reply, "00" * 32)
    reply["manifest"] = dict(reply["manifest"], size=1)  # no longer the owner's signature
    with pytest.raises(model.BadRecord):
        parse_locate(reply, reply["manifest"]["id"])
