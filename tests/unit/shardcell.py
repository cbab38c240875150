"""An in-process shard cell for unit tests: built, never started, closed after. Nothing it does
here opens a listening port; what it sends goes only where a test points it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from borgusb.cells import spec
from borgusb.cells.shard.cell import ShardCell

SPEC = spec("shardTreeCell")


@asynccontextmanager
async def shard_cell(data_dir: Path, *, settled: bool = False) -> AsyncIterator[ShardCell]:
    """A shard cell on 127.0.0.1 keeping its store in data_dir; `settled`: its tree taken as
    settled, as a started cell's in a quiet network (`Reacher.unsettled`)."""
    c = SPEC.runtime_class()(
        SPEC.dna_row(), "127.0.0.1", settings=SPEC.settings_class().from_sources({}, {}), data_dir=data_dir
    )
    assert isinstance(c, ShardCell)
    if settled:
        c.unsettled = lambda: False  # type: ignore[method-assign]
    try:
        yield c
    finally:
        await c.peers.close()
        await c.shard_peers.close()
        c.key.close()
