"""A STAND-IN for dogecoind: a small regtest-like chain behind dogecoind's own JSON-RPC methods.

No Dogecoin node can be installed here (none is on the package registries), so
the bridge's tests talk to this stand-in over HTTP with basic auth, through
the very RPC client that talks to a real dogecoind. It is a chain, not a mock:
a UTXO set, a mempool and blocks mined on request (``generatetoaddress``),
coinbase rewards that mature after 60 blocks, as on Dogecoin's regtest.

Every transaction it is given (``sendrawtransaction``) is validated with
**buidl**, a library the code under test does not use (that builds with
libdogecoin and python-bitcoinlib and signs with coincurve): canonical
decoding, inputs that exist and are unspent (a second spend is a conflict or
missing input), coinbase maturity, outputs within inputs, nLockTime final
against the next block's height (or the median time past), and every input's
scriptSig (push-only) and script run by buidl's interpreter: P2PKH
signatures, the P2SH redeem script of an HTLC claim or refund, OP_SHA256 of
the secret and OP_CHECKLOCKTIMEVERIFY against the transaction's nLockTime and
sequence, checked by buidl's own ECDSA. A refusal carries dogecoind's error
code and reject message (``-26`` ``64: non-final``, ``16:
mandatory-script-verify-flag-failed (...)``, ``-25`` ``Missing inputs`` ...).

Methods: getblockcount, getblockhash, getblock (verbose), getrawtransaction
(raw or verbose), sendrawtransaction, generatetoaddress, getnetworkinfo,
getblockchaininfo. `calls` counts each method; `fail_next` makes the next
calls fail with HTTP 503 (a node that is briefly unavailable), `lie_next` makes
them answer something else (a node gone wrong); `chain.invalidate`
takes blocks off the tip (a reorganisation, once others are mined).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from buidl.helper import hash256, int_to_little_endian, raw_decode_base58
from buidl.script import P2PKHScriptPubKey, P2SHScriptPubKey, Script
from buidl.tx import Tx, TxIn, TxOut

COIN = 100_000_000
REWARD = 500_000 * COIN  # Dogecoin's regtest block reward
MATURITY = 60  # Dogecoin regtest's coinbase maturity
MAX_MONEY = 10_000_000_000 * COIN
LOCKTIME_THRESHOLD = 500_000_000
FINAL = 0xFFFFFFFF
P2PKH_VERSION, P2SH_VERSION = 0x6F, 0xC4  # regtest


class RpcFailure(Exception):
    """A refusal as dogecoind words it: an RPC error code and a message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass
class Coin:
    script: bytes
    amount: int
    height: int  # -1: in the mempool
    coinbase: bool


@dataclass
class Block:
    hash: str
    height: int
    time: int
    prev: str | None
    txids: list[str]
    txs: list[Tx]


