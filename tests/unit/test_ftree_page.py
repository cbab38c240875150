"""The Files page's routes (the file manager's) with no node: refusals with their reason word before the
network is asked, and a listing refused with its next step, never shown as an empty folder.

The page against real cells in Chromium is tests/integration/test_files_browser.py.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer

from borgusb.conduit import ConduitState, create_app
from borgusb.conduit.web import SECRET_HEADER
from borgusb.keystore import KdfParams

WORDS = " ".join(["abandon"] * 23 + ["art"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def conduit(tmp_path: Path):
    port = free_port()
    state = ConduitState(tmp_path / "stick" / "keystore.json", kdf=KdfParams(iterations=1, lanes=1, memory_kib=1024))
    state.keystore_path.parent.mkdir()
    client = TestClient(TestServer(create_app(state, seeds=["127.0.0.250"], port=port), port=port))  # no node
    await client.start_server()
    client.auth = {SECRET_HEADER: state.secret}  # type: ignore[attr-defined]
    locked = await client.post("/api/files/ls", headers=client.auth, json={"path": "/"})
    assert locked.status == 403 and "locked" in (await locked.json())["error"]
    form = {"words": WORDS, "passphrase": "long enough", "passphrase2": "long enough"}
    assert (await client.post("/restore", data=form, headers=client.auth)).status == 200
    yield client
    await client.close()


async def test_page_and_script_and_no_node(conduit) -> None:
    html = await (await conduit.get("/files", headers=conduit.auth)).text()
    assert 'data-script="/static/cells/files.js"' in html and 'id="listing"' in html and 'id="put-vis"' in html
    assert '<a href="/storage"' in html and '<a href="/files" class="on"' in html
    js = await (await conduit.get("/static/cells/files.js")).text()
    assert ".innerHTML" not in js and "Not refreshed" in js

    resp = await conduit.post("/api/files/ls", headers=conduit.auth, json={"path": "/docs"})
    doc = await resp.json()
    assert resp.status == 503 and doc["reason"] == "no_node" and doc["last"] is None
    assert "not refreshed" in doc["error"] and "borgusb cluster up" in doc["error"]


@pytest.mark.parametrize(
    ("api", "body", "reason"),
    [
        ("ls", {"path": "/a/../b"}, "bad_name"),
        ("mkdir", {"path": "/"}, "bad_name"),
        ("share", {"path": "/docs", "to": "not a key"}, "malformed"),
        ("restore", {"path": "/docs", "version": "v1"}, "malformed"),
        ("shared", {"share": '{"v": 1}'}, "malformed"),
        ("rm", {"path": "/" + "x" * 300}, "bad_name"),
    ],
)
async def test_refusals_carry_their_reason_word(conduit, api, body, reason) -> None:
    resp = await conduit.post(f"/api/files/{api}", headers=conduit.auth, data=json.dumps(body))
    doc = await resp.json()
    assert resp.status == 400 and doc["reason"] == reason, doc


async def test_oversized_requests_are_refused_unread(conduit) -> None:
    resp = await conduit.post("/api/files/ls", headers=conduit.auth, data=b"{" + b" " * 20_000 + b"}")
    assert resp.status == 400 and (await resp.json())["reason"] == "too_large"
    form = FormData()
    form.add_field("file", b"x", filename="..")
    resp = await conduit.post("/api/files/upload?path=/", headers=conduit.auth, data=form)
    assert resp.status == 400 and (await resp.json())["reason"] == "bad_name"
    form = FormData()
    form.add_field("file", b"x", filename="fine.txt")
    resp = await conduit.post("/api/files/upload?path=/&name=a%2Fb", headers=conduit.auth, data=form)
    assert resp.status == 400 and (await resp.json())["reason"] == "bad_name"  # the page's name is checked too
