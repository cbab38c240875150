"""Publishing a media file for fStream.

Public: its shards stored, then its owner-signed stream map stored as an object of its own, whose id
is the link (``http://<fStream endpoint>:<monPort>/stream/<map id>``): anyone with it can watch.
A public video taller than a height of the ladder (`fstream.renditions`, 360p by default) is also
encoded at that height, stored, and named in the map's ``alts``, so a player on a slow link can
switch to it (adaptive bitrate).
Private: the file goes into the owner's file tree encrypted (the file manager's AES-256-GCM chunks,
`borgusb.files.actions.put`), where the owner's Watch page lists it and the file manager's share
gives it to others; no map is published, since a map would tell the world the media's key frames.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ...dna import get as dna_row
from ...dstream import hash_file, put_file
from ...files import actions
from ...files.remote import FileTree
from ...fstream.listing import sign_listing
from ...fstream.probe import media_info, probe
from ...fstream.renditions import DEFAULT_HEIGHTS, heights_below, transcode
from ...fstream.streammap import Rendition, encode_map, sign_map
from ...keys import SigningKey
from ...net.peer import PeerClient, PeerError, PeerRejected
from ...shard import model

Progress = Callable[[int, int], None] | None
FSTREAM = dna_row("fStreamCell")


async def publish(
    peers: PeerClient,
    ip: str,
    port: int,
    path: Path,
    key: SigningKey,
    *,
    r: int = model.DEFAULT_R,
    private: bool = False,
    folder: str = "/",
    machine: str = "publish",
    progress: Progress = None,
    listed: bool = True,
    renditions: Sequence[int] = DEFAULT_HEIGHTS,
) -> dict[str, Any]:
    """Publish `path` through the node at ip (its shard cell at `port`; a private file through its file
    manager, into `folder`). Public: the map's id (``map``), the media object's (``id``), its type, key
    frames and size; `listed`: its owner-signed listing handed to the fStream cell at ip, which spreads it
    to every fStream cell (the Watch pages' public media). Private: the same but ``path`` (where it
    is in the tree) instead of ``map``, and never listed. `renditions`: the ladder heights to encode a
    public video at (those below its own height; ``()``: none), listed in the result's ``alts``."""
    content_type, frames = await asyncio.to_thread(probe, path)
    keys = [ms for ms, _ in frames]  # the times (the map also has each one's byte offset)
    if private:
        tree = FileTree(peers, ip, key, machine=machine, r=r)
        try:
            where, oid = await actions.put(tree, path, folder, public=False, progress=progress)
        finally:
            tree.close()
        size = path.stat().st_size
        return {"private": True, "path": where, "id": oid, "type": content_type, "keys": keys, "size": size}
    media = await put_file(peers, ip, port, path, key, r=r, progress=progress)
    _, size, hashes = await asyncio.to_thread(hash_file, path, model.SHARD_SIZE)
    bps, height = await asyncio.to_thread(media_info, path)
    with tempfile.TemporaryDirectory(prefix="borgusb-map-") as tmp:
        alts = []
        if content_type.startswith("video/"):
            for h in heights_below(height, renditions):
                alts.append(await _rendition(peers, ip, port, key, r, path, h, Path(tmp)))
        doc = sign_map(
            key, size, model.SHARD_SIZE, hashes, content_type, frames, peers.clock.now_ms(),
            bps=bps, height=height, alts=tuple(alts),
        )  # fmt: skip
        stored = await _put_map(peers, ip, port, key, r, doc, Path(tmp))
    out = {
        "private": False,
        "map": stored,
        "id": media["id"],
        "type": content_type,
        "keys": keys,
        "size": size,
        "alts": [a.to_dict() for a in alts],
    }
    if listed:
        doc = sign_listing(key, out["map"], out["id"], path.name, content_type, size, peers.clock.now_ms())
        try:
            reply = await peers.post(
                ip, FSTREAM.recp_port, "/recp", "fstream.list", {"listing": doc}, signed_reply=True
            )
            out["listed"] = isinstance(reply, dict) and reply.get("map") == out["map"]
        except PeerError as exc:  # published all the same: the link works, it is only not listed
            out["listed"] = False
            out["not_listed"] = exc.reason if isinstance(exc, PeerRejected) else exc.__class__.__name__
    return out


async def _put_map(peers: PeerClient, ip: str, port: int, key: SigningKey, r: int, doc: Any, tmp: Path) -> str:
    """Store a signed map as an object of its own; its id (the link)."""
    map_path = tmp / f"map-{doc['id'][:16]}.json"
    map_path.write_bytes(encode_map(doc))
    stored = await put_file(peers, ip, port, map_path, key, r=r)
    return str(stored["id"])


async def _rendition(
    peers: PeerClient, ip: str, port: int, key: SigningKey, r: int, source: Path, height: int, tmp: Path
) -> Rendition:
    """`source` encoded at `height`, stored with a map of its own: the rung the main map names."""
    out = await asyncio.to_thread(transcode, source, height, tmp / f"{height}p.webm")
    content_type, frames = await asyncio.to_thread(probe, out)
    bps, h = await asyncio.to_thread(media_info, out)
    stored = await put_file(peers, ip, port, out, key, r=r)
    _, size, hashes = await asyncio.to_thread(hash_file, out, model.SHARD_SIZE)
    doc = sign_map(key, size, model.SHARD_SIZE, hashes, content_type, frames, peers.clock.now_ms(), bps=bps, height=h)
    return Rendition(await _put_map(peers, ip, port, key, r, doc, tmp), stored["id"], size, content_type, bps, h)
