"""Payloads shaped like fStreamCell's real ones, for tests/fuzz/test_receptor_fuzz.py's RECEPTORS and
BROADCASTS: public listings signed by the fuzz keys (fstream.list, the fslisting broadcast), and the same
listings with one member changed after signing; payment certificates for fstream.credit (the ledger's
shapes) and fstream.usage; read receipts signed by the fuzz keys (fstream.read, fstream.reads' days)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from borgusb.clock import SystemClock
from borgusb.fstream.listing import sign_listing
from borgusb.ledger.contentwork import day_of, sign_read

from .mail_shapes import changed
from .peerpays_shapes import CERTS
from .strategies import fixed_key, safe_ints, shaped_dict

NOW = SystemClock().now_ms()
LISTINGS = [
    sign_listing(fixed_key("owner"), "a" * 64, "b" * 64, "holiday.webm", "video/webm", 1_234_567, NOW),
    sign_listing(fixed_key("stranger"), "c" * 64, "d" * 64, "<b>talk</b>.mp4", "video/mp4", 42, NOW),
]
LISTING = (st.sampled_from(LISTINGS), changed(LISTINGS))
READS = [
    sign_read(fixed_key(reader), "a" * 64, fixed_key(owner).public_key_hex, NOW)
    for reader in ("stranger", "owner")
    for owner in ("owner", "stranger")
]

FSTREAM_RECEPTORS: dict[str, st.SearchStrategy[Any]] = {
    "fstream.list": shaped_dict({"listing": LISTING}),
    "fstream.credit": shaped_dict({"cert": CERTS}),
    "fstream.usage": shaped_dict({}),
    "fstream.read": shaped_dict({"read": (st.sampled_from(READS), changed(READS))}),
    "fstream.reads": shaped_dict({"day": (safe_ints, st.just(day_of(NOW)))}),
}
FSTREAM_BROADCASTS: dict[str, st.SearchStrategy[Any]] = {"fslisting": shaped_dict({"listing": LISTING})}
