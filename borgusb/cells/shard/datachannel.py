"""The holder's side of DStream's data channel: ``GET /shard/<h1>,<h2>,...`` on the monitoring port.

Plain HTTP, because integrity rests on the owner-signed manifest, not on the
channel: the request is a signed ``shard.get`` envelope in a header, the
reply's header is the holder's signed envelope with each shard's size, and
the checked shard files go out with ``sendfile`` (no copy in Python).
"""

from __future__ import annotations

import asyncio
from typing import Any, BinaryIO

from aiohttp import web

from ... import envelope
from ...dstream import ENVELOPE_HEADER, MAX_BATCH
from ...shard import model
from ...shard.storeerrors import Corrupt
from ..kit import RequestError, route
from ..kit.cell import refusal
from .base import ShardBase


class DataChannelDoor(ShardBase):
    """Mixin of `ShardCell`: shard bytes to readers, fairly, without TLS."""

    @route("mon", "GET", "/shard/{h}")
    async def _handle_plain_get(self, request: web.Request) -> web.StreamResponse:
        """Shard bytes without TLS (`dstream.DataChannel`): ``GET /shard/<h1>,<h2>,...``; the
        request is a signed ``shard.get`` envelope in a header naming the same hashes (``hs``);
        the reply's header is the holder's signed envelope with each shard's size (or refusal);
        the receiver checks the bytes' SHA-256 against the owner-signed manifest, so integrity
        does not depend on TLS. The holder checks each shard file in place (mapped, in a
        worker thread; `ShardStore.open_checked`; not again for the very file that passed a
        moment ago: `shard.freshchecks`) before anything is sent, a corrupt copy is dropped and
        never sent, and the checked files go out with ``sendfile``: no copy of the bytes in Python."""
        try:
            env = self.verifier.verify(request.headers.get(ENVELOPE_HEADER, "").encode(), expected_type="shard.get")
        except envelope.EnvelopeError as exc:
            return web.json_response({"error": exc.reason, "detail": str(exc)[:200]}, status=400)
        try:
            self.guard.admit_key(env.signer)
        except RequestError as exc:
            return refusal(exc)
        p = env.payload
        hs = p.get("hs") if isinstance(p, dict) else None
        if (
            not isinstance(hs, list)
            or not 1 <= len(hs) <= MAX_BATCH
            or not all(model.is_hash(h) for h in hs)
            or ",".join(hs) != request.match_info["h"]
        ):
            return refusal(RequestError("malformed", "the envelope must name these hashes"))
        sid = str(p.get("sid", ""))[:32] or env.signer[:16]
        await self.gate.acquire(sid)
        try:
            opened = await asyncio.to_thread(self._open_all, hs)
        finally:
            self.gate.release()
        try:
            ns: list[int] = []
            for h, got in zip(hs, opened):
                if isinstance(got, int):
                    if got == 410:
                        self.counters["shard_corrupt_dropped"] += 1
                        self._spawn(self._refetch(h))
                    self.counters["receptor_refused"] += 1
                    ns.append(-got)
                else:
                    ns.append(got[2])
                    self._count_served(env, sid, h, got[2])
            self.counters["plain:shard.get"] += 1
            reply = envelope.sign(
                self.key,
                "shard.get.reply",
                {"hs": hs, "ns": ns},
                self.clock,
                ip=self.ip,
                port=self.dna.recp_port,
                to=envelope.address(env.signer, env.sender.port),
            )
            resp = web.StreamResponse(
                headers={
                    ENVELOPE_HEADER: envelope.encode(reply).decode("ascii"),
                    "Content-Type": "application/octet-stream",
                }
            )
            resp.content_length = sum(n for n in ns if n > 0)
            await resp.prepare(request)
            loop = asyncio.get_running_loop()
            for got in opened:
                if not isinstance(got, int) and got[2]:
                    transport = request.transport
                    if transport is None:
                        raise ConnectionResetError("connection lost")
                    await loop.sendfile(transport, got[1], 0, got[2])
            await resp.write_eof()
            return resp
        finally:
            for got in opened:
                if not isinstance(got, int):
                    got[1].close()

    def _open_all(self, hs: list[str]) -> list[tuple[dict[str, Any], BinaryIO, int] | int]:
        """In a worker thread: each shard opened and checked against its hash, or the refusal's
        status (404 not held here, 410 the copy was corrupt and has been dropped)."""
        out: list[tuple[dict[str, Any], BinaryIO, int] | int] = []
        try:
            for h in hs:
                try:
                    opened = self.store.open_checked(h)
                except Corrupt:
                    out.append(410)
                    continue
                out.append(404 if opened is None else opened)
        except BaseException:
            for got in out:
                if not isinstance(got, int):
                    got[1].close()
            raise
        return out
