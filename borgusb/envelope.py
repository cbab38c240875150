"""The signed envelope: every message at every layer, and the one door it passes.

An envelope is a JSON object::

    {"v": 2, "type": "tree.join", "payload": {...},
     "sender": {"ip": "10.0.0.2", "port": 13350, "pubkey": "02ab..."},
     "to": "03cd...:13360", "ts": 1764000000000, "nonce": "32 hex digits",
     "sig": "DER hex"}

``sig`` is an ECDSA (secp256k1) signature by ``sender.pubkey`` over the
canonical JSON (see canonical.py) of every other field, so nothing in the
envelope, the payload included, can be changed without breaking it. This fixes
the original BorgIOS, which signed only sha256(ip + time).

`Verifier.verify` is the only way a received message becomes a `Envelope`
object; it gives, in one call:

* authentication and integrity: the signature checks;
* freshness: ``ts`` within ±window of the local network clock;
* replay protection: each (signer, nonce) is accepted once; the cache is
  bounded (see `ReplayCache`);
* addressing: ``to`` names the one cell the message is for (its node key and
  port, see `address`), or every cell of a type (``*:port``, broadcasts only),
  so a message captured on its way to one node or cell cannot be replayed to
  another inside the freshness window (each verifier has its own replay cache);
* authorization: an optional expected signer and expected message types.

Every rejection raises one typed `EnvelopeError` subclass and is counted by
reason in `Verifier.counters`, which a node shows on its monitoring port.
"""

from __future__ import annotations

import heapq
import os
import re
from collections import Counter, OrderedDict
from collections.abc import Collection
from typing import Any, NamedTuple

import msgspec

from . import canonical
from .clock import Clock
from .keys import InvalidKey, SigningKey, parse_public_key

VERSION = 2  # 2: the signed ``to`` member (v1 had none and is refused as unsupported)
DEFAULT_WINDOW_MS = 30_000
DEFAULT_MAX_BYTES = 1 << 20
DEFAULT_REPLAY_CAPACITY = 200_000
_FIELDS = frozenset(("v", "type", "payload", "sender", "to", "ts", "nonce", "sig"))
_SENDER_FIELDS = frozenset(("ip", "port", "pubkey"))
_NONCE = re.compile(r"[0-9a-f]{32}")
_SIG = re.compile(r"[0-9a-f]{16,146}")
_PUBKEY = re.compile(r"0[23][0-9a-f]{64}")
_TO = re.compile(r"(?:0[23][0-9a-f]{64}|\*):[0-9]{1,5}|")


class EnvelopeError(Exception):
    """A message was rejected; `reason` is the counter name."""

    reason = "rejected"


class Malformed(EnvelopeError):
    reason = "malformed"


class TooLarge(EnvelopeError):
    reason = "too_large"


class BadSignature(EnvelopeError):
    reason = "bad_signature"


class Stale(EnvelopeError):
    reason = "stale"


class FutureDated(EnvelopeError):
    reason = "future_dated"


class Replay(EnvelopeError):
    reason = "replay"


class ReplayCacheFull(EnvelopeError):
    """Only under a flood from more keys than the replay cache tracks: a signer it does not
    know yet is refused (retry later) rather than anything being forgotten."""

    reason = "replay_cache_full"


class WrongSigner(EnvelopeError):
    reason = "wrong_signer"


class WrongType(EnvelopeError):
    reason = "wrong_type"


class WrongRecipient(EnvelopeError):
    """Addressed to another node or cell (a replay from elsewhere), or a broadcast where none is taken."""

    reason = "wrong_recipient"


class Unaddressed(EnvelopeError):
    """Names no recipient where one is required: only a hello, which answers no request, may."""

    reason = "unaddressed"


REASONS = tuple(
    cls.reason
    for cls in (
        Malformed,
        TooLarge,
        BadSignature,
        Stale,
        FutureDated,
        Replay,
        ReplayCacheFull,
        WrongSigner,
        WrongType,
        WrongRecipient,
        Unaddressed,
    )
)


