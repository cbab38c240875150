"""The file manager cell's settings (``borgusb cell run ftreeFileMgrCell --help``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...files.root import DEFAULT_R
from ..kit import Settings, setting


@dataclass(frozen=True)
class FtreeSettings(Settings):
    cell: ClassVar[str] = "ftreeFileMgrCell"

    r: int = setting(DEFAULT_R, "cells that keep each person's root pointer", low=1, high=16, env="BORGUSB_FILES_R")
    max_owners: int = setting(10_000, "root pointers one cell keeps at most", low=1, high=1_000_000)
    burst: int = setting(60, "root pointer writes one owner may make at once", low=1, high=1000)
    refill_ms: int = setting(500, "then one more write every this many ms", low=1, high=3_600_000)
    ask_timeout_ms: int = setting(3000, "how long a cell waits for each holder's answer", low=100, high=60_000)
    data_root: str = setting(
        "", "where a cell without --data keeps its pointers (default /dev/shm)", env="BORGUSB_DATA_ROOT"
    )
