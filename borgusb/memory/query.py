"""A memory search: its filters, the owner's signature for a private one, results and their merge.

Wire form of a query, canonical JSON::

    {"text": "where did I leave the spare key?", "scope": "public" | "mine", "owner": "" | "02…",
     "kinds": ["note"], "since": 0, "until": 0, "limit": 10, "min_score": 0,
     "mode": "hybrid" | "keyword" | "embedding", "ts": 1764000000000, "sig": "" | "3044…"}

* ``scope`` "public": public memories (of ``owner`` only, when it is set), scored on every cell.
  "mine": also ``owner``'s private memories, which cells return unscored, sealed, for the owner's
  side to open and score (`borgusb.memory.scoring.Index`). Only ``owner`` may ask: the query is
  signed by that key (domain ``borgusb.memory.query``) and fresh within `FRESH_MS`.
* ``since``/``until``: the memory's time in ms, inclusive; 0 is no bound.
* A **result** is ``{"m": <the signed record>, "score": millionths, "parts": {"emb", "kw", "rec"}}``.
  The reader checks every record's signature and that it meets the query (`check_results`): a cell
  can drop a memory but cannot forge one or slip in one that was not asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..canonical import MAX_SAFE_INT
from ..keys import SigningKey, is_public_key_hex
from ..signed import signed_by, signing_bytes
from .errors import BadSignature, Malformed, MemoryRefused, Stale, TooLarge
from .record import KIND, Memory, check_record, open_text
from .scoring import MODES, SCALE, Index, Mode

DOMAIN = "borgusb.memory.query"
MAX_QUERY_TEXT = 1024
MAX_KINDS = 8
MAX_LIMIT = 50
FRESH_MS = 60_000
FIELDS = frozenset(("text", "scope", "owner", "kinds", "since", "until", "limit", "min_score", "mode", "ts", "sig"))


@dataclass(frozen=True, slots=True)
class Query:
    text: str
    scope: str = "public"
    owner: str = ""
    kinds: tuple[str, ...] = ()
    since: int = 0
    until: int = 0
    limit: int = 10
    min_score: int = 0
    mode: Mode = "hybrid"
    ts: int = 0
    sig: str = ""

    def body(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "scope": self.scope,
            "owner": self.owner,
            "kinds": list(self.kinds),
            "since": self.since,
            "until": self.until,
            "limit": self.limit,
            "min_score": self.min_score,
            "mode": self.mode,
            "ts": self.ts,
        }

    def to_dict(self) -> dict[str, Any]:
        return dict(self.body(), sig=self.sig)

    def matches(self, m: Memory) -> bool:
        """The filters (not the text): scope, owner, kind, time range."""
        if m.private and not (self.scope == "mine" and m.owner == self.owner):
            return False
        if self.owner and m.owner != self.owner:
            return False
        if self.kinds and m.kind not in self.kinds:
            return False
        return (not self.since or m.ts >= self.since) and (not self.until or m.ts <= self.until)


def _int(doc: dict[str, Any], name: str, low: int, high: int) -> int:
    v = doc[name]
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
        raise Malformed(f"{name} is an integer from {low} to {high}")
    return v


def check_query(doc: Any, now_ms: int) -> Query:
    """A `Query` from a decoded document; a "mine" query must be signed by its owner and fresh."""
    if not isinstance(doc, dict) or doc.keys() != FIELDS:
        raise Malformed(f"a query has exactly {', '.join(sorted(FIELDS))}")
    text, scope, owner, kinds, mode, sig = (doc[k] for k in ("text", "scope", "owner", "kinds", "mode", "sig"))
    if not isinstance(text, str) or not text.strip():
        raise Malformed("text is the question, not empty")
    if len(text.encode()) > MAX_QUERY_TEXT:
        raise TooLarge(f"a question is at most {MAX_QUERY_TEXT} bytes")
    if scope not in ("public", "mine") or mode not in MODES:
        raise Malformed(f"scope is public or mine; mode is one of {', '.join(MODES)}")
    if not (owner == "" or is_public_key_hex(owner)) or (scope == "mine" and not owner):
        raise Malformed("owner is empty or a public key (a private search names its owner)")
    if (
        not isinstance(kinds, list)
        or len(kinds) > MAX_KINDS
        or not all(isinstance(k, str) and KIND.fullmatch(k) for k in kinds)
    ):
        raise Malformed(f"kinds are at most {MAX_KINDS} kind words")
    if not isinstance(sig, str) or len(sig) > 146:
        raise Malformed("sig is empty or a DER signature in hex")
    q = Query(
        text=text,
        scope=scope,
        owner=owner,
        kinds=tuple(kinds),
        since=_int(doc, "since", 0, MAX_SAFE_INT),
        until=_int(doc, "until", 0, MAX_SAFE_INT),
        limit=_int(doc, "limit", 1, MAX_LIMIT),
        min_score=_int(doc, "min_score", 0, SCALE),
        mode=mode,
        ts=_int(doc, "ts", 0, MAX_SAFE_INT),
        sig=sig,
    )
    if scope == "mine":
        if not signed_by(owner, sig, signing_bytes(doc, DOMAIN)):
            raise BadSignature("a private search is signed by its owner")
        if abs(now_ms - q.ts) > FRESH_MS:
            raise Stale(f"a private search is answered within {FRESH_MS // 1000} s of its time")
    return q


def make_query(text: str, now_ms: int, *, key: SigningKey | None = None, **filters: Any) -> Query:
    """A query; with `key`, the owner's signed "mine" query (public and private memories of that key)."""
    q = Query(text=text, ts=now_ms, **filters)
    body = q.body()
    if key is not None:
        body.update(scope="mine", owner=key.public_key_hex)
        body["sig"] = key.sign(signing_bytes(body, DOMAIN)).hex()
    else:
        body["sig"] = ""
    return check_query(body, now_ms)


