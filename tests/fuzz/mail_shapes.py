"""Payloads shaped like the mailTreeCell's real ones, for tests/fuzz/test_receptor_fuzz.py's RECEPTORS.

Messages and inbox requests signed now (so they are fresh for the whole run) by the fuzz keys, to
each other, threaded or not; directory entries (fresh, stale, another key claiming an address) and
addresses; and the same documents with one member changed after signing."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from borgusb.clock import SystemClock
from borgusb.mail.directory import DOMAIN as DIR_DOMAIN
from borgusb.mail.directory import sign_entry
from borgusb.mail.message import Content, compose
from borgusb.mail.request import sign_request
from borgusb.signed import signing_bytes

from .strategies import JSON_SMALL, fixed_key, hex_texts, safe_ints, shaped_dict, texts

OWNER, STRANGER = fixed_key("owner"), fixed_key("stranger")
NOW = SystemClock().now_ms()
FIRST = compose(OWNER, STRANGER.public_key_hex, Content("s", "b"), NOW)
MESSAGES = [
    FIRST.to_dict(),
    compose(STRANGER, OWNER.public_key_hex, Content("re", "b", ("ab" * 32,)), NOW, FIRST.id).to_dict(),
    compose(OWNER, OWNER.public_key_hex, Content("", ""), NOW - 20 * 60_000).to_dict(),  # stale
]
REQUESTS = [
    sign_request(k, op, ids, NOW)
    for k in (OWNER, STRANGER)
    for op, ids in (("list", []), ("read", [FIRST.id]), ("rm", [FIRST.id]))
]

_claim = dict(sign_entry(STRANGER, NOW, "owner").to_dict(), addr=OWNER.doge_address)  # a stranger claims it
del _claim["sig"]
ENTRIES = [
    sign_entry(OWNER, NOW, "Owner").to_dict(),
    sign_entry(STRANGER, NOW).to_dict(),
    sign_entry(OWNER, NOW - 20 * 60_000, "old").to_dict(),  # stale
    dict(_claim, sig=STRANGER.sign(signing_bytes(_claim, DIR_DOMAIN)).hex()),
]
ADDRESSES = [OWNER.doge_address, STRANGER.doge_address, "D" + "1" * 33, "1BoatSLRHtKNngkdXEeobR76b53LETtpyT"]


@st.composite
def changed(draw: st.DrawFn, docs: list[dict[str, Any]]) -> Any:
    """A signed document with one member replaced after signing (or junk)."""
    doc = dict(draw(st.sampled_from(docs)))
    name = draw(st.sampled_from(sorted(doc)))
    doc[name] = draw(st.one_of(JSON_SMALL, hex_texts, texts, safe_ints))
    return doc


MAIL_RECEPTORS: dict[str, st.SearchStrategy[Any]] = {
    "mail.send": shaped_dict({"m": (st.sampled_from(MESSAGES), changed(MESSAGES))}),
    "mail.deposit": shaped_dict(
        {"m": (st.sampled_from(MESSAGES), changed(MESSAGES)), "handoff": (st.booleans(), JSON_SMALL)}
    ),
    "mail.ask": shaped_dict({"q": (st.sampled_from(REQUESTS), changed(REQUESTS))}),
    "mail.inbox": shaped_dict({"q": (st.sampled_from(REQUESTS), changed(REQUESTS))}),
    "mail.publish": shaped_dict({"e": (st.sampled_from(ENTRIES), changed(ENTRIES))}),
    "mail.dir_put": shaped_dict(
        {"e": (st.sampled_from(ENTRIES), changed(ENTRIES)), "handoff": (st.booleans(), JSON_SMALL)}
    ),
    "mail.lookup": shaped_dict({"addr": (st.sampled_from(ADDRESSES), texts)}),
    "mail.dir_get": shaped_dict({"addr": (st.sampled_from(ADDRESSES), texts)}),
}
