"""The stream map: what an owner signs so that any fStream endpoint can serve their media.

Wire form, canonical JSON, at most `MAX_MAP_BYTES`, stored as an object of its own (its object id
is the link a person shares)::

    {"v": 3, "id": "<the media object's id>", "size": 1234567, "ss": 1048576,
     "shards": [["<sha256>", 0], ["<sha256>", 1048576], ...],
     "type": "video/webm", "keys": [[0, 483], [2000, 502311]], "bps": 3100000, "h": 720,
     "alts": [{"map": "<map id>", "id": "<media id>", "size": 809980, "type": "video/webm",
               "bps": 324000, "h": 240}],
     "o": "02…owner", "t": 1764000000000, "sig": "3044…"}

* ``shards``: each shard's hash and byte offset; ``id`` must be their `shard.model.object_id`
  (with ``size`` and ``ss``), so the map names exactly the bytes a reader checks shard by shard.
* ``type``: one of `TYPES` (never text a browser would run); ``keys``: each key frame's time in
  ms and the byte offset of its packet, both ascending, read from the container's own index
  (`keyframes`); empty for non-media. A seek to a time starts at the offset of the key frame at or
  before it (`StreamMap.seek`), so an endpoint fetches the shards from there first. Version 1 maps
  (``keys`` times only, no offsets) are still read; they cannot be seeked by time.
* ``bps``, ``h``: this rendition's average bits per second and picture height (0: not known, or
  audio); ``alts``: the owner's other renditions of the same media (at most `MAX_ALTS`, each its own
  map and object, usually smaller: `renditions`), which a player switches between as its link
  allows (adaptive bitrate). Versions 1 and 2 have none of the three.
* ``sig``: DER ECDSA by ``o`` over the canonical JSON of every other member plus
  ``"d": "borgusb.fstream.map"`` (`borgusb.signed.signing_bytes`), so a map cannot pass
  for a manifest, an order or an envelope, and only its owner can change what it says.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Any

from .. import canonical
from ..keys import SigningKey
from ..shard import model
from ..signed import is_sig_hex, signed_by, signing_bytes

VERSION = 3  # 3: renditions (bps, h, alts); 2: each key frame with its byte offset; 1: times only (all read)
READS = (1, 2, 3)
DOMAIN = "borgusb.fstream.map"
FIELDS = frozenset(("v", "id", "size", "ss", "shards", "type", "keys", "o", "t", "sig"))
FIELDS_3 = FIELDS | {"bps", "h", "alts"}
ALT_FIELDS = frozenset(("map", "id", "size", "type", "bps", "h"))
MAX_ALTS = 8
MAX_BPS = 2**40
MAX_HEIGHT = 100_000
MAX_KEYS = 20_000  # a key frame every 2 s for 11 hours
MAX_MAP_BYTES = 2 * 1024 * 1024
TYPES = frozenset(
    ("video/webm", "video/mp4", "video/ogg", "audio/webm", "audio/ogg", "audio/mpeg", "application/octet-stream")
)
_PUBKEY = re.compile(r"0[23][0-9a-f]{64}")


class BadMap(ValueError):
    """A stream map that is malformed or not its owner's; ``reason`` is one word."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Rendition:
    """Another rendition of a map's media: its own map and object, its size, type, bits/s and height."""

    map: str
    id: str
    size: int
    type: str
    bps: int
    h: int

    def to_dict(self) -> dict[str, Any]:
        return {"map": self.map, "id": self.id, "size": self.size, "type": self.type, "bps": self.bps, "h": self.h}


