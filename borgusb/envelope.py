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
  bounded (see `replaycache.ReplayCache`);
* addressing: ``to`` names the one cell the message is for (its node key and
  port, see `address`), or every cell of a type (``*:port``, broadcasts only),
  so a message captured on its way to one node or cell cannot be replayed to
  another inside the freshness window (each verifier has its own replay cache);
* authorization: an optional expected signer and expected message types.

Every rejection raises one typed `EnvelopeError` subclass and is counted by
reason in `Verifier.counters`, which a node shows on its monitoring port.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from typing import Annotated, Any, Final, Literal

import msgspec
from coincurve import PublicKey

from . import canonical
from .clock import Clock
from .envelopeerrors import (
    REASONS,
    BadSignature,
    EnvelopeError,
    FutureDated,
    Malformed,
    Stale,
    TooLarge,
    Unaddressed,
    WrongRecipient,
    WrongSigner,
    WrongType,
)

# the replay cache's two refusals, which `Verifier.verify` lets through: envelope.Replay and so on
from .envelopeerrors import Replay as Replay
from .envelopeerrors import ReplayCacheFull as ReplayCacheFull
from .keys import PUBKEY_HEX_LEN, InvalidKey, SigningKey, parse_public_key
from .replaycache import DEFAULT_REPLAY_CAPACITY, DEFAULT_WINDOW_MS, ReplayCache

VERSION: Final = 2  # 2: the signed ``to`` member (v1 had none and is refused as unsupported)
DEFAULT_MAX_BYTES = 1 << 20
KEY_CACHE = 1024  # parsed signer keys a verifier keeps
_FIELDS = frozenset(("v", "type", "payload", "sender", "to", "ts", "nonce", "sig"))
_SENDER_FIELDS = frozenset(("ip", "port", "pubkey"))
_NONCE = re.compile(r"[0-9a-f]{32}")
_SIG = re.compile(r"[0-9a-f]{16,146}")
_PUBKEY = re.compile(r"0[23][0-9a-f]{64}")
_TO = re.compile(r"(?:0[23][0-9a-f]{64}|\*):[0-9]{1,5}|")


def address(pubkey: str, port: int) -> str:
    """The ``to`` of a message for one cell: its node key and the port it is sent to."""
    return f"{pubkey}:{port}"


def everyone(port: int) -> str:
    """The ``to`` of a broadcast: every cell of the type listening on `port`."""
    return f"*:{port}"


class Sender(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """Who sent a message: its address and its key. The bounds are checked in C as it is decoded."""

    ip: Annotated[str, msgspec.Meta(max_length=64)]
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)]
    pubkey: Annotated[str, msgspec.Meta(min_length=PUBKEY_HEX_LEN, max_length=PUBKEY_HEX_LEN)]


