"""The Storage page of the conduit: the person's objects in the shard network (the shard cell's page hook).

These are the plain shard objects signed by the person's key (what `borgusb put` stores); the
person's named, encrypted folders are the Files page (`cells.ftree.web`), built on the same objects.

Uploads and downloads pass through a RAM directory (/dev/shm), never the
host's disk: the browser streams to the conduit, the conduit to DStream.
Objects are listed by asking every shardTreeCell endpoint which manifests it
holds for the person's key (`shard.owned`) and merging the answers; the
names the person gave are kept by the conduit for the session (manifests
carry no names, so nothing about them leaks to holders).

Everything that reaches the network (list, stat, upload, download, delete) is
a POST under ``/api/storage`` made by the page script with the conduit's
secret; a download arrives in the page as a blob that the script saves. The
page itself (GET ``/storage``) sends nothing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web

from ...conduit.network import Network
from ...conduit.web import NETWORK, STATE, PageError, add_page, add_script, render, require_unlocked
from ...dstream import Receiver, StreamError, parse_locate, put_file
from ...keys import SigningKey
from ...ledger.rules import MIB
from ...net.peer import PeerError, PeerRejected
from ...shard import model
from ..peerpays import creditweb
from .client import READ_WAIT_S, ShardClient

CELL = "shardTreeCell"
RAM_DIRS = ("/dev/shm", "/run")
# the last list the network gave, per key: shown (marked "not refreshed") while no shard node answers
LAST_LIST = web.AppKey("storage_last_list", dict[str, dict[str, Any]])
NO_NODE = (
    "No shard storage node answered, so this list was not refreshed. Next: start one "
    "('borgusb cluster up' on this machine, or boot a stick) or give the conduit a node with --node IP, "
    "then refresh."
)


def ram_dir() -> Path:
    for candidate in RAM_DIRS:
        if os.path.isdir(candidate) and os.access(candidate, os.W_OK):
            return Path(tempfile.mkdtemp(prefix="borgusb-conduit-", dir=candidate))
    raise web.HTTPInsufficientStorage(text="no RAM directory (/dev/shm) for transfers")


def _app_parts(request: web.Request) -> tuple[SigningKey, Network]:
    """The unlocked wallet's key (or a redirect to unlock) and the conduit's network."""
    state = require_unlocked(request)
    assert state.wallet is not None
    return state.wallet.key, request.app[NETWORK]


def _names(request: web.Request) -> dict[str, str]:
    return request.app[STATE].file_names


async def page(request: web.Request) -> web.Response:
    _app_parts(request)
    return render(request, "storage.html")


def _not_refreshed(request: web.Request, key: SigningKey) -> web.Response:
    """503 with the last list the network gave (if any), for the page to keep and mark as old."""
    last = request.app[LAST_LIST].get(key.public_key_hex)
    return web.json_response({"error": NO_NODE, "reason": "no_node", **(last or {"files": []})}, status=503)


async def api_list(request: web.Request) -> web.Response:
    key, network = _app_parts(request)
    entry = await network.refresh(CELL)
    if not entry.endpoints:
        return _not_refreshed(request, key)
    peers = network.client_for(key)

    async def ask(ip: str) -> list[dict[str, Any]] | None:
        try:
            return await asyncio.wait_for(ShardClient(peers, ip).owned(key.public_key_hex), network.timeout_s)
        except (TimeoutError, PeerError):
            return None

    answers = [a for a in await asyncio.gather(*(ask(ip) for ip in entry.endpoints)) if a is not None]
    if not answers:
        return _not_refreshed(request, key)
    merged: dict[str, dict[str, Any]] = {}
    for objects in answers:
        for o in objects:
            if isinstance(o, dict) and model.is_hash(o.get("id")):
                merged.setdefault(o["id"], {**o, "manifests": 0})["manifests"] += 1
    names = _names(request)
    files = [{**o, "name": names.get(o["id"])} for o in sorted(merged.values(), key=lambda o: -o["t"])]
    doc = {"files": files, "nodes_asked": len(entry.endpoints), "nodes_answered": len(answers)}
    request.app[LAST_LIST][key.public_key_hex] = {**doc, "at": network.clock.now_ms()}
    return web.json_response(doc)


async def api_stat(request: web.Request) -> web.Response:
    key, network = _app_parts(request)
    oid = request.match_info["id"]
    served = await network.use(  # 20 s: room for a heal's 15 s of asking again
        CELL, lambda peers, ip: ShardClient(peers, ip).stat(oid, heal_wait_s=READ_WAIT_S), key=key, timeout_s=20
    )
    return web.json_response({**served.result, "served_by": served.endpoint})


async def api_upload(request: web.Request) -> web.Response:
    key, network = _app_parts(request)
    reader = await request.multipart()
    part = await reader.next()
    if not isinstance(part, BodyPartReader) or part.name != "file":
        raise PageError("Choose a file to upload.")
    name = os.path.basename(part.filename or "file")[:200]
    workdir = ram_dir()
    try:
        path = workdir / "upload"
        with open(path, "wb") as out:
            while chunk := await part.read_chunk(1 << 20):
                out.write(chunk)
        served_error = None
        for ip in list((await network.refresh(CELL)).endpoints):
            try:
                reply = await put_file(network.client_for(key), ip, network.port_of(CELL), path, key)
            except PeerRejected as exc:
                if exc.status < 500:  # refused for what the file is (owner, quota): another node would too
                    raise PageError(f"Not stored: {exc.detail or exc.reason} ({exc.reason})", 409) from None
                served_error = str(exc)
                continue
            except (PeerError, StreamError, OSError) as exc:
                served_error = str(exc)
                continue
            _names(request)[reply["id"]] = name
            return web.json_response(
                {
                    "id": reply["id"],
                    "name": name,
                    "copies": reply.get("copies_min"),
                    "r": reply.get("r"),
                    "served_by": ip,
                }
            )
        raise PageError(f"No shard node stored the file: {served_error or 'none reachable'}", 503)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def download(request: web.Request) -> web.StreamResponse:
    key, network = _app_parts(request)
    oid = request.match_info["id"]
    if not model.is_hash(oid):
        raise PageError("That is not an object id.")
    served = await network.use(  # 20 s: room for a heal's 15 s of asking again
        CELL, lambda peers, ip: ShardClient(peers, ip).locate(oid, heal_wait_s=READ_WAIT_S), key=key, timeout_s=20
    )
    try:
        manifest, holders = parse_locate(served.result, oid)
    except StreamError as exc:
        raise PageError(str(exc), 404) from None
    workdir = ram_dir()
    try:
        path = workdir / "download"
        await Receiver(network.client_for(key), manifest, holders, path).run()
        name = _names(request).get(oid) or f"{oid[:16]}.bin"
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/octet-stream",
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store",
                "Content-Disposition": f'attachment; filename="{name.replace(chr(34), "")}"',
                "Content-Length": str(path.stat().st_size),
                "X-Served-By": served.endpoint,
            }
        )
        await response.prepare(request)
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                await response.write(chunk)
        await response.write_eof()
        return response
    except StreamError as exc:
        raise PageError(f"The download failed: {exc}", 502) from None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def api_delete(request: web.Request) -> web.Response:
    key, network = _app_parts(request)
    oid = request.match_info["id"]
    tomb = model.sign_tomb(key, oid, network.clock.now_ms())
    served = await network.use(CELL, lambda peers, ip: ShardClient(peers, ip).delete(tomb), key=key)
    _names(request).pop(oid, None)
    return web.json_response({"deleted": oid, "served_by": served.endpoint})


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def storage_left(usage: dict[str, Any]) -> str:
    """What the Storage card says a holder keeps of yours: "2.0 MiB of yours held here, 1.0 MiB free"."""
    held, share = _int(usage.get("held")), _int(usage.get("free_bytes"))
    return f"{held / MIB:.1f} MiB of yours held here, {share / MIB:.1f} MiB of it kept free"


def storage_meter(usage: dict[str, Any]) -> tuple[int, int]:
    """The card's meter: the free share, and what of it your copies here leave."""
    share = _int(usage.get("free_bytes"))
    return share, max(0, share - _int(usage.get("held")))


SELLER = creditweb.Seller("storage", "shardTreeCell", ShardClient, "shard cell", storage_left, storage_meter)


def setup(app: web.Application) -> None:
    """The page hook: the conduit calls this once (SPEC.web)."""
    add_page(app, "/storage", "Storage", "storage", Path(__file__).parent / "templates")
    add_script(app, "storage.js", Path(__file__).parent / "static" / "storage.js")
    app[LAST_LIST] = {}
    app.router.add_get("/storage", page)
    app.router.add_post("/api/storage", api_upload)
    app.router.add_post("/api/storage/list", api_list)
    app.router.add_post("/api/storage/{id}/stat", api_stat)
    app.router.add_post("/api/storage/{id}/download", download)
    app.router.add_post("/api/storage/{id}/delete", api_delete)
    creditweb.setup(app, SELLER, "/api/storage/pay")
