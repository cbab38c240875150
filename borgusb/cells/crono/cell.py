"""cronoTreeCell: one clock for the whole network, and the client every other cell uses.

The seed idea (BorgIOS): hardware clocks drift, so the root of the crono tree
is the reference and its time flows down the tree. Improved here:

* every node syncs with its **parent**, whose answers are already network
  time, so offsets accumulate from the root down, hop by hop;
* each hop is measured with a **four-timestamp exchange** (as NTP does, see
  `borgusb.timesync.measure`) over the receptor (`crono.time`, a signed
  request and a signed reply), and the node keeps the best of its last
  samples by round-trip time instead of trusting any one answer;
* the network clock is an **offset applied in-process** to the local
  monotonic clock (`timesync.NetworkClock`); the host clock is never
  touched. Corrections are slewed (at most 5 %) so network time never goes
  backwards, except the very first sync, which steps;
* when the root fails or is swapped, the new root simply keeps its own
  network time (already synced to the old root): no jump.

Every other cell on the machine gets network time from this cell through a
`CronoClient` (its `Clock`): a background exchange with ``crono.time`` on the
same IP every second (the cache), and, if crono stops answering, the last
offset it learned. Its monitoring status says which: ``clock.source`` is
``crono``, ``last-offset`` or ``local`` (never synced).

Reply of ``crono.time`` (integer µs): ``t2``/``t3`` (receive/send in network
time), ``synced``, ``epoch`` (bumped at every step of the answerer's clock,
so askers drop older samples), ``stratum`` (hops from the root) and
``bound_us`` (the answerer's worst-case error relative to the root).
"""

from __future__ import annotations

import asyncio
import logging
import statistics
from typing import Any

from ... import envelope
from ...dna import CellDNA
from ...net.peer import PeerError
from ...timesync import BadExchange, NetworkClock, Sample
from ..kit import Cell, receptor
from .exchange import TIME, NotSynced, Syncer, describe

log = logging.getLogger("borgusb.crono")

PRESYNC_SOURCES = 5  # contacts asked at the first sync (the median of their offsets is taken)


