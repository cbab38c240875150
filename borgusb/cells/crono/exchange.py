"""The four-timestamp exchange with a crono receptor, and the Syncer that follows one time source."""

from __future__ import annotations

import asyncio
from typing import Any

from ... import dna as dna_table
from ...net.peer import PeerClient
from ...timesync import BadExchange, NetworkClock, Sample, SampleFilter, measure

TIME = "crono.time"
CRONO = dna_table.get("cronoTreeCell")


class NotSynced(Exception):
    """The answerer has no network time yet."""


def _reply_ints(reply: Any) -> dict[str, Any]:
    if not isinstance(reply, dict):
        raise BadExchange("the reply is not an object")
    for name in ("t2", "t3", "epoch"):
        v = reply.get(name)
        if not isinstance(v, int) or isinstance(v, bool):
            raise BadExchange(f"the reply's {name} is not an integer")
    return reply


async def exchange(
    peers: PeerClient, ip: str, port: int = CRONO.recp_port, *, mono: Any, expect_pubkey: str | None = None
) -> tuple[Sample, dict[str, Any]]:
    """One four-timestamp exchange with the crono receptor at ip:port.

    ``t1`` is read before the request is signed and ``t4`` after the reply is
    verified, so each direction carries one signature and one verification:
    the two paths stay symmetric and the RTT/2 bound holds.

    The request goes by `PeerClient.post` (its one pinned POST, which keeps the connection:
    a TLS handshake on the way out only would skew the offset), ``direct`` (a relay's extra
    hop is not part of the path measured) and after the hello, which is not part of it either.
    """
    await peers.pin_for(ip, port, expect_pubkey)  # a first hello is not part of the exchange
    t1 = mono()
    reply = await peers.post(ip, port, "/recp", TIME, {}, expect_pubkey=expect_pubkey, signed_reply=True, direct=True)
    t4 = mono()
    info = _reply_ints(reply)
    return measure(t1, info["t2"], info["t3"], t4), info


class Syncer:
    """Follows one time source (a parent's or the local crono cell) into a NetworkClock."""

    def __init__(self, clock: NetworkClock, peers: PeerClient) -> None:
        self.clock = clock
        self.peers = peers
        self.filter = SampleFilter()
        self.source: tuple[str, int, str | None] | None = None
        self.epoch: int | None = None
        self.info: dict[str, Any] = {}
        self.best: Sample | None = None

    def forget(self) -> None:
        self.filter.clear()
        self.source = self.epoch = self.best = None
        self.info = {}

    async def sample(self, ip: str, port: int, pubkey: str | None, n: int, *, gap_s: float = 0.005) -> Sample:
        """The best of n exchanges with one source that has network time, without correcting anything
        (the first sync takes several sources' samples and agrees on one)."""
        kept = SampleFilter()
        for i in range(n):
            if i and gap_s:
                await asyncio.sleep(gap_s)
            sample, info = await exchange(self.peers, ip, port, mono=self.clock.mono_us, expect_pubkey=pubkey)
            if not info.get("synced"):
                raise NotSynced(f"{ip}:{port} has no network time yet")
            kept.add(sample)
        best = kept.best(self.clock.mono_us())
        assert best is not None
        return best

    async def round(
        self, ip: str, port: int, pubkey: str | None, n: int, *, want_tree: str | None = None, gap_s: float = 0.005
    ) -> str:
        """n exchanges with the source, then one correction from the best sample kept.

        ``want_tree``: the source must carry that tree's network time (a parent
        still moving between trees is not asked)."""
        key = (ip, port, pubkey)
        if key != self.source:
            self.forget()
            self.source = key
        for i in range(n):
            if i and gap_s:
                await asyncio.sleep(gap_s)
            sample, info = await exchange(self.peers, ip, port, mono=self.clock.mono_us, expect_pubkey=pubkey)
            if not info.get("synced") or (want_tree is not None and info.get("tree") != want_tree):
                raise NotSynced(f"{ip}:{port} has no network time (of this tree) yet")
            if info["epoch"] != self.epoch:  # the source stepped: older samples are void
                self.filter.clear()
                self.epoch = info["epoch"]
            self.filter.add(sample)
            self.info = info
        best = self.filter.best(self.clock.mono_us())
        assert best is not None
        self.best = best
        tree = self.info.get("tree")
        return self.clock.correct(best.offset_us, reference=tree if isinstance(tree, str) else None)


def describe(clock: NetworkClock, source: str) -> dict[str, Any]:
    """The monPort ``clock`` section (integers only: status is also a signed reply)."""
    off = clock.offset_from_wall_us()
    last = clock.last_sync_mono_us
    return {
        "source": source,
        "offset_us": off,
        "offset_ms": off // 1000 if off >= 0 else -((-off) // 1000),
        "age_ms": None if last is None else (clock.mono_us() - last) // 1000,
    }
