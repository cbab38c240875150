"""borgAgentCell: the agent colony's home on a node (the loop itself is `borgusb.agents`)."""

from __future__ import annotations

from ..spec import CellSpec

SPEC = CellSpec(
    dna="borgAgentCell",
    runtime="borgusb.cells.agents.cell:AgentCell",
    settings="borgusb.cells.agents.settings:AgentSettings",
    client="borgusb.cells.agents.client:AgentClient",
    web="borgusb.cells.agents.web:setup",
)
