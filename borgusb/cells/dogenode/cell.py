"""dogeNodeCell: the bridge between BorgUSB and a Dogecoin node (dogecoind's JSON-RPC).

* **Watching**: ``doge.watch`` adds an address, only for its owner: the
  request's signer must be the key whose P2PKH address it is, or a key an
  HTLC's script names (with the script, for its P2SH address). Any other is
  refused ``not_owner`` and counted. Keys are free, so the table is also
  guarded per network address: at most ``new_watches_per_hour`` new
  addresses from one (``rate_limited``), 64 per key, ``max_watches`` in all.
* **Scanning**: every ``poll_ms`` the cell reads each new block (getblockhash,
  getblock, getrawtransaction of each txid; the bytes are read here and must
  hash to their txid), records outputs to watched addresses and spends of
  them, and steps back over a block that left the best chain. Each block's
  findings and the new scan position are one SQLite transaction.
* **Crediting**: a deposit with ``min_confirmations`` is credited exactly once
  (`BridgeStore.credit`), also across a restart or a rescan.
* **Broadcasting**: ``doge.broadcast`` hands a signed transaction to the node.
  A refusal is ``tx_rejected`` with the node's code and message and is not
  tried again; a node that does not answer is tried ``broadcast_attempts``
  times with doubling waits, then ``node_unavailable``.
* **The bridge reward**: ``doge.voucher`` keeps a swap party's voucher that this bridge served its
  funding, claim or refund; ``doge.earn`` (and a loop, setting ``earn``) claims the reward of each
  once its transaction is confirmed (`earnings.BridgeEarnings`).
* With no RPC URL every request is refused ``no_node`` ("no Dogecoin node
  configured"); the cell still starts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bitcoin.core import CTransaction, b2lx, x

from ... import envelope
from ...dna import CellDNA
from ...doge.address import BadAddress, p2pkh_address, script_pubkey
from ...doge.htlc import HtlcError, htlc_address, parse_htlc
from ...doge.params import net
from ...doge.rpc import DogeRpc, RpcError, RpcUnavailable
from ...doge.scan import ScanError, read_tx, scan_tx
from ..kit import Cell, RequestError, receptor
from ..kit.guard import TokenBuckets, remote_address
from .earnings import BridgeEarnings
from .settings import DogeNodeSettings
from .store import BridgeStore, Watch

log = logging.getLogger("borgusb.dogenode")

NO_NODE = "no Dogecoin node configured"
BLOCKS_PER_ROUND = 50  # blocks read before the cell credits and sleeps again
MAX_WATCHES_PER_OWNER = 64
MAX_RATE_ADDRESSES = 4096  # network addresses whose new watches are counted at once
MAX_TX_HEX = 200_000  # dogecoind's standard transactions are at most 100 kB
ALREADY_IN_CHAIN = -27  # RPC_VERIFY_ALREADY_IN_CHAIN
TRANSIENT_CODES = {-28, -9, -10}  # warming up, not connected, in initial download
NOT_FOUND = -5  # RPC_INVALID_ADDRESS_OR_KEY: no such transaction


def _text(payload: Any, name: str, limit: int) -> str:
    value = payload.get(name) if isinstance(payload, dict) else None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise RequestError("malformed", f"{name} must be a text of 1 to {limit} characters")
    return value


def _txid(payload: Any) -> str:
    value = _text(payload, "txid", 64)
    if len(value) != 64 or set(value) - set("0123456789abcdef"):
        raise RequestError("malformed", "txid must be 64 lowercase hex digits")
    return value


class DogeNodeCell(Cell):
    """A Cell that watches, reads and writes the Dogecoin chain through one node."""

    settings: DogeNodeSettings

    def __init__(self, dna: CellDNA, ip: str, **kw: Any) -> None:
        settings = kw.get("settings")
        if not isinstance(settings, DogeNodeSettings):
            settings = kw["settings"] = DogeNodeSettings.from_sources()
        self.net = net(settings.network).name  # an unknown network stops the cell before it binds a port
        if "@" in settings.rpc_url.split("//", 1)[-1].split("/", 1)[0]:
            raise ValueError("dogeNodeCell --rpc-url: give the user and password as their own settings")
        if kw.get("data_dir") is None:
            root = settings.data_root or ("/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir())
            kw["data_dir"] = Path(root) / f"borgusb-{dna.name}-{ip}"
        super().__init__(dna, ip, **kw)
        self.rpc: DogeRpc | None = None
        self.db: BridgeStore | None = None  # only with a node: a bridge without one keeps nothing
        self.watched: dict[bytes, str] = {}  # output script -> the watched address it pays
        per_hour = settings.new_watches_per_hour
        self.new_watches = TokenBuckets(per_hour / 3600, per_hour, MAX_RATE_ADDRESSES)  # per network address
        if settings.rpc_url:
            self.rpc = DogeRpc(settings.rpc_url, settings.rpc_user, settings.rpc_password)
            assert self.data_dir is not None
            Path(self.data_dir).mkdir(parents=True, exist_ok=True)
            self.db = BridgeStore(Path(self.data_dir) / f"bridge-{self.net}.sqlite")
            if settings.rescan_from >= 0:
                self.db.start_at(settings.rescan_from - 1)
            self.watched = {script_pubkey(w.address, self.net): w.address for w in self.db.watches()}
        self.earnings: BridgeEarnings | None = None
        if self.db is not None:
            self.earnings = BridgeEarnings(
                self.db, self.key, self.peers, ip, self.counters, self._now_ms,
                self._confirmations, settings.min_confirmations,
            )  # fmt: skip
        self.tip: int | None = None
        self.node_state = "not configured" if self.rpc is None else "unknown"
        self.node_error = ""

    async def on_start(self) -> None:
        if self.rpc is not None:
            self._spawn(self._scan_loop())
        if self.earnings is not None and self.settings.earn:
            self._spawn(self.earnings.loop())

    async def on_stop(self) -> None:
        if self.rpc is not None:
            await self.rpc.close()
        if self.db is not None:
            self.db.close()

    def status(self) -> dict[str, Any]:
        doc = super().status()
        doc["settings"] = {**doc["settings"], "rpc_password": "set" if self.settings.rpc_password else ""}
        doc["doge"] = self._bridge_status()
        return doc

    def _bridge_status(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "network": self.net,
            "node": self.node_state,
            "node_error": self.node_error,
            "tip": self.tip,
            "min_confirmations": self.settings.min_confirmations,
        }
        if self.db is not None:
            doc |= {"scanned": self.db.scanned(), **self.db.counts(), **self.db.voucher_counts()}
        return doc

    # ------------------------------------------------------------ the node

    def _node(self) -> DogeRpc:
        if self.rpc is None:
            raise RequestError("no_node", NO_NODE, 503)
        return self.rpc

    def _db(self) -> BridgeStore:
        if self.db is None:
            raise RequestError("no_node", NO_NODE, 503)
        return self.db

    async def _call(self, method: str, *params: Any) -> Any:
        """One RPC call for a request: the node's silence is `node_unavailable` (its errors stay RpcError)."""
        try:
            return await self._node().call(method, *params)
        except RpcUnavailable as exc:
            self.counters["rpc_unavailable"] += 1
            raise RequestError("node_unavailable", str(exc), 503) from None

    def _now_ms(self) -> int:
        return int(self.clock.now_ms())

    # ------------------------------------------------------------ scanning and crediting

    async def _scan_loop(self) -> None:
        while True:
            try:
                await self._scan_round()
                self.node_state, self.node_error = "ok", ""
            except (RpcUnavailable, RpcError, ScanError) as exc:
                self.counters[f"scan_failed:{exc.__class__.__name__}"] += 1
                self.node_state, self.node_error = "unreachable", str(exc)[:200]
            except Exception as exc:  # whatever a node's odd answer breaks, the loop goes on (and says so)
                self.counters["scan_errors"] += 1
                self.node_state, self.node_error = "error", f"{exc.__class__.__name__}: {exc}"[:200]
                log.exception("reading the chain failed")
            await asyncio.sleep(self.settings.poll_ms / 1000)

    async def _scan_round(self) -> None:
        assert self.rpc is not None
        tip = await self.rpc.call("getblockcount")
        if not isinstance(tip, int) or isinstance(tip, bool) or tip < 0:
            raise ScanError(f"getblockcount gave {str(tip)[:40]!r}")
        self.tip = tip
        scanned = self._db().scanned()
        if scanned is None:
            start = self.settings.start_height
            self._db().start_at(min(start - 1, tip) if start >= 0 else tip)
            scanned = self._db().scanned()
            assert scanned is not None
        known = self._db().block_hash(scanned)
        if known is not None and (tip < scanned or await self.rpc.call("getblockhash", scanned) != known):
            self.counters["reorg"] += 1
            self._db().undo_block(scanned)
            return
        for height in range(scanned + 1, min(tip, scanned + BLOCKS_PER_ROUND) + 1):
            if not await self._read_block(height):
                return
        self._credit(tip)

    async def _read_block(self, height: int) -> bool:
        """Read one block into the store; False if it does not follow the block read before it."""
        assert self.rpc is not None
        blockhash = str(await self.rpc.call("getblockhash", height))
        block = await self.rpc.call("getblock", blockhash, True)
        if not isinstance(block, dict) or not isinstance(block.get("tx"), list):
            raise ScanError(f"block {height}: not a block")
        before = self._db().block_hash(height - 1)
        if before is not None and block.get("previousblockhash") != before:
            self.counters["reorg"] += 1
            self._db().undo_block(height - 1)
            return False
        outputs, spends = [], []
        if self.watched:
            for txid in block["tx"]:
                try:
                    raw = await self.rpc.call("getrawtransaction", str(txid), 0)
                except RpcError as exc:
                    if exc.code != NOT_FOUND:
                        raise
                    self.counters["scan_tx_missing"] += 1  # the genesis coinbase, or a node without -txindex
                    continue
                found, spent = scan_tx(read_tx(str(raw), str(txid)), str(txid), self.watched)
                outputs += found
                spends += spent
        new = self._db().block_done(height, blockhash, outputs, spends, self._now_ms())
        self.counters["deposits_seen"] += new
        return True

    def _credit(self, tip: int) -> None:
        for outpoint in self._db().uncredited(tip - self.settings.min_confirmations + 1):
            if self._db().credit(outpoint, self._now_ms()):
                self.counters["credited"] += 1
                log.info("credited deposit %s", outpoint)

    def _earnings(self) -> BridgeEarnings:
        if self.earnings is None:
            raise RequestError("no_node", NO_NODE, 503)
        return self.earnings

    async def _confirmations(self, txid: str) -> int:
        """The confirmations of a transaction as this cell's node says (0 when it knows none)."""
        try:
            info = await self._call("getrawtransaction", txid, 1)
        except RpcError as exc:
            if exc.code == NOT_FOUND:
                return 0
            raise RequestError("node_error", f"{exc.code}: {exc.message}", 502) from None
        n = info.get("confirmations", 0) if isinstance(info, dict) else 0
        return n if isinstance(n, int) and not isinstance(n, bool) else 0

    # ------------------------------------------------------------ receptors

    @receptor("doge.voucher")
    async def _r_voucher(self, env: envelope.Envelope) -> Any:
        """A swap party's voucher that this bridge served its transaction: ``{"voucher", "script"}``."""
        return self._earnings().take(env.signer, env.payload)

    @receptor("doge.earn")
    async def _r_earn(self, env: envelope.Envelope) -> Any:
        """Claim the bridge reward now for every voucher whose transaction is confirmed."""
        return await self._earnings().earn()

    @receptor("doge.watch")
    async def _r_watch(self, env: envelope.Envelope) -> Any:
        self._node()
        address = _text(env.payload, "address", 64)
        try:
            spk = script_pubkey(address, self.net)
        except BadAddress as exc:
            raise RequestError("bad_address", str(exc)) from None
        raw_script = env.payload.get("script") if isinstance(env.payload, dict) else None
        signer = bytes.fromhex(env.signer)
        if raw_script is None:
            if address != p2pkh_address(signer, self.net):
                self.counters["watch_not_owner"] += 1
                raise RequestError("not_owner", "only the key an address is derived from may watch it", 403)
            script = b""
        else:
            try:
                script = bytes.fromhex(_text(env.payload, "script", 400))
                terms = parse_htlc(script)
            except (ValueError, HtlcError) as exc:
                raise RequestError("bad_script", f"not an HTLC script: {exc}") from None
            if signer not in (terms.claim_pubkey, terms.refund_pubkey):
                self.counters["watch_not_owner"] += 1
                raise RequestError("not_owner", "the HTLC names neither key as the signer", 403)
            if htlc_address(script, self.net) != address:
                raise RequestError("bad_script", "the script is not this address's")
        if address not in self.watched.values():
            if self._db().count_watches() >= self.settings.max_watches:
                raise RequestError("too_many_watches", "the bridge watches as many addresses as it may", 507)
            if self._db().count_watches(env.signer) >= MAX_WATCHES_PER_OWNER:
                raise RequestError("too_many_watches", f"a key may watch {MAX_WATCHES_PER_OWNER} addresses", 429)
            if not self.new_watches.allow(remote_address(), time.monotonic()):
                self.counters["watch_refused:rate_limited"] += 1
                raise RequestError(
                    "rate_limited",
                    f"at most {self.settings.new_watches_per_hour} new addresses an hour from one network address",
                    429,
                )
        new = self._db().add_watch(Watch(address, env.signer, script), self._now_ms())
        self.watched[spk] = address
        return {"address": address, "watching": True, "new": new}

    @receptor("doge.deposits")
    async def _r_deposits(self, env: envelope.Envelope) -> Any:
        self._node()
        address = _text(env.payload, "address", 64)
        limit = env.payload.get("limit", 100) if isinstance(env.payload, dict) else 100
        if not isinstance(limit, int) or isinstance(limit, bool) or not (1 <= limit <= 500):
            raise RequestError("malformed", "limit is from 1 to 500")
        tip = self.tip
        items = self._db().deposits(address, limit)
        for item in items:
            item["confirmations"] = tip - item["height"] + 1 if tip is not None else 0
        return {"address": address, "tip": tip, "deposits": items}

    @receptor("doge.broadcast")
    async def _r_broadcast(self, env: envelope.Envelope) -> Any:
        node = self._node()
        raw = _text(env.payload, "hex", MAX_TX_HEX)
        try:
            txid = b2lx(CTransaction.deserialize(x(raw)).GetTxid())
        except Exception:  # python-bitcoinlib raises several types for bad bytes
            raise RequestError("malformed", "hex is not a serialized transaction") from None
        delay = 0.25
        for attempt in range(self.settings.broadcast_attempts):
            try:
                await node.call("sendrawtransaction", raw)
                self.counters["broadcast_accepted"] += 1
                return {"txid": txid}
            except RpcError as exc:
                if exc.code == ALREADY_IN_CHAIN:
                    return {"txid": txid, "already": True}
                if exc.code not in TRANSIENT_CODES:
                    self.counters["broadcast_rejected"] += 1
                    raise RequestError("tx_rejected", f"the node refused it: {exc.code}: {exc.message}", 422) from None
                error = str(exc)
            except RpcUnavailable as exc:
                error = str(exc)
            self.counters["broadcast_retried"] += 1
            if attempt + 1 < self.settings.broadcast_attempts:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        self.counters["broadcast_gave_up"] += 1
        raise RequestError("node_unavailable", f"the node did not take it: {error}", 503)

    @receptor("doge.tx")
    async def _r_tx(self, env: envelope.Envelope) -> Any:
        txid = _txid(env.payload)
        try:
            info = await self._call("getrawtransaction", txid, 1)
        except RpcError as exc:
            if exc.code == NOT_FOUND:
                raise RequestError("not_found", f"the node knows no transaction {txid}", 404) from None
            raise RequestError("node_error", f"{exc.code}: {exc.message}", 502) from None
        if not isinstance(info, dict):
            raise RequestError("node_error", "getrawtransaction gave no object", 502)
        try:
            read_tx(str(info.get("hex", "")), txid)
        except ScanError as exc:
            raise RequestError("node_error", str(exc), 502) from None
        confirmations = info.get("confirmations", 0)
        return {
            "txid": txid,
            "hex": info["hex"],
            "confirmations": confirmations if isinstance(confirmations, int) else 0,
            "blockhash": info.get("blockhash") if isinstance(info.get("blockhash"), str) else None,
        }

    @receptor("doge.height")
    async def _r_height(self, env: envelope.Envelope) -> Any:
        try:
            height = await self._call("getblockcount")
        except RpcError as exc:
            raise RequestError("node_error", f"{exc.code}: {exc.message}", 502) from None
        if not isinstance(height, int):
            raise RequestError("node_error", "getblockcount gave no integer", 502)
        return {"height": height}

    @receptor("doge.tip")
    async def _r_tip(self, env: envelope.Envelope) -> Any:
        """The best block: height, hash and median time past (what a time-locked refund is judged by)."""
        try:
            info = await self._call("getblockchaininfo")
        except RpcError as exc:
            raise RequestError("node_error", f"{exc.code}: {exc.message}", 502) from None
        if not isinstance(info, dict) or not all(
            isinstance(info.get(k), int) and not isinstance(info.get(k), bool) for k in ("blocks", "mediantime")
        ):
            raise RequestError("node_error", "getblockchaininfo gave no height and median time", 502)
        return {
            "height": info["blocks"],
            "hash": str(info.get("bestblockhash", ""))[:64],
            "mediantime": info["mediantime"],
            "chain": str(info.get("chain", ""))[:16],
        }

    @receptor("doge.status")
    async def _r_doge_status(self, env: envelope.Envelope) -> Any:
        self._node()
        return self._bridge_status()
