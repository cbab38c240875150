"""cronoTreeCell: one clock for the whole network (see cell.py for the design)."""

from __future__ import annotations

from ..spec import CellSpec

SPEC = CellSpec(
    dna="cronoTreeCell",
    runtime="borgusb.cells.crono.cell:CronoCell",
    client="borgusb.cells.crono.client:CronoClient",
    network_clock=False,
)
