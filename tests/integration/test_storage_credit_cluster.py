"""Storage beyond the free share paid ahead, on real processes (issue 16, "Spending: storage beyond a
free quota ..., paid to the nodes that serve"; docs/ledger.md, "Paying for storage").

Three addresses run a shard cell and a peerPaysCell (R = 3); each holder keeps 1 MiB of each owner
free (``BORGUSB_SHARD_FREE_BYTES``). Alice's first 1 MiB object takes three copies, one per holder,
and fills her free share at all three; her next put is refused ``payment_required`` by every holder
the lottery offers, so nothing is stored. ``borgusb pay credit 0.1 --for storage --node A1`` pays
that node and hands its shard cell the certificate, which its ledger checks; the next put is taken
by that holder alone (one copy, the others still refuse), and another owner's put is untouched. The
meter itself (MiB-hours, the free share, a day's charge) is tests/unit/test_shard_billing.py's.

Run under ``flock /tmp/borgusb-cluster.lock`` (fixed addresses 127.0.0.2-4).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from borgusb.cells.peerpays.client import PayClient
from borgusb.cells.shard.client import ShardClient
from borgusb.envelope import Verifier
from borgusb.keys import SigningKey
from borgusb.ledger.credit import credit_ref
from borgusb.ledger.rules import MIB
from borgusb.net.peer import PeerClient, PeerRejected
from tests.integration.credit_net import CLOCK, SHELL, fund, ledger_env, settled_ledger, wallet
from tests.integration.test_peerpays_cluster import cli
from tests.integration.test_shard_cluster import put_bytes, start

pytestmark = pytest.mark.slow
A1 = "127.0.0.2"


def test_storage_beyond_the_free_share_is_paid_ahead_to_the_holder(
    make_cluster: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ledger_env(monkeypatch)
    monkeypatch.setenv("BORGUSB_SHARD_FREE_BYTES", "1M")
    alice, keyfile, env = wallet(tmp_path)

    async def main() -> None:
        shards = await start(make_cluster, monkeypatch, tmp_path, 3)  # sets BORGUSB_DATA_ROOT for all that follow
        ledger = make_cluster("peerPaysCell")
        ledger.up(3)
        await settled_ledger(ledger)

        # 1 MiB, three copies: Alice's free share is full at every holder
        first = await put_bytes(A1, os.urandom(MIB), alice, tmp_path, r=3)
        assert first["copies_min"] == 3
        with pytest.raises(PeerRejected) as err:
            await put_bytes(A1, os.urandom(MIB), alice, tmp_path, r=3)
        assert (err.value.status, err.value.reason) == (402, "payment_required"), err.value
        assert "borgusb pay credit" in err.value.detail
        other = await put_bytes(A1, os.urandom(MIB), SigningKey.generate(), tmp_path, r=3)  # another owner
        assert other["copies_min"] == 3

        async with PeerClient(alice, CLOCK, Verifier(CLOCK), timeout_s=30) as pc:
            shown = await ShardClient(pc, A1).usage()
            assert (shown["held"], shown["free_bytes"], shown["balance"]) == (MIB, MIB, 0), shown
            assert shown["ref"] == credit_ref("storage")
            node = shown["payee"]
            await fund(PayClient(pc, A1), alice, 10)

            # paid ahead through the CLI: that holder takes Alice's next put, the other two still refuse it
            proc = cli("credit", "0.1", "--for", "storage", "--node", A1, "--key-file", str(keyfile), env=env)
            assert proc.returncode == 0, proc.stderr
            assert "stored here: 1.0 MiB of yours, 1.0 MiB kept free; credit 0.1 Shells" in proc.stdout, proc.stdout
            assert (await PayClient(pc, A1).balance(node))["balance"] == SHELL // 10
            third = await put_bytes(A1, os.urandom(MIB), alice, tmp_path, r=3)
            assert third["copies_min"] == 1
            assert (await ShardClient(pc, A1).usage())["held"] == 2 * MIB

        docs = await shards.status()
        refused = [d["counters"].get("shard_refused:payment_required", 0) for d in docs]
        assert sum(refused) >= 4, refused  # the second put at three holders, the third at two
        by_ip = {d["ip"]: d["counters"] for d in docs}
        assert by_ip[A1].get("shard_credit_paid_in") == 1

    asyncio.run(main())
