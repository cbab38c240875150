"""peerPaysCell's receptors under hostile payloads, on cells whose view has five members.

tests/fuzz fuzzes every cell type as a lone root, where a ledger cell refuses nearly everything as
``too_few_members``; here the five cells of tests/unit/test_peerpays_cell.py hold each other's
accounts, so shaped payloads (tests/fuzz/peerpays_shapes.py) reach the holder's deep paths. Every
answer is a signed reply or a typed refusal, never ``internal``.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from borgusb import canonical
from borgusb.net.peer import PeerRejected
from tests.fuzz.peerpays_shapes import PAY_RECEPTORS
from tests.fuzz.strategies import fixed_key, fuzz_settings

from .test_peerpays_cell import Net, make_cell, post

TYPES = sorted(PAY_RECEPTORS)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, Any, int]:
    mtype = draw(st.sampled_from(TYPES))
    return mtype, draw(PAY_RECEPTORS[mtype]), draw(st.integers(0, 4))


@fuzz_settings(300)
@given(seq=st.lists(requests(), min_size=1, max_size=4))
def test_hostile_requests_get_a_reply_or_a_typed_refusal(seq: list[tuple[str, Any, int]]) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory(prefix="borgusb-payfuzz-") as tmp:
            cells = [make_cell(i, Path(tmp)) for i in range(5)]
            Net(cells)
            try:
                for mtype, payload, entry in seq:
                    try:
                        canonical.check(payload)
                    except canonical.CanonicalError:
                        continue
                    try:
                        await asyncio.wait_for(post(fixed_key("requester"), cells[entry], mtype, payload), 30)
                    except PeerRejected as exc:
                        assert exc.reason != "internal", (mtype, payload, exc)
                assert all(c.counters["receptor_errors"] == 0 for c in cells)
            finally:
                for c in cells:
                    await c.peers.close()
                    c.ledger.close()

    asyncio.run(main())
