"""The mail cell's settings (``borgusb cell run mailTreeCell --help``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..kit import Settings, setting


@dataclass(frozen=True)
class MailSettings(Settings):
    cell: ClassVar[str] = "mailTreeCell"

    r: int = setting(3, "holders of each recipient's inbox", low=1, high=16, env="BORGUSB_MAIL_R")
    max_messages: int = setting(1000, "messages one inbox holds", low=1, high=100_000, env="BORGUSB_MAIL_MAX_MESSAGES")
    max_inboxes: int = setting(
        10_000, "recipients whose inboxes this holder keeps", low=1, high=1_000_000, env="BORGUSB_MAIL_MAX_INBOXES"
    )
    rate_count: int = setting(
        20, "messages one sender may leave in one inbox per minute", low=1, high=10_000, env="BORGUSB_MAIL_RATE"
    )
    max_entries: int = setting(
        10_000, "directory entries (addresses) this holder keeps", low=1, high=1_000_000, env="BORGUSB_MAIL_MAX_ENTRIES"
    )
    publish_rate: int = setting(
        6, "directory entries one address may publish per minute", low=1, high=10_000, env="BORGUSB_MAIL_PUBLISH_RATE"
    )
    lookup_rate: int = setting(
        60,
        "directory lookups one key may ask this entry cell per minute",
        low=1,
        high=100_000,
        env="BORGUSB_MAIL_LOOKUP_RATE",
    )
    timeout_ms: int = setting(
        3000, "how long a send or a read waits for each holder", low=100, high=60_000, env="BORGUSB_MAIL_TIMEOUT_MS"
    )
    data_root: str = setting(
        "", "where a cell without --data keeps its inboxes (default /dev/shm)", env="BORGUSB_DATA_ROOT"
    )
