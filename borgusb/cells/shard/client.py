"""ShardClient: what the CLI, the conduit and other cells call on a shardTreeCell."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from ...net.peer import PeerClient, PeerRejected
from ..kit import CellClient

HEAL_WAIT_S = 30.0  # how long the CLI keeps asking while the network heals
READ_WAIT_S = 15.0  # how long a cell or a page reading an object does (a page's request is waiting)


def _doc(reply: Any) -> dict[str, Any]:
    return reply if isinstance(reply, dict) else {}


class ShardClient(CellClient):
    cell = "shardTreeCell"

    async def locate(self, oid: str, *, repair: bool = True, heal_wait_s: float = 0.0) -> dict[str, Any]:
        """Who holds each shard of an object (and a repair of short ones, unless repair=False),
        asked again while the node answers ``healing``, for up to heal_wait_s (`through_heal`)."""
        return _doc(await through_heal(lambda: self.call("shard.locate", {"id": oid, "repair": repair}), heal_wait_s))

    async def stat(self, oid: str, *, heal_wait_s: float = 0.0) -> dict[str, Any]:
        """An object's size, shards, owner, and how many copies each shard has (asked again while
        ``healing``, for up to heal_wait_s)."""
        return _doc(await through_heal(lambda: self.call("shard.stat", {"id": oid}), heal_wait_s))

    async def owned(self, owner: str) -> list[dict[str, Any]]:
        """The objects of one owner whose manifests this node holds."""
        found = _doc(await self.call("shard.owned", {"o": owner})).get("objects")
        return [o for o in found if isinstance(o, dict)] if isinstance(found, list) else []

    async def delete(self, tomb: dict[str, Any]) -> dict[str, Any]:
        """Broadcast an owner-signed tombstone (`borgusb.shard.model.make_tomb`)."""
        return _doc(await self.call("shard.delete", {"tomb": tomb}))

    async def audit(self, claimant: str, shards: list[tuple[str, int]]) -> dict[str, Any]:
        """Have the shard cell on this address check that `claimant` holds these (sha256, size)
        shards and is placed to (``{"ok": True}``, else `PeerRejected` ``not_member`` /
        ``not_placed`` / ``not_held``): a reserve holder's check of a hold claim."""
        return _doc(await self.call("shard.audit", {"claimant": claimant, "shards": [list(s) for s in shards]}))

    async def usage(self) -> dict[str, Any]:
        """The caller's storage here: ``{"held", "free_bytes", "free_left", "paid", "charged", "balance",
        "payee", "ref", "exempt"}`` (bytes, MiB-hours and units; pay ``payee`` with ``ref`` to add credit)."""
        return _doc(await self.call("shard.usage", {}))

    async def credit(self, cert: dict[str, Any]) -> dict[str, Any]:
        """Hand the holder a payment's certificate: ``{"credited", "id", "usage"}``."""
        return _doc(await self.call("shard.credit", {"cert": cert}))

    async def earn(self, start: int | None = None, rule: str = "hold") -> dict[str, Any]:
        """Have the shard cell claim its `rule` reward (``hold`` or ``serve``) for the period starting
        at `start` (default: the last)."""
        return _doc(await self.call("shard.earn", {"rule": rule} if start is None else {"start": start, "rule": rule}))

    async def put_manifest(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Place an owner-signed manifest on its R holders."""
        return _doc(await self.call("shard.manifest", {"m": manifest}))


async def through_heal(
    ask: Callable[[], Awaitable[Any]], wait_s: float, on_wait: Callable[[PeerRejected], None] | None = None
) -> Any:
    """ask(), asked again with backoff (0.25 s doubling to 2 s) while it is refused as ``healing``
    (the shard cell found no holder while a node of the tree is missing), for up to wait_s; on_wait
    hears each such refusal. Any other refusal is raised as it came; ``healing`` past wait_s is
    raised as ``healing`` that says to retry: never as 'not found'."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    pause = 0.25
    while True:
        try:
            return await ask()
        except PeerRejected as exc:
            if exc.reason != "healing":
                raise
            if loop.time() + pause > deadline:
                detail = f"the network is healing (a shard node is missing); retry in a moment ({exc.detail})"
                raise PeerRejected(exc.status, "healing", detail[:300]) from None
            if on_wait is not None:
                on_wait(exc)
        await asyncio.sleep(pause)
        pause = min(2 * pause, 2.0)


async def locate_through_heal(
    peers: PeerClient,
    ip: str,
    port: int,
    oid: str,
    *,
    what: str = "shard.locate",
    wait_s: float = HEAL_WAIT_S,
    on_wait: Callable[[PeerRejected], None] | None = None,
) -> dict[str, Any]:
    """``shard.locate`` (or ``shard.stat``) of oid at the node ip, through a heal (`through_heal`)."""
    return _doc(
        await through_heal(lambda: peers.post(ip, port, "/recp", what, {"id": oid}, signed_reply=True), wait_s, on_wait)
    )
