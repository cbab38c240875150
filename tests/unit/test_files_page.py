"""The Storage page's routes with no shard node: the list refused with its next step, never an empty list.

The page against real shard nodes in Chromium is tests/integration/test_files_page_browser.py.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from borgusb.conduit import ConduitState, create_app
from borgusb.conduit.web import SECRET_HEADER
from borgusb.keystore import KdfParams

WORDS = (
    "legal winner thank year wave sausage worth useful legal winner thank year "
    "wave sausage worth useful legal winner thank year wave sausage worth title"
)


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
    auth = {SECRET_HEADER: state.secret}
    form = {"words": WORDS, "passphrase": "long enough", "passphrase2": "long enough"}
    assert (await client.post("/restore", data=form, headers=auth)).status == 200
    client.auth = auth  # type: ignore[attr-defined]
    yield client
    await client.close()


async def test_no_shard_node_keeps_the_page_honest(conduit) -> None:
    html = await (await conduit.get("/storage", headers=conduit.auth)).text()
    assert 'data-script="/static/cells/storage.js"' in html and 'id="files-refresh"' in html
    js = await conduit.get("/static/cells/storage.js")
    assert js.status == 200 and "Not refreshed" in await js.text()

    resp = await conduit.post("/api/storage/list", headers=conduit.auth)
    doc = await resp.json()
    assert resp.status == 503 and doc["reason"] == "no_node" and doc["files"] == []
    assert "not refreshed" in doc["error"] and "borgusb cluster up" in doc["error"]

    cells = (await (await conduit.post("/api/cells", headers=conduit.auth)).json())["cells"]
    assert cells and all(c["more"] == 0 and c["endpoints"] == [] for c in cells)
