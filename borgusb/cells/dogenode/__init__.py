"""dogeNodeCell: the bridge to Dogecoin (a dogecoind's JSON-RPC; the protocol core is `borgusb.doge`)."""

from __future__ import annotations

from ..spec import CellSpec

SPEC = CellSpec(
    dna="dogeNodeCell",
    runtime="borgusb.cells.dogenode.cell:DogeNodeCell",
    settings="borgusb.cells.dogenode.settings:DogeNodeSettings",
    client="borgusb.cells.dogenode.client:DogeNodeClient",
)