@dataclass(frozen=True, slots=True)
class Result:
    memory: Memory
    score: int
    parts: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {"m": self.memory.to_dict(), "score": self.score, "parts": dict(self.parts)}


def check_results(q: Query, docs: Any, bad: list[str] | None = None) -> list[Result]:
    """The results a cell answered that are signed by their owners and meet the query; the reasons
    of the others go to `bad` (a lying cell can drop a memory, not forge or slip one in)."""
    found: list[Result] = []
    for doc in docs if isinstance(docs, list) else []:
        try:
            if not isinstance(doc, dict) or doc.keys() != {"m", "score", "parts"}:
                raise Malformed("a result has m, score and parts")
            m = check_record(doc["m"])
            score, parts = doc["score"], doc["parts"]
            if isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= SCALE:
                raise Malformed("score is millionths")
            if not isinstance(parts, dict) or not all(isinstance(v, int) for v in parts.values()) or len(parts) > 3:
                raise Malformed("parts are at most three integers")
            if not q.matches(m):
                raise Malformed("a result the query did not ask for")
            found.append(Result(m, score, dict(parts)))
        except MemoryRefused as exc:
            if bad is not None:
                bad.append(exc.reason)
    return found


def merge(q: Query, groups: list[list[Result]]) -> list[Result]:
    """One list from every cell's answer: each id once (its best score), best first, at most the limit."""
    best: dict[str, Result] = {}
    for group in groups:
        for r in group:
            if r.memory.id not in best or r.score > best[r.memory.id].score:
                best[r.memory.id] = r
    ranked = sorted(best.values(), key=lambda r: (-r.score, r.memory.id))
    return [r for r in ranked if r.score >= q.min_score][: q.limit]


def score_mine(q: Query, key: SigningKey, records: list[Memory], now_ms: int) -> list[Result]:
    """The owner's side of a private search: open the owner's sealed memories and score them as a
    cell scores public ones (cells never see these texts)."""
    texts = {
        m.id: (m, open_text(key, m)) for m in records if m.private and m.owner == key.public_key_hex and q.matches(m)
    }
    index = Index()
    for mid, (m, text) in texts.items():
        index.add(mid, text, m.ts)
    found = index.search(q.text, now_ms, limit=q.limit, min_score=q.min_score, mode=q.mode)
    return [Result(texts[s.id][0], s.score, s.parts()) for s in found]
