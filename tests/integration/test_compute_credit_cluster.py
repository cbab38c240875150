"""Paying a node ahead for its agents' thinking, on real processes (issue 16, "Spending: ... agent
compute, paid to the nodes that serve"; docs/ledger.md, "Paying for compute").

Three addresses run a peerPaysCell (R = 3) and the first one a borgAgentCell too. Alice is funded by
the reserve (the TEST-ONLY work setting), then ``borgusb pay credit`` shows her free time, pays the
agent cell's node 2 Shells and hands over the certificate: the agent cell's own peerPaysCell checks
it, the credit is there once, and the ledger moved exactly those units. A certificate a run kept
(the agent cell did not take it then) is handed over by the next run, one kept for another node is
left for that node; handed over again, it is refused ``again``. The charging itself (free time, then
paid, sessions and chat) is tests/unit/test_agents_compute.py's.

Run under ``flock /tmp/borgusb-cluster.lock`` (fixed addresses 127.0.0.2-4).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from borgusb.cells.agents.client import AgentClient
from borgusb.cells.peerpays.client import PayClient
from borgusb.envelope import Verifier
from borgusb.keys import SigningKey
from borgusb.ledger import sign_transfer
from borgusb.ledger.credit import credit_ref
from borgusb.net.peer import PeerClient, PeerError, PeerRejected
from tests.integration.credit_net import CLOCK, SHELL, fund, ledger_env, settled_ledger, wallet
from tests.integration.test_agents_cluster import poll
from tests.integration.test_peerpays_cluster import cli

pytestmark = pytest.mark.slow
A1 = "127.0.0.2"


def test_pay_credit_pays_the_node_and_the_agent_cell_credits_it_once(
    make_cluster: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BORGUSB_DATA_ROOT", str(tmp_path / "data"))
    ledger_env(monkeypatch)
    monkeypatch.setenv("BORGUSB_AGENT_MONITOR_S", "0")
    ledger, agents = make_cluster("peerPaysCell"), make_cluster("borgAgentCell")
    ledger.up(3)
    agents.up(1)
    alice, keyfile, env = wallet(tmp_path)
    pending = Path(env["BORGUSB_PAY_DIR"])

    async def main() -> None:
        await settled_ledger(ledger)
        async with PeerClient(alice, CLOCK, Verifier(CLOCK), timeout_s=30) as pc:
            pay, cell = PayClient(pc, A1), AgentClient(pc, A1)
            await fund(pay, alice, 10)

            async def usage() -> dict[str, Any] | None:
                try:
                    return await cell.usage()
                except PeerError:
                    return None  # not up yet

            node = (await poll("the agent cell answers", usage, 60))["payee"]

            # what is left, then 2 Shells paid ahead through the CLI
            proc = cli("credit", "--node", A1, "--key-file", str(keyfile), "--json", env=env)
            assert proc.returncode == 0, proc.stderr
            shown = json.loads(proc.stdout)
            assert (shown["free_left"], shown["balance"]) == (1800 * 1000, 0) and shown["payee"] == node
            proc = cli("credit", "2", "--node", A1, "--key-file", str(keyfile), env=env)
            assert proc.returncode == 0, proc.stderr
            assert "credit 2 Shells (paid 2, charged 0)" in proc.stdout, proc.stdout
            assert (await pay.balance(alice.public_key_hex))["balance"] == 8 * SHELL
            assert (await pay.balance(node))["balance"] == 2 * SHELL
            assert not list(pending.glob("credit-*"))

            # a certificate an earlier run kept is handed over first; handed over again it is refused
            head = await pay.balance(alice.public_key_hex)
            tx = sign_transfer(
                alice,
                seq=head["seq"] + 1,
                prev=head["head"],
                to=node,
                amount=SHELL,
                ts=CLOCK.now_ms(),
                ref=credit_ref("compute"),
            )
            cert = (await pay.submit(tx))["cert"]
            pending.mkdir(exist_ok=True)
            (pending / f"credit-{alice.public_key_hex}-{tx.id}.json").write_text(json.dumps(cert))
            # one kept for another node stays for that node (this one would refuse it)
            elsewhere = pending / f"credit-{alice.public_key_hex}-{'e' * 64}.json"
            elsewhere.write_text(json.dumps({**cert, "tx": {**cert["tx"], "to": SigningKey.generate().public_key_hex}}))
            proc = cli("credit", "--node", A1, "--key-file", str(keyfile), "--json", env=env)
            assert proc.returncode == 0, proc.stderr
            assert json.loads(proc.stdout)["balance"] == 3 * SHELL
            assert list(pending.glob("credit-*")) == [elsewhere]
            with pytest.raises(PeerRejected) as err:
                await cell.credit(cert)
            assert err.value.reason == "again"
            assert (await cell.usage())["paid"] == 3 * SHELL

            docs = await agents.status()
            assert docs[0]["counters"].get("agent_credit_paid_in") == 2
            assert sum(d["counters"].get("receptor_errors", 0) for d in [*docs, *await ledger.status()]) == 0

    asyncio.run(main())
