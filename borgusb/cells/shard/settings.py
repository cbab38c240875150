"""The shard cell's settings (``borgusb cell run shardTreeCell --help``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...shard import model
from ..kit import Settings, setting

SCRUB_BPS = 4 << 20  # a full store of 4 GiB is re-hashed about every 17 minutes, at ~0.2% of a core


@dataclass(frozen=True)
class ShardSettings(Settings):
    cell: ClassVar[str] = "shardTreeCell"

    r: int = setting(
        model.DEFAULT_R, "copies kept of each shard by default", low=1, high=model.MAX_R, env="BORGUSB_SHARD_R"
    )
    quota: int = setting(
        4 << 30, "bytes of shards this node holds at most (e.g. 4G)", low=0, size=True, env="BORGUSB_SHARD_QUOTA"
    )
    slots: int = setting(8, "reads served at once (fair between readers)", low=1, high=256, env="BORGUSB_SHARD_SLOTS")
    scrub_bps: int = setting(
        SCRUB_BPS,
        "bytes a second the background SHA-256 scrub re-hashes (0: off)",
        low=0,
        size=True,
        env="BORGUSB_SCRUB_BPS",
    )
    repair_ms: int = setting(
        30_000,
        "milliseconds between background repair rounds, jittered by half (0: off; reads still repair)",
        low=0,
        env="BORGUSB_REPAIR_MS",
    )
    earn: bool = setting(
        True,
        "claim the hold reward from the reserve after each hour, for the shards held through it",
        env="BORGUSB_SHARD_EARN",
    )
    bill_ms: int = setting(
        600_000,
        "milliseconds between charges for the copies held (the storage price; 0: off)",
        low=0,
        env="BORGUSB_SHARD_BILL_MS",
    )
    storage_free: int = setting(
        0,
        "bytes of each owner this holder keeps free (0: its part of the 1 GiB free quota, from R and the nodes)",
        low=0,
        size=True,
        env="BORGUSB_SHARD_FREE_BYTES",
    )
    data_root: str = setting(
        "", "where a cell without --data makes its directory (default /dev/shm)", env="BORGUSB_DATA_ROOT"
    )