@dataclass(frozen=True, slots=True)
class StreamMap:
    """A checked map. Made only by `sign_map` and `check_map`."""

    id: str
    size: int
    ss: int
    shards: tuple[str, ...]
    type: str
    keys: tuple[int, ...]
    owner: str
    t: int
    offsets: tuple[int, ...] = ()  # each key frame's byte offset (a version 1 map has none)
    bps: int = 0  # this rendition's bits per second (0: not known; versions 1 and 2)
    height: int = 0
    alts: tuple[Rendition, ...] = ()

    def bounds(self) -> list[tuple[int, int]]:
        return model.shard_bounds(self.size, self.ss)

    def key_before(self, ms: int) -> int:
        """The last key frame at or before `ms` (where a seek to `ms` can start decoding)."""
        best = 0
        for k in self.keys:
            if k > ms:
                break
            best = k
        return best

    def seek(self, ms: int) -> tuple[int, int] | None:
        """(time, byte offset) of the key frame at or before `ms`; None without offsets (a version 1
        map, or no key frames: a player seeks by its own index then)."""
        if not self.offsets:
            return None
        at = bisect.bisect_right(self.keys, ms) - 1
        return (self.keys[max(at, 0)], self.offsets[max(at, 0)])


def _int(doc: dict[str, Any], name: str, lo: int, hi: int) -> int:
    v = doc.get(name)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise BadMap("malformed", f"{name} must be an integer in {lo}..{hi}")
    return v


def sign_map(
    key: SigningKey,
    size: int,
    ss: int,
    hashes: list[str],
    content_type: str,
    keys: list[tuple[int, int]],
    t: int,
    *,
    bps: int = 0,
    height: int = 0,
    alts: tuple[Rendition, ...] = (),
) -> dict[str, Any]:
    """The owner's map of an object of `size` bytes in shards of `ss` with these hashes (its id is
    computed here, never given), these key frames, (time in ms, byte offset), and the other
    renditions of the same media (`alts`)."""
    doc: dict[str, Any] = {
        "v": VERSION,
        "id": model.object_id(size, ss, hashes),
        "size": size,
        "ss": ss,
        "shards": [[h, i * ss] for i, h in enumerate(hashes)],
        "type": content_type,
        "keys": [[ms, pos] for ms, pos in sorted(keys)],
        "bps": bps,
        "h": height,
        "alts": [a.to_dict() for a in sorted(alts, key=lambda a: -a.bps)],
        "o": key.public_key_hex,
        "t": t,
    }
    doc["sig"] = key.sign(signing_bytes(doc, DOMAIN)).hex()
    check_map(doc)
    return doc


