"""Fixtures for real multi-process clusters on loopback addresses."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from borgusb.cluster import Cluster

HEARTBEAT_MS = 300
CONFIRM_MISSES = 3

_names = itertools.count()


@pytest.fixture(autouse=True, scope="session")
def _browser_expect_waits() -> None:
    """Playwright's `expect` waits 5 s by default: a page waiting on a cell over the network (a mail
    fetched from its holders, an order placed) can take longer beside the QEMU guests; 30 s."""
    try:
        from playwright.sync_api import expect
    except ImportError:  # the browser tests say so themselves
        return
    expect.set_options(timeout=30_000)


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator:
    """Build clusters of real node processes; every one is torn down, pass or fail."""
    made: list[Cluster] = []

    def make(cell: str = "peerTreeNet") -> Cluster:
        cluster = Cluster(
            name=f"c{next(_names)}",
            cell=cell,
            root_dir=tmp_path,
            heartbeat_ms=HEARTBEAT_MS,
            confirm_misses=CONFIRM_MISSES,
        )
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.down()
