"""Payloads shaped like the ftreeFileMgrCell's root-pointer requests and the shard cell's reward
requests (``shard.audit``, ``shard.earn``, readers' ``shard.receipt``) and storage credit
(``shard.credit``, ``shard.usage``: the ledger's certificate shapes), for tests/fuzz/test_receptor_fuzz.py's RECEPTORS.

Pointers signed now by the fuzz keys, and the same documents with one member changed after signing."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from borgusb.clock import SystemClock
from borgusb.files.root import make_root
from borgusb.shard.receipt import sign_receipt

from .mail_shapes import changed
from .peerpays_shapes import CERTS
from .strategies import JSON_SMALL, fixed_key, hex_texts, safe_ints, shaped_dict

OWNER, STRANGER = fixed_key("owner"), fixed_key("stranger")
NOW = SystemClock().now_ms()
POINTERS = [
    make_root(k, seq=seq, folder="ab" * 32, root="cd" * 32, ts=NOW).to_dict()
    for k in (OWNER, STRANGER)
    for seq in (1, 2)
]
RECEIPTS = [
    sign_receipt(k, holder.public_key_hex, {"ab" * 32: 1 << 20}, NOW)
    for k in (OWNER, STRANGER)
    for holder in (OWNER, STRANGER)
]
OWNERS = st.sampled_from([OWNER.public_key_hex, STRANGER.public_key_hex])
SHARD = st.lists(st.one_of(hex_texts, safe_ints, JSON_SMALL), min_size=2, max_size=2)

FTREE_EARN_RECEPTORS: dict[str, st.SearchStrategy[Any]] = {
    "ft.root.store": shaped_dict({"pointer": (st.sampled_from(POINTERS), changed(POINTERS))}),
    "ft.root.put": shaped_dict({"pointer": (st.sampled_from(POINTERS), changed(POINTERS))}),
    "ft.root.held": shaped_dict({"owner": (OWNERS, hex_texts)}),
    "ft.root.get": shaped_dict({"owner": (OWNERS, hex_texts)}),
    "shard.audit": shaped_dict({"claimant": (OWNERS, hex_texts), "shards": (st.lists(SHARD, max_size=4), JSON_SMALL)}),
    "shard.earn": shaped_dict(
        {
            "start": (safe_ints, st.just(NOW - NOW % 3_600_000 - 3_600_000)),
            "rule": (st.sampled_from(["hold", "serve"]), JSON_SMALL),
        }
    ),
    "shard.receipt": shaped_dict({"receipt": (st.sampled_from(RECEIPTS), changed(RECEIPTS))}),
    "shard.credit": shaped_dict({"cert": CERTS}),
    "shard.usage": shaped_dict({}),
}