class Envelope(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A verified message: `Verifier.verify` makes one (and a tree driver, for its own broadcasts).

    The door decodes the wire straight into it: every member required, of its JSON type (no bool
    for an int), no other member, the bounds checked in C; the members are in canonical (sorted)
    order, so msgspec re-encodes it canonically. The hex patterns are the door's to check."""

    nonce: Annotated[str, msgspec.Meta(min_length=32, max_length=32)]
    payload: Any
    sender: Sender
    sig: Annotated[str, msgspec.Meta(min_length=16, max_length=146)]
    to: str
    ts: Annotated[int, msgspec.Meta(ge=0, le=canonical.MAX_SAFE_INT)]
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    v: Literal[2]

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
        # every reason is there from the start: a plain dict's increment costs half a Counter's on this path
        self.counters: dict[str, int] = dict.fromkeys(("accepted", *REASONS), 0)
        # the latest clock reading used to accept a message: freshness is judged from no earlier
        # time, so a clock stepped back (a first network-time sync) cannot make fresh again an
        # envelope the replay cache has forgotten as stale
        self.latest_ms = 0
        self._addresses: set[str] = set()  # the `to` values meant for us
        self._everyone: set[str] = set()  # the broadcast `to` values of our ports
        # signers' keys, parsed (so each matched _PUBKEY): a hit is one dict lookup instead of the
        # pattern and the parse; insertion order, the oldest dropped past KEY_CACHE
        self._keys: dict[str, PublicKey] = {}

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
        ``broadcast_types`` may be addressed to every cell on one of our ports.
        The checks run in the order that decides which refusal a message gets, the replay cache
        last, so a refused message does not use up its nonce; one function, as on this path
        every call costs."""
        if type(data) is not bytes and isinstance(data, (bytearray, memoryview, str)):
            data = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
        try:
            if type(data) is bytes:
                wire = data
                if len(wire) > self.max_bytes:
                    raise TooLarge(f"envelope of {len(wire)} bytes exceeds {self.max_bytes}")
                env = _parse_fast(wire, self._addresses, self._keys)
                if env is None:  # not a well-formed envelope in canonical form: find out why, in order
                    env = _structure(_loads_refusing(wire))
            elif isinstance(data, dict):
                try:
                    canonical.check(data)
                    wire = canonical.encode_unchecked(data)
                except (canonical.CanonicalError, TypeError, ValueError) as exc:
                    raise Malformed(str(exc)) from None
                if len(wire) > self.max_bytes:
                    raise TooLarge(f"envelope of {len(wire)} bytes exceeds {self.max_bytes}")
                env = _structure(data)
            else:
                raise Malformed(f"cannot verify a {type(data).__name__}")
            if expected_type is not None:
                allowed = (expected_type,) if isinstance(expected_type, str) else expected_type
                if env.type not in allowed:
                    raise WrongType(f"message type {env.type!r} is not accepted here")
            signer = env.sender.pubkey
            if expected_signer is not None:
                allowed = (expected_signer,) if isinstance(expected_signer, str) else expected_signer
                if signer not in allowed:
                    raise WrongSigner("the message is not signed by the expected key")
            now = self.clock.now_ms()
            latest = now if now > self.latest_ms else self.latest_ms
            ts = env.ts
            if ts < latest - self.window_ms:
                if ts >= now - self.window_ms:
                    raise Stale("message is older than the window before a time already used (the clock stepped back)")
                raise Stale(f"message is {now - ts} ms old (window ±{self.window_ms} ms)")
            if ts > now + self.window_ms:
                raise FutureDated(f"message is {ts - now} ms in the future")
            sig = env.sig
            pub = self._keys.get(signer)
            try:
                if pub is None:
                    pub = self._parse_key(signer)
                signature = bytes.fromhex(sig)
            except (InvalidKey, ValueError):
                raise BadSignature("the public key or signature cannot be parsed") from None
            # the signed part is the wire form without its sig member: in canonical form the top-level
            # members are sorted, so ``"sig":"`` is followed only by ``to`` (pattern-checked), ``ts``,
            # ``type`` and ``v``, none of which can hold an unescaped quote: the last one is the member
            at = wire.rfind(b'"sig":"')
            try:
                valid = pub.verify(signature, wire[:at] + wire[at + len(sig) + 9 :])  # 9: '"sig":"' and '",'
            except (ValueError, TypeError):
                valid = False
            if not valid:
                raise BadSignature("the signature does not match the message")
            if self._addresses and env.to not in self._addresses:
                self._check_recipient(env, unaddressed, broadcast_types)
            self.replay.admit(signer, env.nonce, ts, latest, self.window_ms)
            self.latest_ms = latest
        except EnvelopeError as exc:
            self.counters[exc.reason] += 1
            raise
        self.counters["accepted"] += 1
        return env

    def rejected(self) -> dict[str, int]:
        return {reason: self.counters[reason] for reason in REASONS}

    def _parse_key(self, pubkey: str) -> PublicKey:
        """A signer's key, parsed (or InvalidKey) and kept for its next message."""
        pub = parse_public_key(pubkey)
        keys = self._keys
        if len(keys) >= KEY_CACHE:
            del keys[next(iter(keys))]
        keys[pubkey] = pub
        return pub

    def _check_recipient(self, env: Envelope, unaddressed: bool, broadcast_types: Collection[str]) -> None:
        """For a `to` that is not one of our addresses (those pass without a call)."""
        if not env.to:
            if unaddressed:
                return
            raise Unaddressed(f"a {env.type!r} message must name its recipient")
        if env.to in self._everyone and env.type in broadcast_types:
            return
        if env.to.startswith("*"):
            raise WrongRecipient(f"a {env.type!r} message is not taken as a broadcast here")
        raise WrongRecipient("the message is addressed to another node or cell")


_decoder = msgspec.json.Decoder(Envelope, float_hook=canonical.reject_float)
# bound once: on this path each module attribute looked up is a step of every message
_decode, _encode_sorted = _decoder.decode, canonical.sorted_encoder.encode
_LONG_TOKEN, _NUMBER_MARKS, _MAX_DEPTH = canonical.LONG_TOKEN, canonical.NUMBER_MARKS, canonical.MAX_DEPTH
_FIRST = b'{"nonce":"'  # members sorted: nonce < payload < sender < sig < to < ts < type < v
_PAYLOAD = b'","payload":'  # after the 32 hex digits of a nonce, at 42; the payload from 53, its colon
_SENDER = b',"sender":{"ip":"'
_HEX = b"0123456789abcdef"


def _parse_fast(wire: bytes, addresses: Collection[str], keys: Collection[str]) -> Envelope | None:
    """The envelope, if the wire is a well-formed one in canonical form; else None, and
    `loads_canonical` and `_structure` find (and word) what is wrong.

    The same rules as those two: the member types and bounds checked by msgspec's typed decode, in
    C, and canonical form by msgspec's sorted re-encode giving back the same bytes. A `to` among
    `addresses` and a signer among `keys` (already parsed) passed their patterns before. A canonical
    envelope begins with its first member, ``nonce``: anything else (a hostile body nested 200,000
    deep, say) is not looked at twice. An integer beyond ±2**53 (which msgspec decodes) or nesting
    past the depth limit can only be in the payload: the typed members are bounded. The payload
    ends at the last ``,"sender":{"ip":"``: nothing after a canonical envelope's sender can hold
    that unescaped quote sequence (in other bytes the span only grows, and they are refused)."""
    if not wire.startswith(_FIRST) or not wire.startswith(_PAYLOAD, 42):
        return None
    end = wire.rfind(_SENDER)
    if _LONG_TOKEN in wire[53:end].translate(_NUMBER_MARKS):
        return None
    try:
        env = _decode(wire)
    except (msgspec.MsgspecError, RecursionError):
        return None
    if _encode_sorted(env) != wire:
        return None
    pubkey = env.sender.pubkey
    if (
        # nonce and sig, their lengths bounded by the decode, are lowercase hex if nothing else is left
        (env.nonce + env.sig).encode("ascii", "replace").translate(None, _HEX)
        or (env.to not in addresses and not _TO.fullmatch(env.to))
        or (pubkey not in keys and not _PUBKEY.fullmatch(pubkey))
        # k brackets nest at most k deep: most payloads skip the walk
        or (wire.count(b"[", 53, end) + wire.count(b"{", 53, end) >= _MAX_DEPTH and canonical.too_deep(env.payload, 1))
    ):
        return None
    return env


def _loads_refusing(wire: bytes) -> Any:
    """The wire's JSON value by the reference path, or Malformed saying what is wrong with it."""
    try:
        return canonical.loads_refusing(wire)
    except canonical.CanonicalError as exc:
        raise Malformed(str(exc)) from None


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
    return Envelope(
        nonce=nonce,
        payload=doc["payload"],
        sender=Sender(ip, port, pubkey),
        sig=sig,
        to=to,
        ts=ts,
        type=mtype,
        v=VERSION,
    )
