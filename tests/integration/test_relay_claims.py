"""A live node that claims to relay for someone else's key gets nothing for it (issue 15 item 6).

Before grants, `PeerClient.route` took a hello's bare list of relayed keys from whoever answered:
a post meant for the victim went to the liar's relay path. The liar here is a real cell whose hello
lists the victim's key (and, second, the victim's genuine grant naming its real gateway).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from borgusb import dna, envelope
from borgusb.cells.kit import Cell
from borgusb.clock import SystemClock
from borgusb.keys import SigningKey
from borgusb.net import relaygrant
from borgusb.net.peer import HELLO, PeerClient, PeerUnreachable

pytestmark = pytest.mark.slow

DNA = dna.get("peerTreeNet")
LIAR_IP = "127.0.0.93"
VICTIM, REAL_GATEWAY = SigningKey.generate(), SigningKey.generate()


class LyingGateway(Cell):
    """A cell whose hello claims relays it was never granted (what `shows` holds)."""

    shows: list[Any] = []

    def _hello(self, observed: str | None) -> bytes:
        assert self.tls is not None
        info = {"tls_sha256": self.tls.fingerprint, "cell": self.dna.name, "observed": observed, "relays": self.shows}
        return envelope.encode(envelope.sign(self.key, HELLO, info, self.clock, ip=self.ip, port=self.dna.net_port))


@pytest.fixture
async def liar() -> AsyncIterator[LyingGateway]:
    cell = LyingGateway(DNA, LIAR_IP)
    await cell.start()
    try:
        yield cell
    finally:
        await cell.stop()
        cell.key.close()


async def test_a_claim_to_relay_for_a_key_needs_that_keys_grant(liar: LyingGateway) -> None:
    clock = SystemClock()
    async with PeerClient(SigningKey.generate(), clock, envelope.Verifier(clock)) as peers:
        for shows in ([VICTIM.public_key_hex], [relaygrant.grant(VICTIM, REAL_GATEWAY.public_key_hex, clock.now_ms())]):
            liar.shows = shows
            peers.pins.clear()
            with pytest.raises(PeerUnreachable, match="does not relay for this one"):
                await peers.route(LIAR_IP, DNA.net_port, VICTIM.public_key_hex)
        # the same hello with the victim's grant naming this very gateway is taken
        liar.shows = [relaygrant.grant(VICTIM, liar.key.public_key_hex, clock.now_ms())]
        peers.pins.clear()
        pin, path = await peers.route(LIAR_IP, DNA.net_port, VICTIM.public_key_hex)
        assert pin.pubkey == liar.key.public_key_hex and path == f"/relay/{VICTIM.public_key_hex}"
