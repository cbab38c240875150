"""Objects in the chaos scenarios' shard cells: put, read back, and count their copies on every node."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from borgusb import dna
from borgusb.cells.shard.client import locate_through_heal
from borgusb.dstream import Receiver, StreamError, parse_locate, put_file
from borgusb.keys import SigningKey
from borgusb.net.peer import PeerError
from tests.chaos.observe import client

SHARD = dna.get("shardTreeCell").recp_port


async def put(ip: str, data: bytes, key: SigningKey, tmp: Path, r: int, timeout_s: float = 60) -> dict[str, Any]:
    """Store data through the shard cell at ip (asked again while it refuses, e.g. during a
    restart next door, up to timeout_s); put_file's reply (id, copies, holders, refused)."""
    path = tmp / f"in-{os.urandom(4).hex()}"
    path.write_bytes(data)
    deadline = time.monotonic() + timeout_s
    async with client(key) as peers:
        while True:
            try:
                return await put_file(peers, ip, SHARD, path, key, r=r)
            except (PeerError, StreamError, OSError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1)


async def read(ip: str, oid: str, tmp: Path) -> bytes:
    """The object's bytes as a reader through ip gets them (each shard checked against the manifest)."""
    async with client() as peers:
        reply = await locate_through_heal(peers, ip, SHARD, oid)
        m, holders = parse_locate(reply, oid)
        out = tmp / f"out-{os.urandom(4).hex()}"
        fetch = Receiver(peers, m, holders, out)
        try:
            await fetch.run()
        except StreamError as exc:  # say where the reader looked
            raise StreamError(f"{exc}; reading {oid[:16]} through {ip}, located holders: {holders!r}") from exc
        await fetch.receipts_handed()  # before the client closes: the hand-in would reopen its session
    data = out.read_bytes()
    out.unlink()
    return data


async def copies(ips: list[str], oid: str) -> tuple[int, list[int]]:
    """(manifest copies, copies of each shard) on the nodes at ips, by asking each ``shard.holds``
    (which repairs nothing); a node that does not answer counts as holding nothing."""
    manifest: dict[str, Any] | None = None
    held: list[set[str]] = []
    n_manifest = 0
    async with client() as peers:
        for ip in ips:
            try:
                reply = await peers.post(ip, SHARD, "/recp", "shard.holds", {"id": oid}, signed_reply=True)
            except PeerError:
                continue
            if reply.get("m") is not None:
                n_manifest += 1
                manifest = manifest or reply["m"]
            held.append(set(reply.get("h") or []))
    shards = manifest["shards"] if manifest else []
    return n_manifest, [sum(h in hs for hs in held) for h in shards]


async def wait_copies(ips: list[str], oids: list[str], r: int, timeout_s: float) -> tuple[float | None, dict[str, Any]]:
    """Seconds until every object has at least r copies of its manifest and of each shard on
    the nodes at ips (None: not within timeout_s), and the last counts."""
    t0 = time.monotonic()
    while True:
        counts = {oid: await copies(ips, oid) for oid in oids}
        if all(m >= r and sh and min(sh) >= r for m, sh in counts.values()):
            return time.monotonic() - t0, counts
        if time.monotonic() - t0 > timeout_s:
            return None, counts
        await asyncio.sleep(0.5)
