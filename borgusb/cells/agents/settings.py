"""The agent cell's settings (``borgusb cell run borgAgentCell --help``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..kit import Settings, setting


@dataclass(frozen=True)
class AgentSettings(Settings):
    cell: ClassVar[str] = "borgAgentCell"

    brain: str = setting(
        "", "the address of the borgAgentBrain to think with (default: this node's)", env="BORGUSB_AGENT_BRAIN"
    )
    max_agents: int = setting(16, "agents this cell hosts", low=1, high=256, env="BORGUSB_AGENT_MAX")
    per_owner: int = setting(4, "agents one person may register here", low=1, high=64, env="BORGUSB_AGENT_PER_OWNER")
    budget: int = setting(8, "model calls one session may make", low=1, high=64, env="BORGUSB_AGENT_BUDGET")
    monitor_every_s: int = setting(
        15,
        "seconds between the System Monitor's rounds (0: no monitor)",
        low=0,
        high=3600,
        env="BORGUSB_AGENT_MONITOR_S",
    )
    free_compute_s: int = setting(
        1800,
        "seconds of the brain's thinking each person gets here free per day; beyond, paid ahead (0: all paid)",
        low=0,
        high=86_400,
        env="BORGUSB_AGENT_FREE_COMPUTE_S",
    )
    free_pool_s: int = setting(
        4 * 3600,
        "seconds of free thinking all people together get here per day (new keys cost nothing to make)",
        low=0,
        high=86_400,
        env="BORGUSB_AGENT_FREE_POOL_S",
    )
