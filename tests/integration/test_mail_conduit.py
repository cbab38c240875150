"""The conduit's Mail page against real mailTreeCells: mail sent from one conduit is read in another.

Two conduits, each with its own wallet, talk to a cluster of three mail cells (R = 3). The page's
JSON API is driven as its script drives it (aiohttp test client with the tab's secret); the
recipient's conduit opens what the sender's sealed, marks it read, sees the reply thread, deletes it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from mnemonic import Mnemonic

from borgusb.conduit import ConduitState, create_app
from borgusb.conduit.web import SECRET_HEADER
from borgusb.keys import SigningKey
from borgusb.keystore import KdfParams

pytestmark = pytest.mark.slow
N = 3
MARKER = "otter-lantern-5521"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def conduit(tmp_path: Path, name: str, seed: str) -> tuple[TestClient, dict[str, str], ConduitState]:
    state = ConduitState(tmp_path / f"{name}.json", kdf=KdfParams(iterations=1, lanes=1, memory_kib=1024))
    port = free_port()
    client = TestClient(TestServer(create_app(state, seeds=[seed], port=port), port=port))
    await client.start_server()
    headers = {SECRET_HEADER: state.secret}
    words = Mnemonic("english").to_mnemonic(os.urandom(32))
    await client.post(
        "/restore", data={"words": words, "passphrase": "long enough", "passphrase2": "long enough"}, headers=headers
    )
    assert state.wallet is not None
    return client, headers, state


async def test_mail_from_one_conduit_read_in_another(make_cluster, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BORGUSB_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("BORGUSB_MAIL_R", str(N))
    cells = make_cluster("mailTreeCell")
    cells.up(N)
    await cells.wait_one_tree(timeout_s=60, expect=N)
    deadline = time.monotonic() + 30
    while not all(d.get("mail", {}).get("members") == N for d in await cells.status()):
        assert time.monotonic() < deadline, "the member views did not settle"
        await asyncio.sleep(0.3)
    a, ah, astate = await conduit(tmp_path, "a", cells.nodes[0].ip)
    b, bh, bstate = await conduit(tmp_path, "b", cells.nodes[1].ip)
    try:
        assert astate.wallet and bstate.wallet
        bkey = bstate.wallet.key.public_key_hex
        page = await b.get("/mail", headers=bh)
        assert page.status == 200 and bkey in await page.text() and "/static/cells/mail.js" in await page.text()
        assert (await b.post("/api/mail/inbox")).status == 401  # not the person's tab
        assert (await (await b.post("/api/mail/inbox", headers=bh)).json())["messages"] == []

        # that first listing published B's directory entry: A's page resolves B's address to B's key
        baddr = bstate.wallet.key.doge_address
        who = await (await a.post("/api/mail/resolve", json={"to": baddr}, headers=ah)).json()
        assert (who["key"], who["address"], who["fingerprint"]) == (bkey, baddr, bstate.wallet.key.fingerprint)
        none = await a.post("/api/mail/resolve", json={"to": SigningKey.generate().doge_address}, headers=ah)
        assert none.status == 400 and (await none.json())["reason"] == "not_found"
        junk = await a.post("/api/mail/resolve", json={"to": "D<b>junk"}, headers=ah)
        assert junk.status == 400 and (await junk.json())["reason"] == "bad_address"

        sent = await a.post(
            "/api/mail/send", json={"to": bkey, "subject": f"s {MARKER}", "body": f"b {MARKER}"}, headers=ah
        )
        done = await sent.json()
        assert sent.status == 200 and done["stored"] == N, done
        bad = await a.post("/api/mail/send", json={"to": "nobody", "subject": "x", "body": "y"}, headers=ah)
        assert bad.status == 400 and (await bad.json())["reason"] == "malformed"

        [m] = (await (await b.post("/api/mail/inbox", headers=bh)).json())["messages"]
        assert (m["id"], m["subject"], m["body"]) == (done["id"], f"s {MARKER}", f"b {MARKER}")
        assert m["from"] == astate.wallet.key.public_key_hex and m["new_sender"] and not m["read"]
        assert (await b.post("/api/mail/read", json={"id": m["id"]}, headers=bh)).status == 200
        [m] = (await (await b.post("/api/mail/inbox", headers=bh)).json())["messages"]
        assert m["read"] and not m["new_sender"]

        reply = await b.post(
            "/api/mail/send",
            json={"to": m["from"], "subject": "re: s", "body": "thanks", "re": m["id"]},
            headers=bh,
        )
        assert reply.status == 200
        [r] = (await (await a.post("/api/mail/inbox", headers=ah)).json())["messages"]
        assert (r["subject"], r["re"]) == ("re: s", m["id"])

        assert (await b.post("/api/mail/rm", json={"id": m["id"]}, headers=bh)).status == 200
        assert (await (await b.post("/api/mail/inbox", headers=bh)).json())["messages"] == []
    finally:
        await a.close()
        await b.close()
    for path in (tmp_path / "data").rglob("*.json"):
        assert MARKER.encode() not in path.read_bytes(), path
