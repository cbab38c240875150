"""The conduit against a real cluster: the tree it reports, and failover when its endpoint dies."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from borgusb.conduit import ConduitState, create_app

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_tree_and_failover_when_the_serving_endpoint_is_killed(make_cluster, tmp_path: Path) -> None:
    cluster = make_cluster()
    cluster.up(4)
    summary = await cluster.wait_one_tree(timeout_s=40, expect=4)
    by_pos = {n["position"]: n["ip"] for n in summary["nodes"]}
    seed = by_pos[3]  # a non-root node: killing it leaves the tree's root to answer

    port = free_port()
    app = create_app(ConduitState(tmp_path / "k.json"), seeds=[seed], port=port)
    async with TestClient(TestServer(app, port=port)) as client:
        html = await (await client.get("/welcome")).text()
        token = re.search(r'name="borg-token" content="([^"]+)"', html).group(1)
        headers = {"X-Borg-Token": token}

        first = await (await client.get("/api/tree", headers=headers)).json()
        assert first["served_by"] == seed
        assert sorted(m["pos"] for m in first["members"]) == [1, 2, 3, 4]
        assert first["status"] == "online"

        cluster.kill(next(n for n in cluster.nodes if n.ip == seed))
        second = await (await client.get("/api/tree", headers=headers)).json()
        assert second["served_by"] not in (None, seed)
        assert second["served_by"] in by_pos.values()

        cells = await (await client.get("/api/cells", headers=headers)).json()
        tree_cell = next(c for c in cells["cells"] if c["name"] == "peerTreeNet")
        assert tree_cell["endpoints"] and seed not in tree_cell["endpoints"][:1]


async def test_endpoint_lists_come_from_the_service_registry(make_cluster, tmp_path: Path) -> None:
    svc = make_cluster("serviceMgrCell")
    svc.up(3)
    await svc.wait_one_tree(timeout_s=30, expect=3)
    tree = make_cluster("peerTreeNet")
    tree.up(3)
    await tree.wait_one_tree(timeout_s=30, expect=3)
    port = free_port()
    app = create_app(ConduitState(tmp_path / "k.json"), seeds=[svc.nodes[0].ip], port=port)
    async with TestClient(TestServer(app, port=port)) as client:
        html = await (await client.get("/welcome")).text()
        headers = {"X-Borg-Token": re.search(r'name="borg-token" content="([^"]+)"', html).group(1)}
        for _ in range(30):
            cells = {c["name"]: c for c in (await (await client.get("/api/cells", headers=headers)).json())["cells"]}
            if len(cells["peerTreeNet"]["endpoints"]) == 3:
                break
            await asyncio.sleep(0.3)
        assert cells["peerTreeNet"]["source"] == "registry"
        assert sorted(cells["peerTreeNet"]["endpoints"]) == sorted(n.ip for n in tree.nodes)
        assert sorted(cells["serviceMgrCell"]["endpoints"]) == sorted(n.ip for n in svc.nodes)
        assert cells["mailTreeCell"]["endpoints"] == []


async def test_files_routes_against_a_shard_cluster(make_cluster, tmp_path: Path, monkeypatch) -> None:
    """Upload, list, stat, download and delete through the conduit's routes (aiohttp test client)."""
    import os

    from aiohttp import FormData

    from borgusb.keystore import KdfParams

    monkeypatch.setenv("BORGUSB_DATA_ROOT", str(tmp_path / "shards"))
    shards = make_cluster("shardTreeCell")
    shards.up(3)
    await shards.wait_one_tree(timeout_s=40, expect=3)
    for _ in range(100):  # every shard node knows the other two (placement needs three candidates)
        if all(d.get("shard", {}).get("directory") == 3 for d in await shards.status()):
            break
        await asyncio.sleep(0.2)
    port = free_port()
    state = ConduitState(tmp_path / "k.json", kdf=KdfParams(iterations=1, lanes=1, memory_kib=1024))
    app = create_app(state, seeds=[shards.nodes[0].ip], port=port)
    async with TestClient(TestServer(app, port=port)) as client:
        assert (await client.get("/files")).url.path == "/welcome"  # locked or no wallet: no files
        html = await (await client.get("/restore")).text()
        token = re.search(r'name="borg-token" content="([^"]+)"', html).group(1)
        words = " ".join(["abandon"] * 23 + ["art"])
        await client.post(
            "/restore", data={"token": token, "words": words, "passphrase": "long enough", "passphrase2": "long enough"}
        )
        headers = {"X-Borg-Token": token}
        assert (await client.get("/files")).status == 200

        data = os.urandom(1_500_000)
        form = FormData()
        form.add_field("file", data, filename="notes.bin")
        assert (await client.post("/api/files", data=form)).status == 403  # no page token
        form = FormData()
        form.add_field("file", data, filename="notes.bin")
        up = await (await client.post("/api/files", data=form, headers=headers)).json()
        assert up["name"] == "notes.bin" and up["copies"] == 3 and up["served_by"] == shards.nodes[0].ip

        for _ in range(20):
            listing = (await (await client.get("/api/files", headers=headers)).json())["files"]
            if listing and listing[0]["copies"] == 3:
                break
            await asyncio.sleep(0.2)
        assert [(f["id"], f["name"], f["size"]) for f in listing] == [(up["id"], "notes.bin", len(data))]

        stat = await (await client.get(f"/api/files/{up['id']}", headers=headers)).json()
        assert stat["copies_min"] == 3 and len(stat["holders"]) == 3

        resp = await client.get(f"/files/{up['id']}/download")
        assert resp.status == 200 and await resp.read() == data
        assert 'filename="notes.bin"' in resp.headers["Content-Disposition"]

        resp = await client.get("/files/not-an-id/download")
        assert resp.status == 400 and "Traceback" not in await resp.text()

        deleted = await (await client.post(f"/api/files/{up['id']}/delete", headers=headers)).json()
        assert deleted["deleted"] == up["id"]
        for _ in range(20):
            if not (await (await client.get("/api/files", headers=headers)).json())["files"]:
                break
            await asyncio.sleep(0.2)
        assert (await (await client.get("/api/files", headers=headers)).json())["files"] == []
