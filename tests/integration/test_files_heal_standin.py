"""The file manager's read waits through a heal (issue 20: "Reads during a heal", for every reader).

A real shardTreeCell process holds the object. The reader asks a stand-in shard cell (a real
`Cell` in this process on its own loopback address, so a real signed, TLS-pinned peer) that
refuses ``shard.locate`` as ``healing`` a few times, as a shard cell does while its tree heals
(provoking that on real nodes takes a minute and is not deterministic: test_shard_heal.py does
it), then answers with what the real node answers. `FileTree.get_path` asks again with backoff
and gets the bytes from the real holder; a stand-in that never stops healing ends, past the
reader's bounded wait, as a ``healing`` refusal that says to retry, never as "not found".

Run under ``flock /tmp/borgusb-cluster.lock`` (fixed 127.0.0.x ports).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from borgusb import dna
from borgusb.cells.kit import Cell, RequestError, receptor
from borgusb.envelope import Envelope
from borgusb.files import remote
from borgusb.files.remote import FileTree
from borgusb.keys import SigningKey
from borgusb.net.peer import PeerRejected
from tests.integration.test_shard_cluster import PORT, client, put_bytes, start

pytestmark = pytest.mark.slow

STANDIN_IP = "127.0.0.9"  # beside the one-node cluster's 127.0.0.2


class HealingShardStandin(Cell):
    """Stand-in for a healing shard cell: refuses the first `refusals` locates as ``healing``
    (`None`: every one), then forwards each to the real shard node at `real`."""

    def __init__(self, real: str, refusals: int | None) -> None:
        super().__init__(dna.get("shardTreeCell"), STANDIN_IP)
        self.real, self.refusals = real, refusals
        self.healing = self.answered = 0

    @receptor("shard.locate")
    async def _r_locate(self, env: Envelope) -> Any:
        if self.refusals is None or self.healing < self.refusals:
            self.healing += 1
            raise RequestError("healing", "the network is healing and not every holder answered: retry", 503)
        self.answered += 1
        return await self.peers.post(self.real, PORT, "/recp", "shard.locate", env.payload, signed_reply=True)


async def test_file_read_retries_on_healing_then_gets_the_bytes(make_cluster, monkeypatch, tmp_path) -> None:
    cluster = await start(make_cluster, monkeypatch, tmp_path, 1)
    real = cluster.nodes[0].ip
    key = SigningKey.generate()
    data = os.urandom(70_000)
    oid = (await put_bytes(real, data, key, tmp_path, r=1))["id"]

    standin = HealingShardStandin(real, refusals=3)
    await standin.start()
    try:
        async with client(key) as peers:
            tree = FileTree(peers, STANDIN_IP, key, machine="test", tmp=tmp_path)
            try:
                await tree.get_path(oid, tmp_path / "out")
            finally:
                tree.close()
        assert (tmp_path / "out").read_bytes() == data
        assert (standin.healing, standin.answered) == (3, 1)
    finally:
        await standin.stop()

    monkeypatch.setattr(remote, "READ_WAIT_S", 1.0)  # the reader's bound, shortened for the test
    standin = HealingShardStandin(real, refusals=None)
    await standin.start()
    try:
        async with client(key) as peers:
            tree = FileTree(peers, STANDIN_IP, key, machine="test", tmp=tmp_path)
            try:
                with pytest.raises(PeerRejected) as refused:
                    await tree.get_path(oid, tmp_path / "never")
            finally:
                tree.close()
        assert refused.value.reason == "healing" and "retry" in refused.value.detail
        assert standin.healing >= 2 and standin.answered == 0
        assert not (tmp_path / "never").exists()
    finally:
        await standin.stop()