class CronoCell(Cell):
    """The crono tree: its root is the reference clock; everyone else follows its parent."""

    def __init__(
        self,
        dna: CellDNA,
        ip: str,
        *,
        clock: Any = None,
        poll_ms: int = 1000,
        burst: int = 8,
        per_poll: int = 3,
        **kw: Any,
    ) -> None:
        self.net_clock = clock if isinstance(clock, NetworkClock) else NetworkClock()
        super().__init__(dna, ip, clock=self.net_clock, **kw)
        self.poll_s = poll_ms / 1000
        self.burst = burst
        self.per_poll = per_poll
        self.syncer = Syncer(self.net_clock, self.peers)
        self.stratum: int | None = None
        self.bound_us: int | None = None
        self.source = "local"
        self.first_sync: dict[str, int] = {}

    async def start(self) -> None:
        await self.presync()
        await super().start()
        self._spawn(self._sync_loop())

    async def presync(self, timeout_s: float = 5.0) -> bool:
        """Take network time from a join contact before joining the tree.

        The first sync is a step (seconds, on a host whose clock is off), and
        the tree protocol's timers run on this same clock: a step while in the
        tree would look like missed heartbeats. Any synced member of the tree
        carries its network time, so the step is taken here, before the tree
        starts; afterwards the parent only ever asks for slews.

        One contact may lie, so no one contact sets the clock: every contact
        (up to `PRESYNC_SOURCES`) is sampled at once and the median offset is
        taken once at least three have answered (all of them, when there are
        fewer), so one liar among three moves nothing.
        """
        hosts = list(dict.fromkeys(c.partition(":")[0] for c in self.contacts))[:PRESYNC_SOURCES]
        if not hosts:
            return False
        want = min(3, len(hosts))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        offsets: list[int] = []
        while True:
            found = await asyncio.gather(*(self._presync_sample(host) for host in hosts))
            offsets = [s.offset_us for s in found if s is not None]
            if len(offsets) >= want or loop.time() >= deadline:
                break
            await asyncio.sleep(0.2)
        if not offsets:
            self.counters["presync_failed"] += 1
            return False
        if len(offsets) < want:
            self.counters["presync_few_sources"] += 1
            log.warning("crono first sync from %d of %d contacts (wanted %d)", len(offsets), len(hosts), want)
        how = self.net_clock.correct(statistics.median_low(offsets))
        self.counters[f"presync_{how}"] += 1
        self.first_sync = {"sources": len(offsets), "spread_ms": (max(offsets) - min(offsets)) // 1000}
        self.source = "contact"
        return True

    async def _presync_sample(self, host: str) -> Sample | None:
        try:
            return await Syncer(self.net_clock, self.peers).sample(host, self.dna.recp_port, None, self.burst)
        except (PeerError, BadExchange, NotSynced) as exc:
            log.info("crono first sync: %s: %s", host, exc)
            return None

    async def _sync_loop(self) -> None:
        while True:
            try:
                delay = await self.sync_once()
            except Exception:  # a bug must not stop time keeping; counted and logged
                self.counters["sync_errors"] += 1
                log.exception("crono sync failed")
                delay = self.poll_s
            await asyncio.sleep(delay)

    async def sync_once(self) -> float:
        """One step of the sync loop; returns the delay until the next."""
        tree = self.tree
        if tree.status == "root":
            self.net_clock.mark_synced(tree.tree_id)  # the reference: continues from its own network time
            self.syncer.forget()
            self.stratum, self.bound_us, self.source = 0, 0, "root"
            return self.poll_s
        parent = tree.parent if tree.status == "online" else None
        if parent is None:
            return 0.1
        n = self.per_poll if self.net_clock.synced and len(self.syncer.filter) else self.burst
        try:
            how = await self.syncer.round(parent.ip, self.dna.recp_port, parent.node_id, n, want_tree=tree.tree_id)
        except NotSynced:
            self.counters["parent_unsynced"] += 1
            return 0.1
        except (PeerError, BadExchange) as exc:
            self.counters["sync_failed"] += 1
            log.info("crono sync with %s: %s", parent.ip, exc)
            return min(self.poll_s, 0.25)
        self.counters[f"sync_{how}"] += 1
        info, best = self.syncer.info, self.syncer.best
        assert best is not None
        self.stratum = int(info.get("stratum") or 0) + 1
        self.bound_us = int(info.get("bound_us") or 0) + best.error_bound_us(self.net_clock.mono_us())
        self.source = "parent"
        return self.poll_s

    @receptor(TIME)
    async def _r_time(self, env: envelope.Envelope) -> Any:
        t2 = self.net_clock.now_us()
        clock = self.net_clock
        reply = {
            "synced": clock.synced and clock.reference == self.tree.tree_id,
            "tree": clock.reference,
            "epoch": clock.epoch,
            "stratum": self.stratum if self.stratum is not None else -1,
            "bound_us": self.bound_us if self.bound_us is not None else -1,
            "root": self.tree.root.node_id if self.tree.root is not None else None,
            "t2": t2,
        }
        reply["t3"] = clock.now_us()
        return reply

    def status(self) -> dict[str, Any]:
        doc = super().status()
        clock = self.net_clock
        best = self.syncer.best
        doc["clock"] = describe(clock, self.source if clock.synced else "local")
        doc["crono"] = {
            "synced": clock.synced,
            "tree": clock.reference,
            "source": self.source if clock.synced else "local",
            "stratum": self.stratum,
            "bound_us": self.bound_us,
            "epoch": clock.epoch,
            "steps": clock.steps,
            "slews": clock.slews,
            "steps_bounded": clock.steps_bounded,
            "first_sync": self.first_sync,
            "slewing_us": clock.remaining_us(),
            # network time minus this host's CLOCK_MONOTONIC: on one machine (loopback clusters)
            # every process shares that clock, so tests and benchmarks get a ground truth from it
            "mono_offset_us": clock.offset_us(),
            "last_correction_us": clock.last_correction_us,
            "best_rtt_us": best.rtt_us if best else None,
            "samples": len(self.syncer.filter),
        }
        return doc
