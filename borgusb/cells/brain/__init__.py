"""borgAgentBrain: the agents' model, one question at a time (the loop itself is `borgusb.agents`)."""

from __future__ import annotations

from ..spec import CellSpec

SPEC = CellSpec(
    dna="borgAgentBrain",
    runtime="borgusb.cells.brain.cell:BrainCell",
    settings="borgusb.cells.brain.settings:BrainSettings",
    client="borgusb.cells.brain.client:BrainClient",
)
