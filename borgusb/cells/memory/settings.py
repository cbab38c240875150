"""The memory cell's settings (``borgusb cell run peerMemoryCell --help``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..kit import Settings, setting


@dataclass(frozen=True)
class MemorySettings(Settings):
    cell: ClassVar[str] = "peerMemoryCell"

    r: int = setting(3, "holders of each memory", low=1, high=16, env="BORGUSB_MEMORY_R")
    max_records: int = setting(
        20_000,
        "memories this holder keeps (about 2 KiB of RAM each once searched)",
        low=1,
        high=1_000_000,
        env="BORGUSB_MEMORY_MAX_RECORDS",
    )
    put_rate: int = setting(
        60,
        "memories one owner, or one signer, may put through this cell per minute",
        low=1,
        high=1_000_000,
        env="BORGUSB_MEMORY_PUT_RATE",
    )
    timeout_ms: int = setting(
        3000, "how long a put or a search waits for each holder", low=100, high=60_000, env="BORGUSB_MEMORY_TIMEOUT_MS"
    )
    data_root: str = setting(
        "", "where a cell without --data keeps its memories (default /dev/shm)", env="BORGUSB_DATA_ROOT"
    )
