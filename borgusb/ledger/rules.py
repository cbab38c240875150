"""Every price and every reward of the Borg Shell economy, in one table.

Two kinds of rule:

* **Rewards** (``paid_by="reserve"``): the reserve pays them, and only as a
  ``reward`` transaction confirmed by a quorum of the reserve's holders, each
  of which checked the work first (see `borgusb.ledger.accounts` and
  docs/ledger.md). Rounded **down**: the reserve never pays for a fraction of
  a unit of work it was not shown.
* **Prices** (``paid_by="user"``): a person pays them with an ordinary
  ``transfer`` to the nodes that served (`split` shares one payment among
  several). Rounded **up**: no work is served free by rounding.

A rule counts one integer quantity and pays ``rate`` units per ``per`` of it:
``amount = quantity * rate / per``. Quantities are chosen so that a year of a
terabyte stays an exact integer (MiB-hours, bytes, milliseconds of CPU).

| rule    | paid by | quantity                   | rate                                   |
|---------|---------|----------------------------|----------------------------------------|
| hold    | reserve | MiB-hours a copy is held   | 0.01 Shell per GiB-day per copy        |
| serve   | reserve | bytes served to readers    | 0.01 Shell per GiB                     |
| bridge  | reserve | bridge operations finished | 1 Shell per deposit or withdrawal      |
| agent   | reserve | confirmed useful tasks     | 0.5 Shell per task                     |
| content | reserve | reads of public content    | 0.001 Shell per read (reader/object/day)|
| storage | user    | MiB-hours of a copy held   | 0.01 Shell per GiB-day per copy        |
| stream  | user    | bytes streamed             | 0.01 Shell per GiB                     |
| compute | user    | ms of agent CPU            | 0.001 Shell per CPU-second             |

Free quota: 1 GiB stored per account costs nothing (`billable_mib_hours`); each holder keeps its
part of it free (`shard.billing.free_share`) and charges its own copies beyond it, so three copies
cost the owner 0.03 Shell per GiB-day, the hold reward of all three.
Scale check: holding 1 PiB for a day costs the reserve 10,486 Shells, so the
20,000,000-Shell genesis pays for ~5 years of a petabyte held with no price
paid by anyone; storage beyond the quota pays each holder the reward again, so
busy networks live off prices, not the reserve.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .units import SUPPLY, UNITS_PER_SHELL

MIB = 1 << 20
GIB = 1 << 30
HOUR_MS = 3_600_000
MIB_HOURS_PER_GIB_DAY = 1024 * 24

FREE_QUOTA_BYTES = GIB


@dataclass(frozen=True, slots=True)
class Rule:
    """``rate`` units per ``per`` of ``quantity``; see the module table."""

    name: str
    paid_by: Literal["reserve", "user"]
    quantity: str
    rate: int
    per: int
    why: str

    def amount(self, quantity: int) -> int:
        """Units owed for `quantity` (down for rewards, up for prices), at most the supply."""
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
            raise ValueError(f"{self.name}: a quantity is a non-negative int, not {quantity!r}")
        num = quantity * self.rate
        owed = num // self.per if self.paid_by == "reserve" else -(-num // self.per)
        return min(owed, SUPPLY)


_RULES = (
    Rule(
        "hold",
        "reserve",
        "MiB-hours of one copy held",
        UNITS_PER_SHELL // 100,
        MIB_HOURS_PER_GIB_DAY,
        "a shard holder keeps the network's data available",
    ),
    Rule(
        "serve",
        "reserve",
        "bytes served to readers",
        UNITS_PER_SHELL // 100,
        GIB,
        "a holder spends bandwidth on every read",
    ),
    Rule(
        "bridge",
        "reserve",
        "deposits and withdrawals completed",
        UNITS_PER_SHELL,
        1,
        "a bridge operator runs a Dogecoin node and signs for the exchange",
    ),
    Rule(
        "agent",
        "reserve",
        "tasks confirmed useful",
        UNITS_PER_SHELL // 2,
        1,
        "an agent's work was checked and accepted by the holders that verify it",
    ),
    Rule(
        "content",
        "reserve",
        "reads of public content (one per reader, object and day)",
        UNITS_PER_SHELL // 1000,
        1,
        "a creator's public content was consumed by someone else",
    ),
    Rule(
        "storage",
        "user",
        "MiB-hours of one copy held beyond the free quota",
        UNITS_PER_SHELL // 100,
        MIB_HOURS_PER_GIB_DAY,
        "each holder is paid the hold reward of its copy (three copies: 0.03 Shell per GiB-day)",
    ),
    Rule("stream", "user", "bytes streamed", UNITS_PER_SHELL // 100, GIB, "paid to the nodes that serve the stream"),
    Rule(
        "compute",
        "user",
        "milliseconds of agent CPU",
        UNITS_PER_SHELL // 1000,
        1000,
        "paid to the node that ran the agent",
    ),
)

RULES: dict[str, Rule] = {r.name: r for r in _RULES}
REWARDS = tuple(r.name for r in _RULES if r.paid_by == "reserve")
PRICES = tuple(r.name for r in _RULES if r.paid_by == "user")


def amount(rule: str, quantity: int) -> int:
    """Units owed under `rule` for `quantity` (KeyError for an unknown rule)."""
    return RULES[rule].amount(quantity)


def mib_hours(nbytes: int, ms: int) -> int:
    """MiB-hours of `nbytes` kept for `ms` milliseconds (rounded down)."""
    if nbytes < 0 or ms < 0:
        raise ValueError("sizes and durations are non-negative")
    return nbytes * ms // (MIB * HOUR_MS)


def billable_mib_hours(stored_bytes: int, ms: int, quota: int = FREE_QUOTA_BYTES) -> int:
    """MiB-hours of storage an account pays for: what it keeps beyond its free quota."""
    return mib_hours(max(0, stored_bytes - quota), ms)


def split(total: int, payees: Sequence[str]) -> list[tuple[str, int]]:
    """Share `total` units among payees: sorted by key, the first ``total % n`` get one unit more.

    Deterministic, so every replica computes the same shares; payees with a
    share of 0 are left out (a transaction moves at least one unit)."""
    keys = sorted(set(payees))
    if not keys:
        raise ValueError("no payee to pay")
    base, extra = divmod(total, len(keys))
    shares = [(k, base + (1 if i < extra else 0)) for i, k in enumerate(keys)]
    return [(k, v) for k, v in shares if v > 0]
