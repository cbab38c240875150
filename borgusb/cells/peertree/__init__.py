"""peerTreeNet: the base PeerTree network, the kit's `Cell` with nothing added."""

from __future__ import annotations

from ..spec import CellSpec

SPEC = CellSpec(
    dna="peerTreeNet",
    runtime="borgusb.cells.kit:Cell",
    client="borgusb.cells.peertree.client:TreeClient",
)
