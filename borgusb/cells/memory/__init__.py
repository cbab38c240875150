"""peerMemoryCell: owner-signed memories on the network, searched in natural language
(the protocol core is `borgusb.memory`; docs/memory.md)."""

from __future__ import annotations

from ..spec import CellSpec

SPEC = CellSpec(
    dna="peerMemoryCell",
    runtime="borgusb.cells.memory.cell:MemoryCell",
    settings="borgusb.cells.memory.settings:MemorySettings",
    client="borgusb.cells.memory.client:MemoryClient",
)
