"""Signed orders and cancels: pinned vectors, and every refusal with its reason word."""

from __future__ import annotations

import pytest

from borgusb.exchange.order import koinu_for, parse_cancel, parse_order, sign_cancel, sign_order
from borgusb.keys import SigningKey
from borgusb.ledger.errors import LedgerError
from tests.conftest import load_vectors

VALID = load_vectors("exchange/orders.json", version=1)["cases"]
INVALID = load_vectors("exchange/orders_invalid.json", version=1)["cases"]


@pytest.mark.parametrize("case", VALID, ids=lambda c: c["id"][:12])
def test_vectors_parse_to_their_ids_and_bytes(case: dict) -> None:
    parse = parse_order if case["kind"] == "order" else parse_cancel
    ev = parse(case["wire"].encode())
    assert ev.id == case["id"]
    assert ev.encode() == case["wire"].encode()


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c["name"])
def test_invalid_vectors_refused_with_their_reason(case: dict) -> None:
    with pytest.raises(LedgerError) as info:
        parse_order(case["wire"].encode())
    assert info.value.reason == case["reason"]


def test_signing_is_what_the_vectors_pin() -> None:
    key = SigningKey.generate()
    o = sign_order(key, side="buy", amount=3 * 10**8, price=7, ts=10, expiry=20, nonce=b"\x05" * 16)
    assert parse_order(o.encode()) == o
    c = sign_cancel(key, order=o.id, ts=11, nonce=b"\x06" * 16)
    assert parse_cancel(c.encode()) == c
    with pytest.raises(LedgerError) as info:  # a cancel's bytes never pass for an order, nor the reverse
        parse_cancel(o.encode())
    assert info.value.reason == "malformed"


def test_koinu_are_integers_rounded_down() -> None:
    assert koinu_for(10**8, 2_500_000_000) == 2_500_000_000
    assert koinu_for(150_000_000, 3) == 4  # 4.5 koinu rounds down
