"""The bridge's parts without a cell process: the SQLite store (a deposit once, its credit once, also
after reopening; a reorg undoes only what was not credited) and the JSON-RPC client against the
dogecoind stand-in (dogecoind's error codes as `RpcError`, bounded replies, auth, timeouts)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from aiohttp import web

from borgusb.cells.dogenode.store import BridgeStore, StoreVersion, Watch
from borgusb.doge.rpc import DogeRpc, RpcAuthError, RpcError, RpcUnavailable
from borgusb.doge.scan import Output, Spend
from tests.standins.dogecoind_standin import DogecoindStandin

A = "ab" * 32
B = "cd" * 32


def test_a_deposit_is_one_row_and_its_credit_happens_once_even_after_reopening(tmp_path: Path) -> None:
    path = tmp_path / "bridge.sqlite"
    db = BridgeStore(path)
    assert db.scanned() is None
    db.start_at(9)
    assert db.add_watch(Watch("addr1", "owner", b""), 1) and not db.add_watch(Watch("addr1", "owner", b""), 2)
    deposit = Output(A, 0, "addr1", 5 * 10**8, False)
    assert db.block_done(10, "h10", [deposit], [], 100) == 1
    assert db.block_done(10, "h10", [deposit], [], 200) == 0  # read again (a rescan): still one row
    assert db.uncredited(10) == [f"{A}:0"] and db.uncredited(9) == []
    assert db.credit(f"{A}:0", 300) is True
    assert db.credit(f"{A}:0", 400) is False
    db.block_done(11, "h11", [], [Spend(A, 0, B)], 500)
    db.close()

    db = BridgeStore(path)
    assert db.scanned() == 11 and db.block_hash(11) == "h11"
    assert db.credit(f"{A}:0", 600) is False
    (row,) = db.deposits("addr1", 10)
    assert (row["credited"], row["credited_ms"], row["seen_ms"], row["spent_by"]) == (True, 300, 100, B)
    assert db.counts() == {"deposits": 1, "credited": 1, "watches": 1}
    db.close()


def test_a_block_that_left_the_chain_takes_only_uncredited_deposits_with_it(tmp_path: Path) -> None:
    db = BridgeStore(tmp_path / "bridge.sqlite")
    db.start_at(0)
    db.block_done(1, "h1", [Output(A, 0, "x", 10**8, False)], [], 1)
    db.block_done(2, "h2", [Output(B, 0, "x", 10**8, False), Output(B, 1, "x", 10**8, False)], [], 2)
    db.credit(f"{B}:1", 3)
    db.undo_block(2)
    assert db.scanned() == 1 and db.block_hash(2) is None
    assert sorted((d["txid"], d["vout"]) for d in db.deposits("x", 10)) == [(A, 0), (B, 1)]
    db.close()


def test_a_store_of_a_newer_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bridge.sqlite"
    BridgeStore(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE meta SET value = '99' WHERE key = 'version'")
    with pytest.raises(StoreVersion):
        BridgeStore(path)


async def test_rpc_client_maps_the_nodes_answers() -> None:
    node = DogecoindStandin("u", "p")
    url = await node.start()
    rpc = DogeRpc(url, "u", "p")
    try:
        assert await rpc.call("getblockcount") == 0
        assert (await rpc.call("getblockchaininfo"))["chain"] == "regtest"
        with pytest.raises(RpcError) as err:
            await rpc.call("sendrawtransaction", "00")
        assert (err.value.code, err.value.message) == (-22, "TX decode failed")
        with pytest.raises(RpcError) as err:
            await rpc.call("nosuchmethod")
        assert err.value.code == -32601
        wrong = DogeRpc(url, "u", "wrong")
        with pytest.raises(RpcAuthError):
            await wrong.call("getblockcount")
        await wrong.close()
        small = DogeRpc(url, "u", "p", max_reply=20)
        with pytest.raises(RpcUnavailable, match="over 20 bytes"):
            await small.call("getblockchaininfo")
        await small.close()
        node.fail_next("getblockcount", 1)
        with pytest.raises(RpcUnavailable, match="HTTP 503"):
            await rpc.call("getblockcount")
    finally:
        await rpc.close()
        await node.stop()
    gone = DogeRpc(url, "u", "p")
    with pytest.raises(RpcUnavailable):  # nobody listens there any more
        await gone.call("getblockcount")
    await gone.close()


async def test_rpc_client_gives_up_on_a_silent_node() -> None:
    released = asyncio.Event()

    async def silent(request: web.Request) -> web.Response:
        await released.wait()
        return web.Response()

    app = web.Application()
    app.router.add_post("/", silent)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    rpc = DogeRpc(f"http://127.0.0.1:{port}/", "u", "p", timeout_s=0.3)
    try:
        with pytest.raises(RpcUnavailable, match="Timeout"):
            await rpc.call("getblockcount")
    finally:
        released.set()
        await rpc.close()
        await runner.cleanup()
