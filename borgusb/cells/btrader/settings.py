"""The exchange cell's settings (``borgusb cell run btraderOrganCell --help``).

The book's windows (`borgusb.exchange.book`: 30 s from an owner, 60 s from a replica,
final after 90 s) are protocol constants, not settings: replicas with different
windows would disagree on which events exist."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..kit import Settings, setting


@dataclass(frozen=True)
class BtraderSettings(Settings):
    cell: ClassVar[str] = "btraderOrganCell"

    sync_ms: int = setting(
        2000,
        "how often a replica compares its recent orders with another replica's (anti-entropy)",
        low=100,
        high=60_000,
        env="BORGUSB_BT_SYNC_MS",
    )
    owner_rate_x10: int = setting(
        10,
        "orders and cancels an owner may place per 10 s, on average (the burst is 20)",
        low=1,
        high=10_000,
        env="BORGUSB_BT_OWNER_RATE_X10",
    )
