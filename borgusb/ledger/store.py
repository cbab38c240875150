"""The holder's memory on disk: SQLite, one transaction per decision, durable before it is answered.

A holder's promise ("one transaction per (account, seq), forever") is only
as good as its memory across a crash: an acceptance that was sent but lost
on restart would let the holder vote again, for a conflicting spend. So:

* WAL journal and ``synchronous=FULL``: a COMMIT returns only once the WAL
  is on disk (fsync), so a process killed at any instant, even with SIGKILL
  in the middle of a write, finds after reopening every transaction that
  committed and none that did not.
* `DurableHolder` (durable.py) decides (pure `Holder`), commits the event in one SQLite
  transaction, and only then applies it in memory and returns the signed
  acceptance: what a holder said, it has on disk.
* ``UNIQUE (account, seq)`` on the votes table keeps the one-vote rule in the
  database too: a second vote for a sequence number fails there even if the
  memory above were wrong.

Schema version 5 (``meta.schema``), owned by one node key (``meta.holder``).
Versions 1 to 4 kept acceptances, votes and certificates of the signed format
1, which named no holder set: no holder of today's network takes them, so such
a database is **retired** on open (renamed ``<name>.schema<N>-retired``, kept
for the record, never read again) and a new one is made. A skip (`skip.py`)
is kept like a transaction: its document in ``txs`` under the skip's id, and in
``chain`` at its seq with the same document as its proof, where a
transaction has its certificate. Opening with another key is
`WrongHolder` (those votes are another key's).
On open, rows are re-read and cross-checked (ids re-hashed from the stored
bodies, chains contiguous and linked); a damaged store is `StoreCorrupt`,
never repaired silently. Signatures are not re-verified on open: the rows
were checked before they were written.

One connection, used from one thread (sqlite3's default): the cell calls the
holder from its event loop, a commit costs one fsync. Decisions taken together
(a bundle of offers or certificates, a certificate's confirm and credit) share
one commit (`durable.DurableHolder.one_commit`): under load most of a holder's time went
to waiting on fsyncs, one or two per decision (bench_ledger's profile).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import canonical
from .certificate import Acceptance, Certificate, certificate_from_dict
from .errors import AlreadyResolved, ConflictingSpend, LedgerError, StoreCorrupt, StoreVersion, WrongHolder
from .holderstate import (
    Accepted,
    Confirmed,
    Entry,
    Event,
    HolderState,
    Settled,
    Skipped,
    Voted,
)
from .htlc import (
    Vote,
    check_resolution,
    resolution_certificate_from_dict,
)
from .skip import Skip, is_skip_doc, skip_from_dict
from .tx import ZERO_HASH, Tx, check_tx

SCHEMA_VERSION = 5
RETIRED = ("1", "2", "3", "4")  # signed format 1: acceptances and certificates named no holder set

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TABLE txs (tx_id TEXT PRIMARY KEY, body TEXT NOT NULL) STRICT;
CREATE TABLE votes (
    account TEXT NOT NULL,
    seq INTEGER NOT NULL CHECK (seq >= 1),
    tx_id TEXT NOT NULL REFERENCES txs (tx_id),
    acceptance TEXT NOT NULL,
    UNIQUE (account, seq)
) STRICT;
CREATE TABLE chain (
    account TEXT NOT NULL,
    seq INTEGER NOT NULL CHECK (seq >= 1),
    tx_id TEXT NOT NULL REFERENCES txs (tx_id),
    cert TEXT,
    PRIMARY KEY (account, seq)
) STRICT;
CREATE TABLE credits (
    tx_id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    cert TEXT NOT NULL
) STRICT;
CREATE TABLE htlc_votes (
    lock_id TEXT PRIMARY KEY,
    res_id TEXT NOT NULL,
    body TEXT NOT NULL,
    vote TEXT NOT NULL
) STRICT;
CREATE TABLE htlc_settled (
    lock_id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    cert TEXT NOT NULL,
    recorded INTEGER NOT NULL CHECK (recorded IN (0, 1)),
    credited INTEGER NOT NULL CHECK (credited IN (0, 1))
) STRICT;
CREATE INDEX htlc_settled_account ON htlc_settled (account, credited);
CREATE TABLE evidence (
    holder TEXT PRIMARY KEY,
    doc TEXT NOT NULL
) STRICT;
"""


