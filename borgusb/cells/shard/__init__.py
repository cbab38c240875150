"""shardTreeCell: objects as owner-signed shards, placed by lottery, kept on R holders."""

from __future__ import annotations

from ..spec import CellSpec

SPEC = CellSpec(
    dna="shardTreeCell",
    runtime="borgusb.cells.shard.cell:ShardCell",
    settings="borgusb.cells.shard.settings:ShardSettings",
    client="borgusb.cells.shard.client:ShardClient",
    web="borgusb.cells.shard.web:setup",
)
