"""serviceMgrCell: the live registry of which nodes run which cells."""

from __future__ import annotations

from ..spec import CellSpec

SPEC = CellSpec(
    dna="serviceMgrCell",
    runtime="borgusb.cells.servicemgr.cell:ServiceMgrCell",
    client="borgusb.cells.servicemgr.client:ServiceMgrClient",
)
