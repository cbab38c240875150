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
