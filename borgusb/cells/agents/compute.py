"""What the agent cell's thinking costs the people it thinks for: the ``compute`` price, prepaid.

A session (``agent.session``, paid by the agent's owner) and a chat answer (``agent.chat``, paid by
the asker) spend the brain's thinking time, the ``compute`` quantity of `ledger.rules` (milliseconds;
the brain thinks one question at a time, so its time per question is the machine's). Each key
thinks `free_ms` a day for nothing here (all keys together at most `pool_ms`: keys cost nothing to
make); beyond it the time is paid ahead to this node's account (`ledger.credit`, kept by
`peerpays.prepaid.Prepaid`): the person pays with a transfer whose ref is ``credit_ref("compute")``
and hands this cell the certificate (``agent.credit``; ``borgusb pay credit`` does both), which the
node's own peerPaysCell checks (``pay.verify``). The node's own key (its System Monitor) is never
charged. The book is kept in ``credit.json`` beside the roster, so a restart forgets no payment.
"""

from __future__ import annotations

from typing import Any

RULE = "compute"


class MeteredBrain:
    """The brain as a session sees it, adding up each answer's thinking time (also of a session that
    fails partway: what was thought is charged)."""

    def __init__(self, brain: Any) -> None:
        self.brain, self.ms = brain, 0

    async def think(
        self, messages: list[dict[str, str]], allowed: tuple[str, ...], agents: tuple[str, ...], max_tokens: int
    ) -> Any:
        thought = await self.brain.think(messages, allowed, agents, max_tokens)
        self.ms += max(0, int(thought.ms))
        return thought