def check_map(doc: Any) -> StreamMap:
    """A `StreamMap` from a decoded document, or `BadMap` (the signature is checked last)."""
    if not isinstance(doc, dict) or "v" not in doc:
        raise BadMap("malformed", "a stream map is an object with a version (v)")
    if doc["v"] not in READS or isinstance(doc["v"], bool):
        raise BadMap("unknown_version", f"stream map version {str(doc['v'])[:20]!r}; this node reads 1 to 3")
    fields = FIELDS_3 if doc["v"] == 3 else FIELDS
    if doc.keys() != fields:
        raise BadMap("malformed", "a stream map has exactly " + ", ".join(sorted(fields)))
    if not model.is_hash(doc["id"]):
        raise BadMap("malformed", "id must be a SHA-256 in lowercase hex")
    size = _int(doc, "size", 0, 2**53)
    ss = _int(doc, "ss", 1, model.MAX_SHARD)
    t = _int(doc, "t", 0, 2**53)
    shards = doc["shards"]
    if not isinstance(shards, list) or len(shards) != -(-size // ss) or len(shards) > model.MAX_SHARDS:
        raise BadMap("malformed", f"{size} bytes in shards of {ss} need {-(-size // ss)} shards")
    for i, s in enumerate(shards):
        if not (isinstance(s, list) and len(s) == 2 and model.is_hash(s[0]) and s[1] == i * ss):
            raise BadMap("malformed", f"shard #{i} must be [sha256, {i * ss}]")
    hashes = [s[0] for s in shards]
    if model.object_id(size, ss, hashes) != doc["id"]:
        raise BadMap("id_mismatch", "the id is not the SHA-256 of this shard list")
    if doc["type"] not in TYPES:
        raise BadMap("bad_type", f"the type must be one of {', '.join(sorted(TYPES))}")
    times, offsets = _keys(doc["keys"], doc["v"], size)
    bps, height, alts = (
        (_int(doc, "bps", 0, MAX_BPS), _int(doc, "h", 0, MAX_HEIGHT), _alts(doc["alts"]))
        if doc["v"] == 3
        else (0, 0, ())
    )
    owner, sig = doc["o"], doc["sig"]
    if not isinstance(owner, str) or not _PUBKEY.fullmatch(owner):
        raise BadMap("malformed", "o must be a compressed public key")
    if not is_sig_hex(sig):
        raise BadMap("malformed", "sig must be hex DER")
    if not signed_by(owner, sig, signing_bytes(doc, DOMAIN)):
        raise BadMap("bad_signature", "not signed by the owner it names")
    return StreamMap(doc["id"], size, ss, tuple(hashes), doc["type"], times, owner, t, offsets, bps, height, alts)


def _alts(alts: Any) -> tuple[Rendition, ...]:
    """A version 3 map's other renditions: each names its map and object, a size, a playable type."""
    if not isinstance(alts, list) or len(alts) > MAX_ALTS:
        raise BadMap("malformed", f"alts must be a list of at most {MAX_ALTS}")
    out = []
    for a in alts:
        if (
            not isinstance(a, dict)
            or a.keys() != ALT_FIELDS
            or not model.is_hash(a["map"])
            or not model.is_hash(a["id"])
        ):
            raise BadMap("malformed", "each alt has exactly map, id (object ids), size, type, bps, h")
        if a["type"] not in TYPES:
            raise BadMap("bad_type", f"an alt's type must be one of {', '.join(sorted(TYPES))}")
        out.append(
            Rendition(
                a["map"],
                a["id"],
                _int(a, "size", 0, 2**53),
                a["type"],
                _int(a, "bps", 0, MAX_BPS),
                _int(a, "h", 0, MAX_HEIGHT),
            )
        )
    return tuple(out)


def _is_int(v: Any, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= hi


def _keys(keys: Any, version: int, size: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(times, byte offsets) of a map's key frames: version 2's [ms, offset] pairs, both ascending and
    every offset inside the object; version 1's ascending times."""
    if not isinstance(keys, list) or len(keys) > MAX_KEYS:
        raise BadMap("malformed", f"keys must be a list of at most {MAX_KEYS}")
    if version == 1:
        if not all(_is_int(k, 2**53) for k in keys) or keys != sorted(keys):
            raise BadMap("malformed", "a version 1 map's keys are ascending times in ms")
        return tuple(keys), ()
    if not all(isinstance(k, list) and len(k) == 2 and _is_int(k[0], 2**53) and _is_int(k[1], size - 1) for k in keys):
        raise BadMap("malformed", "keys must be [ms, byte offset] pairs, each offset inside the object")
    times, offsets = tuple(k[0] for k in keys), tuple(k[1] for k in keys)
    if list(times) != sorted(times) or list(offsets) != sorted(offsets):
        raise BadMap("malformed", "key frames must ascend in time and in offset")
    return times, offsets


def encode_map(doc: dict[str, Any]) -> bytes:
    return canonical.encode_unchecked(doc)


def parse_map(data: bytes) -> StreamMap:
    """A map from its stored bytes: bounded, canonical JSON, then `check_map`."""
    if len(data) > MAX_MAP_BYTES:
        raise BadMap("too_large", f"a stream map is at most {MAX_MAP_BYTES} bytes")
    try:
        doc = canonical.loads_canonical(data)
    except canonical.CanonicalError as exc:
        raise BadMap("malformed", f"not canonical JSON ({exc.__class__.__name__})") from None
    return check_map(doc)
