"""The agent reward on real processes: a System Monitor's anomaly report, confirmed by another
node's monitor, paid once from the reserve (issue 19, "Useful work earns Shells from the reserve by
a rule the ledger can verify"; docs/ledger.md, "The agent reward").

Three addresses run a serviceMgrCell, a peerPaysCell (R = 3) and a borgAgentCell with its System
Monitor (every 2 s; a reserve holder asks its own agent cell for the agents' tree), and one a
peerTreeNet cell: the victim. The test kills the victim. Every monitor sees it gone, claims it and
asks the others to confirm: one claim is paid 0.5 Shell from the reserve, the others are refused
``already_paid`` (one payment per subject and hour).
Then, straight to the ledger: a record vouched and confirmed by keys that are not members of the
agents' tree is refused ``not_member``; nothing else moves.

Run under ``flock /tmp/borgusb-cluster.lock`` (fixed addresses 127.0.0.2-4).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from borgusb.cells.agents.client import AgentClient
from borgusb.cells.peerpays.client import PayClient
from borgusb.clock import SystemClock
from borgusb.envelope import Verifier
from borgusb.keys import SigningKey
from borgusb.ledger import RESERVE, SUPPLY, sign_reward
from borgusb.ledger.rules import amount
from borgusb.ledger.taskwork import make_task, sign_claim, sign_confirm, sign_host
from borgusb.net.peer import PeerClient, PeerRejected
from tests.integration.test_agents_cluster import poll

pytestmark = pytest.mark.slow
CLOCK = SystemClock()
A1, A2, A3 = "127.0.0.2", "127.0.0.3", "127.0.0.4"
OWED = amount("agent", 1)
FINAL = ("paid", "paid_to_another", "unconfirmed", "refused", "unpaid", "skipped")


async def start(make_cluster: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> dict[str, Any]:
    monkeypatch.setenv("BORGUSB_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("BORGUSB_AGENT_MONITOR_S", "2")
    monkeypatch.setenv("BORGUSB_PAY_R", "3")
    clusters = {}
    for cell, n in (("serviceMgrCell", 3), ("peerPaysCell", 3), ("borgAgentCell", 3), ("peerTreeNet", 1)):
        clusters[cell] = make_cluster(cell)
        clusters[cell].up(n)
    for cell, n in (("serviceMgrCell", 3), ("peerPaysCell", 3), ("borgAgentCell", 3)):
        await clusters[cell].wait_one_tree(timeout_s=90, expect=n)

    async def settled() -> bool:
        docs = await clusters["peerPaysCell"].status()
        return len(docs) == 3 and all(d.get("pay", {}).get("members") == 3 for d in docs)

    await poll("the ledger's member views settle", settled, 60)
    return clusters


async def claims_of(client: AgentClient, subject: str) -> list[dict[str, Any]]:
    return [c for c in (await client.reports())["claims"] if c["claim"]["subject"] == subject]


def test_an_anomaly_confirmed_by_another_monitor_is_paid_once(
    make_cluster: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    async def main() -> None:
        clusters = await start(make_cluster, monkeypatch, tmp_path)
        victim = clusters["peerTreeNet"].nodes[0]
        victim_key = (await clusters["peerTreeNet"].status())[0]["node"]
        subject = f"cell_gone|peerTreeNet|{victim_key}"
        async with PeerClient(SigningKey.generate(), CLOCK, Verifier(CLOCK), timeout_s=60) as pc:
            agents = [AgentClient(pc, ip) for ip in (A1, A2, A3)]

            async def watching() -> bool:
                read = [set((await c.status())["agents"]["monitor"]["cells"]) for c in agents]
                return all(f"peerTreeNet@{A1}" in c for c in read)

            await poll("both monitors read the victim", watching, 90)
            clusters["peerTreeNet"].kill(victim)

            seen: list[Any] = []

            async def settled() -> list[dict[str, Any]] | None:
                entries = [e for c in agents for e in await claims_of(c, subject)]
                seen[:] = [{k: v for k, v in e.items() if k != "claim"} for e in entries]
                done = entries and all(e["state"] in FINAL for e in entries)
                return entries if done and any(e["state"] == "paid" for e in entries) else None

            try:
                entries = await poll("a claim of the victim's death is paid", settled, 180)
            except TimeoutError:
                raise AssertionError(
                    f"no claim paid: {seen}; reports {(await agents[0].reports())['reports']}"
                ) from None
            paid = [e for e in entries if e["state"] == "paid"]
            # one payment per thing seen and hour, however many saw it (claims either side of an
            # hour's end are two: docs/ledger.md)
            hours = {e["claim"]["ts"] // 3_600_000 for e in entries}
            assert len(paid) == len(hours), entries
            assert all(e["state"] == "paid_to_another" for e in entries if e not in paid), entries
            pay = PayClient(pc, A3)
            for e in paid:
                assert e["amount"] == OWED and e["witnesses"] >= 1 and e["tx"], e
                assert (await pay.balance(e["claim"]["agent"]))["balance"] == OWED
            reserve = await pay.balance(RESERVE)
            assert reserve["balance"] == SUPPLY - OWED * len(paid)  # supply conserved: the reserve paid that

            # a record whose host and witness are keys, but not members of the agents' tree
            stranger = SigningKey.generate()
            witness = SigningKey.generate()  # a key, but not a member of the agents' tree

            async def submit(agent_key: SigningKey, rec_claim: dict[str, Any], host: SigningKey) -> str:
                rec = make_task(
                    rec_claim, sign_host(host, rec_claim), [sign_confirm(witness, rec_claim, CLOCK.now_ms())]
                )
                head = await pay.balance(RESERVE)
                tx = sign_reward(
                    agent_key, seq=head["seq"] + 1, prev=head["head"], amount=OWED, ref=rec.ref, ts=CLOCK.now_ms()
                )
                with pytest.raises(PeerRejected) as exc:
                    await pay.submit(tx, work=rec.doc)
                return exc.value.reason

            other = f"cell_gone|serviceMgrCell|{witness.public_key_hex}"
            fresh = sign_claim(stranger, "anomaly_report", other, "made up", CLOCK.now_ms())
            assert await submit(stranger, fresh, SigningKey.generate()) == "not_member"
            reserve_after = await pay.balance(RESERVE)
            assert (reserve_after["balance"], reserve_after["seq"]) == (reserve["balance"], reserve["seq"])

    asyncio.run(main())
