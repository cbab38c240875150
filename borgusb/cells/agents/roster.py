"""The agents a cell hosts, kept across restarts: names, owners, specialties and prompt chains.

Nothing secret is written: an agent's key is derived again from the node key, its owner and its
name (`cell.derive_agent_key`), and each stored prompt version must check out against that key
(`PromptHistory.restore`), so a file someone edited loses the agent it touched, not the others,
and is reported. Written whole and atomically (`keystore.atomic_write`) after every change.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...agents.prompts import PromptError, PromptHistory
from ...agents.session import Agent
from ...keys import SigningKey, is_public_key_hex
from ...keystore import atomic_write

log = logging.getLogger("borgusb.agents")

MAX_FILE_BYTES = 4 * 1024 * 1024


def save(path: Path, agents: list[Agent]) -> None:
    doc = {
        "v": 1,
        "agents": [
            {
                "name": a.name,
                "owner": a.owner,
                "specialty": a.specialty,
                "prompts": [v.to_dict() for v in a.prompts.versions],
            }
            for a in agents
        ],
    }
    atomic_write(path, json.dumps(doc, sort_keys=True).encode())


def load(path: Path, key_of: Callable[[str, str], SigningKey]) -> tuple[list[Agent], list[str]]:
    """The stored agents (keys derived by `key_of(owner, name)`) and what was refused, in words."""
    if not path.is_file():
        return [], []
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return [], [f"{path} is larger than {MAX_FILE_BYTES} bytes"]
        doc: Any = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        return [], [f"{path} cannot be read: {exc}"]
    agents: list[Agent] = []
    refused: list[str] = []
    for entry in doc.get("agents", []) if isinstance(doc, dict) and isinstance(doc.get("agents"), list) else []:
        try:
            name, owner, prompts = entry["name"], entry["owner"], entry["prompts"]
            if not isinstance(name, str) or not is_public_key_hex(owner) or not isinstance(prompts, list):
                raise PromptError("malformed entry")
            key = key_of(owner, name)
            history = PromptHistory(key, "placeholder prompt", 0)
            history.restore(prompts)
            specialty = entry.get("specialty", "")
            agent = Agent(name, key, owner, history, specialty=specialty if isinstance(specialty, str) else "")
            agents.append(agent)
        except (KeyError, TypeError, ValueError) as exc:
            refused.append(f"{entry.get('name', '?') if isinstance(entry, dict) else '?'}: {exc}")
    for line in refused:
        log.warning("agents: a stored agent was refused: %s", line)
    return agents, refused
