"""The conduit against a real cluster: the tree it reports, and failover when its endpoint dies."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from borgusb.conduit import ConduitState, create_app
from borgusb.conduit.web import SECRET_HEADER

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
    state = ConduitState(tmp_path / "k.json")
    app = create_app(state, seeds=[seed], port=port)
    async with TestClient(TestServer(app, port=port)) as client:
        headers = {SECRET_HEADER: state.secret}

        first = await (await client.post("/api/tree", headers=headers)).json()
        assert first["served_by"] == seed
        assert sorted(m["pos"] for m in first["members"]) == [1, 2, 3, 4]
        assert first["status"] == "online"

        cluster.kill(next(n for n in cluster.nodes if n.ip == seed))
        second = await (await client.post("/api/tree", headers=headers)).json()
        assert second["served_by"] not in (None, seed)
        assert second["served_by"] in by_pos.values()

        cells = await (await client.post("/api/cells", headers=headers)).json()
        tree_cell = next(c for c in cells["cells"] if c["name"] == "peerTreeNet")
        assert tree_cell["endpoints"] and seed not in tree_cell["endpoints"][:1]


async def test_endpoint_lists_come_from_the_service_registry(make_cluster, tmp_path: Path) -> None:
    svc, tree = make_cluster("serviceMgrCell"), make_cluster("peerTreeNet")
    svc.up(3)
    tree.up(3)  # at once: its cells announce themselves again every second until their serviceMgr answers
    await svc.wait_one_tree(timeout_s=30, expect=3)
    await tree.wait_one_tree(timeout_s=30, expect=3)
    port = free_port()
    state = ConduitState(tmp_path / "k.json")
    app = create_app(state, seeds=[svc.nodes[0].ip], port=port)
    async with TestClient(TestServer(app, port=port)) as client:
        headers = {SECRET_HEADER: state.secret}
        for _ in range(30):
            cells = {c["name"]: c for c in (await (await client.post("/api/cells", headers=headers)).json())["cells"]}
            tree_entry = cells["peerTreeNet"]  # the registry may list the cells a moment after their tree does
            if tree_entry["source"] == "registry" and len(tree_entry["endpoints"]) == 3:
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
        headers = {SECRET_HEADER: state.secret}
        assert (await client.get("/storage", headers=headers)).url.path == "/welcome"  # no wallet: no storage
        words = " ".join(["abandon"] * 23 + ["art"])
        await client.post(
            "/restore",
            data={"words": words, "passphrase": "long enough", "passphrase2": "long enough"},
            headers=headers,
        )
        assert (await client.get("/storage", headers=headers)).status == 200

        data = os.urandom(1_500_000)
        form = FormData()
        form.add_field("file", data, filename="notes.bin")
        assert (await client.post("/api/storage", data=form)).status == 401  # not the person's browser tab
        form = FormData()
        form.add_field("file", data, filename="notes.bin")
        up = await (await client.post("/api/storage", data=form, headers=headers)).json()
        assert up["name"] == "notes.bin" and up["copies"] == 3 and up["served_by"] == shards.nodes[0].ip

        for _ in range(20):
            listing = (await (await client.post("/api/storage/list", headers=headers)).json())["files"]
            if listing and listing[0]["manifests"] == 3:  # the manifest on every node
                break
            await asyncio.sleep(0.2)
        assert [(f["id"], f["name"], f["size"]) for f in listing] == [(up["id"], "notes.bin", len(data))]

        stat = await (await client.post(f"/api/storage/{up['id']}/stat", headers=headers)).json()
        assert stat["copies_min"] == 3 and len(stat["holders"]) == 3

        assert (await client.post(f"/api/storage/{up['id']}/download")).status == 401
        resp = await client.post(f"/api/storage/{up['id']}/download", headers=headers)
        assert resp.status == 200 and await resp.read() == data
        assert 'filename="notes.bin"' in resp.headers["Content-Disposition"]

        resp = await client.post("/api/storage/not-an-id/download", headers=headers)
        assert resp.status == 400 and "Traceback" not in await resp.text()

        deleted = await (await client.post(f"/api/storage/{up['id']}/delete", headers=headers)).json()
        assert deleted["deleted"] == up["id"]
        for _ in range(20):
            if not (await (await client.post("/api/storage/list", headers=headers)).json())["files"]:
                break
            await asyncio.sleep(0.2)
        assert (await (await client.post("/api/storage/list", headers=headers)).json())["files"] == []
