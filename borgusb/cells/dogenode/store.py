"""The bridge's SQLite store: watched addresses, seen deposits (keyed by txid:vout), the scan position,
and the swap parties' vouchers for the bridge reward (one per transaction and party, with what became
of its claim: ``waiting``, ``paid`` or ``refused``).

WAL and ``synchronous=FULL``: a row is on disk before the bridge reports it.
A deposit is one row whatever happens (``INSERT OR IGNORE`` on its outpoint),
and its credit is one UPDATE from NULL to a time, which a second credit,
after a restart or a rescan, cannot repeat: `credit` says True once per deposit, ever.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...doge.scan import Output, Spend

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS watches (
    address TEXT PRIMARY KEY, owner TEXT NOT NULL, script TEXT NOT NULL, added_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS deposits (
    outpoint TEXT PRIMARY KEY, address TEXT NOT NULL, txid TEXT NOT NULL, vout INTEGER NOT NULL,
    amount INTEGER NOT NULL, height INTEGER NOT NULL, blockhash TEXT NOT NULL, coinbase INTEGER NOT NULL,
    seen_ms INTEGER NOT NULL, spent_by TEXT, credited_ms INTEGER
);
CREATE INDEX IF NOT EXISTS deposits_by_address ON deposits (address, height);
CREATE TABLE IF NOT EXISTS blocks (height INTEGER PRIMARY KEY, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vouchers (
    txid TEXT NOT NULL, party TEXT NOT NULL, op TEXT NOT NULL, doc TEXT NOT NULL, script TEXT NOT NULL,
    ts INTEGER NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL, PRIMARY KEY (txid, party)
);
CREATE INDEX IF NOT EXISTS vouchers_by_state ON vouchers (state, ts);
"""


class StoreVersion(RuntimeError):
    """A store written by a newer format."""


@dataclass(frozen=True, slots=True)
class Watch:
    address: str
    owner: str
    script: bytes


@dataclass(frozen=True, slots=True)
class Voucher:
    """A swap party's voucher as kept: the signed document (canonical JSON) and the HTLC's script (hex)."""

    txid: str
    party: str
    op: str
    doc: str
    script: str
    ts: int


class BridgeStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)
        version = self._meta("version")
        if version is None:
            self._set_meta("version", str(SCHEMA_VERSION))
        elif int(version) > SCHEMA_VERSION:
            raise StoreVersion(f"{path} is format {version}; this BorgUSB reads up to {SCHEMA_VERSION}")

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------ meta and scan position

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def scanned(self) -> int | None:
        """The height of the last block read in full, or None before the first."""
        value = self._meta("scanned")
        return None if value is None else int(value)

    def block_hash(self, height: int) -> str | None:
        row = self.db.execute("SELECT hash FROM blocks WHERE height = ?", (height,)).fetchone()
        return None if row is None else str(row[0])

    def start_at(self, height: int) -> None:
        """Scan from the block after height (a first start, or a rescan): forget later block hashes."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("DELETE FROM blocks WHERE height > ?", (height,))
            self._set_meta("scanned", str(height))

    def block_done(self, height: int, blockhash: str, outputs: list[Output], spends: list[Spend], now_ms: int) -> int:
        """One block's findings and the new scan position, in one transaction; new deposits' count."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            new = 0
            for o in outputs:
                cur = self.db.execute(
                    "INSERT OR IGNORE INTO deposits (outpoint, address, txid, vout, amount, height, blockhash,"
                    " coinbase, seen_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        f"{o.txid}:{o.vout}",
                        o.address,
                        o.txid,
                        o.vout,
                        o.amount,
                        height,
                        blockhash,
                        int(o.coinbase),
                        now_ms,
                    ),
                )
                new += cur.rowcount
            for s in spends:
                self.db.execute(
                    "UPDATE deposits SET spent_by = ? WHERE outpoint = ?", (s.spender, f"{s.txid}:{s.vout}")
                )
            self.db.execute("INSERT OR REPLACE INTO blocks (height, hash) VALUES (?, ?)", (height, blockhash))
            self.db.execute("DELETE FROM blocks WHERE height < ?", (height - 1000,))
            self._set_meta("scanned", str(height))
        return new

    def undo_block(self, height: int) -> None:
        """A block that left the best chain: its uncredited deposits go, the scan steps back."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("DELETE FROM deposits WHERE height >= ? AND credited_ms IS NULL", (height,))
            self.db.execute("DELETE FROM blocks WHERE height >= ?", (height,))
            self._set_meta("scanned", str(height - 1))

    # ------------------------------------------------------------ watches

    def add_watch(self, watch: Watch, now_ms: int) -> bool:
        """True if the address is newly watched."""
        cur = self.db.execute(
            "INSERT OR IGNORE INTO watches (address, owner, script, added_ms) VALUES (?, ?, ?, ?)",
            (watch.address, watch.owner, watch.script.hex(), now_ms),
        )
        return cur.rowcount == 1

    def watches(self) -> list[Watch]:
        rows = self.db.execute("SELECT address, owner, script FROM watches").fetchall()
        return [Watch(a, o, bytes.fromhex(s)) for a, o, s in rows]

    def count_watches(self, owner: str | None = None) -> int:
        if owner is None:
            return int(self.db.execute("SELECT COUNT(*) FROM watches").fetchone()[0])
        return int(self.db.execute("SELECT COUNT(*) FROM watches WHERE owner = ?", (owner,)).fetchone()[0])

    # ------------------------------------------------------------ deposits and credits

    def uncredited(self, max_height: int) -> list[str]:
        """Outpoints of deposits deep enough to credit that are not credited yet."""
        rows = self.db.execute(
            "SELECT outpoint FROM deposits WHERE credited_ms IS NULL AND height <= ?", (max_height,)
        ).fetchall()
        return [str(r[0]) for r in rows]

    def credit(self, outpoint: str, now_ms: int) -> bool:
        """Credit one deposit: True the first time, False ever after."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            cur = self.db.execute(
                "UPDATE deposits SET credited_ms = ? WHERE outpoint = ? AND credited_ms IS NULL", (now_ms, outpoint)
            )
        return cur.rowcount == 1

    def deposits(self, address: str, limit: int) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT txid, vout, amount, height, blockhash, coinbase, seen_ms, spent_by, credited_ms FROM deposits"
            " WHERE address = ? ORDER BY height DESC, txid, vout LIMIT ?",
            (address, limit),
        ).fetchall()
        return [
            {
                "txid": r[0],
                "vout": r[1],
                "amount": r[2],
                "height": r[3],
                "blockhash": r[4],
                "coinbase": bool(r[5]),
                "seen_ms": r[6],
                "spent_by": r[7],
                "credited": r[8] is not None,
                "credited_ms": r[8],
            }
            for r in rows
        ]

    def counts(self) -> dict[str, int]:
        total, credited = self.db.execute("SELECT COUNT(*), COUNT(credited_ms) FROM deposits").fetchone()
        return {"deposits": int(total), "credited": int(credited), "watches": self.count_watches()}

    # ------------------------------------------------------------ vouchers (the bridge reward)

    def add_voucher(self, voucher: Voucher) -> bool:
        """Keep a voucher (True if new): one per (transaction, party)."""
        cur = self.db.execute(
            "INSERT OR IGNORE INTO vouchers (txid, party, op, doc, script, ts, state, reason)"
            " VALUES (?, ?, ?, ?, ?, ?, 'waiting', '')",
            (voucher.txid, voucher.party, voucher.op, voucher.doc, voucher.script, voucher.ts),
        )
        return cur.rowcount == 1

    def waiting(self, limit: int) -> list[Voucher]:
        """Vouchers not claimed yet, oldest first, none of a transaction already paid."""
        rows = self.db.execute(
            "SELECT txid, party, op, doc, script, ts FROM vouchers v WHERE state = 'waiting' AND NOT EXISTS"
            " (SELECT 1 FROM vouchers p WHERE p.txid = v.txid AND p.state = 'paid') ORDER BY ts LIMIT ?",
            (limit,),
        ).fetchall()
        return [Voucher(*r) for r in rows]

    def count_waiting(self, party: str | None = None) -> int:
        if party is None:
            return int(self.db.execute("SELECT COUNT(*) FROM vouchers WHERE state = 'waiting'").fetchone()[0])
        row = self.db.execute("SELECT COUNT(*) FROM vouchers WHERE state = 'waiting' AND party = ?", (party,))
        return int(row.fetchone()[0])

    def settle_voucher(self, txid: str, party: str, state: str, reason: str) -> None:
        """What became of a voucher's claim: ``paid`` (every voucher of the transaction) or ``refused``."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            if state == "paid":
                self.db.execute("UPDATE vouchers SET state = 'paid', reason = ? WHERE txid = ?", (reason, txid))
            else:
                self.db.execute(
                    "UPDATE vouchers SET state = ?, reason = ? WHERE txid = ? AND party = ?",
                    (state, reason, txid, party),
                )

    def expire_vouchers(self, before_ts: int, forget_ts: int) -> None:
        """Vouchers too old to be paid are refused ``too_old``; settled ones older than `forget_ts` go."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "UPDATE vouchers SET state = 'refused', reason = 'too_old' WHERE state = 'waiting' AND ts < ?",
                (before_ts,),
            )
            self.db.execute("DELETE FROM vouchers WHERE state != 'waiting' AND ts < ?", (forget_ts,))

    def vouchers(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest vouchers and what became of them."""
        rows = self.db.execute(
            "SELECT txid, party, op, ts, state, reason FROM vouchers ORDER BY ts DESC, txid, party LIMIT ?", (limit,)
        ).fetchall()
        keys = ("txid", "party", "op", "ts", "state", "reason")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def voucher_counts(self) -> dict[str, int]:
        rows = self.db.execute("SELECT state, COUNT(*) FROM vouchers GROUP BY state").fetchall()
        return {f"vouchers_{state}": int(n) for state, n in rows}
