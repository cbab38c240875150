"""borgAgentBrain: runs the agents' model for the agent cells of its own node.

Thinking is the most expensive thing a node does, so the brain is not a public service: with the
machine's node key it answers only requests signed by that key (the node's own agent cell); a
process that made up its own key (a test cluster on loopback) answers any signer, rate-limited per
key by the guard like every cell. One question is thought about at a time, at most `max_waiting`
wait, the rest are refused as ``busy``; every request is bounded (messages, names, tokens). The
schema is built here from action names (`actions.schema_for`), never taken from the request: a
grammar is code for the model's sampler (a malformed one crashed llama.cpp in our trials).
The local model loads on the first question and is unloaded after `idle_s` of silence.
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

from ... import envelope
from ...agents.actions import ACTIONS, MAX_TOKENS
from ...agents.models import LocalModel, ModelError, OpenAIModel
from ...dna import CellDNA
from ..kit import Cell, RequestError, receptor
from .settings import BrainSettings

log = logging.getLogger("borgusb.brain")

MAX_MESSAGES = 12
MAX_PROMPT_BYTES = 24 * 1024
MAX_AGENTS = 256
AGENT_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


class BrainCell(Cell):
    settings: BrainSettings

    def __init__(self, dna: CellDNA, ip: str, **kw: Any) -> None:
        settings = kw.get("settings")
        if not isinstance(settings, BrainSettings):
            settings = kw["settings"] = BrainSettings.from_sources()
        self.machine_key = kw.get("key") is not None
        super().__init__(dna, ip, **kw)
        self.model: LocalModel | OpenAIModel
        if settings.endpoint:
            key = Path(settings.api_key_file).read_text().strip() if settings.api_key_file else ""
            self.model = OpenAIModel(settings.endpoint, settings.endpoint_model or "default", key)
        else:
            path = Path(settings.model_path) if settings.model_path else None
            temperature = settings.temperature_pct / 100
            self.model = LocalModel(path, threads=settings.threads, idle_s=settings.idle_s, temperature=temperature)
        self.waiting = 0
        self.tokens = 0

    async def on_start(self) -> None:
        self._spawn(self._unload_loop())

    async def _unload_loop(self) -> None:
        while True:
            await asyncio.sleep(5)
            if self.model.unload_if_idle():
                self.counters["brain_unloaded"] += 1

    def _refuse(self, reason: str, text: str, status: int = 400) -> RequestError:
        self.counters[f"brain_refused:{reason}"] += 1
        return RequestError(reason, text, status)

    def _request(self, env: envelope.Envelope) -> tuple[list[dict[str, str]], tuple[str, ...], tuple[str, ...], int]:
        p = env.payload if isinstance(env.payload, dict) else {}
        messages, allowed, agents, max_tokens = (
            p.get("messages"),
            p.get("allowed"),
            p.get("agents"),
            p.get("max_tokens"),
        )
        if (
            not isinstance(messages, list)
            or not 1 <= len(messages) <= MAX_MESSAGES
            or not all(
                isinstance(m, dict)
                and m.keys() == {"role", "content"}
                and m["role"] in ("system", "user", "assistant")
                and isinstance(m["content"], str)
                for m in messages
            )
        ):
            raise self._refuse("malformed", f"messages are 1 to {MAX_MESSAGES} {{role, content}} objects")
        if sum(len(m["content"].encode()) for m in messages) > MAX_PROMPT_BYTES:
            raise self._refuse("too_large", f"a prompt is at most {MAX_PROMPT_BYTES} bytes", 413)
        if (
            not isinstance(allowed, list)
            or not allowed
            or not all(isinstance(a, str) and a in ACTIONS for a in allowed)
        ):
            raise self._refuse("malformed", f"allowed names actions: {', '.join(ACTIONS)}")
        if (
            not isinstance(agents, list)
            or len(agents) > MAX_AGENTS
            or not all(isinstance(n, str) and AGENT_NAME.fullmatch(n) for n in agents)
        ):
            raise self._refuse("malformed", f"agents are at most {MAX_AGENTS} agent names")
        if not isinstance(max_tokens, int) or not 1 <= max_tokens <= MAX_TOKENS:
            raise self._refuse("malformed", f"max_tokens is 1 to {MAX_TOKENS}")
        return messages, tuple(dict.fromkeys(allowed)), tuple(sorted(set(agents))), max_tokens

    @receptor("brain.think")
    async def _r_think(self, env: envelope.Envelope) -> Any:
        if self.machine_key and env.signer != self.key.public_key_hex:
            raise self._refuse("not_this_node", "this brain thinks only for its own node's agents", 403)
        messages, allowed, agents, max_tokens = self._request(env)
        if self.waiting > self.settings.max_waiting:
            raise self._refuse("busy", "the brain is thinking; ask again shortly", 503)
        self.waiting += 1
        try:
            thought = await self.model.think(messages, allowed, agents, max_tokens)
        except ModelError as exc:
            raise self._refuse("no_model", str(exc), 503) from None
        finally:
            self.waiting -= 1
        self.counters["brain_thoughts"] += 1
        self.tokens += thought.tokens
        return {
            "text": thought.text,
            "tokens": thought.tokens,
            "ms": thought.ms,
            "cut": thought.cut,
            "model": self.model.name,
        }

    def status(self) -> dict[str, Any]:
        doc = super().status()
        doc["brain"] = {
            "model": self.model.name,
            "loaded": self.model.loaded,
            "waiting": self.waiting,
            "tokens": self.tokens,
        }
        return doc
