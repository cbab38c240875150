"""The fStream cell's settings (``borgusb cell run fStreamCell --help``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..kit import Settings, setting


@dataclass(frozen=True)
class FStreamSettings(Settings):
    cell: ClassVar[str] = "fStreamCell"

    capacity: int = setting(
        60,
        "clients served at once; past it new ones go to another endpoint",
        low=1,
        high=10_000,
        env="BORGUSB_FSTREAM_CAPACITY",
    )
    cache_bytes: int = setting(
        256 << 20, "bytes of fetched objects kept (e.g. 512M)", low=1 << 20, size=True, env="BORGUSB_FSTREAM_CACHE"
    )
    wait_ms: int = setting(
        20_000, "how long a client waits for a shard it needs", low=100, high=300_000, env="BORGUSB_FSTREAM_WAIT_MS"
    )
    free_bytes: int = setting(
        4 << 30,
        "bytes each viewer (a key, or an address that names none) streams here free per day; beyond, paid ahead",
        low=0,
        size=True,
        env="BORGUSB_FSTREAM_FREE_BYTES",
    )
    free_pool_bytes: int = setting(
        64 << 30,
        "bytes all viewers together stream here free per day (new keys cost nothing to make)",
        low=0,
        size=True,
        env="BORGUSB_FSTREAM_FREE_POOL_BYTES",
    )
    data_root: str = setting(
        "",
        "where a cell without --data keeps its cache (default: the system's temporary directory)",
        env="BORGUSB_DATA_ROOT",
    )
    test_only_read_days_back: int = setting(
        0,
        "TEST ONLY, never on a real network: read receipts of this many days before today are also "
        "taken at any hour (a test cluster claims a day that ended without waiting for one)",
        low=0,
        high=2,
        env="BORGUSB_FSTREAM_TEST_ONLY_READ_DAYS_BACK",
    )
