"""The holder's SQLite store: durable before answered, one vote per sequence in the database too, SIGKILL-safe."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from borgusb.ledger import (
    RESERVE,
    ZERO_HASH,
    Accepted,
    Certificate,
    HolderSets,
    Tx,
    certify,
    sign_acceptance,
    sign_reward,
    sign_transfer,
)
from borgusb.ledger.durable import DurableHolder
from borgusb.ledger.errors import LedgerError
from borgusb.ledger.sim import fixed_key
from borgusb.ledger.store import SCHEMA_VERSION, LedgerStore

NODES = [fixed_key(f"store node {i}") for i in range(5)]
ME = NODES[0]
SETS = HolderSets([k.public_key_hex for k in NODES])
ALICE, BOB, CAROL = fixed_key("store alice"), fixed_key("store bob"), fixed_key("store carol")
NOW = 1_764_000_000_000
SHELL = 10**8


def _cert(tx: Tx, signers: list[Any] = NODES[:3]) -> Certificate:
    return certify(tx, [sign_acceptance(k, tx, SETS.digest(tx.account)) for k in signers], SETS.digest(tx.account))


def _open(path: Path) -> DurableHolder:
    return DurableHolder(path, ME, SETS, verify_work=lambda tx: True)


def _funded(path: Path, shells: int = 10) -> DurableHolder:
    h = _open(path)
    reward = sign_reward(ALICE, seq=1, prev=ZERO_HASH, amount=shells * SHELL, ref="ab" * 32, ts=NOW)
    h.accept(reward, NOW)
    h.on_certificate(_cert(reward))
    return h


def _pay(seq: int = 1, prev: str = ZERO_HASH, to: Any = BOB, amount: int = SHELL) -> Tx:
    return sign_transfer(ALICE, seq=seq, prev=prev, to=to.public_key_hex, amount=amount, ts=NOW)


def test_wal_and_full_sync(tmp_path: Path) -> None:
    h = _open(tmp_path / "h.db")
    assert h.store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert h.store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    meta = dict(h.store.db.execute("SELECT key, value FROM meta").fetchall())
    assert meta == {"schema": str(SCHEMA_VERSION), "holder": ME.public_key_hex}
    h.close()


def test_everything_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    h = _funded(path)
    t1 = _pay(amount=3 * SHELL)
    acc1 = h.accept(t1, NOW)
    h.on_certificate(_cert(t1))
    t2 = _pay(seq=2, prev=t1.id, amount=SHELL)
    acc2 = h.accept(t2, NOW)  # accepted, not certified
    alice, bob = ALICE.public_key_hex, BOB.public_key_hex
    before = {a: (h.holder.balance(a), h.holder.available(a), h.holder.answer(a)) for a in (alice, bob, RESERVE)}
    h.close()
    again = _open(path)
    assert {a: (again.holder.balance(a), again.holder.available(a), again.holder.answer(a)) for a in before} == before
    assert again.holder.state.votes == h.holder.state.votes
    assert again.accept(t1, NOW) == acc1 and again.accept(t2, NOW) == acc2  # replays answer the same
    with pytest.raises(LedgerError) as err:
        again.accept(_pay(seq=2, prev=t1.id, to=CAROL), NOW)
    assert err.value.reason == "conflicting_spend"
    reserve_head = again.holder.head(RESERVE)[1]
    paid_again = sign_reward(CAROL, seq=2, prev=reserve_head, amount=SHELL, ref="ab" * 32, ts=NOW)
    with pytest.raises(LedgerError) as err:
        again.accept(paid_again, NOW)  # the work paid before the restart is still paid
    assert err.value.reason == "already_paid"
    again.close()


def test_one_vote_per_sequence_is_enforced_by_the_database(tmp_path: Path) -> None:
    h = _funded(tmp_path / "h.db")
    t1 = _pay(to=BOB)
    h.accept(t1, NOW)
    other = _pay(to=CAROL)
    # bypass the state machine: the store itself refuses a second vote and writes nothing of it
    with pytest.raises(LedgerError) as err:
        h.store.commit([Accepted(other, sign_acceptance(ME, other, SETS.digest(other.account)), new=True)])
    assert err.value.reason == "conflicting_spend"
    assert h.store.db.execute("SELECT count(*) FROM txs WHERE tx_id = ?", (other.id,)).fetchone()[0] == 0
    with pytest.raises(sqlite3.IntegrityError):
        h.store.db.execute(
            "INSERT INTO votes (account, seq, tx_id, acceptance) VALUES (?, 1, ?, '{}')", (t1.account, t1.id)
        )
    h.close()


def test_a_failed_commit_changes_nothing_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    h = _funded(tmp_path / "h.db")
    t1 = _pay()

    def disk_full(events: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(h.store, "commit", disk_full)
    with pytest.raises(sqlite3.OperationalError):
        h.accept(t1, NOW)
    assert (t1.account, 1) not in h.holder.state.votes  # no acceptance was returned, none is remembered
    monkeypatch.undo()
    assert h.accept(t1, NOW).id == t1.id
    h.close()


def _commits(h: DurableHolder) -> list[str]:
    """The COMMIT statements the store's connection runs from now on."""
    seen: list[str] = []
    h.store.db.set_trace_callback(lambda sql: seen.append(sql) if sql.strip().upper() == "COMMIT" else None)
    return seen


