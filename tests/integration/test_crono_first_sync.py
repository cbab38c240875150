"""The first sync agrees across contacts: one lying time source among three moves nothing (issue 15 item 7).

Real crono cells in this process on their own loopback addresses (each its own tree's root, so each
answers with network time); the liar's network time is 20 s ahead of the host's clock: as far as a
liar can go, since its signed replies must still be fresh (±30 s) on the newcomer's own clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from borgusb import dna
from borgusb.cells.crono.cell import CronoCell
from borgusb.timesync import US_PER_S, NetworkClock

pytestmark = pytest.mark.slow

DNA = dna.get("cronoTreeCell")
HONEST = ("127.0.0.81", "127.0.0.82")
LIAR = "127.0.0.83"
NEWCOMER = "127.0.0.84"
LIE_US = 20 * US_PER_S


def lying() -> int:
    return time.time_ns() // 1000 + LIE_US


@pytest.fixture
async def cells() -> AsyncIterator[Callable[..., CronoCell]]:
    made: list[CronoCell] = []

    def make(ip: str, **kw: object) -> CronoCell:
        cell = CronoCell(DNA, ip, poll_ms=200, heartbeat_ms=300, **kw)  # type: ignore[arg-type]
        made.append(cell)
        return cell

    yield make
    for cell in made:
        await cell.stop()
        cell.key.close()


async def answering(cell: CronoCell, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not (cell.net_clock.synced and cell.tree.status == "root"):
        assert time.monotonic() < deadline, f"{cell.ip} never became a synced root"
        await asyncio.sleep(0.05)


async def test_one_lying_contact_of_three_does_not_set_the_first_sync(cells) -> None:
    sources = [cells(ip) for ip in HONEST] + [cells(LIAR, clock=NetworkClock(wall=lying))]
    for cell in sources:
        await cell.start()
    for cell in sources:
        await answering(cell)
    liar_ahead_us = sources[-1].net_clock.now_us() - time.time_ns() // 1000
    assert abs(liar_ahead_us - LIE_US) < US_PER_S  # the liar is 20 s ahead of this host

    newcomer = cells(NEWCOMER, contacts=[LIAR, *HONEST])  # the liar first: it used to be the one asked
    assert await newcomer.presync(timeout_s=30)
    assert abs(newcomer.net_clock.offset_from_wall_us()) < US_PER_S // 2
    assert newcomer.first_sync["sources"] == 3
    assert newcomer.first_sync["spread_ms"] >= LIE_US // 1000 - 1000  # it heard the liar, and outvoted it
    assert newcomer.counters["presync_step"] == 1


async def test_with_fewer_contacts_than_three_all_of_them_are_asked(cells) -> None:
    sources = [cells(ip) for ip in HONEST]
    for cell in sources:
        await cell.start()
    for cell in sources:
        await answering(cell)
    newcomer = cells(NEWCOMER, contacts=list(HONEST))
    assert await newcomer.presync(timeout_s=30)
    assert newcomer.first_sync["sources"] == 2 and newcomer.counters["presync_few_sources"] == 0