def address(pubkey: str, port: int) -> str:
    """The ``to`` of a message for one cell: its node key and the port it is sent to."""
    return f"{pubkey}:{port}"


def everyone(port: int) -> str:
    """The ``to`` of a broadcast: every cell of the type listening on `port`."""
    return f"*:{port}"


class Sender(NamedTuple):
    ip: str
    port: int
    pubkey: str


class Envelope(NamedTuple):
    """A verified message. Only `Verifier.verify` should construct one."""

    type: str
    payload: Any
    sender: Sender
    to: str
    ts: int
    nonce: str
    sig: str

    @property
    def signer(self) -> str:
        return self.sender.pubkey

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "type": self.type,
            "payload": self.payload,
            "sender": {"ip": self.sender.ip, "port": self.sender.port, "pubkey": self.sender.pubkey},
            "to": self.to,
            "ts": self.ts,
            "nonce": self.nonce,
            "sig": self.sig,
        }


def sign(
    key: SigningKey,
    type: str,
    payload: Any,
    clock: Clock,
    *,
    ip: str = "",
    port: int = 0,
    to: str = "",
    nonce: str | None = None,
) -> dict[str, Any]:
    """Build and sign an envelope (a dict, ready for `encode`).

    `to` is the recipient (`address`, `everyone`); leave it empty only for a
    message that answers no request and goes to no one in particular (a hello).
    `nonce` is for fixed test vectors only (tests/vectors/generate_wire.py); a
    message's nonce must otherwise be fresh, so leave it to os.urandom."""
    canonical.check(payload)
    if not _TO.fullmatch(to):
        raise ValueError(f"not a recipient: {to[:80]!r}")
    body: dict[str, Any] = {
        "v": VERSION,
        "type": type,
        "payload": payload,
        "sender": {"ip": ip, "port": port, "pubkey": key.public_key_hex},
        "to": to,
        "ts": clock.now_ms(),
        "nonce": os.urandom(16).hex() if nonce is None else nonce,
    }
    body["sig"] = key.sign(canonical.encode_unchecked(body)).hex()
    return body


def encode(envelope: dict[str, Any]) -> bytes:
    """Wire bytes of an envelope (canonical JSON)."""
    return canonical.encode_unchecked(envelope)


def sign_bytes(key: SigningKey, type: str, payload: Any, clock: Clock, **sender: Any) -> bytes:
    return encode(sign(key, type, payload, clock, **sender))


class _Bucket:
    """One signer's accepted nonces still inside the window, and its own floor."""

    __slots__ = ("seen", "heap", "floor", "max_ts")

    def __init__(self, floor: int) -> None:
        self.seen: set[str] = set()
        self.heap: list[tuple[int, str]] = []
        self.floor = floor
        self.max_ts = floor

    def drop_oldest(self) -> None:
        ts, nonce = heapq.heappop(self.heap)
        self.seen.discard(nonce)
        self.floor = max(self.floor, ts)


