"""Streaming paid ahead, on real processes (issue 16, "Spending: ... streaming ..., paid to the nodes
that serve"; docs/ledger.md, "Paying for streams").

Three addresses run a shard cell and a peerPaysCell (R = 3), the first an fStreamCell too, whose free
share is 2 MiB a viewer a day. Alice signs each range request (`borgusb.fstream.viewer`, as the
conduit does): her first 2 MiB are free, a response is charged chunk by chunk as it is written and
cut where the free share (and the credit) ends, and the next one waits for a payment (402). A header
replayed, forged or signed for another range is refused, never taken as anonymous; a client with no
header is charged to its address. ``borgusb pay credit 1 --for stream`` pays the node and hands over
the certificate, which the node's ledger checks; Alice streams again and the credit falls by what she streamed.
The book's rules themselves are tests/unit/test_ledger_credit.py's.

Run under ``flock /tmp/borgusb-cluster.lock`` (fixed addresses 127.0.0.2-4).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from borgusb import dna, envelope
from borgusb.cells.fstream.client import FStreamClient
from borgusb.cells.peerpays.client import PayClient
from borgusb.envelope import Verifier
from borgusb.fstream.viewer import HEADER, sign_viewer
from borgusb.keys import SigningKey
from borgusb.ledger.rules import MIB, amount
from borgusb.net.peer import PeerClient, PeerError
from tests.integration.credit_net import CLOCK, SHELL, fund, ledger_env, settled_ledger, wallet
from tests.integration.test_agents_cluster import poll
from tests.integration.test_peerpays_cluster import cli
from tests.integration.test_shard_cluster import put_bytes, start

pytestmark = pytest.mark.slow
A1 = "127.0.0.2"
PORT = dna.get("fStreamCell").mon_port
DATA = os.urandom(3 * MIB)


def test_streaming_beyond_the_free_share_is_paid_ahead(
    make_cluster: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ledger_env(monkeypatch)
    monkeypatch.setenv("BORGUSB_FSTREAM_FREE_BYTES", "2M")
    alice, keyfile, env = wallet(tmp_path)

    async def main() -> None:
        await start(make_cluster, monkeypatch, tmp_path, 3)  # sets BORGUSB_DATA_ROOT for all that follow
        ledger, fstream = make_cluster("peerPaysCell"), make_cluster("fStreamCell")
        ledger.up(3)
        fstream.up(1)
        await settled_ledger(ledger)
        oid = (await put_bytes(A1, DATA, SigningKey.generate(), tmp_path))["id"]
        url = f"http://{A1}:{PORT}/object/{oid}"
        async with PeerClient(alice, CLOCK, Verifier(CLOCK), timeout_s=30) as pc, aiohttp.ClientSession() as http:
            cell = FStreamClient(pc, A1)

            async def usage() -> dict[str, Any] | None:
                try:
                    return await cell.usage()
                except PeerError:
                    return None  # not up yet

            node = (await poll("the fStream cell answers", usage, 60))["payee"]

            def signed(rng: str = "", key: SigningKey = alice) -> dict[str, str]:
                headers = {HEADER: sign_viewer(key, CLOCK, node, PORT, oid, rng)}
                return dict(headers, Range=rng) if rng else headers

            async def get(headers: dict[str, str]) -> tuple[int, bytes]:
                async with http.get(url, headers=headers) as resp:
                    return resp.status, await resp.read()

            # 1 MiB free, then the whole object: it starts within the free share and is cut where the share
            # ends (each chunk is charged as it is written), so nothing is owed
            first = signed("bytes=0-1048575")
            assert await get(first) == (206, DATA[:MIB])
            assert (await cell.usage())["free_left"] == MIB
            with pytest.raises(aiohttp.ClientPayloadError):
                await get(signed())
            shown = await cell.usage()
            assert (shown["free_left"], shown["balance"]) == (0, 0), shown
            status, body = await get(signed("bytes=0-99"))
            assert status == 402 and json.loads(body)["error"] == "payment_required"

            # a header replayed, forged or signed for another range proves nothing
            assert (await get(first))[0] == 401
            forged = json.loads(signed("bytes=0-99")[HEADER])
            forged["payload"]["range"] = "bytes=100-199"
            assert (await get({HEADER: envelope.encode(forged).decode(), "Range": "bytes=100-199"}))[0] == 401
            assert (await get(dict(signed("bytes=0-99"), Range="bytes=0-199")))[0] == 401

            # no header: the client's address is the viewer, with one free share of its own
            assert await get({"Range": "bytes=5-9"}) == (206, DATA[5:10])

            # paid ahead through the CLI: credited once, and Alice streams again
            await fund(PayClient(pc, A1), alice, 10)
            proc = cli("credit", "1", "--for", "stream", "--node", A1, "--key-file", str(keyfile), env=env)
            assert proc.returncode == 0, proc.stderr
            assert "streaming here: 0.00 GiB free left today" in proc.stdout, proc.stdout
            assert await get(signed("bytes=0-1048575")) == (206, DATA[:MIB])
            paid = await cell.usage()
            assert paid["paid"] == SHELL and paid["balance"] == SHELL - amount("stream", MIB), paid
            assert (await PayClient(pc, A1).balance(node))["balance"] == SHELL

        doc = (await fstream.status())[0]
        counters = doc["counters"]
        assert counters.get("fstream_credit_paid_in") == 1
        assert counters.get("fstream_refused:payment_required") == 1
        refused = {k: v for k, v in counters.items() if k.startswith("fstream_refused:viewer")}
        assert refused == {f"fstream_refused:viewer_{r}": 1 for r in ("replay", "bad_signature", "mismatch")}
        assert counters.get("fstream_stream_used") == 3 * MIB + 5  # Alice's 1 + 1 + 1 MiB, the address's 5 bytes
        assert counters.get("fstream_cut:payment_required") == 1

    asyncio.run(main())
