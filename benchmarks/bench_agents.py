"""The agent loop's cost over the model's own: tokens per second through the agents' thinking loop
and borgAgentBrain against llama-cpp-python called directly, and the share of schema-valid actions.

The loop: `run_session`, the code borgAgentCell runs, with its real hands (memories kept and
searched on a peerMemoryCell) and the model asked through a borgAgentBrain process over TLS on
loopback (with a serviceMgrCell), greedy sampling (temperature 0), each step's token budget sized
from its actions' bounds (`actions.token_budget`). One agent runs ``--sessions`` sessions whose
agenda asks, step by step, for: read the code, keep a finding, search, choose a specialty, reply,
end.

**Baseline**, interleaved under the same conditions: beside each call to the brain cell (just
before or just after it, alternately), while the three clusters and their heartbeats still run,
llama-cpp-python loaded in this process is asked the same prompt with the same grammar, token
budget and sampling (so it writes the same tokens). Tokens per second is completion tokens over
wall time: on the loop's side the time of the brain call as the agent sees it (signing and
checking two envelopes, TLS, the brain's queue and the model), on the baseline's side the model
call alone. The brain's own model time (the ``ms`` it answers) is printed beside them, so the
loop's overhead shows apart from the model's. The actions' execution is outside both (shown as
whole-session time).
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


class Paired:
    """The brain cell as the loop calls it, each call paired with the same prompt to the model in
    this process (the baseline), under the same load; which side goes first alternates."""

    def __init__(self, brain: BrainClient, model: LocalModel) -> None:
        self.brain, self.model = brain, model
        self.timing = False
        self.loop = {"tokens": 0, "seconds": 0.0, "model_ms": 0, "cut": 0}
        self.direct = {"tokens": 0, "seconds": 0.0, "valid": 0, "outputs": 0, "cut": 0}
        self.same_text = 0
        self.calls = 0

    async def think(
        self, messages: list[dict[str, str]], allowed: tuple[str, ...], agents: tuple[str, ...], max_tokens: int
    ) -> Thought:
        self.calls += 1
        brain_first = self.calls % 2 == 1
        if not brain_first:
            start = time.perf_counter()
            mine = await self.model.think(messages, allowed, agents, max_tokens)
            direct_s = time.perf_counter() - start
        start = time.perf_counter()
        thought = await self.brain.think(messages, allowed, agents, max_tokens)
        loop_s = time.perf_counter() - start
        if brain_first:
            start = time.perf_counter()
            mine = await self.model.think(messages, allowed, agents, max_tokens)
            direct_s = time.perf_counter() - start
        if self.timing:
            self.loop["tokens"] += thought.tokens
            self.loop["seconds"] += loop_s
            self.loop["model_ms"] += thought.ms
            self.loop["cut"] += thought.cut
            self.direct["tokens"] += mine.tokens
            self.direct["seconds"] += direct_s
            self.direct["outputs"] += 1
            self.direct["cut"] += mine.cut
            self.same_text += mine.text == thought.text
            try:
                parse_action(mine.text, allowed)
                self.direct["valid"] += 1
            except ActionError:
                pass
        return thought


async def bench(sessions: int, root: Path) -> tuple[dict[str, Any], Paired]:
    """Sessions of the loop the agent cell runs (`run_session` with its real hands and the brain
    cell), each model call paired with the baseline's."""
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
        brain = Paired(BrainClient(peers, IP), LocalModel(temperature=0.0))
        hands = Hands(NetworkMemory(peers, IP), _nobody, CLOCK.now_ms)
        agent = new_agent(derive_agent_key(node, node.public_key_hex, "bench"))
        await run_session(agent, brain, hands, "Say hello.", agenda=[("reply_person",)])  # loads both models
        brain.timing = True
        stats: dict[str, Any] = {"seconds": 0.0, "valid": 0, "outputs": 0, "invalid": []}
        for _ in range(sessions):
            start = time.perf_counter()
            session = await run_session(agent, brain, hands, TASK, agenda=AGENDA)
            stats["seconds"] += time.perf_counter() - start
            for step in session.steps:
                stats["outputs"] += 1
                stats["valid"] += step.outcome != "invalid"
                if step.outcome == "invalid":
                    stats["invalid"].append((AGENDA[step.n - 1][0], step.reason, step.raw))
        return stats, brain
    finally:
        await peers.close()
        for c in clusters:
            c.down()


async def _nobody(doc: dict[str, Any]) -> str:
    return "no other agent in this benchmark"


def new_agent(key: SigningKey) -> Agent:
    return Agent("bench", key, key.public_key_hex, PromptHistory(key, BASE_PROMPT, CLOCK.now_ms()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=3, help="sessions (default 3)")
    args = parser.parse_args()
    assert set(a for step in AGENDA for a in step) <= set(ACTIONS)
    with tempfile.TemporaryDirectory(prefix="bench-agents-") as tmp:
        stats, paired = asyncio.run(bench(args.sessions, Path(tmp)))
    loop, base = paired.loop, paired.direct
    loop_tps = loop["tokens"] / loop["seconds"]
    model_tps = loop["tokens"] / max(1e-9, loop["model_ms"] / 1000)
    base_tps = base["tokens"] / base["seconds"]
    ratio = loop_tps / base_tps
    share = stats["valid"] / max(1, stats["outputs"])
    overhead_ms = (loop["seconds"] * 1000 - loop["model_ms"]) / max(1, base["outputs"])
    print(
        f"through the agent loop: {loop['tokens']} tokens in {loop['seconds']:.1f} s of brain calls = "
        f"{loop_tps:.1f} tokens/s; of which the brain's model {loop['model_ms'] / 1000:.1f} s = {model_tps:.1f} "
        f"tokens/s; the loop's overhead (envelopes, TLS, queue) {overhead_ms:.0f} ms a call"
    )
    print(
        f"llama-cpp-python directly, the same {base['outputs']} prompts interleaved (baseline): "
        f"{base['tokens']} tokens in {base['seconds']:.1f} s = {base_tps:.1f} tokens/s "
        f"(the same text {paired.same_text} of {base['outputs']})"
    )
    print(f"ratio {ratio:.2f} of the baseline (goal >= 0.9): {'met' if ratio >= 0.9 else 'NOT met'}")
    print(f"whole sessions with the actions (memories kept and searched on the network): {stats['seconds']:.1f} s")
    print(
        f"schema-valid actions: {stats['valid']} of {stats['outputs']} model outputs = {share:.0%} "
        f"(baseline {base['valid']} of {base['outputs']}; cut by the token budget: loop {loop['cut']}, "
        f"baseline {base['cut']}) (goal 100%): {'met' if share == 1 else 'NOT met'}"
    )
    reasons = Counter(reason for _, reason, _ in stats["invalid"])
    print(f"refused outputs by reason: {dict(reasons) or 'none'} (never executed; the step was asked again)")
    for action, reason, raw in stats["invalid"]:
        print(f"  {action} refused ({reason}): {raw[:300]!r}")


if __name__ == "__main__":
    main()