@dataclass
class Chain:
    """The chain's state and rules (no I/O)."""

    blocks: list[Block] = field(default_factory=list)
    txs: dict[str, tuple[bytes, int | None]] = field(default_factory=dict)  # txid -> (raw, height or None)
    utxos: dict[tuple[str, int], Coin] = field(default_factory=dict)
    mempool: dict[str, Tx] = field(default_factory=dict)
    mempool_coins: dict[tuple[str, int], Coin] = field(default_factory=dict)
    mempool_spent: dict[tuple[str, int], str] = field(default_factory=dict)
    rejected: Counter[str] = field(default_factory=Counter)
    mined: int = 0  # blocks ever mined: a block mined again at a height (after `invalidate`) differs
    time_offset_s: int = 0  # `advance_time`: block times run this far ahead of the wall clock

    def __post_init__(self) -> None:
        genesis = self._coinbase(0, Script([0x6A]).raw_serialize())  # unspendable, as the genesis output is
        self._add_block([genesis], index_coinbase=False)

    # ------------------------------------------------------------ reading

    @property
    def tip(self) -> int:
        return self.blocks[-1].height

    def advance_time(self, seconds: int) -> None:
        """Blocks mined from now on are dated this much later (time locks, without waiting)."""
        self.time_offset_s += seconds

    def median_time_past(self) -> int:
        return mtp(self.blocks[-11:])

    # ------------------------------------------------------------ mining

    def _coinbase(self, height: int, script: bytes) -> Tx:
        self.mined += 1
        sig = Script([int_to_little_endian(height, 4), b"borgusb stand-in", int_to_little_endian(self.mined, 4)])
        txin = TxIn(prev_tx=b"\x00" * 32, prev_index=FINAL, script_sig=sig)
        return Tx(1, [txin], [TxOut(REWARD, Script.parse(raw=script))], 0)

    def _add_block(self, txs: list[Tx], index_coinbase: bool = True) -> Block:
        height = len(self.blocks)
        prev = self.blocks[-1].hash if self.blocks else None
        txids = [t.id() for t in txs]
        header = (prev or "0" * 64).encode() + int_to_little_endian(height, 4) + "".join(txids).encode()
        # dated by the wall clock (plus `advance_time`), always after the block before, as miners date them
        when = max(int(time.time()) + self.time_offset_s, self.blocks[-1].time + 1 if self.blocks else 0)
        block = Block(hash256(header)[::-1].hex(), height, when, prev, txids, txs)
        self._apply(block, index_coinbase)
        self.blocks.append(block)
        return block

    def _apply(self, block: Block, index_coinbase: bool = True) -> None:
        height = block.height
        for n, tx in enumerate(block.txs):
            txid = block.txids[n]
            if n == 0 and not index_coinbase:
                continue
            for tin in [] if tx.is_coinbase() else tx.tx_ins:
                self.utxos.pop((tin.prev_tx.hex(), tin.prev_index), None)
            for vout, out in enumerate(tx.tx_outs):
                self.utxos[(txid, vout)] = Coin(out.script_pubkey.raw_serialize(), out.amount, height, n == 0)
            self.txs[txid] = (tx.serialize(), height)

    def invalidate(self, count: int) -> None:
        """Take the last count blocks off the chain (a reorganisation once others are mined in their
        place): their transactions are gone, the mempool is emptied, the UTXO set is replayed."""
        assert 0 < count < len(self.blocks)
        del self.blocks[-count:]
        self.utxos.clear()
        self.txs.clear()
        self.mempool.clear()
        self.mempool_coins.clear()
        self.mempool_spent.clear()
        for block in self.blocks:
            self._apply(block, index_coinbase=block.height > 0)

    def generate(self, count: int, address: str) -> list[str]:
        script = address_script(address)
        hashes = []
        for _ in range(count):
            txs = [self._coinbase(self.tip + 1, script), *self.mempool.values()]
            self.mempool.clear()
            self.mempool_coins.clear()
            self.mempool_spent.clear()
            hashes.append(self._add_block(txs).hash)
        return hashes

    # ------------------------------------------------------------ validation

    def _reject(self, code: int, message: str) -> RpcFailure:
        self.rejected[message.split(" (")[0]] += 1
        return RpcFailure(code, message)

    def submit(self, raw_hex: str) -> str:
        """Validate and take a transaction into the mempool; its txid, or `RpcFailure` as dogecoind says it."""
        try:
            raw = bytes.fromhex(raw_hex)
            stream = io.BytesIO(raw)
            tx = Tx.parse(stream)
            rest = stream.read()
        except Exception:  # buidl raises several types on bad bytes
            raise self._reject(-22, "TX decode failed") from None
        if rest or tx.segwit or tx.serialize() != raw:
            raise self._reject(-22, "TX decode failed")
        txid = tx.id()
        if txid in self.mempool:
            return txid
        if txid in self.txs:
            raise self._reject(-27, "transaction already in block chain")
        if not tx.tx_ins:
            raise self._reject(-26, "16: bad-txns-vin-empty")
        if not tx.tx_outs:
            raise self._reject(-26, "16: bad-txns-vout-empty")
        if tx.is_coinbase():
            raise self._reject(-26, "16: coinbase")
        outpoints = [(t.prev_tx.hex(), t.prev_index) for t in tx.tx_ins]
        if len(set(outpoints)) != len(outpoints):
            raise self._reject(-26, "16: bad-txns-inputs-duplicate")
        total_out = sum(o.amount for o in tx.tx_outs)
        if any(o.amount > MAX_MONEY for o in tx.tx_outs) or total_out > MAX_MONEY:
            raise self._reject(-26, "16: bad-txns-vout-toolarge")
        coins = []
        for op in outpoints:
            if op in self.mempool_spent:
                raise self._reject(-26, "18: txn-mempool-conflict")
            coin = self.utxos.get(op) or self.mempool_coins.get(op)
            if coin is None:
                raise self._reject(-25, "Missing inputs")
            if coin.coinbase and self.tip + 1 - coin.height < MATURITY:
                raise self._reject(-26, "16: bad-txns-premature-spend-of-coinbase")
            coins.append(coin)
        if total_out > sum(c.amount for c in coins):
            raise self._reject(-26, "16: bad-txns-in-belowout")
        if tx.locktime != 0 and any(t.sequence != FINAL for t in tx.tx_ins):
            limit = self.tip + 1 if tx.locktime < LOCKTIME_THRESHOLD else self.median_time_past()
            if not tx.locktime < limit:
                raise self._reject(-26, "64: non-final")
        for n, (tin, coin) in enumerate(zip(tx.tx_ins, coins)):
            if not all(isinstance(c, bytes) or c <= 0x60 for c in tin.script_sig.commands):
                raise self._reject(-26, "16: mandatory-script-verify-flag-failed (Only push operators allowed)")
            # buidl reads the spent output from these (else it would fetch it from the Internet)
            tin._script_pubkey = Script.parse(raw=coin.script)
            tin._value = coin.amount
            said = io.StringIO()
            try:
                with contextlib.redirect_stdout(said):
                    ok = bool(tx.verify_input(n))
            except Exception as exc:  # a malformed signature or key makes buidl raise
                ok, said = False, io.StringIO(f"{exc.__class__.__name__}: {exc}")
            if not ok:
                why = said.getvalue().strip().splitlines()[-1:] or ["false top stack element"]
                raise self._reject(-26, f"16: mandatory-script-verify-flag-failed ({why[0]})")
        self.mempool[txid] = tx
        for op in outpoints:
            self.mempool_spent[op] = txid
        for vout, out in enumerate(tx.tx_outs):
            self.mempool_coins[(txid, vout)] = Coin(out.script_pubkey.raw_serialize(), out.amount, -1, False)
        self.txs[txid] = (raw, None)
        return txid


