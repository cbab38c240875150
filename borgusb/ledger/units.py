"""Amounts: integers of the smallest unit, never floats.

1 Shell = 10^8 units (the same division as a Dogecoin or a bitcoin into
satoshis), and the whole supply is created once, at genesis: 20,000,000
Shells = 2 * 10^15 units to the reserve account. That is below 2^53, so every
amount and every sum of amounts is an integer that canonical JSON (and every
JSON implementation) carries exactly; nothing is ever rounded on the wire.

`check_amount` is the one gate for an amount in a transaction; text typed by
a person goes through `parse_shells` first (exact decimal, at most 8 places).
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction
from typing import Any

from ..canonical import MAX_SAFE_INT
from .errors import BadAmount

DECIMALS = 8
UNITS_PER_SHELL = 10**DECIMALS
GENESIS_SHELLS = 20_000_000
SUPPLY = GENESIS_SHELLS * UNITS_PER_SHELL  # 2_000_000_000_000_000 units, fixed forever

assert SUPPLY <= MAX_SAFE_INT  # every balance fits canonical JSON's exact integers

_SHELLS = re.compile(r"(?P<int>[0-9]{1,9})(?:\.(?P<frac>[0-9]{1,30}))?")


def check_amount(value: Any) -> int:
    """`value` if it is a valid transaction amount: an int (not a bool), 1 ≤ value ≤ SUPPLY.

    Raises `BadAmount` whose `problem` tells which rule failed, so a refusal can
    say "fractional" or "above the supply" rather than just "bad"."""
    if isinstance(value, bool):
        raise BadAmount("not_integer", "a boolean is not an amount")
    if not isinstance(value, int):
        if isinstance(value, (float, Decimal, Fraction)):
            try:
                whole = value == int(value)
            except (ValueError, OverflowError):  # NaN, infinity
                whole = True
            if not whole:
                raise BadAmount("fractional", "amounts are whole units (1 Shell = 10^8 units)")
        raise BadAmount("not_integer", f"an amount is an integer of units, not {type(value).__name__}")
    if value == 0:
        raise BadAmount("zero", "a transaction moves at least 1 unit")
    if value < 0:
        raise BadAmount("negative", "amounts are positive; the payer is the account that signs")
    if value > SUPPLY:
        raise BadAmount("above_supply", f"{value} units is more than the whole supply ({SUPPLY})")
    return value


def parse_shells(text: str) -> int:
    """Units from a decimal number of Shells as a person types it ("12.5" → 1_250_000_000).

    Exact (no float ever), at most 8 decimal places (more is `fractional`:
    smaller than one unit), then checked by `check_amount`."""
    s = text.strip().replace("_", "")
    if s.startswith("-"):
        raise BadAmount("negative", "amounts are positive")
    m = _SHELLS.fullmatch(s)
    if m is None:
        raise BadAmount("not_integer", f"not a number of Shells: {text[:40]!r}")
    frac = (m["frac"] or "").rstrip("0")
    if len(frac) > DECIMALS:
        raise BadAmount("fractional", f"at most {DECIMALS} decimal places (1 unit = 10^-{DECIMALS} Shell)")
    return check_amount(int(m["int"]) * UNITS_PER_SHELL + int(frac.ljust(DECIMALS, "0") or "0"))


def format_shells(units: int) -> str:
    """Shells as text, "12.5" for 1_250_000_000 units: exact, trailing zeros dropped.

    Accepts 0 and negative values: a lagging holder's view of a balance may show them."""
    if isinstance(units, bool) or not isinstance(units, int):
        raise TypeError("units are an int")
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), UNITS_PER_SHELL)
    tail = f"{frac:0{DECIMALS}d}".rstrip("0")
    return f"{sign}{whole}.{tail}" if tail else f"{sign}{whole}"
