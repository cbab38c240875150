"""The root pointer: how a person's tree is found from their public key alone.

Wire form, canonical JSON, at most `MAX_ROOT_BYTES`::

    {"v": 1, "owner": "02…", "seq": 7, "folder": "<root folder id>", "root": "<its version's object id>",
     "ts": 1764000000000, "sig": "3044…"}

signed by ``owner`` over every other member plus ``"d": "borgusb.files.root"``. The pointer is kept
by the R ftreeFileMgrCells that the placement lottery picks for the owner's key (`holders`), so
any node that knows the members finds it with nothing but the key. A holder keeps one pointer per
owner, and only a higher ``seq`` replaces it: a second pointer at the same ``seq`` (two machines
of the person wrote at once) is refused as ``stale``, never swapped in silently. A write counts
when a majority of the holders kept it (`quorum`), so of two writes at one ``seq`` at most one
counts; the other machine reads the pointer that did and merges (`merge`) into the next ``seq``.
Readers take the highest ``seq``, at an equal one the pointer most holders keep (`newest`). Only
the owner's signature counts; what a pointer claims about anything else means nothing.

`RootStore` is a holder's state without I/O: bounded in owners, each owner rate-limited, every
refusal counted by its reason word.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .. import canonical
from ..canonical import MAX_SAFE_INT
from ..keys import SigningKey
from ..ledger.accounts import is_account
from ..shard import placement
from ..signed import is_sig_hex, signed_by, signing_bytes
from .errors import BadSignature, FilesError, Malformed, TooLarge

VERSION = 1
DOMAIN = "borgusb.files.root"
LOTTERY_PREFIX = "borgusb.files.root:"
DEFAULT_R = 5
MAX_ROOT_BYTES = 1024
_FIELDS = frozenset(("v", "owner", "seq", "folder", "root", "ts", "sig"))
_HEX64 = re.compile(r"[0-9a-f]{64}")


class Stale(FilesError):
    """Not newer than the pointer this holder keeps (kept, not an attack: counted apart)."""

    reason = "stale"


class Full(FilesError):
    reason = "full"


class RateLimited(FilesError):
    reason = "rate_limited"


@dataclass(frozen=True, slots=True)
class RootPointer:
    owner: str
    seq: int
    folder: str
    root: str
    ts: int
    sig: str
    id: str

    def body(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "owner": self.owner,
            "seq": self.seq,
            "folder": self.folder,
            "root": self.root,
            "ts": self.ts,
        }

    def to_dict(self) -> dict[str, Any]:
        return dict(self.body(), sig=self.sig)

    def encode(self) -> bytes:
        return canonical.encode_unchecked(self.to_dict())


def check_root(doc: Any) -> RootPointer:
    if not isinstance(doc, dict) or doc.keys() != _FIELDS:
        raise Malformed(f"a root pointer has exactly {', '.join(sorted(_FIELDS))}")
    for name, lo in (("v", 0), ("seq", 1), ("ts", 0)):
        v = doc[name]
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= MAX_SAFE_INT:
            raise Malformed(f"{name} is an integer of at least {lo}")
    if doc["v"] != VERSION:
        raise Malformed(f"unsupported root pointer version {doc['v']}")
    if not is_account(doc["owner"]):
        raise Malformed("owner is a public key")
    if any(not isinstance(doc[k], str) or not _HEX64.fullmatch(doc[k]) for k in ("folder", "root")):
        raise Malformed("folder and root are SHA-256 ids in lowercase hex")
    if not is_sig_hex(doc["sig"]):
        raise Malformed("sig is a DER signature in lowercase hex")
    signed = signing_bytes(doc, DOMAIN)
    if not signed_by(doc["owner"], doc["sig"], signed):
        raise BadSignature("the root pointer is not signed by its owner")
    return RootPointer(
        doc["owner"], doc["seq"], doc["folder"], doc["root"], doc["ts"], doc["sig"], hashlib.sha256(signed).hexdigest()
    )


def parse_root(data: bytes) -> RootPointer:
    if len(data) > MAX_ROOT_BYTES:
        raise TooLarge(f"a root pointer is at most {MAX_ROOT_BYTES} bytes")
    try:
        return check_root(canonical.loads_canonical(data))
    except canonical.CanonicalError as exc:
        raise Malformed(str(exc)) from None


def make_root(key: SigningKey, *, seq: int, folder: str, root: str, ts: int) -> RootPointer:
    body = {"v": VERSION, "owner": key.public_key_hex, "seq": seq, "folder": folder, "root": root, "ts": ts}
    return check_root(dict(body, sig=key.sign(signing_bytes(body, DOMAIN)).hex()))


def quorum(holder_count: int) -> int:
    """How many holders must keep a pointer for its write to count: a majority."""
    return holder_count // 2 + 1


def newest(answers: Iterable[RootPointer]) -> RootPointer | None:
    """Among the holders' pointers: the highest seq; at an equal seq the one most holders keep,
    then the higher id (so every reader picks the same)."""
    pointers = list(answers)
    count = Counter(p.id for p in pointers)
    return max(pointers, key=lambda p: (p.seq, count[p.id], p.id), default=None)


def holders(owner: str, members: Iterable[str], r: int = DEFAULT_R) -> list[str]:
    """The r cells that keep `owner`'s root pointer among `members`, best first."""
    return placement.choose(LOTTERY_PREFIX + owner, members, r)


class RootStore:
    """One holder's root pointers: at most `max_owners`, each owner at most `burst` writes and then
    one per `refill_ms`. `refused` counts each refusal's reason word."""

    def __init__(self, max_owners: int = 10_000, burst: int = 20, refill_ms: int = 3_000) -> None:
        self.max_owners = max_owners
        self.burst = burst
        self.refill_ms = refill_ms
        self._roots: dict[str, RootPointer] = {}
        self._budget: dict[str, tuple[int, int]] = {}  # owner -> (tokens, at ms); only owners kept
        self.refused: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._roots)

    def get(self, owner: str) -> RootPointer | None:
        return self._roots.get(owner)

    def _spend(self, owner: str, now_ms: int) -> None:
        tokens, at = self._budget.get(owner, (self.burst, now_ms))
        tokens = min(self.burst, tokens + max(0, now_ms - at) // self.refill_ms)
        at = now_ms if tokens == self.burst else at + (max(0, now_ms - at) // self.refill_ms) * self.refill_ms
        if tokens < 1:
            raise RateLimited(f"at most one root pointer every {self.refill_ms} ms after {self.burst}")
        self._budget[owner] = (tokens - 1, at)

    def offer(self, now_ms: int, data: bytes) -> RootPointer:
        """Keep `data` if it is a valid pointer of a higher seq than the one kept; the pointer now kept,
        or a `FilesError` (counted). A signature is checked before any state for its owner is made."""
        try:
            ptr = parse_root(data)
            kept = self._roots.get(ptr.owner)
            if kept is not None and kept.id == ptr.id:
                return kept  # the same write again (a retry): kept, nothing spent
            if kept is not None and ptr.seq <= kept.seq:
                raise Stale(f"this holder keeps seq {kept.seq}")
            if kept is None and len(self._roots) >= self.max_owners:
                raise Full(f"this holder keeps {self.max_owners} owners' pointers")
            self._spend(ptr.owner, now_ms)
        except FilesError as exc:
            self.refused[exc.reason] += 1
            raise
        self._roots[ptr.owner] = ptr
        return ptr

    def dump(self) -> list[bytes]:
        """Every kept pointer's wire bytes (for the holder's disk; `offer` them again on start)."""
        return [p.encode() for p in self._roots.values()]
