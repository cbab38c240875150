"""Public listings: how a person's public media can be found, without I/O.

A listing is a small document signed by the owner (`borgusb.signed`, domain
``borgusb.fstream.listing``) that names a published stream map, the media object it names, a title,
the type and the size::

    {"v": 1, "map": "<map id>", "id": "<media id>", "name": "Holiday.webm", "type": "video/webm",
     "size": 19726336, "o": "02…owner", "t": 1764000000000, "sig": "3044…"}

`borgusb publish` hands it to an fStream cell, which checks that the map is the owner's and spreads
it to every fStream cell over the tree; each keeps a bounded `Catalog`. Whoever shows a listing
(the Watch page) checks its signature again: a title is the owner's word, never an endpoint's.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ..keys import SigningKey
from ..shard import model
from ..signed import SignedDocError, check_doc, sign_doc
from .streammap import TYPES

VERSION = 1
DOMAIN = "borgusb.fstream.listing"
FIELDS = {"v", "map", "id", "name", "type", "size", "o", "t"}
MAX_NAME = 120
MAX_LISTINGS = 512  # kept by one fStream cell
PER_OWNER = 32  # of one owner (their newest)


class BadListing(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Listing:
    map: str
    id: str
    name: str
    type: str
    size: int
    owner: str
    t: int
    doc: dict[str, Any]


def title(name: str) -> str:
    """A file name as a listing's title: printable, at most MAX_NAME characters."""
    clean = "".join(c if c.isprintable() else " " for c in name).strip()
    return clean[:MAX_NAME] or "untitled"


def sign_listing(key: SigningKey, map_id: str, media_id: str, name: str, content_type: str, size: int, t: int) -> dict:
    body = {"v": VERSION, "map": map_id, "id": media_id, "name": title(name), "type": content_type, "size": size}
    doc = sign_doc(key, {**body, "o": key.public_key_hex, "t": t}, DOMAIN)
    check_listing(doc)
    return doc


def check_listing(doc: Any) -> Listing:
    """A `Listing`, or `BadListing` (malformed, bad_type, bad_signature; the signature checked last)."""
    if not isinstance(doc, dict) or doc.keys() != FIELDS | {"sig"}:
        raise BadListing("malformed", f"a listing has exactly {', '.join(sorted(FIELDS | {'sig'}))}")
    if doc["v"] != VERSION or isinstance(doc["v"], bool):
        raise BadListing("malformed", f"listing version {str(doc['v'])[:20]!r}; this node reads {VERSION}")
    if not (model.is_hash(doc["map"]) and model.is_hash(doc["id"])):
        raise BadListing("malformed", "map and id are object ids (64 hex)")
    name = doc["name"]
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME or not name.isprintable():
        raise BadListing("malformed", f"the name is 1 to {MAX_NAME} printable characters")
    if doc["type"] not in TYPES:
        raise BadListing("bad_type", "not a media type a stream map may have")
    for field in ("size", "t"):
        v = doc[field]
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 2**53:
            raise BadListing("malformed", f"{field} is an integer")
    try:
        check_doc(doc, FIELDS, "o", DOMAIN)
    except SignedDocError as exc:
        raise BadListing(exc.reason, str(exc)) from None
    return Listing(doc["map"], doc["id"], name, doc["type"], doc["size"], doc["o"], doc["t"], doc)


class Catalog:
    """The newest listings: at most `PER_OWNER` of one owner and `MAX_LISTINGS` in all (the oldest
    go first); a map listed again keeps its newest listing."""

    def __init__(self) -> None:
        self._by_map: OrderedDict[str, Listing] = OrderedDict()  # oldest first

    def __len__(self) -> int:
        return len(self._by_map)

    def add(self, listing: Listing) -> bool:
        """Whether the listing is new or newer than the one kept."""
        old = self._by_map.get(listing.map)
        if old is not None and (old.owner != listing.owner or old.t >= listing.t):
            return False  # the first owner to list a map keeps it (a map names its owner)
        self._by_map.pop(listing.map, None)
        self._by_map[listing.map] = listing
        mine = [m for m, x in self._by_map.items() if x.owner == listing.owner]
        for m in mine[: max(0, len(mine) - PER_OWNER)]:
            del self._by_map[m]
        while len(self._by_map) > MAX_LISTINGS:
            self._by_map.popitem(last=False)
        return True

    def newest(self, n: int) -> list[dict[str, Any]]:
        return [x.doc for x in sorted(self._by_map.values(), key=lambda x: -x.t)[:n]]
