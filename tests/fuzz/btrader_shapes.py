"""Payloads shaped like the btraderOrganCell's real ones, for tests/fuzz/test_receptor_fuzz.py.

Orders and cancels signed for real (fixed test keys, dated now), then fields missing, retyped,
out of range or badly hex-encoded (`shaped_dict`), so the paths past the format checks (the book,
the rate limit, the broadcast) are reached too."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from borgusb.clock import SystemClock
from borgusb.exchange.order import sign_cancel, sign_order

from .strategies import JSON_SMALL, fixed_key, hex_texts, safe_ints, shaped_dict, texts

OWNER, OTHER = fixed_key("owner"), fixed_key("bt other")
NOW = SystemClock().now_ms()
SELL = sign_order(OWNER, side="sell", amount=3 * 10**8, price=2_500_000, ts=NOW, expiry=NOW + 600_000, nonce=b"\1" * 16)
BUY = sign_order(OTHER, side="buy", amount=2 * 10**8, price=2_600_000, ts=NOW, expiry=NOW + 600_000, nonce=b"\2" * 16)
CANCEL = sign_cancel(OWNER, order=SELL.id, ts=NOW, nonce=b"\3" * 16)
FOREIGN = sign_cancel(OTHER, order=SELL.id, ts=NOW, nonce=b"\4" * 16)

KEYS_LIKE = st.one_of(st.sampled_from([OWNER.public_key_hex, OTHER.public_key_hex]), hex_texts, texts, JSON_SMALL)
INTS = st.one_of(st.integers(1, 5), safe_ints, st.sampled_from([0, -1, 2**53 - 1, True, None, "1", "1.0"]))


def _fields(doc: dict[str, Any]) -> st.SearchStrategy[Any]:
    edges = {"owner": KEYS_LIKE, "side": st.sampled_from(["buy", "sell", "hold", ""]) | texts, "order": hex_texts}
    return shaped_dict(
        {k: (st.just(v), edges.get(k, INTS if isinstance(v, int) else hex_texts)) for k, v in doc.items()}
    )


ORDERS = st.one_of(st.sampled_from([SELL.to_dict(), BUY.to_dict()]), _fields(SELL.to_dict()))
CANCELS = st.one_of(st.sampled_from([CANCEL.to_dict(), FOREIGN.to_dict()]), _fields(CANCEL.to_dict()))
IDS = st.lists(st.one_of(st.sampled_from([SELL.id, BUY.id, CANCEL.id]), hex_texts, JSON_SMALL), max_size=70)
OWNERS = shaped_dict({"owner": (st.sampled_from([OWNER.public_key_hex, ""]), KEYS_LIKE)})

BT_RECEPTORS: dict[str, st.SearchStrategy[Any]] = {
    "bt.place": shaped_dict({"order": (ORDERS, CANCELS | JSON_SMALL)}),
    "bt.cancel": shaped_dict({"cancel": (CANCELS, ORDERS | JSON_SMALL)}),
    "bt.book": st.just({}) | JSON_SMALL,
    "bt.fills": OWNERS,
    "bt.swaps": OWNERS,
    "bt.digest": shaped_dict({"hash": (hex_texts, JSON_SMALL)}),
    "bt.fetch": shaped_dict({"ids": (IDS, JSON_SMALL)}),
    "bt.notes": shaped_dict({"fill": (hex_texts, JSON_SMALL)}),
}
BT_BROADCASTS: dict[str, st.SearchStrategy[Any]] = {
    "bt.events": shaped_dict({"events": (st.lists(ORDERS | CANCELS, max_size=4), JSON_SMALL)}).map(
        lambda d: {**d, "k": "bt.events"}
    ),
    "bt.note": shaped_dict(
        {
            "fill": (hex_texts, JSON_SMALL),
            "lock": (hex_texts, JSON_SMALL),
            "doge": (shaped_dict({"txid": hex_texts, "vout": INTS, "locktime": INTS}), JSON_SMALL),
        }
    ).map(lambda d: {**d, "k": "bt.note"}),
}
