"""Publishing a media file for fStream: its shards stored, then its owner-signed stream map stored
as an object of its own, whose id is the link (``http://<fStream endpoint>:<monPort>/stream/<id>``)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from ...dstream import hash_file, put_file
from ...fstream.probe import probe
from ...fstream.streammap import encode_map, sign_map
from ...keys import SigningKey
from ...net.peer import PeerClient
from ...shard import model


async def publish(
    peers: PeerClient, ip: str, port: int, path: Path, key: SigningKey, *, r: int = model.DEFAULT_R
) -> dict[str, Any]:
    """Store `path` and its stream map through the shard cell at ip:port: the map's id (``map``),
    the media object's (``id``), its type and key frames."""
    content_type, keys = await asyncio.to_thread(probe, path)
    media = await put_file(peers, ip, port, path, key, r=r)
    _, size, hashes = await asyncio.to_thread(hash_file, path, model.SHARD_SIZE)
    doc = sign_map(key, size, model.SHARD_SIZE, hashes, content_type, keys, peers.clock.now_ms())
    with tempfile.TemporaryDirectory(prefix="borgusb-map-") as tmp:
        map_path = Path(tmp) / "map.json"
        map_path.write_bytes(encode_map(doc))
        stored = await put_file(peers, ip, port, map_path, key, r=r)
    return {"map": stored["id"], "id": media["id"], "type": content_type, "keys": keys, "size": size}