def test_decisions_in_one_commit_share_one_fsync_and_all_survive(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    h = _funded(path)
    alone = _commits(h)
    t0 = _pay(amount=SHELL)
    h.accept(t0, NOW)
    h.on_certificate(_cert(t0))  # its confirm and its credit: each alone, a commit each
    assert len(alone) == 3
    grouped = _commits(h)
    t1 = _pay(seq=2, prev=t0.id, amount=2 * SHELL)
    with h.one_commit():
        acc1 = h.accept(t1, NOW)
        h.on_certificate(_cert(t1))
        t2 = _pay(seq=3, prev=t1.id, amount=SHELL)
        acc2 = h.accept(t2, NOW)  # decided on t1's state, before anything is durable
        assert grouped == []
    assert len(grouped) == 1
    h.close()
    again = _open(path)
    assert again.accept(t1, NOW) == acc1 and again.accept(t2, NOW) == acc2
    assert again.holder.balance(BOB.public_key_hex) == 3 * SHELL
    again.close()


def test_a_refusal_inside_one_commit_keeps_the_decisions_before_it(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    h = _funded(path)
    t1, other = _pay(to=BOB), _pay(to=CAROL)
    with pytest.raises(LedgerError) as err, h.one_commit():
        h.accept(t1, NOW)
        # bypass the state machine: the store refuses the second vote and only its own writes go
        h.store.commit([Accepted(other, sign_acceptance(ME, other, SETS.digest(other.account)), new=True)])
    assert err.value.reason == "conflicting_spend"
    h.close()
    again = _open(path)
    assert again.holder.state.votes[(t1.account, 1)].id == t1.id
    assert again.store.db.execute("SELECT count(*) FROM txs WHERE tx_id = ?", (other.id,)).fetchone()[0] == 0
    again.close()


class _FullAtCommit:
    """The store's connection, failing its next COMMIT as a full disk would."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db, self.failed = db, False

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "COMMIT" and not self.failed:
            self.failed = True
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


def test_a_failed_group_commit_leaves_memory_as_the_disk_is(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    h = _funded(path)
    real = h.store.db
    h.store.db = _FullAtCommit(real)  # type: ignore[assignment]
    t1 = _pay()
    with pytest.raises(sqlite3.OperationalError), h.one_commit():
        h.accept(t1, NOW)
        assert (t1.account, 1) in h.holder.state.votes  # decided, applied, not yet durable
    assert (t1.account, 1) not in h.holder.state.votes  # no acceptance was returned, none is remembered
    assert not h.store.in_group and not real.in_transaction
    h.store.db = real
    assert h.accept(t1, NOW).id == t1.id
    h.close()


def test_adopting_the_certified_winner_is_persisted(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    h = _funded(path)
    loser, winner = _pay(to=CAROL), _pay(to=BOB)
    h.accept(loser, NOW)
    h.accept(_pay(seq=2, prev=loser.id, amount=1), NOW)
    h.on_certificate(_cert(winner, NODES[1:4]))
    h.close()
    h = _open(path)
    assert h.holder.head(ALICE.public_key_hex) == (1, winner.id)
    assert h.holder.balance(ALICE.public_key_hex) == 9 * SHELL
    with pytest.raises(LedgerError) as err:
        h.accept(winner, NOW)  # its vote at seq 1 is still the loser's
    assert err.value.reason == "conflicting_spend"
    h.close()


def test_wrong_key_unknown_version_and_damage_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    h = _funded(path)
    t1 = _pay()
    h.accept(t1, NOW)
    h.accept(_pay(seq=2, prev=t1.id), NOW)
    h.close()
    with pytest.raises(LedgerError) as err:
        DurableHolder(path, NODES[1], SETS)
    assert err.value.reason == "wrong_holder"

    def tamper(sql: str, *args: Any) -> Path:
        copy = tmp_path / f"copy{len(list(tmp_path.iterdir()))}.db"
        src = sqlite3.connect(path)
        src.backup(dst := sqlite3.connect(copy))
        src.close()
        dst.execute(sql, args)
        dst.commit()
        dst.close()
        return copy

    with pytest.raises(LedgerError) as err:
        _open(tamper("UPDATE meta SET value = '6' WHERE key = 'schema'"))  # a newer version than this node reads
    assert err.value.reason == "store_version"
    body = json.loads(t1.encode())
    body["amount"] = 1
    forged = json.dumps(body, sort_keys=True, separators=(",", ":"))
    with pytest.raises(LedgerError) as err:
        _open(tamper("UPDATE txs SET body = ? WHERE tx_id = ?", forged, t1.id))
    assert err.value.reason == "store_corrupt"
    with pytest.raises(LedgerError) as err:
        _open(tamper("UPDATE txs SET body = '{not json' WHERE tx_id = ?", t1.id))
    assert err.value.reason == "store_corrupt"
    with pytest.raises(LedgerError) as err:
        _open(tamper("DELETE FROM chain WHERE account = ? AND seq = 1", ALICE.public_key_hex))  # a hole
    assert err.value.reason == "store_corrupt"
    assert isinstance(LedgerStore(path, ME.public_key_hex).load().votes, dict)  # the original is untouched


# ------------------------------------------------------------------ SIGKILL in the middle of writing

CHILD = r"""
import hashlib, json, sys
from borgusb.ledger import RESERVE, HolderSets, certify, sign_acceptance, sign_reward
from borgusb.ledger.sim import fixed_key
from borgusb.ledger.durable import DurableHolder

nodes = [fixed_key(f"kill node {i}") for i in range(5)]
worker = fixed_key("kill worker")
SETS = HolderSets([k.public_key_hex for k in nodes])
h = DurableHolder(sys.argv[1], nodes[0], SETS, verify_work=lambda tx: True)
seq, prev = h.holder.head(RESERVE)
out = sys.stdout
out.write(json.dumps({"ready": seq}) + "\n")
out.flush()
while True:
    seq += 1
    ref = hashlib.sha256(str(seq).encode()).hexdigest()
    tx = sign_reward(worker, seq=seq, prev=prev, amount=10**8, ref=ref, ts=1764000000000)
    acc = h.accept(tx, 1764000000000)  # committed (fsync) before it returns
    out.write(json.dumps({"accepted": seq, "id": tx.id, "sig": acc.sig}) + "\n")
    out.flush()
    d = SETS.digest(tx.account)
    h.on_certificate(certify(tx, [acc] + [sign_acceptance(k, tx, d) for k in nodes[1:3]], d))  # credit + confirm
    out.write(json.dumps({"confirmed": seq, "id": tx.id}) + "\n")
    out.flush()
    prev = tx.id
"""


def _reward(seq: int, prev: str) -> Tx:
    ref = __import__("hashlib").sha256(str(seq).encode()).hexdigest()
    return sign_reward(fixed_key("kill worker"), seq=seq, prev=prev, amount=10**8, ref=ref, ts=NOW)


def _record(rec: dict[str, Any], accepted: dict[int, tuple[str, str]], confirmed: dict[int, str]) -> None:
    if "accepted" in rec:
        accepted[rec["accepted"]] = (rec["id"], rec["sig"])
    elif "confirmed" in rec:
        confirmed[rec["confirmed"]] = rec["id"]


def test_sigkill_mid_write_loses_nothing_it_reported(tmp_path: Path) -> None:
    db = tmp_path / "holder.db"
    accepted: dict[int, tuple[str, str]] = {}
    confirmed: dict[int, str] = {}
    for kill_after in (40, 75, 25):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=os.getcwd()
        )
        assert proc.stdout is not None and proc.stderr is not None
        try:
            deadline = time.monotonic() + 20
            ready = json.loads(proc.stdout.readline() or "null")
            # it may have committed more than it reported (killed between the commit and the report), never less
            assert ready is not None and ready["ready"] >= max(accepted, default=0)
            lines = 0
            while lines < kill_after and time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                lines += 1
                _record(json.loads(line), accepted, confirmed)
        finally:
            os.kill(proc.pid, signal.SIGKILL)  # it is writing: acceptances, credits, confirmations, one fsync each
            rest = proc.stdout.read()
            err = proc.stderr.read()
            code = proc.wait()
        assert lines == kill_after and code == -signal.SIGKILL, err.decode()[-2000:]
        for raw in rest.split(b"\n"):
            try:
                rec = json.loads(raw)
            except ValueError:
                continue  # a line cut by the kill was never reported
            _record(rec, accepted, confirmed)
    assert len(accepted) >= 70
    node0 = fixed_key("kill node 0")
    state = LedgerStore(db, node0.public_key_hex).load()
    for seq, (tx_id, sig) in accepted.items():
        vote = state.votes[(RESERVE, seq)]
        assert (vote.id, vote.sig) == (tx_id, sig)
        assert vote.verify()
    chain = state.chains[RESERVE]
    for seq, tx_id in confirmed.items():
        entry = chain.entries[seq - 1]
        assert entry.tx.id == tx_id and entry.cert is not None
    worker = fixed_key("kill worker").public_key_hex
    assert state.chains[worker].credited >= len(confirmed) * 10**8
    # the reopened holder still keeps its word: the same transaction gets the same acceptance,
    # any other transaction for a reported sequence number is a conflicting spend
    h = DurableHolder(db, node0, HolderSets([fixed_key(f"kill node {i}").public_key_hex for i in range(5)]))
    ids = {0: ZERO_HASH, **{s: i for s, (i, _) in accepted.items()}}
    last = max(accepted)
    tx = _reward(last, ids[last - 1])
    assert tx.id == accepted[last][0]
    assert h.accept(tx, NOW).sig == accepted[last][1]
    rival = sign_reward(fixed_key("kill worker"), seq=last, prev=ids[last - 1], amount=1, ref="ef" * 32, ts=NOW)
    with pytest.raises(LedgerError) as err:
        h.accept(rival, NOW)
    assert err.value.reason == "conflicting_spend"
    h.close()
