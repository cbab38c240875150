"""peerPaysCell: the Borg Shell ledger on the network (the protocol core is `borgusb.ledger`)."""

from __future__ import annotations

from ..spec import CellSpec

SPEC = CellSpec(
    dna="peerPaysCell",
    runtime="borgusb.cells.peerpays.cell:PeerPaysCell",
    settings="borgusb.cells.peerpays.settings:PeerPaysSettings",
    client="borgusb.cells.peerpays.client:PayClient",
    web="borgusb.cells.peerpays.web:setup",
)
