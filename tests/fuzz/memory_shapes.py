"""Payloads shaped like the peerMemoryCell's real ones, for tests/fuzz/test_receptor_fuzz.py's RECEPTORS.

Memories (public and private), tombstones and queries (public, and owner-signed "mine" ones, fresh
for the whole run) by the fuzz keys; and the same documents with one member changed after signing."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from borgusb.clock import SystemClock
from borgusb.memory.query import make_query
from borgusb.memory.record import compose, make_tombstone

from .mail_shapes import changed
from .strategies import JSON_SMALL, fixed_key, hex_texts, shaped_dict

OWNER, STRANGER = fixed_key("owner"), fixed_key("stranger")
NOW = SystemClock().now_ms()
FIRST = compose(OWNER, "left the spare key under the flowerpot", ts=NOW)
RECORDS = [
    FIRST.to_dict(),
    compose(STRANGER, "a private note", kind="health", ts=NOW, private=True, weights={"importance": 9}).to_dict(),
]
TOMBSTONES = [make_tombstone(k, FIRST.id, NOW).to_dict() for k in (OWNER, STRANGER)]
QUERIES = [
    make_query("where is the key?", NOW).to_dict(),
    make_query("notes", NOW, key=OWNER, kinds=("note",), limit=3, mode="keyword").to_dict(),
]
IDS = st.lists(st.one_of(st.just(FIRST.id), hex_texts), max_size=4)


def _either(docs: list[dict[str, Any]]) -> tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]:
    return st.sampled_from(docs), changed(docs)


MEMORY_RECEPTORS: dict[str, st.SearchStrategy[Any]] = {
    "memory.put": shaped_dict({"m": _either(RECORDS)}),
    "memory.keep": shaped_dict({"m": _either(RECORDS)}),
    "memory.rm": shaped_dict({"t": _either(TOMBSTONES)}),
    "memory.drop": shaped_dict({"t": _either(TOMBSTONES)}),
    "memory.search": shaped_dict({"q": _either(QUERIES)}),
    "memory.find": shaped_dict({"q": _either(QUERIES)}),
    "memory.get": shaped_dict({"ids": (IDS, JSON_SMALL)}),
    "memory.fetch": shaped_dict({"ids": (IDS, JSON_SMALL)}),
}
