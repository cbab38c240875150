"""The agent loop's cost over the model's own: tokens per second through the agents' thinking loop
and borgAgentBrain against llama-cpp-python called directly, and the share of schema-valid actions.

The loop: `run_session`, the code borgAgentCell runs, with its real hands (memories kept and
searched on a peerMemoryCell) and the model asked through a borgAgentBrain process over TLS on
loopback (with a serviceMgrCell), greedy sampling (temperature 0). One agent runs ``--sessions``
sessions whose agenda asks, step by step, for: read the code, keep a finding, search, choose a
specialty, reply, end.

**Baseline**, in the same run: llama-cpp-python loaded in this process, asked every prompt the
loop sent, in the same order, with the same grammar, token budget and sampling (so it writes the
same tokens). Tokens per second is completion tokens over wall time; the loop's time also holds
signing and checking two envelopes per step, TLS, the brain's queue and executing each action.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from borgusb.agents.actions import ACTIONS, ActionError, parse_action  # noqa: E402
from borgusb.agents.models import LocalModel  # noqa: E402
from borgusb.agents.prompts import PromptHistory  # noqa: E402
from borgusb.agents.session import BASE_PROMPT, Agent, Thought, run_session  # noqa: E402
from borgusb.cells.agents.cell import derive_agent_key  # noqa: E402
from borgusb.cells.agents.hands import Hands  # noqa: E402
from borgusb.cells.agents.memoryaccess import NetworkMemory  # noqa: E402
from borgusb.cells.brain.client import BrainClient  # noqa: E402
from borgusb.clock import SystemClock  # noqa: E402
from borgusb.cluster import Cluster  # noqa: E402
from borgusb.envelope import Verifier  # noqa: E402
from borgusb.keys import SigningKey  # noqa: E402
from borgusb.net.peer import PeerClient  # noqa: E402

CLOCK = SystemClock()
IP = "127.0.0.2"
TASK = "Read the next module of BorgUSB, keep a finding about it, look for related findings, then reply briefly."
AGENDA: list[tuple[str, ...]] = [
    ("read_source",),
    ("put_memory",),
    ("search_memories",),
    ("choose_specialty",),
    ("reply_person",),
    ("end_session",),
]
MAX_TOKENS = 120


class Recorded:
    """The brain cell as the loop calls it, recording each prompt for the baseline to replay."""

    def __init__(self, brain: BrainClient) -> None:
        self.brain = brain
        self.asked: list[tuple[list[dict[str, str]], tuple[str, ...]]] = []
        self.seconds = 0.0  # in think: the brain cell's answer, envelopes and TLS included

    async def think(
        self, messages: list[dict[str, str]], allowed: tuple[str, ...], agents: tuple[str, ...], max_tokens: int
    ) -> Thought:
        self.asked.append((messages, allowed))
        start = time.perf_counter()
        try:
            return await self.brain.think(messages, allowed, agents, max_tokens)
        finally:
            self.seconds += time.perf_counter() - start


async def through_the_loop(sessions: int, root: Path) -> tuple[dict[str, Any], Recorded]:
    """Sessions of the loop the agent cell runs (`run_session` with its real hands and the brain cell)."""
    os.environ.update(BORGUSB_DATA_ROOT=str(root / "data"), BORGUSB_MEMORY_R="1", BORGUSB_BRAIN_TEMPERATURE_PCT="0")
    clusters = [
        Cluster(name=f"bench-agents-{cell}", cell=cell, root_dir=root, heartbeat_ms=500)
        for cell in ("serviceMgrCell", "peerMemoryCell", "borgAgentBrain")
    ]
    node = SigningKey.generate()
    peers = PeerClient(node, CLOCK, Verifier(CLOCK), timeout_s=300)
    try:
        for c in clusters:
            c.up(1)
        for c in clusters:
            await c.wait_one_tree(timeout_s=90, expect=1)
        brain = Recorded(BrainClient(peers, IP))
        hands = Hands(NetworkMemory(peers, IP), _nobody, CLOCK.now_ms)
        agent = new_agent(derive_agent_key(node, node.public_key_hex, "bench"))
        await run_session(agent, brain, hands, "Say hello.", agenda=[("reply_person",)])  # loads the model
        brain.asked.clear()
        brain.seconds = 0.0
        stats: dict[str, Any] = {"tokens": 0, "seconds": 0.0, "valid": 0, "outputs": 0, "invalid": Counter()}
        for _ in range(sessions):
            start = time.perf_counter()
            session = await run_session(agent, brain, hands, TASK, agenda=AGENDA, max_tokens=MAX_TOKENS)
            stats["seconds"] += time.perf_counter() - start
            for step in session.steps:
                stats["tokens"] += step.tokens
                stats["outputs"] += 1
                stats["valid"] += step.outcome != "invalid"
                if step.outcome == "invalid":
                    stats["invalid"][step.reason] += 1
        stats["think_seconds"] = brain.seconds
        return stats, brain
    finally:
        await peers.close()
        for c in clusters:
            c.down()


async def _nobody(doc: dict[str, Any]) -> str:
    return "no other agent in this benchmark"


def new_agent(key: SigningKey) -> Agent:
    return Agent("bench", key, key.public_key_hex, PromptHistory(key, BASE_PROMPT, CLOCK.now_ms()))


async def direct(asked: list[tuple[list[dict[str, str]], tuple[str, ...]]]) -> dict[str, Any]:
    """The same prompts, in the same order, straight to llama-cpp-python in this process."""
    model = LocalModel(temperature=0.0)
    await model.think(asked[0][0], asked[0][1], (), MAX_TOKENS)  # loads the model: not timed
    stats: dict[str, Any] = {"tokens": 0, "seconds": 0.0, "valid": 0, "outputs": 0}
    for messages, allowed in asked:
        start = time.perf_counter()
        thought = await model.think(messages, allowed, (), MAX_TOKENS)
        try:
            parse_action(thought.text, allowed)
            stats["valid"] += 1
        except ActionError:
            pass
        stats["seconds"] += time.perf_counter() - start
        stats["tokens"] += thought.tokens
        stats["outputs"] += 1
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=3, help="sessions on each side (default 3)")
    args = parser.parse_args()
    assert set(a for step in AGENDA for a in step) <= set(ACTIONS)
    with tempfile.TemporaryDirectory(prefix="bench-agents-") as tmp:
        loop, brain = asyncio.run(through_the_loop(args.sessions, Path(tmp)))
    base = asyncio.run(direct(brain.asked))
    loop_tps = loop["tokens"] / loop["think_seconds"]
    base_tps = base["tokens"] / base["seconds"]
    ratio = loop_tps / base_tps
    share = loop["valid"] / max(1, loop["outputs"])
    print(
        f"through the agent loop: {loop['tokens']} tokens in {loop['think_seconds']:.1f} s of thinking "
        f"(envelopes, TLS, the brain's queue) = {loop_tps:.1f} tokens/s; whole sessions with the actions "
        f"(memories kept and searched on the network) {loop['seconds']:.1f} s"
    )
    print(f"llama-cpp-python directly, the same {base['outputs']} prompts (baseline): ", end="")
    print(f"{base['tokens']} tokens in {base['seconds']:.1f} s = {base_tps:.1f} tokens/s")
    print(f"ratio {ratio:.2f} of the baseline (goal >= 0.9): {'met' if ratio >= 0.9 else 'NOT met'}")
    print(
        f"schema-valid actions: {loop['valid']} of {loop['outputs']} model outputs = {share:.0%} "
        f"(baseline {base['valid']} of {base['outputs']}) (goal 100%): {'met' if share == 1 else 'NOT met'}"
    )
    print(f"refused outputs by reason: {dict(loop['invalid']) or 'none'} (never executed; the step was asked again)")


if __name__ == "__main__":
    main()