class ReplayCache:
    """Remembers accepted (signer, nonce) pairs for as long as they could be replayed.

    An entry is needed only while its timestamp is inside the freshness
    window; after that `Stale` rejects a replay anyway. Everything is kept
    *per signer*, so whatever one key sends can only ever refuse that key's
    own messages:

    * each signer has a bucket of nonces (at most `per_signer`) and its own
      floor; when the bucket is full its oldest entry is dropped and only that
      signer's floor rises to its timestamp (a key that floods, future-dated
      or not, pushes only its own floor);
    * at most `max_signers` buckets and `capacity` nonces in all: past either
      bound the least recently active signer's whole bucket is evicted, and
      its highest timestamp is kept as that signer's floor in a map of at most
      `max_floors` entries (a floor below now - window is dropped: `Stale`
      covers it); when the bucket comes back it starts from that floor;
    * when buckets and floors are all held by signers active inside the
      window (a flood from more than max_signers + max_floors keys), a
      signer the cache does not know is refused with `ReplayCacheFull`
      (typed, counted, retryable) rather than anything being forgotten; every
      signer the cache knows keeps working. When a signer's own bucket cannot
      be given room from others, it drops its own oldest entry instead.

    So a replay is never accepted (every accepted message is in a bucket, at
    or below its signer's floor, or older than the window), memory is bounded
    by capacity + max_signers + max_floors small entries, and no signer's
    traffic raises any other signer's floor.
    """

    def __init__(
        self,
        capacity: int = DEFAULT_REPLAY_CAPACITY,
        *,
        per_signer: int | None = None,
        max_signers: int | None = None,
        max_floors: int | None = None,
    ) -> None:
        self.capacity = max(1, capacity)
        self.per_signer = per_signer or max(1, min(self.capacity, max(64, self.capacity // 50)))
        self.max_signers = max_signers or max(16, self.capacity // 8)
        self.max_floors = max_floors or max(16, self.capacity // 4)
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()  # least recently active first
        self._floors: dict[str, int] = {}  # evicted signers still inside the window
        self._floor_heap: list[tuple[int, str]] = []  # (floor, signer), stale items skipped
        self._entries = 0
        self._expired_before = -(2**63)

    def __len__(self) -> int:
        return self._entries

    def entries(self) -> int:
        return self._entries

    def signers(self) -> int:
        return len(self._buckets)

    def floors(self) -> int:
        return len(self._floors)

    def garbage(self) -> int:
        """Stale items in the floor heap (kept within 2 * max_floors + 16)."""
        return len(self._floor_heap) - len(self._floors)

    def expire(self, older_than_ms: int) -> None:
        """Forget what `Stale` now refuses anyway: least recently active buckets, floors."""
        self._expired_before = max(self._expired_before, older_than_ms)
        buckets = self._buckets
        while buckets:
            signer, bucket = next(iter(buckets.items()))
            if bucket.max_ts >= older_than_ms:
                break
            del buckets[signer]
            self._entries -= len(bucket.seen)
        heap, floors = self._floor_heap, self._floors
        while heap and heap[0][0] < older_than_ms:
            floor, signer = heapq.heappop(heap)
            if floors.get(signer) == floor:
                del floors[signer]

    def admit(self, signer: str, nonce: str, ts: int, now_ms: int, window_ms: int = DEFAULT_WINDOW_MS) -> None:
        """Remember (signer, nonce) or raise Replay / ReplayCacheFull."""
        live_from = now_ms - window_ms
        bucket = self._buckets.get(signer)
        if bucket is not None:
            if ts <= bucket.floor or nonce in bucket.seen:
                raise Replay("this message was already received")
            while bucket.heap and bucket.heap[0][0] < live_from:
                ts_old, old = heapq.heappop(bucket.heap)
                bucket.seen.discard(old)
                self._entries -= 1
            self._buckets.move_to_end(signer)
        else:
            floor = self._floors.get(signer, -(2**63))
            if ts <= floor:
                raise Replay("this message was already received")
            known = self._floors.pop(signer, None)  # carried into the bucket; frees its slot
            while len(self._buckets) >= self.max_signers:
                if not self._evict_lru(signer, live_from):
                    if known is not None:
                        self._floors[signer] = known  # its heap item is still there
                    raise ReplayCacheFull("too many signers active in the window; retry (replay cache full)")
            bucket = self._buckets[signer] = _Bucket(floor)
        while len(bucket.seen) >= self.per_signer:
            bucket.drop_oldest()
            self._entries -= 1
            if ts <= bucket.floor:
                raise Replay("not newer than this signer's oldest forgotten message")
        while self._entries >= self.capacity:
            if not self._evict_lru(signer, live_from):
                if not bucket.seen:
                    del self._buckets[signer]
                    self._floors_put(signer, bucket.floor, live_from)
                    raise ReplayCacheFull("the replay cache is full; retry")
                bucket.drop_oldest()  # no room from others: this signer pays with its own oldest
                self._entries -= 1
                if ts <= bucket.floor:
                    raise Replay("not newer than this signer's oldest forgotten message")
        bucket.seen.add(nonce)
        heapq.heappush(bucket.heap, (ts, nonce))
        bucket.max_ts = max(bucket.max_ts, ts)
        self._entries += 1

    def _evict_lru(self, keep: str, live_from: int) -> bool:
        """Evict the least recently active bucket (not `keep`) into a floor; False if impossible."""
        signer = next((s for s in self._buckets if s != keep), None)
        if signer is None:
            return False
        bucket = self._buckets[signer]
        floor = max(bucket.floor, bucket.max_ts)
        if floor >= live_from and not self._floors_room(live_from):
            return False
        del self._buckets[signer]
        self._entries -= len(bucket.seen)
        self._floors_put(signer, floor, live_from)
        return True

    def _floors_room(self, live_from: int) -> bool:
        heap, floors = self._floor_heap, self._floors
        while len(floors) >= self.max_floors and heap and heap[0][0] < live_from:
            floor, signer = heapq.heappop(heap)
            if floors.get(signer) == floor:
                del floors[signer]
        return len(floors) < self.max_floors

    def _floors_put(self, signer: str, floor: int, live_from: int) -> None:
        if floor < live_from:
            return  # Stale refuses anything at or below it already
        self._floors[signer] = floor
        heapq.heappush(self._floor_heap, (floor, signer))
        if len(self._floor_heap) > 2 * len(self._floors) + 16:
            self._floor_heap = [(f, s) for s, f in self._floors.items()]
            heapq.heapify(self._floor_heap)


class Verifier:
    """The one verification path. One per node (it owns the replay cache)."""

    def __init__(
        self,
        clock: Clock,
        window_ms: int = DEFAULT_WINDOW_MS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        replay_capacity: int = DEFAULT_REPLAY_CAPACITY,
    ) -> None:
        self.clock = clock
        self.window_ms = window_ms
        self.max_bytes = max_bytes
        self.replay = ReplayCache(replay_capacity)
        self.counters: Counter[str] = Counter()
        # the latest clock reading used to accept a message: freshness is judged from no earlier
        # time, so a clock stepped back (a first network-time sync) cannot make fresh again an
        # envelope the replay cache has forgotten as stale
        self.latest_ms = 0
        self._addresses: set[str] = set()  # the `to` values meant for us
        self._everyone: set[str] = set()  # the broadcast `to` values of our ports

    def answer_to(self, pubkey: str, ports: Collection[int]) -> None:
        """Take messages addressed to `pubkey` at `ports` (a cell, or a client's replies).

        A verifier that answers to no address is an offline checker (the CLI's
        ``envelope verify``) and checks no ``to``; every network endpoint calls this."""
        for port in ports:
            self._addresses.add(address(pubkey, port))
            self._everyone.add(everyone(port))

    def verify(
        self,
        data: bytes | str | dict[str, Any],
        *,
        expected_signer: str | Collection[str] | None = None,
        expected_type: str | Collection[str] | None = None,
        unaddressed: bool = False,
        broadcast_types: Collection[str] = (),
    ) -> Envelope:
        """Return the verified envelope or raise an EnvelopeError (and count it).

        The envelope must be addressed to this verifier's cell (`answer_to`);
        ``unaddressed`` also takes one that names no one (a hello), and a type in
        ``broadcast_types`` may be addressed to every cell on one of our ports."""
        try:
            env = self._verify(data, expected_signer, expected_type)
            self._check_recipient(env, unaddressed, broadcast_types)
            self._admit(env)
        except EnvelopeError as exc:
            self.counters[exc.reason] += 1
            raise
        self.counters["accepted"] += 1
        return env

    def rejected(self) -> dict[str, int]:
        return {reason: self.counters[reason] for reason in REASONS}

    def _verify(
        self,
        data: bytes | str | dict[str, Any],
        expected_signer: str | Collection[str] | None,
        expected_type: str | Collection[str] | None,
    ) -> Envelope:
        if isinstance(data, dict):
            try:
                canonical.check(data)
                wire = canonical.encode_unchecked(data)
            except (canonical.CanonicalError, TypeError, ValueError) as exc:
                raise Malformed(str(exc)) from None
        elif isinstance(data, (bytes, bytearray, memoryview, str)):
            wire = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
        else:
            raise Malformed(f"cannot verify a {type(data).__name__}")
        if len(wire) > self.max_bytes:
            raise TooLarge(f"envelope of {len(wire)} bytes exceeds {self.max_bytes}")
        env = None if isinstance(data, dict) else _parse_fast(wire)
        if env is None:  # not a well-formed envelope in canonical form, or a dict: find out why, in order
            try:
                doc = canonical.loads_refusing(wire) if not isinstance(data, dict) else data
            except canonical.CanonicalError as exc:
                raise Malformed(str(exc)) from None
            env = _structure(doc)
        if expected_type is not None:
            allowed = (expected_type,) if isinstance(expected_type, str) else expected_type
            if env.type not in allowed:
                raise WrongType(f"message type {env.type!r} is not accepted here")
        if expected_signer is not None:
            allowed = (expected_signer,) if isinstance(expected_signer, str) else expected_signer
            if env.signer not in allowed:
                raise WrongSigner("the message is not signed by the expected key")
        now = self.clock.now_ms()
        since = max(now, self.latest_ms) - self.window_ms
        if env.ts < since:
            if env.ts >= now - self.window_ms:
                raise Stale("message is older than the window before a time already used (the clock stepped back)")
            raise Stale(f"message is {now - env.ts} ms old (window ±{self.window_ms} ms)")
        if env.ts > now + self.window_ms:
            raise FutureDated(f"message is {env.ts - now} ms in the future")
        try:
            pub = parse_public_key(env.signer)
            signature = bytes.fromhex(env.sig)
        except (InvalidKey, ValueError):
            raise BadSignature("the public key or signature cannot be parsed") from None
        try:
            valid = pub.verify(signature, _signed_part(wire, env.sig))
        except (ValueError, TypeError):
            valid = False
        if not valid:
            raise BadSignature("the signature does not match the message")
        return env

    def _check_recipient(self, env: Envelope, unaddressed: bool, broadcast_types: Collection[str]) -> None:
        if not self._addresses or env.to in self._addresses:
            return
        if not env.to:
            if unaddressed:
                return
            raise Unaddressed(f"a {env.type!r} message must name its recipient")
        if env.to in self._everyone and env.type in broadcast_types:
            return
        if env.to.startswith("*"):
            raise WrongRecipient(f"a {env.type!r} message is not taken as a broadcast here")
        raise WrongRecipient("the message is addressed to another node or cell")

    def _admit(self, env: Envelope) -> None:
        """Last, after every other check: a refused message must not use up its nonce."""
        now = max(self.clock.now_ms(), self.latest_ms)
        self.replay.expire(now - self.window_ms)
        self.replay.admit(env.signer, env.nonce, env.ts, now, self.window_ms)
        self.latest_ms = now


def _signed_part(wire: bytes, sig: str) -> bytes:
    """The canonical bytes the signature covers: the wire form without its sig member.

    In canonical form the top-level members are sorted, so ``"sig"`` is
    followed by ``"to"``, ``"ts"``, ``"type"`` and ``"v"``, none of which can
    contain an unescaped quote sequence (``to`` is checked against its pattern
    first): the last occurrence is the top-level one.
    Cutting it out equals re-encoding the envelope without ``sig``, minus a
    second serialization on the hot path.
    """
    needle = b'"sig":"' + sig.encode("ascii") + b'",'
    at = wire.rfind(needle)
    if at < 0:
        raise Malformed("signature member not found")
    return wire[:at] + wire[at + len(needle) :]


class _WireSender(msgspec.Struct, forbid_unknown_fields=True):
    ip: str
    port: int
    pubkey: str


class _Wire(msgspec.Struct, forbid_unknown_fields=True):
    """An envelope as `_parse_fast` decodes it: every member required, of its JSON type (no bool
    for an int), no other member; members in canonical order, so it re-encodes canonically."""

    nonce: str
    payload: Any
    sender: _WireSender
    sig: str
    to: str
    ts: int
    type: str
    v: int


_wire_decoder = msgspec.json.Decoder(_Wire, float_hook=canonical.reject_float)
_FIRST = b'{"nonce":"'  # members sorted: nonce < payload < sender < sig < to < ts < type < v


def _parse_fast(wire: bytes) -> Envelope | None:
    """The envelope, if the wire is a well-formed one in canonical form; else None, and
    `loads_canonical` and `_structure` find (and word) what is wrong.

    The same rules as those two, with the member types checked by msgspec's typed decode
    instead of member by member (about 1 µs less a message). A canonical envelope begins with its
    first member, ``nonce``: anything else (a hostile body nested 200,000 deep, say) is not looked
    at twice."""
    if not wire.startswith(_FIRST):
        return None
    w = canonical.decode_fast(wire, _wire_decoder)
    if w is canonical.NOT_FAST:
        return None
    if wire.count(b"[") + wire.count(b"{") > canonical.MAX_DEPTH and canonical.too_deep(w.payload, 1):
        return None
    mtype, ts, nonce, sig, to, sender = w.type, w.ts, w.nonce, w.sig, w.to, w.sender
    ip, port, pubkey = sender.ip, sender.port, sender.pubkey
    if (
        w.v != VERSION
        or not 0 < len(mtype) <= 64
        or ts < 0
        or not _NONCE.fullmatch(nonce)
        or not _SIG.fullmatch(sig)
        or not _TO.fullmatch(to)
        or len(ip) > 64
        or not 0 <= port <= 65535
        or not _PUBKEY.fullmatch(pubkey)
    ):
        return None
    return Envelope(mtype, w.payload, Sender(ip, port, pubkey), to, ts, nonce, sig)


def _structure(doc: Any) -> Envelope:
    """Check field presence and types; no cryptography yet."""
    if not isinstance(doc, dict):
        raise Malformed("an envelope is a JSON object")
    keys = doc.keys()
    if keys != _FIELDS:
        missing = sorted(_FIELDS - keys)
        extra = sorted(k[:20] for k in keys - _FIELDS)
        raise Malformed(f"envelope fields wrong (missing {missing}, unexpected {extra})")
    if doc["v"] != VERSION or isinstance(doc["v"], bool):
        raise Malformed(f"unsupported envelope version {str(doc['v'])[:10]!r}")
    mtype, ts, nonce, sig, sender, to = doc["type"], doc["ts"], doc["nonce"], doc["sig"], doc["sender"], doc["to"]
    if not isinstance(mtype, str) or not 0 < len(mtype) <= 64:
        raise Malformed("type must be a short non-empty string")
    if not isinstance(ts, int) or isinstance(ts, bool) or ts < 0:
        raise Malformed("ts must be a non-negative integer (ms)")
    if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
        raise Malformed("nonce must be 32 lowercase hex digits")
    if not isinstance(sig, str) or not _SIG.fullmatch(sig):
        raise Malformed("sig must be a hex DER signature")
    if not isinstance(to, str) or not _TO.fullmatch(to):
        raise Malformed("to must be pubkey:port, *:port or empty")
    if not isinstance(sender, dict) or sender.keys() != _SENDER_FIELDS:
        raise Malformed("sender must be {ip, port, pubkey}")
    ip, port, pubkey = sender["ip"], sender["port"], sender["pubkey"]
    if not isinstance(ip, str) or len(ip) > 64:
        raise Malformed("sender.ip must be a string")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise Malformed("sender.port must be 0..65535")
    if not isinstance(pubkey, str) or not _PUBKEY.fullmatch(pubkey):
        raise Malformed("sender.pubkey must be a compressed public key in hex")
    return Envelope(mtype, doc["payload"], Sender(ip, port, pubkey), to, ts, nonce, sig)
