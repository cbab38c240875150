"""Payloads shaped like the dogeNodeCell's real ones, for tests/fuzz/test_receptor_fuzz.py's RECEPTORS.

The fuzzed cell has no node configured (the settings' defaults), so each request must be refused
``no_node`` whatever its payload; the shapes still name real addresses, an HTLC script and a
signed transaction, for a harness that gives the cell a node."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from borgusb.doge.address import p2pkh_address
from borgusb.doge.htlc import htlc_address, htlc_script
from borgusb.doge.tx import Utxo, build_payment
from borgusb.ledger.bridgework import sign_voucher

from .strategies import JSON_SMALL, fixed_key, hex_texts, safe_ints, shaped_dict, texts

OWNER, OTHER = fixed_key("owner"), fixed_key("doge other")
ADDRESSES = [p2pkh_address(k.public_key, n) for k in (OWNER, OTHER) for n in ("main", "regtest")]
SCRIPT = htlc_script(b"\1" * 32, OWNER.public_key, OTHER.public_key, 500)
ADDRESSES.append(htlc_address(SCRIPT, "main"))
PAYMENT = build_payment([Utxo("ab" * 32, 0, 10**9)], [(ADDRESSES[2], 10**8)], OWNER, "main", 10**6)

VOUCHER = sign_voucher(OWNER, OTHER.public_key_hex, OTHER.public_key_hex, "cd" * 32, "deposit", "ab" * 32, 10**12)
VOUCHERS = st.one_of(
    st.just(VOUCHER),
    st.builds(lambda k, v: {**VOUCHER, k: v}, st.sampled_from(sorted(VOUCHER)), JSON_SMALL | texts | safe_ints),
    JSON_SMALL,
)

ADDRESS_LIKE = st.one_of(st.sampled_from(ADDRESSES), texts, hex_texts, JSON_SMALL)
TXIDS = st.one_of(st.just("ab" * 32), hex_texts, texts, JSON_SMALL)
LIMITS = st.one_of(st.integers(1, 500), safe_ints, st.sampled_from([0, -1, 501, True, None, "1"]))

DOGE_RECEPTORS: dict[str, st.SearchStrategy[Any]] = {
    "doge.watch": shaped_dict(
        {"address": (st.sampled_from(ADDRESSES), ADDRESS_LIKE), "script": (st.just(SCRIPT.hex()), hex_texts)}
    ),
    "doge.deposits": shaped_dict(
        {"address": (st.sampled_from(ADDRESSES), ADDRESS_LIKE), "limit": (st.just(5), LIMITS)}
    ),
    "doge.broadcast": shaped_dict({"hex": (st.just(PAYMENT), hex_texts | texts | JSON_SMALL)}),
    "doge.tx": shaped_dict({"txid": (st.just("ab" * 32), TXIDS)}),
    "doge.height": st.just({}) | JSON_SMALL,
    "doge.tip": st.just({}) | JSON_SMALL,
    "doge.status": st.just({}) | JSON_SMALL,
    "doge.voucher": shaped_dict(
        {"voucher": (st.just(VOUCHER), VOUCHERS), "script": (st.just(SCRIPT.hex()), hex_texts)}
    ),
    "doge.earn": st.just({}) | JSON_SMALL,
}
