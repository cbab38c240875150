"""The bridge's settings (``borgusb cell run dogeNodeCell --help``).

With no RPC URL the cell still starts (the image starts every cell type) and
refuses every request with ``no_node``. The password comes from the
environment (``BORGUSB_DOGE_RPC_PASSWORD``, e.g. a systemd credential), never
from the repository, and the status page shows it only as set or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..kit import Settings, setting


@dataclass(frozen=True)
class DogeNodeSettings(Settings):
    cell: ClassVar[str] = "dogeNodeCell"

    rpc_url: str = setting(
        "", "dogecoind's JSON-RPC URL, e.g. http://127.0.0.1:22555/ (none: no node)", env="BORGUSB_DOGE_RPC_URL"
    )
    rpc_user: str = setting("", "the RPC user (rpcuser in dogecoin.conf)", env="BORGUSB_DOGE_RPC_USER")
    rpc_password: str = setting(
        "", "the RPC password (rpcpassword); give it by its variable, not a flag", env="BORGUSB_DOGE_RPC_PASSWORD"
    )
    network: str = setting("main", "the node's chain: main, test or regtest", env="BORGUSB_DOGE_NET")
    min_confirmations: int = setting(
        6, "confirmations before a deposit is credited", low=1, high=1000, env="BORGUSB_DOGE_MIN_CONF"
    )
    poll_ms: int = setting(2000, "how often the node's tip is read", low=50, high=600_000, env="BORGUSB_DOGE_POLL_MS")
    start_height: int = setting(
        -1, "the first block a new store reads (-1: the tip at first start)", low=-1, env="BORGUSB_DOGE_START_HEIGHT"
    )
    rescan_from: int = setting(
        -1,
        "read again from this block at start (-1: carry on where the store stopped)",
        low=-1,
        env="BORGUSB_DOGE_RESCAN_FROM",
    )
    broadcast_attempts: int = setting(
        4,
        "tries of a broadcast the node could not take (transient failures only)",
        low=1,
        high=10,
        env="BORGUSB_DOGE_BROADCAST_ATTEMPTS",
    )
    max_watches: int = setting(
        10_000, "addresses watched at most", low=1, high=1_000_000, env="BORGUSB_DOGE_MAX_WATCHES"
    )
    new_watches_per_hour: int = setting(
        32,
        "new addresses one network address may have watched per hour (free keys cannot fill the table)",
        low=1,
        high=100_000,
        env="BORGUSB_DOGE_NEW_WATCHES_PER_HOUR",
    )
    earn: bool = setting(
        True,
        "claim the bridge reward from the reserve for the swap legs the parties vouched this bridge served",
        env="BORGUSB_DOGE_EARN",
    )
    data_root: str = setting(
        "", "where a cell without --data keeps its store (default /dev/shm)", env="BORGUSB_DATA_ROOT"
    )