def _dump(doc: Any) -> str:
    return canonical.encode_unchecked(doc).decode()


class LedgerStore:
    """One holder's SQLite database (see the module docstring)."""

    def __init__(self, path: str | Path, holder: str) -> None:
        self.path = Path(path)
        self.holder = holder
        self.in_group = False
        self.db = self._connect()
        try:
            self._open_or_create()
        except BaseException:
            self.db.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None)  # transactions are explicit
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise StoreCorrupt(f"cannot use WAL mode on {self.path} (got {mode})")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            db.close()
            raise
        return db

    def _open_or_create(self) -> None:
        has_meta = self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        if has_meta and self._retire_old():
            has_meta = None
        if not has_meta:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        self.db.execute(stmt)
                self.db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("schema", str(SCHEMA_VERSION)), ("holder", self.holder)],
                )
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            return
        meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("schema") != str(SCHEMA_VERSION):
            raise StoreVersion(f"{self.path} has schema {meta.get('schema')!r}; this node reads {SCHEMA_VERSION}")
        if meta.get("holder") != self.holder:
            raise WrongHolder(f"{self.path} holds the votes of {str(meta.get('holder'))[:16]}, not {self.holder[:16]}")

    def _retire_old(self) -> bool:
        """Rename a database of signed format 1 (schema 1 to 4) aside and reopen empty; True if it did."""
        meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("schema") not in RETIRED or meta.get("holder") != self.holder:
            return False
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.close()
        self.path.rename(self.path.with_name(f"{self.path.name}.schema{meta['schema']}-retired"))
        for suffix in ("-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        self.db = self._connect()
        return True

    def close(self) -> None:
        self.db.close()

    # -------------------------------------------------------------- evidence (`evidence.py`)

    def keep_evidence(self, holder: str, doc: Any) -> None:
        """Keep (durably) the first checked evidence against `holder`; later ones add nothing."""
        self.db.execute("INSERT OR IGNORE INTO evidence (holder, doc) VALUES (?, ?)", (holder, _dump(doc)))

    def evidence(self) -> list[Any]:
        """The evidence kept, as stored (checked again by the reader: a store is not a signature)."""
        return [json.loads(doc) for (doc,) in self.db.execute("SELECT doc FROM evidence ORDER BY rowid")]

    # -------------------------------------------------------------- writes

    def commit(self, events: Sequence[Event]) -> None:
        """Write `events` in one SQLite transaction; returns only once it is durable. Inside a group
        (`begin_group`) they are written under a savepoint instead (all or none of them), durable
        when the group commits."""
        grouped = self.in_group
        self.db.execute("SAVEPOINT events" if grouped else "BEGIN IMMEDIATE")
        try:
            for ev in events:
                if ev.new:
                    self._write(ev)
            self.db.execute("RELEASE events" if grouped else "COMMIT")
        except BaseException:
            if grouped:
                self.db.execute("ROLLBACK TO events")
                self.db.execute("RELEASE events")
            elif self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def begin_group(self) -> None:
        """Open one transaction that the commits until `end_group` write into (group commit)."""
        self.db.execute("BEGIN IMMEDIATE")
        self.in_group = True

    def end_group(self) -> None:
        """COMMIT the group: one fsync for all of it (a failed COMMIT rolls it all back)."""
        self.in_group = False
        try:
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:  # SQLite rolls some failures back itself
                self.db.execute("ROLLBACK")
            raise

    def _tx_row(self, tx: Tx) -> None:
        self.db.execute("INSERT OR IGNORE INTO txs (tx_id, body) VALUES (?, ?)", (tx.id, _dump(tx.to_dict())))

    def _write(self, ev: Event) -> None:
        if isinstance(ev, Accepted):
            tx = ev.tx
            self._tx_row(tx)
            try:
                self.db.execute(
                    "INSERT INTO votes (account, seq, tx_id, acceptance) VALUES (?, ?, ?, ?)",
                    (tx.account, tx.seq, tx.id, _dump(ev.acceptance.to_dict())),
                )
            except sqlite3.IntegrityError:
                row = self.db.execute(
                    "SELECT tx_id FROM votes WHERE account = ? AND seq = ?", (tx.account, tx.seq)
                ).fetchone()
                raise ConflictingSpend(
                    row[0] if row else "?", "the store already holds a vote for that sequence"
                ) from None
            self.db.execute(
                "INSERT OR IGNORE INTO chain (account, seq, tx_id, cert) VALUES (?, ?, ?, NULL)",
                (tx.account, tx.seq, tx.id),
            )
        elif isinstance(ev, Confirmed):
            tx = ev.cert.tx
            self._tx_row(tx)
            if ev.replaced is not None:
                self.db.execute("DELETE FROM chain WHERE account = ? AND seq >= ?", (tx.account, tx.seq))
            self.db.execute(
                "INSERT OR REPLACE INTO chain (account, seq, tx_id, cert) VALUES (?, ?, ?, ?)",
                (tx.account, tx.seq, tx.id, _dump(ev.cert.to_dict())),
            )
        elif isinstance(ev, Skipped):
            skip, doc = ev.skip, _dump(ev.skip.to_dict())
            self.db.execute("INSERT OR IGNORE INTO txs (tx_id, body) VALUES (?, ?)", (skip.id, doc))
            self.db.execute("DELETE FROM chain WHERE account = ? AND seq >= ?", (skip.account, skip.seq))
            self.db.execute(
                "INSERT INTO chain (account, seq, tx_id, cert) VALUES (?, ?, ?, ?)",
                (skip.account, skip.seq, skip.id, doc),
            )
        elif isinstance(ev, Voted):
            res = ev.resolution
            if ev.replaces:  # a refund vote yields to a claim (Holder.decide_resolve): only that refund's row
                cur = self.db.execute(
                    "UPDATE htlc_votes SET res_id = ?, body = ?, vote = ? WHERE lock_id = ? AND res_id = ?",
                    (res.id, _dump(res.to_dict()), _dump(ev.vote.to_dict()), res.lock.id, ev.replaces),
                )
                if cur.rowcount != 1:
                    raise AlreadyResolved("?", "the store holds no refund vote for that lock to replace")
                return
            try:  # PRIMARY KEY (lock_id): a second vote for a lock fails here too
                self.db.execute(
                    "INSERT INTO htlc_votes (lock_id, res_id, body, vote) VALUES (?, ?, ?, ?)",
                    (res.lock.id, res.id, _dump(res.to_dict()), _dump(ev.vote.to_dict())),
                )
            except sqlite3.IntegrityError:
                row = self.db.execute("SELECT res_id FROM htlc_votes WHERE lock_id = ?", (res.lock.id,)).fetchone()
                raise AlreadyResolved(row[0] if row else "?", "the store already holds a vote for that lock") from None
        elif isinstance(ev, Settled):
            res = ev.cert.resolution
            self.db.execute(
                "INSERT INTO htlc_settled (lock_id, account, cert, recorded, credited) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (lock_id) DO UPDATE SET recorded = max(recorded, excluded.recorded),"
                " credited = max(credited, excluded.credited)",
                (res.lock.id, res.beneficiary, _dump(ev.cert.to_dict()), int(ev.record), int(ev.credit)),
            )
        else:
            tx = ev.cert.tx
            self.db.execute(
                "INSERT OR IGNORE INTO credits (tx_id, account, amount, cert) VALUES (?, ?, ?, ?)",
                (tx.id, tx.to, tx.amount, _dump(ev.cert.to_dict())),
            )

    # -------------------------------------------------------------- reading back

    def load(self) -> HolderState:
        """The holder's state as committed, cross-checked (`StoreCorrupt` on any inconsistency)."""
        try:
            return self._load()
        except LedgerError as exc:
            if isinstance(exc, StoreCorrupt):
                raise
            raise StoreCorrupt(f"a stored row does not check: {exc}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreCorrupt(f"a stored row cannot be read: {exc}") from None

    def _load(self) -> HolderState:
        st = HolderState()
        txs: dict[str, Tx] = {}
        skips: dict[str, Skip] = {}
        for tx_id, body in self.db.execute("SELECT tx_id, body FROM txs"):
            doc = json.loads(body)
            if is_skip_doc(doc):
                skips[tx_id] = skip_from_dict(doc, verify=False)
                stored = skips[tx_id].entry()
            else:
                stored = check_tx(doc, verify=False)
            if stored.id != tx_id:
                raise StoreCorrupt(f"transaction {tx_id} does not hash to its id")
            txs[tx_id] = stored
        for account, seq, tx_id, acc_json in self.db.execute("SELECT account, seq, tx_id, acceptance FROM votes"):
            d = json.loads(acc_json)
            acc = Acceptance(d["id"], d["account"], d["seq"], d["holder"], d["set"], d["sig"])
            if (acc.id, acc.account, acc.seq, acc.holder) != (tx_id, account, seq, self.holder) or tx_id not in txs:
                raise StoreCorrupt(f"the vote for {account[:16]}:{seq} does not match its row")
            st.votes[(account, seq)] = acc
        rows = self.db.execute("SELECT account, seq, tx_id, cert FROM chain ORDER BY account, seq")
        for account, seq, tx_id, cert_json in rows:
            chain = st.chain(account)
            tx = txs.get(tx_id)
            prev = chain.entries[-1].tx.id if chain.entries else ZERO_HASH
            if tx is None or seq != len(chain.entries) + 1 or (tx.account, tx.seq, tx.prev) != (account, seq, prev):
                raise StoreCorrupt(f"the chain of {account[:16]} is broken at {seq}")
            if tx_id in skips:
                if cert_json is None or chain.confirmed != seq - 1:
                    raise StoreCorrupt(f"the skip of {account[:16]}:{seq} does not follow a settled entry")
                chain.entries.append(Entry(tx, None, skips[tx_id]))
                chain.confirmed = seq
                continue
            cert = self._cert(cert_json, tx_id) if cert_json is not None else None
            chain.entries.append(Entry(tx, cert))
            if cert is not None:
                chain.confirmed = seq
        for tx_id, account, amount, cert_json in self.db.execute("SELECT tx_id, account, amount, cert FROM credits"):
            cert = self._cert(cert_json, tx_id)
            if (cert.tx.to, cert.tx.amount) != (account, amount):
                raise StoreCorrupt(f"the credit {tx_id} does not match its certificate")
            st.credits[tx_id] = (account, amount)
            st.chain(account).credited += amount
        for lock_id, res_id, body, vote_json in self.db.execute("SELECT lock_id, res_id, body, vote FROM htlc_votes"):
            res = check_resolution(json.loads(body), verify=False)
            d = json.loads(vote_json)
            vote = Vote(d["lock"], d["id"], d["holder"], d["set"], d["sig"])
            if (res.lock.id, res.id) != (lock_id, res_id) or (vote.lock, vote.id, vote.holder) != (
                lock_id,
                res_id,
                self.holder,
            ):
                raise StoreCorrupt(f"the resolution vote for lock {lock_id} does not match its row")
            st.res_votes[lock_id] = vote
        for lock_id, account, cert_json, recorded, credited in self.db.execute(
            "SELECT lock_id, account, cert, recorded, credited FROM htlc_settled"
        ):
            rc = resolution_certificate_from_dict(json.loads(cert_json), verify=False)
            res = rc.resolution
            if (res.lock.id, res.beneficiary) != (lock_id, account):
                raise StoreCorrupt(f"the resolution stored for lock {lock_id} is another lock's")
            if recorded:
                st.resolved[lock_id] = rc
            if credited:
                st.htlc_credits[lock_id] = (res.beneficiary, res.lock.amount)
                st.chain(res.beneficiary).credited += res.lock.amount
        for chain in st.chains.values():
            chain.recount()
        return st

    @staticmethod
    def _cert(cert_json: str, tx_id: str) -> Certificate:
        cert = certificate_from_dict(json.loads(cert_json), verify_tx=False)
        if cert.tx.id != tx_id:
            raise StoreCorrupt(f"the certificate stored for {tx_id} is another transaction's")
        return cert


__all__ = ["SCHEMA_VERSION", "LedgerStore"]
