"""The agent cell's thinking paid ahead (borgusb/cells/agents/compute.py, ledger/credit.py), in-process:
five peerPaysCells of one view and an agent cell, every request a signed envelope through the cells'
verifiers and dispatchers (`post`). The payment is a real certified transfer; the agent cell asks the
node's peerPaysCell (``pay.verify``) before crediting it. The model is `ThinkingBrain`, a test double
that answers ``end_session`` and reports a fixed thinking time: the brain has its own tests, what is
under test here is the charge.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from borgusb.agents.session import Thought
from borgusb.cells.agents.cell import AgentCell
from borgusb.cells.agents.settings import AgentSettings
from borgusb.dna import get
from borgusb.ledger import ZERO_HASH, sign_transfer
from borgusb.ledger.credit import credit_ref
from borgusb.ledger.rules import amount
from borgusb.ledger.sim import fixed_key
from borgusb.net.peer import PeerRejected, PeerUnreachable

from .test_peerpays_cell import CLOCK, SHELL, Net, cells_net, fund, post

NODE = fixed_key("agent node")
ALICE = fixed_key("agent owner alice")
THINK_MS = 40_000  # each question the double answers "took" 40 s


class ThinkingBrain:
    """A test double of the model: every question ends the session and took `THINK_MS` of thinking."""

    def __init__(self) -> None:
        self.questions = 0

    async def think(self, messages: Any, allowed: Any, agents: Any, max_tokens: int) -> Thought:
        self.questions += 1
        return Thought('{"action": "end_session", "summary": "done"}', 8, THINK_MS)


def agent_cell(tmp_path: Path, net: Net, free_s: int) -> AgentCell:
    (tmp_path / "agents").mkdir(exist_ok=True)
    settings = AgentSettings.from_sources({"monitor_every_s": 0, "free_compute_s": free_s}, {})
    cell = AgentCell(get("borgAgentCell"), "127.0.0.9", key=NODE, data_dir=tmp_path / "agents", settings=settings)
    ledger = net.cells[0]

    async def verify(cert: dict[str, Any]) -> dict[str, Any]:  # the node's own peerPaysCell, signed both ways
        return await post(NODE, ledger, "pay.verify", {"cert": cert})  # type: ignore[no-any-return]

    cell.compute.verify = verify
    return cell


def thinking_with(monkeypatch: pytest.MonkeyPatch, brain: ThinkingBrain) -> ThinkingBrain:
    """Every agent cell of the test asks `brain` (the cell's own BrainClient would reach a brain cell)."""
    monkeypatch.setattr(AgentCell, "brain", property(lambda self: brain))
    return brain


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    async with cells_net(tmp_path, 5) as n:
        yield n


async def pay_node(
    net: Net, shells: int, seq: int, prev: str, ref: str = credit_ref("compute"), payer: Any = ALICE, to: Any = NODE
) -> dict[str, Any]:
    tx = sign_transfer(
        payer, seq=seq, prev=prev, to=to.public_key_hex, amount=shells * SHELL, ts=CLOCK.now_ms(), ref=ref
    )
    return await net.send(1, tx)  # type: ignore[no-any-return]


async def test_thinking_beyond_the_free_time_waits_for_a_payment_checked_by_the_ledger(
    tmp_path: Path, net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    brain = thinking_with(monkeypatch, ThinkingBrain())
    cell = agent_cell(tmp_path, net, free_s=60)
    funded = await fund(net, ALICE, 10)
    await post(ALICE, cell, "agent.create", {"name": "helper", "prompt": ""})

    # 60 s free: the first session (40 s) is free, the second starts with 20 s left and bills 20 s
    first = await post(ALICE, cell, "agent.session", {"name": "helper", "task": "tidy up"})
    assert first["compute"] == {"ms": THINK_MS, "charged": 0}
    second = await post(ALICE, cell, "agent.session", {"name": "helper", "task": "tidy up"})
    assert second["compute"]["charged"] == amount("compute", 20_000)
    with pytest.raises(PeerRejected) as err:
        await post(ALICE, cell, "agent.session", {"name": "helper", "task": "tidy up"})
    assert (err.value.status, err.value.reason) == (402, "payment_required") and brain.questions == 2
    usage = await post(ALICE, cell, "agent.usage", {})
    assert usage["free_left"] == 0 and usage["balance"] == -amount("compute", 20_000)
    assert usage["payee"] == NODE.public_key_hex and usage["ref"] == credit_ref("compute")

    # a plain payment to the node is not credit; a forged certificate is refused by the ledger
    plain = await pay_node(net, 1, 1, ZERO_HASH, ref="")
    with pytest.raises(PeerRejected) as err:
        await post(ALICE, cell, "agent.credit", {"cert": plain["cert"]})
    assert err.value.reason == "wrong_ref"
    paid = await pay_node(net, 2, 2, plain["id"])
    one = paid["cert"]["sigs"][0]["sig"]  # every holder's signature replaced by the first holder's
    forged = dict(paid["cert"], sigs=[{"holder": s["holder"], "sig": one} for s in paid["cert"]["sigs"]])
    with pytest.raises(PeerRejected) as err:
        await post(ALICE, cell, "agent.credit", {"cert": forged})
    assert (err.value.status, err.value.reason) == (402, "bad_holder_signature")
    assert cell.counters["agent_credit_paid_in"] == 0

    # the real certificate: credited once, and the session runs and is charged
    got = await post(fixed_key("anyone hands it over"), cell, "agent.credit", {"cert": paid["cert"]})
    assert got["credited"] == 2 * SHELL and got["usage"]["balance"] == 2 * SHELL - amount("compute", 20_000)
    with pytest.raises(PeerRejected) as err:
        await post(ALICE, cell, "agent.credit", {"cert": paid["cert"]})
    assert err.value.reason == "again"
    third = await post(ALICE, cell, "agent.session", {"name": "helper", "task": "tidy up"})
    assert third["compute"]["charged"] == amount("compute", 60_000) - amount("compute", 20_000)
    assert funded["delivered"] == funded["of"]

    # a restart keeps the book: the payment is still spent once and the credit is what it was
    again = agent_cell(tmp_path, net, free_s=60)
    assert (await post(ALICE, again, "agent.usage", {}))["balance"] == 2 * SHELL - amount("compute", 60_000)
    with pytest.raises(PeerRejected) as err:
        await post(ALICE, again, "agent.credit", {"cert": paid["cert"]})
    assert err.value.reason == "again"
    await cell.peers.close()
    await again.peers.close()


async def test_the_node_thinks_for_itself_free_and_chat_is_charged_to_the_asker(
    tmp_path: Path, net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    brain = thinking_with(monkeypatch, ThinkingBrain())
    cell = agent_cell(tmp_path, net, free_s=0)
    asker = fixed_key("asker")
    await post(ALICE, cell, "agent.create", {"name": "helper", "prompt": ""})
    with pytest.raises(PeerRejected) as err:  # no free time here: the asker pays ahead
        await post(asker, cell, "agent.chat", {"question": "how is the network?"})
    assert err.value.reason == "payment_required" and brain.questions == 0
    funded = await fund(net, asker, 5)
    paid = await pay_node(net, 1, 1, "0" * 64, payer=asker)
    assert funded["delivered"] == funded["of"]
    await post(asker, cell, "agent.credit", {"cert": paid["cert"]})
    await post(asker, cell, "agent.chat", {"question": "how is the network?"})
    assert brain.questions >= 1  # every question, also those the chat's agenda refused, took THINK_MS
    spent = amount("compute", THINK_MS * brain.questions)
    assert (await post(asker, cell, "agent.usage", {}))["balance"] == SHELL - spent
    assert (await post(ALICE, cell, "agent.usage", {}))["charged"] == 0  # the agent's owner paid nothing
    assert (await post(NODE, cell, "agent.usage", {}))["exempt"] is True
    doc = await cell.run(cell.agents["helper"], "look after the network", None, 2, NODE.public_key_hex)
    assert doc["compute"] == {"ms": THINK_MS, "charged": 0} and NODE.public_key_hex not in cell.compute.book.keys
    await cell.peers.close()


class FailingBrain(ThinkingBrain):
    """Thinks once (`THINK_MS`), then is gone, as a brain that stops answering mid-session."""

    async def think(self, messages: Any, allowed: Any, agents: Any, max_tokens: int) -> Thought:
        if self.questions:
            raise PeerUnreachable("the brain went away")
        self.questions += 1
        return Thought('{"action": "search_memories", "query": "x"}', 8, THINK_MS)


async def test_a_session_that_fails_partway_is_charged_what_was_thought_and_bad_payments_cost_no_check(
    tmp_path: Path, net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    thinking_with(monkeypatch, FailingBrain())
    cell = agent_cell(tmp_path, net, free_s=0)
    await fund(net, ALICE, 5)
    paid = await pay_node(net, 1, 1, "0" * 64)
    await post(ALICE, cell, "agent.credit", {"cert": paid["cert"]})
    await post(ALICE, cell, "agent.create", {"name": "helper", "prompt": ""})
    with pytest.raises(PeerRejected) as err:
        await post(ALICE, cell, "agent.session", {"name": "helper", "task": "tidy up"})
    assert err.value.reason == "brain_unreachable"
    assert (await post(ALICE, cell, "agent.usage", {}))["charged"] == amount("compute", THINK_MS)

    # a payment to another node is refused by the book before the ledger is asked anything
    asked: list[Any] = []

    async def counting(cert: dict[str, Any]) -> dict[str, Any]:
        asked.append(cert)
        return {}

    cell.compute.verify = counting
    other = await pay_node(net, 1, 2, paid["id"], to=fixed_key("another node"))
    with pytest.raises(PeerRejected) as err:
        await post(ALICE, cell, "agent.credit", {"cert": other["cert"]})
    assert err.value.reason == "wrong_payee" and asked == []
    with pytest.raises(PeerRejected) as err:  # a reply for another transaction is not this payment's
        await post(ALICE, cell, "agent.credit", {"cert": (await pay_node(net, 1, 3, other["id"]))["cert"]})
    assert err.value.reason == "bad_reply" and len(asked) == 1
    await cell.peers.close()
