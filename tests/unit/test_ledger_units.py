"""Ledger amounts and the price/reward table: integers only, every number pinned."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from borgusb.canonical import MAX_SAFE_INT
from borgusb.ledger import rules, units
from borgusb.ledger.errors import BadAmount


def test_supply_is_twenty_million_shells_of_1e8_units_and_fits_json() -> None:
    assert units.UNITS_PER_SHELL == 100_000_000
    assert units.SUPPLY == 20_000_000 * 100_000_000 == 2 * 10**15
    assert units.SUPPLY <= MAX_SAFE_INT  # every balance is an exact JSON integer


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (0, "zero"),
        (-1, "negative"),
        (-(10**8), "negative"),
        (1.5, "fractional"),
        (0.1, "fractional"),
        (Decimal("2.5"), "fractional"),
        (Fraction(1, 3), "fractional"),
        (2.0, "not_integer"),  # a float is never an amount, even a whole one
        (float("nan"), "not_integer"),
        (True, "not_integer"),
        (False, "not_integer"),
        ("100", "not_integer"),
        (None, "not_integer"),
        (units.SUPPLY + 1, "above_supply"),
        (2**64, "above_supply"),
    ],
)
def test_bad_amounts_are_refused_with_their_reason(value: Any, problem: str) -> None:
    with pytest.raises(BadAmount) as err:
        units.check_amount(value)
    assert err.value.reason == "bad_amount"
    assert err.value.problem == problem


@pytest.mark.parametrize("value", [1, 10**8, units.SUPPLY])
def test_good_amounts(value: int) -> None:
    assert units.check_amount(value) == value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12.5", 1_250_000_000),
        ("0.00000001", 1),
        ("1", 100_000_000),
        (" 3.10 ", 310_000_000),
        ("1_000", 1000 * 10**8),
        ("20000000", units.SUPPLY),
        ("1.000000000", 10**8),  # trailing zeros beyond 8 places are still exact
    ],
)
def test_parse_shells_is_exact(text: str, expected: int) -> None:
    assert units.parse_shells(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("0.000000001", "fractional"),
        ("0", "zero"),
        ("0.0", "zero"),
        ("-1", "negative"),
        ("1e3", "not_integer"),
        ("abc", "not_integer"),
        ("", "not_integer"),
        ("20000000.00000001", "above_supply"),
    ],
)
def test_parse_shells_refusals(text: str, problem: str) -> None:
    with pytest.raises(BadAmount) as err:
        units.parse_shells(text)
    assert err.value.problem == problem


@given(st.integers(1, units.SUPPLY))
def test_format_then_parse_round_trips(value: int) -> None:
    assert units.parse_shells(units.format_shells(value)) == value


def test_format_shells() -> None:
    assert units.format_shells(1_250_000_000) == "12.5"
    assert units.format_shells(1) == "0.00000001"
    assert units.format_shells(0) == "0"
    assert units.format_shells(-150_000_000) == "-1.5"
    with pytest.raises(TypeError):
        units.format_shells(True)


# ------------------------------------------------------------------ the rules table

GIB_DAY = rules.MIB_HOURS_PER_GIB_DAY  # MiB-hours in one GiB kept one day


@pytest.mark.parametrize(
    ("rule", "quantity", "units_owed"),
    [
        ("hold", GIB_DAY, 1_000_000),  # 0.01 Shell per GiB-day per copy
        ("serve", rules.GIB, 1_000_000),  # 0.01 Shell per GiB served
        ("bridge", 1, 100_000_000),  # 1 Shell per bridge operation
        ("agent", 1, 50_000_000),  # 0.5 Shell per confirmed task
        ("content", 1, 100_000),  # 0.001 Shell per read
        ("storage", GIB_DAY, 1_000_000),  # 0.01 Shell per GiB-day of a copy beyond the quota
        ("stream", rules.GIB, 1_000_000),  # 0.01 Shell per GiB streamed
        ("compute", 1000, 100_000),  # 0.001 Shell per CPU-second
    ],
)
def test_every_rule_pays_its_documented_number(rule: str, quantity: int, units_owed: int) -> None:
    assert rules.amount(rule, quantity) == units_owed
    assert rules.amount(rule, 0) == 0


def test_who_pays_and_rounding() -> None:
    assert set(rules.REWARDS) == {"hold", "serve", "bridge", "agent", "content"}
    assert set(rules.PRICES) == {"storage", "stream", "compute"}
    assert all(rules.RULES[r].paid_by == "reserve" for r in rules.REWARDS)
    # one MiB-hour: the reserve rounds down, a price rounds up
    assert rules.amount("hold", 1) == 1_000_000 // GIB_DAY == 40
    assert rules.amount("storage", 1) == -(-1_000_000 // GIB_DAY) == 41
    assert rules.amount("serve", 1) == 0 and rules.amount("stream", 1) == 1
    assert rules.amount("bridge", 10**9) == units.SUPPLY  # never more than the supply
    for bad in (-1, True, 1.0):
        with pytest.raises(ValueError):
            rules.amount("hold", bad)  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        rules.amount("gift", 1)


def test_quota_and_byte_hours() -> None:
    day = 24 * rules.HOUR_MS
    assert rules.mib_hours(rules.GIB, day) == GIB_DAY
    assert rules.billable_mib_hours(rules.FREE_QUOTA_BYTES, day) == 0
    assert rules.billable_mib_hours(rules.FREE_QUOTA_BYTES + rules.GIB, day) == GIB_DAY
    assert rules.amount("storage", rules.billable_mib_hours(3 * rules.GIB, day)) == 2 * 1_000_000


@given(st.integers(0, units.SUPPLY), st.lists(st.text("abcdef", min_size=1, max_size=3), min_size=1, max_size=7))
def test_split_is_exact_and_deterministic(total: int, payees: list[str]) -> None:
    shares = rules.split(total, payees)
    assert sum(v for _, v in shares) == total
    assert all(v > 0 for _, v in shares)
    assert shares == rules.split(total, list(reversed(payees)))
    if shares:
        assert max(v for _, v in shares) - min(v for _, v in shares) <= 1
