"""btraderOrganCell: the replicated Shell/Doge order book (the core is `borgusb.exchange`)."""

from __future__ import annotations

from ..spec import CellSpec

SPEC = CellSpec(
    dna="btraderOrganCell",
    runtime="borgusb.cells.btrader.cell:BtraderCell",
    settings="borgusb.cells.btrader.settings:BtraderSettings",
    client="borgusb.cells.btrader.client:BtraderClient",
    web="borgusb.cells.btrader.web:setup",
)