def mtp(blocks: list[Block]) -> int:
    """The median time past of up to 11 blocks, as Dogecoin Core takes it (the upper middle)."""
    times = sorted(b.time for b in blocks)
    return times[len(times) // 2]


def address_script(address: str) -> bytes:
    """The output script of a regtest address (buidl's base58check)."""
    try:
        raw = raw_decode_base58(address)
    except Exception:  # bad characters or checksum
        raise RpcFailure(-5, "Invalid address") from None
    if len(raw) != 21 or raw[0] not in (P2PKH_VERSION, P2SH_VERSION):
        raise RpcFailure(-5, "Invalid address")
    kind = P2PKHScriptPubKey if raw[0] == P2PKH_VERSION else P2SHScriptPubKey
    return kind(raw[1:]).raw_serialize()


class DogecoindStandin:
    """The chain behind dogecoind's JSON-RPC over HTTP with basic auth."""

    def __init__(self, user: str, password: str) -> None:
        self.chain = Chain()
        self.user, self.password = user, password
        self.calls: Counter[str] = Counter()
        self._auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self._failures: dict[str, int] = {}
        self._lies: dict[str, list[Any]] = {}
        self._runner: web.AppRunner | None = None
        self.url = ""

    def fail_next(self, method: str, count: int) -> None:
        """The next count calls of method answer HTTP 503 (a node briefly unavailable)."""
        self._failures[method] = count

    def lie_next(self, method: str, *results: Any) -> None:
        """The next calls of method answer these results instead of the truth (a node gone wrong)."""
        self._lies[method] = list(results)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(client_max_size=4 << 20)
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0][1]
        self.url = f"http://{host}:{bound}/"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != self._auth:
            return web.Response(status=401)
        try:
            body = json.loads(await request.read())
            method, params, ident = body["method"], body.get("params", []), body.get("id")
        except (ValueError, KeyError, TypeError):
            return web.json_response({"result": None, "error": {"code": -32700, "message": "Parse error"}}, status=500)
        self.calls[method] += 1
        if self._failures.get(method, 0) > 0:
            self._failures[method] -= 1
            return web.Response(status=503, text="stand-in: briefly unavailable")
        if self._lies.get(method):
            return web.json_response({"result": self._lies[method].pop(0), "error": None, "id": ident})
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            error = {"code": -32601, "message": "Method not found"}
            return web.json_response({"result": None, "error": error, "id": ident}, status=404)
        try:
            result = handler(*params)
        except RpcFailure as exc:
            error = {"code": exc.code, "message": exc.message}
            return web.json_response({"result": None, "error": error, "id": ident}, status=500)
        except TypeError:
            error = {"code": -1, "message": f"{method}: bad parameters"}
            return web.json_response({"result": None, "error": error, "id": ident}, status=500)
        return web.json_response({"result": result, "error": None, "id": ident})

    # ------------------------------------------------------------ the methods

    def _m_getblockcount(self) -> int:
        return self.chain.tip

    def _m_getblockhash(self, height: int) -> str:
        if not isinstance(height, int) or not 0 <= height <= self.chain.tip:
            raise RpcFailure(-8, "Block height out of range")
        return self.chain.blocks[height].hash

    def _block(self, blockhash: str) -> Block:
        for block in reversed(self.chain.blocks):
            if block.hash == blockhash:
                return block
        raise RpcFailure(-5, "Block not found")

    def _m_getblock(self, blockhash: str, verbose: bool = True) -> dict[str, Any]:
        if not verbose:
            raise RpcFailure(-8, "this stand-in serves verbose blocks only")
        block = self._block(blockhash)
        doc: dict[str, Any] = {
            "hash": block.hash,
            "height": block.height,
            "confirmations": self.chain.tip - block.height + 1,
            "time": block.time,
            "mediantime": self._mtp(block.height),
            "tx": list(block.txids),
        }
        if block.prev is not None:
            doc["previousblockhash"] = block.prev
        return doc

    def _m_getrawtransaction(self, txid: str, verbose: int | bool = 0) -> Any:
        found = self.chain.txs.get(txid)
        if found is None:
            raise RpcFailure(-5, "No such mempool or blockchain transaction")
        raw, height = found
        if not verbose:
            return raw.hex()
        doc: dict[str, Any] = {"txid": txid, "hex": raw.hex()}
        if height is not None:
            block = self.chain.blocks[height]
            doc |= {"blockhash": block.hash, "confirmations": self.chain.tip - height + 1, "blocktime": block.time}
        return doc

    def _m_sendrawtransaction(self, raw_hex: str) -> str:
        return self.chain.submit(raw_hex)

    def _m_generatetoaddress(self, count: int, address: str) -> list[str]:
        if not isinstance(count, int) or not 0 < count <= 1000:
            raise RpcFailure(-8, "count is from 1 to 1000")
        return self.chain.generate(count, address)

    def _m_getnetworkinfo(self) -> dict[str, Any]:
        return {"version": 1140700, "subversion": "/Shibetoshi:1.14.7(borgusb stand-in)/", "connections": 0}

    def _m_getblockchaininfo(self) -> dict[str, Any]:
        return {
            "chain": "regtest",
            "blocks": self.chain.tip,
            "bestblockhash": self.chain.blocks[-1].hash,
            "mediantime": self.chain.median_time_past(),
        }

    def _mtp(self, height: int) -> int:
        return mtp(self.chain.blocks[max(0, height - 10) : height + 1])
