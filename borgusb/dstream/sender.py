"""Sending: a file stored as shards, each in a signed frame, through any shard cell."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..keys import SigningKey
from ..net.peer import PeerClient
from ..shard import model
from .frames import StreamError, post_frame


def hash_file(path: Path, ss: int) -> tuple[str, int, list[str]]:
    """(object id, size, shard hashes): one SHA-256 pass, the id comes from the shard list."""
    shards: list[str] = []
    size = 0
    with open(path, "rb") as f:
        for chunk in model.split_file(f, ss):
            shards.append(model.sha256_hex(chunk))
            size += len(chunk)
    return model.object_id(size, ss, shards), size, shards


async def put_file(
    peers: PeerClient,
    ip: str,
    port: int,
    path: Path,
    key: SigningKey,
    *,
    r: int = model.DEFAULT_R,
    ss: int = model.SHARD_SIZE,
    window: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Store a file as shards through the shardTreeCell at ip:port; returns the manifest reply."""
    if peers.key.public_key_hex != key.public_key_hex:
        raise ValueError("the envelopes must be signed by the owner")
    oid, size, hashes = await asyncio.to_thread(hash_file, Path(path), ss)
    now = peers.clock.now_ms()
    bounds = model.shard_bounds(size, ss)
    copies: list[int] = [0] * len(hashes)
    sent = 0
    sem = asyncio.Semaphore(window)
    fd = os.open(path, os.O_RDONLY)

    async def one(i: int) -> None:
        nonlocal sent
        off, n = bounds[i]
        async with sem:
            data = os.pread(fd, n, off)
            if model.sha256_hex(data) != hashes[i]:
                raise StreamError(f"{path} changed while it was being stored")
            rec = model.sign_record(key, hashes[i], n, now)
            reply, _ = await post_frame(peers, ip, port, "shard.put", {"rec": rec, "obj": oid, "r": r}, data)
            copies[i] = int(reply.get("copies", 0))
            sent += n
            if progress:
                progress(sent, size)

    try:
        await asyncio.gather(*(one(i) for i in range(len(hashes))))
    finally:
        os.close(fd)
    m = model.sign_manifest(key, size, ss, r, hashes, now)
    reply = await peers.post(ip, port, "/recp", "shard.manifest", {"m": m}, signed_reply=True)
    return {
        "id": oid,
        "size": size,
        "shards": len(hashes),
        "r": r,
        "copies_min": min(copies, default=r),
        "manifest_copies": reply.get("copies"),
        "owner": key.public_key_hex,
    }
